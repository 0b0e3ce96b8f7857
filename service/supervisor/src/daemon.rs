//! `service system-init`: the supervisor daemon. Sets up volumes, runs onboot, then starts every
//! service in dependency order and keeps them running by their restart policy; on SIGTERM runs
//! onshutdown and stops the services in reverse dependency order, each within its stop timeout.
//! Every service's life goes through its [`Lifecycle`]; this module only carries out the actions
//! it returns and turns what happens (exits, timers, ready files) into its events.
//! Runs in: the image, as root, started by init; a child subreaper; one tokio thread, with
//! container creation in the `service runtime create` helper. It owns the wait status of its
//! container inits (through pidfds) and reaps the orphans it inherits.
//! Started again after a supervisor died (init restarts it), it adopts the services still
//! running from their records (`record.rs`): same processes, their output read again, their
//! exits seen through pidfds and handled by the restart policy.
//! LinuxKit's `service system-init` starts containerd and the services once and exits; nothing
//! there restarts a service.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{pipe2, Pid};
use prepare::Prepared;
use runtime::helper::{ContainerStdio, Helper, HelperOptions};
use spec::layout::{Layout, Section};
use spec::Runtime;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot::Sender as ReplyTo;
use tokio::task::JoinHandle;

use crate::child::{Child, Exit};
use crate::control::{self, Control, Reply};
use crate::launch::{self, Launched};
use crate::lifecycle::{Action, Event, Lifecycle, Policy, State};
use crate::logfile::{self, LogFile};
use crate::notify;
use crate::oneshot;
use crate::order::Order;
use crate::protocol::{
    epoch_secs, from_epoch_secs, Answer, ExecTarget, LogLine, Request, ServiceInfo,
};
use crate::record::{self, Record, Records};
use crate::ring::{self, Ring, Stream};
use crate::volumes;

/// How long the output of a run that ended is awaited before it is reported.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// How many lines of a failed run's output go to the event log.
const REPORTED_LINES: usize = 3;

/// The file under the runtime's state root that says volumes and onboot ran at this boot.
const BOOTED_MARKER: &str = ".booted";

/// How often a declared ready file is looked for.
const READY_POLL: Duration = Duration::from_millis(50);

/// How many log lines `service status` shows.
const STATUS_LINES: usize = 10;

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

/// One supervised service.
#[derive(Debug)]
struct Service {
    bundle: spec::Bundle,
    runtime: Runtime,
    lifecycle: Lifecycle,
    generation: u64,
    pid: Option<Pid>,
    prepared: Option<Prepared>,
    ready_watch: Option<JoinHandle<()>>,
    /// Its recent output, across restarts.
    ring: Ring,
    /// The first ring line of the current run.
    run_from: u64,
    /// The tasks copying the current run's stdout and stderr.
    output: Vec<JoinHandle<()>>,
    /// The run failed: its last lines go to the event log once its output is read.
    report_output: bool,
    /// When it entered its current state.
    since: SystemTime,
    /// Why it could not be started, until it is.
    problem: Option<String>,
    /// The pipes of the current run's stdout and stderr (`pipe:[INODE]`).
    pipes: [Option<String>; 2],
}

/// A `start`, `stop` or `restart` waiting for the service to get where it was sent.
#[derive(Debug)]
struct Pending {
    name: String,
    /// The answer is due once the service's generation is at least this (a start has been
    /// made) and it is neither starting nor stopping.
    generation: u64,
    /// Whether the request succeeded if it then runs (start, restart) or is stopped (stop).
    want_running: bool,
    reply: ReplyTo<Reply>,
}

struct Daemon {
    config: Config,
    helper: Helper,
    services: BTreeMap<String, Service>,
    order: Order,
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
}

impl Daemon {
    fn new(config: Config, helper: Helper) -> io::Result<Self> {
        fs::create_dir_all(&config.log_dir).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("create {}: {err}", config.log_dir.display()),
            )
        })?;
        let events = EventLog::open(&config.log_dir.join(logfile::EVENT_LOG))?;
        let (sender, receiver) = unbounded_channel();
        let (control_sender, controls) = unbounded_channel();
        let records = Records::new(&config.state_dir);
        Ok(Self {
            records,
            config,
            helper,
            services: BTreeMap::new(),
            order: Order::default(),
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
            tokio::select! {
                Some(message) = self.receiver.recv() => self.dispatch(message).await,
                Some(control) = self.controls.recv() => {
                    if self.control(control).await {
                        self.events.line("shutdown requested: shutting down");
                        break;
                    }
                }
                _ = chld.recv() => self.reap_orphans(),
                _ = term.recv() => {
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

    /// Carries out a control request; returns whether it asks for shutdown.
    async fn control(&mut self, control: Control) -> bool {
        let Control { request, reply } = control;
        let looks = matches!(
            request,
            Request::List | Request::Status { .. } | Request::Logs { .. }
        );
        if self.shutting_down && !looks {
            let _ = reply.send(Reply::Answer(Answer::error(
                "the supervisor is shutting down: only list, status and logs are served",
            )));
            return false;
        }
        let answer = match request {
            Request::List => Answer {
                services: Some(
                    self.services
                        .iter()
                        .map(|(name, service)| info(name, service))
                        .collect(),
                ),
                ..Answer::ok()
            },
            Request::Status { name } => match self.known(&name) {
                Ok(service) => Answer {
                    lines: Some(
                        service
                            .ring
                            .last(STATUS_LINES, 0)
                            .iter()
                            .map(LogLine::from)
                            .collect(),
                    ),
                    service: Some(info(&name, service)),
                    ..Answer::ok()
                },
                Err(err) => Answer::error(err),
            },
            Request::Start { name } => {
                return self.change(name, Event::StartRequested, reply).await
            }
            Request::Stop { name } => return self.change(name, Event::StopRequested, reply).await,
            Request::Restart { name } => {
                return self.change(name, Event::RestartRequested, reply).await
            }
            Request::Kill { name, signal } => self.kill(&name, &signal),
            Request::Logs {
                name,
                lines,
                follow,
            } => match self.known(&name) {
                Ok(service) => {
                    let ring = service.ring.clone();
                    let before = ring.next_seq();
                    let lines = ring.last(lines.unwrap_or(ring::CAPACITY), 0);
                    let from = lines.last().map_or(before, |line| line.seq + 1);
                    let answer = Answer {
                        lines: Some(lines.iter().map(LogLine::from).collect()),
                        ..Answer::ok()
                    };
                    let reply_with = if follow {
                        Reply::Follow { answer, ring, from }
                    } else {
                        Reply::Answer(answer)
                    };
                    let _ = reply.send(reply_with);
                    return false;
                }
                Err(err) => Answer::error(err),
            },
            Request::Exec { name } => match self.known(&name) {
                Ok(service) => match service.pid {
                    Some(pid) => Answer {
                        exec: Some(ExecTarget {
                            root: self.helper.runtime().root().to_owned(),
                            id: name,
                            pid: pid.as_raw(),
                        }),
                        ..Answer::ok()
                    },
                    None => Answer::error(format!(
                        "{name} is not running ({})",
                        service.lifecycle.state()
                    )),
                },
                Err(err) => Answer::error(err),
            },
            Request::Shutdown => {
                self.shutdown_reply = Some(reply);
                return true;
            }
        };
        let _ = reply.send(Reply::Answer(answer));
        false
    }

    /// The service called `name`, or the error naming the services there are.
    fn known(&self, name: &str) -> Result<&Service, String> {
        self.services.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.services.keys().map(String::as_str).collect();
            format!(
                "no service `{name}` (services: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })
    }

    /// `start`, `stop` or `restart`: feeds the request to the service's lifecycle and answers
    /// once the service has got where it was sent (at once if it is there already).
    async fn change(&mut self, name: String, event: Event, reply: ReplyTo<Reply>) -> bool {
        let service = match self.known(&name) {
            Ok(service) => service,
            Err(err) => {
                let _ = reply.send(Reply::Answer(Answer::error(err)));
                return false;
            }
        };
        let state = service.lifecycle.state();
        let running = state.runs();
        let generation = service.generation;
        let starts = match event {
            Event::StartRequested => !running,
            Event::RestartRequested => true,
            _ => false,
        };
        if starts && !running && state != State::Stopping {
            let missing: Vec<String> = self
                .order
                .dependencies(&name)
                .iter()
                .filter(|dep| !self.dependency_up(dep))
                .map(|dep| {
                    let state = self
                        .services
                        .get(dep.as_str())
                        .map_or(State::Failed, |dep| dep.lifecycle.state());
                    format!("`{dep}` ({state})")
                })
                .collect();
            if !missing.is_empty() {
                let _ = reply.send(Reply::Answer(Answer::error(format!(
                    "{name}: not started: dependsOn {}, not up: start {} first",
                    missing.join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ))));
                return false;
            }
        }
        self.pending.push(Pending {
            name: name.clone(),
            generation: if starts { generation + 1 } else { generation },
            want_running: event != Event::StopRequested,
            reply,
        });
        // Answered by dispatch once the service is there.
        self.dispatch(Message {
            name,
            generation,
            event,
        })
        .await;
        false
    }

    /// Answers every pending request whose service has got where it was sent.
    fn answer_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for request in pending {
            let Some(service) = self.services.get(&request.name) else {
                continue;
            };
            let state = service.lifecycle.state();
            if service.generation < request.generation
                || matches!(state, State::Starting | State::Stopping)
            {
                self.pending.push(request);
                continue;
            }
            let answer = if state.runs() == request.want_running {
                Answer {
                    service: Some(info(&request.name, service)),
                    ..Answer::ok()
                }
            } else {
                let why = service
                    .problem
                    .clone()
                    .or_else(|| service.lifecycle.last_exit().map(|exit| exit.to_string()))
                    .map_or(String::new(), |why| format!(": {why}"));
                Answer {
                    service: Some(info(&request.name, service)),
                    ..Answer::error(format!("{}: {state}{why}", request.name))
                }
            };
            let _ = request.reply.send(Reply::Answer(answer));
        }
    }

    /// `kill NAME SIGNAL`: the signal to the service's init; what follows (an exit, a restart)
    /// is the lifecycle's business.
    fn kill(&self, name: &str, signal: &str) -> Answer {
        let service = match self.known(name) {
            Ok(service) => service,
            Err(err) => return Answer::error(err),
        };
        let Some(signal) = spec::signal::parse(signal) else {
            return Answer::error(format!("kill {name}: unknown signal `{signal}`"));
        };
        if service.pid.is_none() {
            return Answer::error(format!(
                "kill {name}: not running ({})",
                service.lifecycle.state()
            ));
        }
        match self.helper.runtime().kill(name, signal, false) {
            Ok(()) => Answer {
                service: Some(info(name, service)),
                ..Answer::ok()
            },
            Err(err) => Answer::error(format!("kill {name}: {err}")),
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
        let mut depends_on = BTreeMap::new();
        let mut invalid = BTreeMap::new();
        for bundle in bundles {
            let name = bundle.id();
            let (runtime, problem) = match launch::load_runtime(&bundle) {
                Ok(runtime) => (runtime, None),
                Err(message) => (Runtime::default(), Some(message)),
            };
            let policy = policy(&runtime);
            depends_on.insert(name.clone(), runtime.depends_on.clone());
            if let Some(message) = problem {
                invalid.insert(name.clone(), message);
            }
            self.services.insert(
                name,
                Service {
                    bundle,
                    runtime,
                    lifecycle: Lifecycle::new(policy),
                    generation: 0,
                    pid: None,
                    prepared: None,
                    ready_watch: None,
                    ring: Ring::default(),
                    run_from: 0,
                    output: Vec::new(),
                    report_output: false,
                    since: SystemTime::now(),
                    problem: None,
                    pipes: [None, None],
                },
            );
        }
        self.order = Order::new(&depends_on, &invalid);
        let blocked: Vec<(String, String)> = self
            .order
            .blocked
            .iter()
            .map(|(name, why)| (name.clone(), why.to_string()))
            .collect();
        for (name, why) in blocked {
            self.events.line(&format!("{name}: not started: {why}"));
            if let Some(service) = self.services.get_mut(&name) {
                service.lifecycle = Lifecycle::failed(service.lifecycle.policy);
                service.problem = Some(format!("not started: {why}"));
            }
        }
    }

    /// Whether dependency `name` is up: running, or ready if it declares readiness.
    fn dependency_up(&self, name: &str) -> bool {
        self.services
            .get(name)
            .is_some_and(|dep| match dep.lifecycle.state() {
                State::Ready => true,
                State::Running => dep.runtime.ready.is_none(),
                _ => false,
            })
    }

    /// Sends `DependenciesMet` to every waiting service whose dependencies are up.
    fn start_ready_dependents(&mut self) {
        let met: Vec<String> = self
            .order
            .start
            .iter()
            .filter(|name| {
                self.services
                    .get(*name)
                    .is_some_and(|service| service.lifecycle.state() == State::Waiting)
                    && self
                        .order
                        .dependencies(name)
                        .iter()
                        .all(|dep| self.dependency_up(dep))
            })
            .cloned()
            .collect();
        for name in met {
            self.send_now(&name, Event::DependenciesMet);
        }
    }

    fn send_now(&self, name: &str, event: Event) {
        let generation = self.services.get(name).map_or(0, |s| s.generation);
        let _ = self.sender.send(Message {
            name: name.to_owned(),
            generation,
            event,
        });
    }

    /// Feeds one event to a service's lifecycle and carries out the actions, and those of the
    /// events they lead to.
    async fn dispatch(&mut self, message: Message) {
        let mut queue = VecDeque::from([(message.name, Some(message.generation), message.event)]);
        while let Some((name, generation, event)) = queue.pop_front() {
            let Some(service) = self.services.get_mut(&name) else {
                continue;
            };
            if generation.is_some_and(|g| g != service.generation) {
                continue;
            }
            let before = service.lifecycle.state();
            let actions = service.lifecycle.handle(event, Instant::now());
            let after = service.lifecycle.state();
            if before != after {
                service.since = SystemTime::now();
            }
            if let Event::Exited(exit) = event {
                // A run that ended on its own and failed: its last lines are reported.
                if before != after && before != State::Stopping && !exit.success() {
                    service.report_output = true;
                }
            }
            let came_up = before != after && after.runs();
            if came_up {
                self.save_record(&name);
            }
            self.log_event(&name, event, before, after);
            for action in actions {
                if let Some(event) = self.act(&name, action).await {
                    queue.push_back((name.clone(), None, event));
                }
            }
            if came_up {
                self.start_ready_dependents();
            }
        }
        self.announce_all_up();
        self.answer_pending();
    }

    /// Says once, the first time every service is up (running, or ready where it declares
    /// readiness), when that was on the boot clock and after this supervisor's start.
    fn announce_all_up(&mut self) {
        if self.announced_up || self.shutting_down {
            return;
        }
        if !self.services.keys().all(|name| self.dependency_up(name)) {
            return;
        }
        self.announced_up = true;
        let since_boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or_else(
            |err| format!("an unknown time ({err})"),
            |now| format!("{}.{:03} s", now.tv_sec(), now.tv_nsec() / 1_000_000),
        );
        let line = format!(
            "all {} services up, {since_boot} after boot, {:.3} s after the supervisor started",
            self.services.len(),
            self.started.elapsed().as_secs_f64()
        );
        self.events.line(&line);
    }

    fn log_event(&mut self, name: &str, event: Event, before: State, after: State) {
        let policy = self.services.get(name).map(|s| s.lifecycle.policy);
        let mut line = match event {
            Event::Exited(exit) if before != after => format!("{name}: {exit}"),
            Event::BecameReady if after == State::Ready => format!("{name}: ready"),
            Event::StopRequested if after == State::Stopping => format!(
                "{name}: stopping with {}",
                policy.map_or("SIGTERM", |p| p.stop_signal.as_str())
            ),
            Event::StopTimeout if after == State::Stopping => format!(
                "{name}: still running {}s after the stop signal: killing",
                policy.map_or(0, |p| p.stop_timeout.as_secs())
            ),
            _ if before != after && after == State::Stopped => format!("{name}: stopped"),
            _ => return,
        };
        if matches!(event, Event::Exited(_)) && after == State::Stopped {
            line.push_str("; stopped");
        }
        self.events.line(&line);
    }

    /// Carries out one action; returns the event it leads to at once, if any.
    async fn act(&mut self, name: &str, action: Action) -> Option<Event> {
        let service = self.services.get_mut(name)?;
        match action {
            Action::Start => {
                service.generation += 1;
                let generation = service.generation;
                match self.start(name, generation).await {
                    Ok(pid) => {
                        self.events.line(&format!("{name}: running, pid {pid}"));
                        if let Some(service) = self.services.get_mut(name) {
                            service.problem = None;
                        }
                        Some(Event::Started)
                    }
                    Err((message, permanent)) => {
                        self.events
                            .line(&format!("{name}: failed to start: {message}"));
                        if let Some(service) = self.services.get_mut(name) {
                            service.problem = Some(format!("failed to start: {message}"));
                        }
                        Some(Event::StartFailed { permanent })
                    }
                }
            }
            Action::CleanUp => {
                if let Some(watch) = service.ready_watch.take() {
                    watch.abort();
                }
                service.pid = None;
                self.records.remove(name);
                let prepared = service.prepared.take();
                self.remove_container(name, prepared).await;
                self.report_output(name).await;
                None
            }
            Action::Signal(signal) => {
                if let Err(err) = self.helper.runtime().kill(name, signal, false) {
                    self.events.line(&format!("{name}: {err}"));
                }
                None
            }
            Action::Kill => {
                if let Err(err) = self.helper.runtime().kill(name, Signal::SIGKILL, true) {
                    self.events.line(&format!("{name}: {err}"));
                }
                None
            }
            Action::StopTimer(delay) => {
                self.timer(name, delay, Event::StopTimeout);
                None
            }
            Action::RestartTimer(delay) => {
                let restarts = service.lifecycle.restarts() + 1;
                self.events.line(&format!(
                    "{name}: restart {restarts} in {}s",
                    delay.as_secs_f32()
                ));
                self.timer(name, delay, Event::BackoffOver);
                None
            }
        }
    }

    fn timer(&self, name: &str, delay: Duration, event: Event) {
        let generation = self.services.get(name).map_or(0, |s| s.generation);
        let sender = self.sender.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sender.send(Message {
                name,
                generation,
                event,
            });
        });
    }

    /// Prepares, creates and starts a service's container and starts watching it. `Err` holds
    /// the message and whether retrying cannot help.
    async fn start(&mut self, name: &str, generation: u64) -> Result<Pid, (String, bool)> {
        let service = self
            .services
            .get(name)
            .ok_or_else(|| ("unknown service".to_owned(), true))?;
        let bundle = service.bundle.clone();
        let runtime = service.runtime.clone();
        let ring = service.ring.clone();
        // A supervisor that ran before this one may have left the container running.
        if self.helper.runtime().state(name).is_ok() {
            self.events.line(&format!(
                "{name}: removing the container an earlier supervisor left"
            ));
            for problem in launch::remove(self.helper.runtime(), name, None).await {
                self.events.line(&format!("{name}: {problem}"));
            }
        }
        let ready_file = runtime.ready.as_ref().and_then(|ready| ready.file.clone());
        // A stale ready file would make the new run ready at once.
        if let Some(file) = &ready_file {
            let _ = fs::remove_file(file);
        }
        let notify = if runtime.ready.as_ref().is_some_and(|ready| ready.notify) {
            Some(
                notify::Socket::bind(&self.config.notify_dir.join(name))
                    .map_err(|err| (format!("ready.notify: {err}"), false))?,
            )
        } else {
            None
        };
        let options = HelperOptions {
            notify_socket: notify.as_ref().map(|socket| socket.path().to_owned()),
            ..HelperOptions::default()
        };
        let run_from = ring.next_seq();
        let mut copies = Vec::new();
        let mut pipes = [None, None];
        let Launched { child, prepared } =
            launch::launch(&self.helper, &bundle, &runtime, &options, || {
                self.output_pipes(name, &ring, &mut copies, &mut pipes)
            })
            .await
            .map_err(|message| (message, false))?;
        let pid = child.pid();
        self.watch_exit(name, generation, child);
        let ready_watch =
            self.watch_readiness(name, generation, ready_file.map(PathBuf::from), notify);
        if let Some(service) = self.services.get_mut(name) {
            service.pid = Some(pid);
            service.prepared = Some(prepared);
            service.ready_watch = ready_watch;
            service.run_from = run_from;
            service.output = copies;
            service.pipes = pipes;
        }
        Ok(pid)
    }

    /// A task that sends `Exited` once the container init `child` ends.
    fn watch_exit(&self, name: &str, generation: u64, child: Child) {
        let sender = self.sender.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let exit = match child.wait(None).await {
                Ok(Some(exit)) => exit,
                // The init is gone without a status we can read; count it as killed.
                _ => Exit::Signal(Signal::SIGKILL),
            };
            let _ = sender.send(Message {
                name,
                generation,
                event: Event::Exited(exit),
            });
        });
    }

    /// Deletes container `name` (its processes gone) and undoes what was prepared for it; what
    /// cannot be done is logged.
    async fn remove_container(&mut self, name: &str, prepared: Option<Prepared>) {
        let mut problems = launch::remove(self.helper.runtime(), name, None).await;
        if let Some(prepared) = prepared {
            problems.extend(prepared.undo().await.iter().map(ToString::to_string));
        }
        for problem in problems {
            self.events.line(&format!("{name}: clean-up: {problem}"));
        }
    }

    /// Writes service `name`'s record, for a supervisor that may come after this one.
    fn save_record(&mut self, name: &str) {
        let Some(service) = self.services.get(name) else {
            return;
        };
        let (Some(pid), Some(prepared)) = (service.pid, &service.prepared) else {
            return;
        };
        let Some(start_ticks) = record::start_ticks(pid) else {
            // Gone already: its exit is on the way.
            return;
        };
        let up_for = service
            .lifecycle
            .up_since()
            .map_or(Duration::ZERO, |since| since.elapsed());
        let record = Record {
            pid: pid.as_raw(),
            start_ticks,
            started_at: epoch_secs(SystemTime::now() - up_for),
            state: service.lifecycle.state().to_string(),
            restarts: service.lifecycle.restarts(),
            prepared: prepared.clone(),
            stdout: service.pipes[0].clone(),
            stderr: service.pipes[1].clone(),
        };
        if let Err(err) = self.records.write(name, &record) {
            self.events.line(&format!("{name}: keep its record: {err}"));
        }
    }

    /// Adopts every service an earlier supervisor left running (by its record); cleans up after
    /// those whose process is gone.
    async fn adopt_all(&mut self) {
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            match self.records.read(&name) {
                Ok(Some(record)) => self.adopt(&name, record).await,
                Ok(None) => {}
                Err(err) => {
                    self.events
                        .line(&format!("{name}: the earlier supervisor's record: {err}"));
                    self.records.remove(&name);
                }
            }
        }
    }

    /// Takes over service `name`, started by an earlier supervisor, if its process still runs:
    /// the same pid and start time in /proc, and the runtime's state says running with that pid.
    async fn adopt(&mut self, name: &str, record: Record) {
        self.records.remove(name);
        let pid = Pid::from_raw(record.pid);
        let running_here =
            self.helper.runtime().state(name).is_ok_and(|state| {
                state.pid == record.pid && state.status == runtime::Status::Running
            });
        let same_process = record::start_ticks(pid) == Some(record.start_ticks);
        let adopted = record
            .lifecycle_state()
            .filter(|_| running_here && same_process)
            .and_then(|state| Some((state, Child::adopt(pid).ok()?)));
        let Some((state, child)) = adopted else {
            self.events.line(&format!(
                "{name}: the container an earlier supervisor started (pid {pid}) is gone: cleaning up"
            ));
            self.remove_container(name, Some(record.prepared)).await;
            return;
        };
        let now = SystemTime::now();
        let up_for = now
            .duration_since(from_epoch_secs(record.started_at))
            .unwrap_or_default();
        let up_since = Instant::now()
            .checked_sub(up_for)
            .unwrap_or_else(Instant::now);
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        service.generation += 1;
        let generation = service.generation;
        service.lifecycle =
            Lifecycle::adopted(service.lifecycle.policy, state, record.restarts, up_since);
        service.since = now;
        service.problem = None;
        service.pid = Some(pid);
        service.prepared = Some(record.prepared);
        service.pipes = [record.stdout.clone(), record.stderr.clone()];
        let ring = service.ring.clone();
        let ready_file = (state == State::Running)
            .then(|| service.runtime.ready.as_ref()?.file.clone())
            .flatten();
        let mut copies = Vec::new();
        for (fd, pipe, stream) in [
            (1, &record.stdout, Stream::Stdout),
            (2, &record.stderr, Stream::Stderr),
        ] {
            let reopened = pipe
                .as_deref()
                .and_then(|pipe| record::reopen_pipe(pid, fd, pipe));
            match reopened.map(|file| self.copy_output(name, &ring, stream, file.into())) {
                Some(Ok(copy)) => copies.push(copy),
                Some(Err(err)) => self.events.line(&format!("{name}: {err}")),
                None => self.events.line(&format!(
                    "{name}: its {} is no longer the pipe it was given: not logged",
                    stream.as_str()
                )),
            }
        }
        self.watch_exit(name, generation, child);
        let ready_watch =
            self.watch_readiness(name, generation, ready_file.map(PathBuf::from), None);
        if let Some(service) = self.services.get_mut(name) {
            service.output = copies;
            service.ready_watch = ready_watch;
            service.run_from = ring.next_seq();
        }
        self.events.line(&format!(
            "{name}: adopted, pid {pid}, {state} for {}s",
            up_for.as_secs()
        ));
        self.save_record(name);
    }

    /// Once the run's output has been read (its processes are gone, so the pipes end; a process
    /// that escaped the container gets [`OUTPUT_GRACE`]), puts the last lines of a failed run in
    /// the event log: the console shows why a service failed without opening its log files.
    async fn report_output(&mut self, name: &str) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        // Copy tasks not awaited go on by themselves until their pipes end.
        let copies = std::mem::take(&mut service.output);
        if !std::mem::take(&mut service.report_output) {
            return;
        }
        let (ring, from) = (service.ring.clone(), service.run_from);
        let read_all = async {
            for copy in copies {
                let _ = copy.await;
            }
        };
        let _ = tokio::time::timeout(OUTPUT_GRACE, read_all).await;
        for line in ring.last(REPORTED_LINES, from) {
            self.events.line(&format!("{name}: output: {line}"));
        }
    }

    /// A task that sends `BecameReady` once the service's ready file exists or its notify
    /// socket receives `READY=1`; it lives until the service is cleaned up, draining the socket.
    fn watch_readiness(
        &self,
        name: &str,
        generation: u64,
        file: Option<PathBuf>,
        notify: Option<notify::Socket>,
    ) -> Option<JoinHandle<()>> {
        if file.is_none() && notify.is_none() {
            return None;
        }
        let sender = self.sender.clone();
        let name = name.to_owned();
        Some(tokio::spawn(async move {
            if let Some(file) = file {
                while !file.exists() {
                    tokio::time::sleep(READY_POLL).await;
                }
            }
            if let Some(socket) = &notify {
                if socket.ready().await.is_err() {
                    return;
                }
            }
            let _ = sender.send(Message {
                name,
                generation,
                event: Event::BecameReady,
            });
            if let Some(socket) = &notify {
                socket.drain().await;
            }
        }))
    }

    /// A task copying `read` (a service's stdout or stderr pipe) into its log file and `ring`.
    fn copy_output(
        &self,
        name: &str,
        ring: &Ring,
        stream: Stream,
        read: OwnedFd,
    ) -> Result<JoinHandle<()>, String> {
        let path = self.config.log_dir.join(logfile::file_name(name, stream));
        let log = LogFile::open(&path, self.config.log_max_size, self.config.log_keep)
            .map_err(|err| format!("open log {}: {err}", path.display()))?;
        Ok(tokio::spawn(logfile::copy_pipe(
            read,
            log,
            ring.clone(),
            stream,
        )))
    }

    /// Pipes for a service's stdout and stderr, with tasks copying them into its log files and
    /// `ring`; the tasks are added to `copies`, the pipes' ids to `pipes`.
    ///
    /// The container gets each pipe opened again read-write (through /proc/self/fd): as a
    /// reader of its own pipe, it never meets EPIPE or SIGPIPE while no supervisor reads (one
    /// died, the next is not up yet); its lines wait in the pipe for the next supervisor, which
    /// opens the same pipe through /proc/PID/fd. The copy still ends when the container's
    /// processes are gone, as they hold the only write ends.
    fn output_pipes(
        &self,
        name: &str,
        ring: &Ring,
        copies: &mut Vec<JoinHandle<()>>,
        pipes: &mut [Option<String>; 2],
    ) -> Result<ContainerStdio, String> {
        let mut ends = Vec::new();
        for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let (read, write) = pipe2(OFlag::O_CLOEXEC)
                .map_err(|err| format!("create pipe for {name}'s output: {err}"))?;
            let shared = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(OFlag::O_CLOEXEC.bits())
                .open(format!("/proc/self/fd/{}", write.as_raw_fd()))
                .map_err(|err| format!("open {name}'s output pipe read-write: {err}"))?;
            drop(write);
            pipes[index] = record::pipe_id(&read);
            copies.push(self.copy_output(name, ring, stream, read)?);
            ends.push(OwnedFd::from(shared));
        }
        let stdin = fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|err| format!("open /dev/null: {err}"))?;
        let stderr = ends.pop().ok_or("no pipe")?;
        let stdout = ends.pop().ok_or("no pipe")?;
        Ok(ContainerStdio {
            stdin,
            stdout,
            stderr,
        })
    }

    /// Reaps children that are not container inits being watched (orphans re-parented here);
    /// a service's init is reaped by its own watcher, which reports the exit.
    fn reap_orphans(&self) {
        for pid in children() {
            if !self
                .services
                .values()
                .any(|service| service.pid == Some(pid))
            {
                let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
            }
        }
    }

    /// Stops every service, a wave at a time: dependents before what they depend on.
    async fn stop_all(&mut self, chld: &mut tokio::signal::unix::Signal) {
        for wave in self.order.stop_waves() {
            for name in &wave {
                self.send_now(name, Event::StopRequested);
            }
            loop {
                let busy = wave.iter().any(|name| {
                    self.services.get(name).is_some_and(|service| {
                        matches!(
                            service.lifecycle.state(),
                            State::Starting | State::Running | State::Ready | State::Stopping
                        )
                    })
                });
                if !busy {
                    break;
                }
                tokio::select! {
                    Some(message) = self.receiver.recv() => self.dispatch(message).await,
                    Some(control) = self.controls.recv() => {
                        self.control(control).await;
                    }
                    _ = chld.recv() => self.reap_orphans(),
                }
            }
        }
    }
}

/// What `list` and `status` show of service `name`.
fn info(name: &str, service: &Service) -> ServiceInfo {
    ServiceInfo {
        name: name.to_owned(),
        state: service.lifecycle.state().to_string(),
        pid: service.pid.map(Pid::as_raw),
        since: epoch_secs(service.since),
        uptime: service
            .lifecycle
            .up_since()
            .map(|since| since.elapsed().as_secs_f64()),
        restarts: service.lifecycle.restarts(),
        last_exit: service.lifecycle.last_exit().map(Into::into),
        depends_on: service.runtime.depends_on.clone(),
        problem: service.problem.clone(),
    }
}

/// The runtime.json keys that shape a service's life.
fn policy(runtime: &Runtime) -> Policy {
    let defaults = Policy::default();
    Policy {
        restart: runtime.restart.unwrap_or(defaults.restart),
        stop_signal: runtime
            .stop_signal
            .as_deref()
            .and_then(spec::signal::parse)
            .unwrap_or(defaults.stop_signal),
        stop_timeout: runtime
            .stop_timeout
            .map_or(defaults.stop_timeout, Duration::from_secs),
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

/// Supervisor events, one line each, on the console (stdout) and in `service.log`.
#[derive(Debug)]
struct EventLog {
    file: fs::File,
}

impl EventLog {
    fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|err| io::Error::new(err.kind(), format!("open {}: {err}", path.display())))?;
        Ok(Self { file })
    }

    fn line(&mut self, line: &str) {
        let line = format!("service: {line}\n");
        let mut console = io::stdout().lock();
        let _ = console.write_all(line.as_bytes());
        let _ = console.flush();
        let _ = self.file.write_all(line.as_bytes());
    }
}
