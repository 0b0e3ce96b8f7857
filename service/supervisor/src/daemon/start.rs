//! Starting a service: its container prepared, created and started (through the runtime
//! helper, in `launch`), its output piped, and the tasks that watch it: its exit (a pidfd),
//! and its notify socket and ready file (readiness, `STATUS=`, the watchdog's `WATCHDOG=1`);
//! and removing its container once its run is over.
//! Runs in: the supervisor's event loop; the watchers are tasks on its thread.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use prepare::Prepared;
use runtime::helper::HelperOptions;
use tokio::task::JoinHandle;

use super::service::Run;
use super::{Daemon, Message};
use crate::child::{Child, Exit};
use crate::health;
use crate::launch::{self, Launched};
use crate::lifecycle::Event;
use crate::notify::{self, Watchdog};

/// How often a declared ready file is looked for.
const READY_POLL: Duration = Duration::from_millis(50);

/// Why a service could not be started; whether trying again can help is decided by the error.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    /// The service is not one of the supervisor's: no retry can help.
    #[error("unknown service")]
    Unknown,
    /// Its notify socket could not be made.
    #[error("notify socket: {0}")]
    Notify(io::Error),
    /// Preparing, creating or starting its container failed; what was done has been undone.
    #[error("{0}")]
    Launch(String),
}

impl StartError {
    /// Whether retrying cannot help (the restart policy then gives up at once).
    pub(super) fn is_permanent(&self) -> bool {
        matches!(self, Self::Unknown)
    }
}

impl Daemon {
    /// Prepares, creates and starts a service's container, starts watching it and begins its
    /// run.
    pub(super) async fn start(&mut self, name: &str, generation: u64) -> Result<(), StartError> {
        let service = self.services.get(name).ok_or(StartError::Unknown)?;
        let bundle = service.bundle.clone();
        let runtime = service.runtime.clone();
        let ring = service.ring.clone();
        // A new run says its own status.
        if let Ok(mut status) = service.status.lock() {
            *status = None;
        }
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
        let notify = if runtime.ready.as_ref().is_some_and(|ready| ready.notify)
            || runtime.watchdog.is_some()
        {
            Some(
                notify::Socket::bind(&self.config.notify_dir.join(name))
                    .map_err(StartError::Notify)?,
            )
        } else {
            None
        };
        let options = HelperOptions {
            notify_socket: notify.as_ref().map(|socket| socket.path().to_owned()),
            // As systemd: the time in microseconds; a service pings at half of it.
            env: runtime
                .watchdog
                .map(|secs| format!("WATCHDOG_USEC={}", secs.saturating_mul(1_000_000)))
                .into_iter()
                .collect(),
            init: runtime.init,
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
            .map_err(StartError::Launch)?;
        let pid = child.pid();
        self.watch_exit(name, generation, child);
        let ready_watch = self.watch_notes(name, generation, &runtime, ready_file, notify);
        if let Some(service) = self.services.get_mut(name) {
            service.begin_run(Run {
                pid,
                prepared,
                ready_watch,
                run_from,
                output: copies,
                pipes,
            });
        }
        self.watch_health(name, generation);
        Ok(())
    }

    /// With a healthcheck, the task that probes the current run: `Healthy` at its first pass,
    /// `Unhealthy` (and the end of the task) once enough probes failed; the report kept for
    /// `list` and `status`.
    pub(super) fn watch_health(&mut self, name: &str, generation: u64) {
        let helper = self.helper.clone();
        let exec_helpers = self.exec_helpers.clone();
        let sender = self.sender.clone();
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let (Some(check), Some(pid)) = (service.runtime.healthcheck.clone(), service.pid) else {
            return;
        };
        // Checked when the runtime.json was loaded.
        let Ok(probe) = check.probe() else {
            return;
        };
        if let Ok(mut report) = service.health.lock() {
            *report = health::Report::default();
        }
        let shared = service.health.clone();
        let prober = health::Prober {
            name: name.to_owned(),
            pid,
            probe,
            timeout: check.timeout(),
            helper,
            exec_helpers,
        };
        let name = name.to_owned();
        service.health_watch = Some(tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(check.interval()).await;
                let outcome = prober.run().await;
                let change = match shared.lock() {
                    Ok(mut report) => health::record(
                        &mut report,
                        outcome,
                        started.elapsed(),
                        &check,
                        std::time::SystemTime::now(),
                    ),
                    Err(_) => return,
                };
                let event = match change {
                    health::Change::None => continue,
                    health::Change::BecameHealthy => Event::Healthy,
                    health::Change::BecameUnhealthy => Event::Unhealthy,
                };
                let _ = sender.send(Message {
                    name: name.clone(),
                    generation,
                    event,
                });
                if event == Event::Unhealthy {
                    return;
                }
            }
        }));
    }

    /// A task that sends `Exited` once the container init `child` ends.
    pub(super) fn watch_exit(&self, name: &str, generation: u64, child: Child) {
        let sender = self.sender.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let exit = match child.wait(None).await {
                Ok(Some(exit)) => exit,
                // The init is gone without a status we can read; count it as killed.
                _ => Exit::Signal(Signal::SIGKILL.into()),
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
    pub(super) async fn remove_container(&mut self, name: &str, prepared: Option<Prepared>) {
        let mut problems = launch::remove(self.helper.runtime(), name, None).await;
        if let Some(prepared) = prepared {
            problems.extend(prepared.undo().await.iter().map(ToString::to_string));
        }
        for problem in problems {
            self.events.line(&format!("{name}: clean-up: {problem}"));
        }
    }

    /// The task that watches a run's readiness, status and watchdog, if it has any of them:
    /// see [`Notes`]. `ready_file` is the ready file still to wait for (none once ready).
    pub(super) fn watch_notes(
        &self,
        name: &str,
        generation: u64,
        runtime: &spec::Runtime,
        ready_file: Option<String>,
        notify: Option<notify::Socket>,
    ) -> Option<JoinHandle<()>> {
        let ready_by_notify = runtime.ready.as_ref().is_some_and(|ready| ready.notify);
        let watchdog = runtime.watchdog.map(Duration::from_secs);
        if ready_file.is_none() && notify.is_none() {
            return None;
        }
        let status = self.services.get(name)?.status.clone();
        let notes = Notes {
            sender: self.sender.clone(),
            name: name.to_owned(),
            generation,
            ready_file: ready_file.map(PathBuf::from),
            ready_by_notify,
            notify,
            watchdog,
            status,
        };
        Some(tokio::spawn(notes.watch()))
    }
}

/// What watches one run besides its exit: its ready file (polled) or `READY=1`, which send
/// `BecameReady` once; `STATUS=` texts, kept for `service status`; and with a watchdog, the
/// time since the start or the last `WATCHDOG=1`, which sends `WatchdogTimeout` when it runs
/// out (or at `WATCHDOG=trigger`). It lives until the run is cleaned up, reading every message
/// so that a service that keeps notifying never blocks on a full socket queue.
struct Notes {
    sender: tokio::sync::mpsc::UnboundedSender<Message>,
    name: String,
    generation: u64,
    ready_file: Option<PathBuf>,
    ready_by_notify: bool,
    notify: Option<notify::Socket>,
    watchdog: Option<Duration>,
    status: Arc<Mutex<Option<String>>>,
}

impl Notes {
    async fn watch(mut self) {
        let mut deadline = self.watchdog.map(|time| tokio::time::Instant::now() + time);
        let ready_file = self.ready_file.take();
        let file_appears = async {
            match &ready_file {
                Some(file) => {
                    while !file.exists() {
                        tokio::time::sleep(READY_POLL).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(file_appears);
        let mut waiting_for_file = ready_file.is_some();
        let mut ready_said = false;
        loop {
            let received = async {
                match &self.notify {
                    Some(socket) => socket.recv().await,
                    None => std::future::pending().await,
                }
            };
            let runs_out = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut file_appears, if waiting_for_file => {
                    waiting_for_file = false;
                    self.send(Event::BecameReady);
                }
                note = received => {
                    let Ok(note) = note else { return };
                    if note.ready && self.ready_by_notify && !ready_said {
                        ready_said = true;
                        self.send(Event::BecameReady);
                    }
                    if let Some(text) = note.status {
                        if let Ok(mut status) = self.status.lock() {
                            *status = Some(text);
                        }
                    }
                    match (note.watchdog, self.watchdog) {
                        (Some(Watchdog::Alive), Some(time)) if deadline.is_some() => {
                            deadline = Some(tokio::time::Instant::now() + time);
                        }
                        (Some(Watchdog::Trigger), Some(_)) if deadline.is_some() => {
                            deadline = None;
                            self.send(Event::WatchdogTimeout);
                        }
                        _ => {}
                    }
                }
                () = runs_out => {
                    deadline = None;
                    self.send(Event::WatchdogTimeout);
                }
            }
        }
    }

    fn send(&self, event: Event) {
        let _ = self.sender.send(Message {
            name: self.name.clone(),
            generation: self.generation,
            event,
        });
    }
}
