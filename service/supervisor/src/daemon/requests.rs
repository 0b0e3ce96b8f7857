//! Control requests (`service list`, `status`, `logs`, `exec`, `kill`, `start`, `stop`,
//! `restart`, `shutdown`) and the answers that wait for a service to get where it was sent.
//! Runs in: the supervisor's event loop.

use std::os::fd::OwnedFd;

use tokio::sync::oneshot::Sender as ReplyTo;

use super::services::Wait;
use super::{Daemon, Message, Pending};
use crate::control::{Control, Reply};
use crate::exec;
use crate::lifecycle::{Event, State};
use crate::protocol::{Answer, LogLine, Request};
use crate::ring;

/// How many log lines `service status` shows.
const STATUS_LINES: usize = 10;

impl Daemon {
    /// Carries out a control request; returns whether it asks for shutdown.
    pub(super) async fn control(&mut self, control: Control) -> bool {
        let Control {
            request,
            fds,
            reply,
        } = control;
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
                        .map(|(name, service)| service.info(name))
                        .collect(),
                ),
                ..Answer::ok()
            },
            Request::Status { name } => self.status(&name),
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
            } => {
                let _ = reply.send(self.logs(&name, lines, follow));
                return false;
            }
            Request::Exec { name, args, tty } => {
                let _ = reply.send(self.exec(&name, &args, tty, fds));
                return false;
            }
            Request::Shutdown => {
                self.shutdown_reply = Some(reply);
                return true;
            }
        };
        let _ = reply.send(Reply::Answer(answer));
        false
    }

    /// `status NAME`: the service and its last lines of output.
    fn status(&self, name: &str) -> Answer {
        match self.services.known(name) {
            Ok(service) => Answer {
                lines: Some(
                    service
                        .ring
                        .last(STATUS_LINES, 0)
                        .iter()
                        .map(LogLine::from)
                        .collect(),
                ),
                service: Some(service.info(name)),
                ..Answer::ok()
            },
            Err(err) => Answer::error(err),
        }
    }

    /// `logs NAME [-n LINES] [-f]`: the last lines, and with `follow` the ring to go on from.
    fn logs(&self, name: &str, lines: Option<usize>, follow: bool) -> Reply {
        let service = match self.services.known(name) {
            Ok(service) => service,
            Err(err) => return Reply::Answer(Answer::error(err)),
        };
        let ring = service.ring.clone();
        let before = ring.next_seq();
        let lines = ring.last(lines.unwrap_or(ring::CAPACITY), 0);
        let from = lines.last().map_or(before, |line| line.seq + 1);
        let answer = Answer {
            lines: Some(lines.iter().map(LogLine::from).collect()),
            ..Answer::ok()
        };
        if follow {
            Reply::Follow { answer, ring, from }
        } else {
            Reply::Answer(answer)
        }
    }

    /// `exec NAME -- ARGS`: started in the service's container, the session handed to the
    /// client's connection.
    fn exec(&self, name: &str, args: &[String], tty: bool, fds: Vec<OwnedFd>) -> Reply {
        let service = match self.services.known(name) {
            Ok(service) => service,
            Err(err) => return Reply::Answer(Answer::error(err)),
        };
        if service.pid.is_none() {
            return Reply::Answer(Answer::error(format!(
                "exec in {name}: not running ({})",
                service.lifecycle.state()
            )));
        }
        match exec::start(&self.helper, &self.exec_helpers, name, args, tty, fds) {
            Ok(session) => Reply::Exec(session),
            Err(err) => Reply::Answer(Answer::error(err)),
        }
    }

    /// `start`, `stop` or `restart`: feeds the request to the service's lifecycle and answers
    /// once the service has got where it was sent (at once if it is there already).
    pub(super) async fn change(
        &mut self,
        name: String,
        event: Event,
        reply: ReplyTo<Reply>,
    ) -> bool {
        let service = match self.services.known(&name) {
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
            if let Some(refusal) = self.services.start_refusal(&name) {
                let _ = reply.send(Reply::Answer(Answer::error(refusal)));
                return false;
            }
        }
        self.pending.push(Pending {
            wait: Wait {
                name: name.clone(),
                generation: if starts { generation + 1 } else { generation },
                want_running: event != Event::StopRequested,
            },
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
    pub(super) fn answer_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for request in pending {
            // Requests wait only for known services (`change` checks), and none is ever removed.
            match self.services.answer(&request.wait) {
                Some(answer) => {
                    let _ = request.reply.send(Reply::Answer(answer));
                }
                None => self.pending.push(request),
            }
        }
    }

    /// `kill NAME SIGNAL`: the signal to the service's init; what follows (an exit, a restart)
    /// is the lifecycle's business.
    pub(super) fn kill(&self, name: &str, signal: &str) -> Answer {
        let service = match self.services.known(name) {
            Ok(service) => service,
            Err(err) => return Answer::error(err),
        };
        let Some(signal) = spec::signal::parse(signal) else {
            return Answer::error(format!(
                "kill {name}: unknown signal `{signal}`: {}",
                spec::signal::HINT
            ));
        };
        if service.pid.is_none() {
            return Answer::error(format!(
                "kill {name}: not running ({})",
                service.lifecycle.state()
            ));
        }
        match self.helper.runtime().kill(name, signal, false) {
            Ok(()) => Answer {
                service: Some(service.info(name)),
                ..Answer::ok()
            },
            Err(err) => Answer::error(format!("kill {name}: {err}")),
        }
    }
}
