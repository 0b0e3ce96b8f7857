//! Starting a service: its container prepared, created and started (through the runtime
//! helper, in `launch`), its output piped, and the tasks that watch it: its exit (a pidfd)
//! and its readiness (a ready file, or `READY=1` on its notify socket); and removing its
//! container once its run is over.
//! Runs in: the supervisor's event loop; the watchers are tasks on its thread.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use prepare::Prepared;
use runtime::helper::HelperOptions;
use tokio::task::JoinHandle;

use super::service::Run;
use super::{Daemon, Message};
use crate::child::{Child, Exit};
use crate::launch::{self, Launched};
use crate::lifecycle::Event;
use crate::notify;

/// How often a declared ready file is looked for.
const READY_POLL: Duration = Duration::from_millis(50);

/// Why a service could not be started; whether trying again can help is decided by the error.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    /// The service is not one of the supervisor's: no retry can help.
    #[error("unknown service")]
    Unknown,
    /// Its notify socket could not be made.
    #[error("ready.notify: {0}")]
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
                    .map_err(StartError::Notify)?,
            )
        } else {
            None
        };
        let options = HelperOptions {
            notify_socket: notify.as_ref().map(|socket| socket.path().to_owned()),
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
        let ready_watch =
            self.watch_readiness(name, generation, ready_file.map(PathBuf::from), notify);
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
        Ok(())
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

    /// A task that sends `BecameReady` once the service's ready file exists or its notify
    /// socket receives `READY=1`; it lives until the service is cleaned up, draining the socket.
    pub(super) fn watch_readiness(
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
}
