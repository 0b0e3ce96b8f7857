//! `service system-init`: the supervisor daemon. Sets up volumes, runs onboot, then starts every
//! service in dependency order and keeps them running by their restart policy; on SIGTERM runs
//! onshutdown and stops the services in reverse dependency order, each within its stop timeout.
//! Every service's life goes through its [`Lifecycle`]; this module only carries out the actions
//! it returns and turns what happens (exits, timers, ready files) into its events.
//! Runs in: the image, as root, started by init; a child subreaper; one tokio thread, with
//! container creation in the `service runtime create` helper. The rooms: the event loop and
//! boot here; control requests and the answers that wait for a state (`requests`); dispatch of
//! lifecycle actions and timers (`dispatch`); starting and watching a service (`start`); output
//! and the event log (`output`); records and adoption (`adoption`); the services as plain data
//! (`services`). It owns the wait status of its
//! container inits (through pidfds) and reaps the orphans it inherits.
//! Started again after a supervisor died (init restarts it), it adopts the services still
//! running from their records (`record.rs`): same processes, their output read again, their
//! exits seen through pidfds and handled by the restart policy.
//! LinuxKit's `service system-init` starts containerd and the services once and exits; nothing
//! there restarts a service.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use runtime::helper::Helper;
use spec::layout::{Layout, Section};
use spec::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot::Sender as ReplyTo;

use crate::console;
use crate::control::{self, Control, Reply};
use crate::exec;
use crate::launch;
use crate::lifecycle::Event;
use crate::logfile;
use crate::oneshot;
use crate::protocol::Answer;
use crate::record::Records;
use crate::volumes;
use output::EventLog;
use service::Service;
use services::{Services, Wait};

mod adoption;
mod dispatch;
mod output;
mod requests;
mod service;
mod services;
mod start;

/// The file under the runtime's state root that says volumes and onboot ran at this boot.
const BOOTED_MARKER: &str = ".booted";

/// How long the answer to `shutdown` is given to reach its client before the daemon ends.
const LAST_ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Where the daemon finds bundles and writes logs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `/containers` tree.
    pub containers: PathBuf,
    /// Where service logs and `service.log` go (`/var/log`).
    pub log_dir: PathBuf,
    /// Where onboot and onshutdown logs go (`/run/log`).
    pub oneshot_log_dir: PathBuf,
    /// Service log rotation: size limit and rotated files kept.
    pub log_max_size: u64,
    pub log_keep: usize,
    /// Where each service with `ready.notify` gets its notify socket (`NAME/notify.sock`).
    pub notify_dir: PathBuf,
    /// The control socket (`/run/service.sock`).
    pub socket: PathBuf,
    /// Where each running service's record is kept for a later supervisor (`/run/kiln/services`).
    pub state_dir: PathBuf,
    /// How much of the event log goes to the console.
    pub console: console::Level,
}

/// Runs the daemon until SIGTERM has been handled.
pub async fn run(config: Config, helper: Helper) -> ExitCode {
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("service system-init: become a child subreaper: {err}");
    }
    match Daemon::new(config, helper) {
        Ok(mut daemon) => daemon.run().await,
        Err(err) => {
            eprintln!("service system-init: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A message to the event loop about one service; `generation` tells which start of the service
/// it is about, so that a late timer or exit of an earlier run is ignored.
#[derive(Debug)]
struct Message {
    name: String,
    generation: u64,
    event: Event,
}

/// A `start`, `stop` or `restart` waiting for its service to get where it was sent, and the
/// client to answer then.
#[derive(Debug)]
struct Pending {
    wait: Wait,
    reply: ReplyTo<Reply>,
}

/// What a turn of the event loop asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Continue,
    ShutdownRequested,
    Terminated,
}

struct Daemon {
    config: Config,
    helper: Helper,
    services: Services,
    events: EventLog,
    sender: UnboundedSender<Message>,
    receiver: UnboundedReceiver<Message>,
    controls: UnboundedReceiver<Control>,
    control_sender: UnboundedSender<Control>,
    pending: Vec<Pending>,
    /// Set once shutdown has begun: only requests that look are served.
    shutting_down: bool,
    /// Who asked for the shutdown, to be told when it is done.
    shutdown_reply: Option<ReplyTo<Reply>>,
    records: Records,
    /// When this supervisor started.
    started: Instant,
    /// Whether "all services up" has been said.
    announced_up: bool,
    /// The `service exec` helpers running (their sessions reap them).
    exec_helpers: exec::Helpers,
}

impl Daemon {
    fn new(config: Config, helper: Helper) -> io::Result<Self> {
        fs::create_dir_all(&config.log_dir).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("create {}: {err}", config.log_dir.display()),
            )
        })?;
        let events = EventLog::open(&config.log_dir.join(logfile::EVENT_LOG), config.console)?;
        let (sender, receiver) = unbounded_channel();
        let (control_sender, controls) = unbounded_channel();
        let records = Records::new(&config.state_dir);
        Ok(Self {
            records,
            config,
            helper,
            services: Services::default(),
            events,
            sender,
            receiver,
            controls,
            control_sender,
            pending: Vec::new(),
            shutting_down: false,
            shutdown_reply: None,
            started: Instant::now(),
            announced_up: false,
            exec_helpers: exec::Helpers::default(),
        })
    }

    async fn run(&mut self) -> ExitCode {
        let (mut term, mut chld) =
            match (signal(SignalKind::terminate()), signal(SignalKind::child())) {
                (Ok(term), Ok(chld)) => (term, chld),
                (Err(err), _) | (_, Err(err)) => {
                    eprintln!("service system-init: signal handlers: {err}");
                    return ExitCode::FAILURE;
                }
            };
        // Requests wait in the channel until the event loop runs.
        let listener = match control::listen(&self.config.socket, self.control_sender.clone()) {
            Ok(listener) => Some(listener),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
                eprintln!("service system-init: {err}");
                return ExitCode::FAILURE;
            }
            Err(err) => {
                self.events.line(&format!("control socket: {err}"));
                None
            }
        };
        self.boot_once().await;
        self.load_services();
        self.adopt_all().await;
        self.start_ready_dependents();
        self.announce_all_up();
        loop {
            match self.turn(&mut chld, Some(&mut term)).await {
                Turn::Continue => {}
                Turn::ShutdownRequested => {
                    self.events.line("shutdown requested: shutting down");
                    break;
                }
                Turn::Terminated => {
                    self.events.line("SIGTERM: shutting down");
                    break;
                }
            }
        }
        self.shutting_down = true;
        let paths = self.oneshot_paths(Section::Onshutdown);
        oneshot::run_section(Section::Onshutdown, &paths, &self.helper).await;
        self.stop_all(&mut chld).await;
        // The boot is over: a supervisor started after this clean stop begins again.
        let _ = fs::remove_file(self.booted_marker());
        self.events.line("all services stopped");
        if let Some(listener) = listener {
            listener.abort();
            let _ = fs::remove_file(&self.config.socket);
        }
        if let Some(reply) = self.shutdown_reply.take() {
            let (written, done) = tokio::sync::oneshot::channel();
            let answer = Answer::ok();
            if reply.send(Reply::Final { answer, written }).is_ok() {
                let _ = tokio::time::timeout(LAST_ANSWER_GRACE, done).await;
            }
        }
        ExitCode::SUCCESS
    }

    /// One turn of the event loop: the next message about a service, control request or
    /// SIGCHLD is handled; SIGTERM is listened for only when `term` is given.
    async fn turn(&mut self, chld: &mut Signal, term: Option<&mut Signal>) -> Turn {
        let terminated = async {
            match term {
                Some(term) => term.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(message) = self.receiver.recv() => {
                self.dispatch(message).await;
                Turn::Continue
            }
            Some(control) = self.controls.recv() => {
                if self.control(control).await {
                    Turn::ShutdownRequested
                } else {
                    Turn::Continue
                }
            }
            _ = chld.recv() => {
                self.reap_orphans();
                Turn::Continue
            }
            _ = terminated => Turn::Terminated,
        }
    }

    /// Volumes and onboot, unless a supervisor that ran before this one (and ended without a
    /// clean shutdown, to be restarted by init) has done them at this boot: the marker lives
    /// under the runtime's state root, on /run, and a clean shutdown removes it.
    async fn boot_once(&mut self) {
        let marker = self.booted_marker();
        if marker.exists() {
            self.events
                .line("volumes and onboot already ran at this boot: not running them again");
            return;
        }
        for name in volumes::set_up(&self.config.containers).await {
            self.events.line(&format!("volume {name}: not set up"));
        }
        let paths = self.oneshot_paths(Section::Onboot);
        oneshot::run_section(Section::Onboot, &paths, &self.helper).await;
        let written =
            fs::create_dir_all(self.helper.runtime().root()).and_then(|()| fs::write(&marker, ""));
        if let Err(err) = written {
            self.events.line(&format!(
                "record that onboot ran ({}): {err}",
                marker.display()
            ));
        }
    }

    fn booted_marker(&self) -> PathBuf {
        self.helper.runtime().root().join(BOOTED_MARKER)
    }

    fn oneshot_paths(&self, section: Section) -> oneshot::Paths {
        oneshot::Paths::new(
            section,
            &self.config.containers,
            &self.config.oneshot_log_dir,
            &self.config.log_dir,
        )
    }

    /// Reads every service's runtime.json and works out the order; services that cannot start
    /// are reported and left failed.
    fn load_services(&mut self) {
        let bundles = match Layout::new(&self.config.containers).bundles(Section::Services) {
            Ok(bundles) => bundles,
            Err(err) => {
                self.events.line(&format!("read services: {err}"));
                Vec::new()
            }
        };
        let mut services = BTreeMap::new();
        let mut invalid = BTreeMap::new();
        for bundle in bundles {
            let name = bundle.id();
            let runtime = launch::load_runtime(&bundle).unwrap_or_else(|message| {
                invalid.insert(name.clone(), message);
                Runtime::default()
            });
            services.insert(name, Service::new(bundle, runtime));
        }
        self.services = Services::new(services, &invalid);
        let blocked: Vec<String> = self
            .services
            .blocked()
            .map(|(name, why)| format!("{name}: not started: {why}"))
            .collect();
        for line in blocked {
            self.events.line(&line);
        }
    }

    /// Reaps children that are not container inits or exec helpers being watched (orphans
    /// re-parented here); those are reaped by their own watchers.
    fn reap_orphans(&self) {
        for pid in children() {
            if !self.services.is_container_init(pid) && !self.exec_helpers.contains(pid) {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
    }

    /// Stops every service, a wave at a time: dependents before what they depend on.
    async fn stop_all(&mut self, chld: &mut Signal) {
        for wave in self.services.stop_waves() {
            for name in &wave {
                self.send_now(name, Event::StopRequested);
            }
            while self.services.any_busy(&wave) {
                self.turn(chld, None).await;
            }
        }
    }
}

/// The children of this process, from /proc (every thread's list).
fn children() -> Vec<Pid> {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .map(Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}
