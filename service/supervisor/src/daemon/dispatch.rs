//! Dispatch: each event fed to its service's lifecycle, the actions it returns carried out
//! (start, clean up, signal, kill, timers), the events those lead to fed back in, and what
//! follows a change of state (dependents started, the event log, "all services up", the
//! waiting answers).
//! Runs in: the supervisor's event loop.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spec::supervision::OnFailure;

use super::service::Service;
use super::{Daemon, Message};
use crate::console::Weight;
use crate::lifecycle::{Action, Event, State};

impl Daemon {
    /// Sends `event` about service `name`'s current run through the event loop.
    pub(super) fn send_now(&self, name: &str, event: Event) {
        let generation = self.services.get(name).map_or(0, |s| s.generation);
        let _ = self.sender.send(Message {
            name: name.to_owned(),
            generation,
            event,
        });
    }

    /// Sends `DependenciesMet` to every waiting service whose dependencies are up.
    pub(super) fn start_ready_dependents(&mut self) {
        for name in self.services.ready_to_start() {
            self.send_now(&name, Event::DependenciesMet);
        }
    }

    /// Feeds one event to a service's lifecycle and carries out the actions, and those of the
    /// events they lead to.
    pub(super) async fn dispatch(&mut self, message: Message) {
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
            // A first pass of its healthcheck brings it up as a dependency too.
            if came_up || event == Event::Healthy {
                self.start_ready_dependents();
            }
        }
        self.announce_all_up();
        self.answer_pending();
    }

    /// Says once, the first time every service is up (running, or ready where it declares
    /// readiness), when that was on the boot clock and after this supervisor's start.
    pub(super) fn announce_all_up(&mut self) {
        if self.announced_up || self.shutting_down {
            return;
        }
        if !self.services.all_up() {
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

    /// Says what an event did to a service. An operator sees (at the default console level) a
    /// service's first start and first exit, one that is not restarted, and a stop that needs
    /// SIGKILL; a crash loop's later rounds and ordinary stops are detail.
    pub(super) fn log_event(&mut self, name: &str, event: Event, before: State, after: State) {
        let service = self.services.get(name);
        let policy = service.map(|s| s.lifecycle.policy);
        let stop_signal =
            policy.map_or_else(|| "SIGTERM".to_owned(), |p| p.stop_signal.to_string());
        let last_probe = || {
            service
                .and_then(Service::last_probe)
                .map(|(outcome, _)| outcome.detail)
        };
        let first_round = Weight::of_round(service.map_or(0, |s| s.lifecycle.restarts()));
        let (mut line, weight) = match event {
            Event::Started => match service.and_then(|s| s.pid) {
                Some(pid) => (format!("{name}: running, pid {pid}"), first_round),
                None => return,
            },
            Event::Exited(exit) if before != after => {
                let given_up = matches!(after, State::Failed | State::Stopped);
                let weight = if given_up {
                    Weight::Notice
                } else {
                    first_round
                };
                let mut line = format!("{name}: {exit}");
                if let Some(fault) = service.and_then(|s| s.lifecycle.last_fault()) {
                    line = format!("{line} (stopped: {fault})");
                }
                if after == State::Failed {
                    line.push_str(&failed_for_good(service));
                }
                (line, weight)
            }
            Event::StartFailed { .. } if after == State::Failed => (
                format!("{name}: not started{}", failed_for_good(service)),
                Weight::Notice,
            ),
            Event::Unhealthy if after == State::Stopping => {
                let failures = service
                    .and_then(|s| s.health.lock().ok().map(|report| report.failures))
                    .unwrap_or(0);
                let detail =
                    last_probe().map_or(String::new(), |detail| format!(", the last: {detail}"));
                (
                    format!(
                        "{name}: unhealthy ({failures} failed probes in a row{detail}): stopping with {stop_signal}"
                    ),
                    Weight::Notice,
                )
            }
            Event::WatchdogTimeout if after == State::Stopping => (
                format!(
                    "{name}: no WATCHDOG=1 within {}s: aborting it with SIGABRT",
                    service.and_then(|s| s.runtime.watchdog).unwrap_or_default()
                ),
                Weight::Notice,
            ),
            Event::BecameReady if after == State::Ready => (format!("{name}: ready"), first_round),
            Event::Healthy if after.runs() => {
                let detail = last_probe().map_or(String::new(), |detail| format!(" ({detail})"));
                (format!("{name}: healthy{detail}"), first_round)
            }
            Event::StopRequested if after == State::Stopping => (
                format!("{name}: stopping with {stop_signal}"),
                Weight::Detail,
            ),
            Event::StopTimeout if after == State::Stopping => (
                format!(
                    "{name}: still running {}s after the stop signal: killing",
                    policy.map_or(0, |p| p.stop_timeout.as_secs())
                ),
                Weight::Notice,
            ),
            _ if before != after && after == State::Stopped => {
                (format!("{name}: stopped"), Weight::Detail)
            }
            _ => return,
        };
        if matches!(event, Event::Exited(_)) && after == State::Stopped {
            line.push_str("; stopped");
        }
        self.events.weighed(&line, weight);
    }

    /// Carries out one action; returns the event it leads to at once, if any.
    pub(super) async fn act(&mut self, name: &str, action: Action) -> Option<Event> {
        let service = self.services.get_mut(name)?;
        match action {
            Action::Start => {
                service.generation += 1;
                let generation = service.generation;
                let weight = Weight::of_round(service.lifecycle.restarts());
                match self.start(name, generation).await {
                    // Said by log_event once its record is kept, so that a supervisor killed
                    // after this line can adopt it.
                    Ok(()) => Some(Event::Started),
                    Err(err) => {
                        self.events
                            .weighed(&format!("{name}: failed to start: {err}"), weight);
                        if let Some(service) = self.services.get_mut(name) {
                            service.problem = Some(format!("failed to start: {err}"));
                        }
                        Some(Event::StartFailed {
                            permanent: err.is_permanent(),
                        })
                    }
                }
            }
            Action::CleanUp => {
                let prepared = service.end_run();
                self.records.remove(name);
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
                if let Err(err) = self
                    .helper
                    .runtime()
                    .kill(name, Signal::SIGKILL.into(), true)
                {
                    self.events.line(&format!("{name}: {err}"));
                }
                None
            }
            Action::StopTimer(delay) => {
                self.timer(name, delay, Event::StopTimeout);
                None
            }
            Action::EndMachine(how) => {
                self.end_machine(name, how);
                None
            }
            Action::RestartTimer(delay) => {
                let restarts = service.lifecycle.restarts() + 1;
                self.events.detail(&format!(
                    "{name}: restart {restarts} in {}s",
                    delay.as_secs_f32()
                ));
                self.timer(name, delay, Event::BackoffOver);
                None
            }
        }
    }

    pub(super) fn timer(&self, name: &str, delay: Duration, event: Event) {
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

    /// `onFailure`: says why, then asks init (PID 1) to reboot or power off, as busybox's
    /// `reboot` and `poweroff` do; init stops every service in order on the way.
    fn end_machine(&mut self, name: &str, how: OnFailure) {
        let signal = match how {
            OnFailure::Reboot => Signal::SIGTERM,
            OnFailure::Poweroff => Signal::SIGUSR2,
        };
        self.events.weighed(
            &format!(
                "{name}: failed for good: onFailure: {how}, asking init to {how}",
                how = how.as_str()
            ),
            Weight::Notice,
        );
        if let Err(err) = kill(Pid::from_raw(1), signal) {
            self.events.line(&format!(
                "{name}: onFailure: signal init (pid 1) with {signal}: {err}"
            ));
        }
    }
}

/// What a line about a service that failed for good adds: that restartLimit gave up on it.
fn failed_for_good(service: Option<&Service>) -> String {
    let Some(service) = service else {
        return String::new();
    };
    match (
        service.lifecycle.limit_reached(),
        service.runtime.restart_limit,
    ) {
        (true, Some(limit)) => format!(
            "; restartLimit reached ({} restarts within {}s): failed, not restarted",
            limit.burst, limit.interval
        ),
        _ => "; failed".to_owned(),
    }
}
