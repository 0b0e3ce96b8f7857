//! The life of one supervised service as a state machine: every event goes through
//! [`Lifecycle::handle`], one `match (state, event)` that decides the next state and what the
//! supervisor must do (start, signal, kill, arm a timer). No processes and no clocks here: time
//! comes in with the events, so the whole table is unit-tested.
//! Runs in: the supervisor daemon's event loop.
//! LinuxKit has none of this (a crashed service stays down); the states and the restart throttle
//! follow s6 and systemd.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use spec::runtime::Restart;
use spec::signal::Number;
use spec::supervision::OnFailure;

use crate::child::Exit;

/// The first restart delay, doubled after each quick failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A service up this long has recovered: the next restart delay is back to the minimum.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Where a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its dependencies.
    Waiting,
    /// Being prepared, created and started.
    Starting,
    /// Its process runs; it has not said it is ready (or declares no readiness).
    Running,
    /// It runs and has said it is ready.
    Ready,
    /// Asked to stop; waiting for it to exit.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Exited on its own with status 0 and is not restarted.
    Exited,
    /// Could not start, or exited with an error, and is not restarted.
    Failed,
    /// Waiting out the restart delay.
    Backoff,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Ready => "ready",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Backoff => "backoff",
        }
    }

    /// Whether its process runs: running, or ready.
    pub fn runs(self) -> bool {
        matches!(self, Self::Running | Self::Ready)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Every dependency is running (or ready, where it declares readiness).
    DependenciesMet,
    /// Its container was created and started.
    Started,
    /// It could not be started; `permanent` when retrying cannot help (a malformed runtime.json).
    StartFailed { permanent: bool },
    /// Its ready file appeared or it sent `READY=1`.
    BecameReady,
    /// Its container's init exited.
    Exited(Exit),
    /// The restart delay is over.
    BackoffOver,
    /// Someone asked it to stop (shutdown, `service stop`).
    StopRequested,
    /// Someone asked it to start (`service start`): whatever it was doing (stopped, failed,
    /// exited, backing off), it starts now; a running one is left alone.
    StartRequested,
    /// Someone asked it to restart (`service restart`): a running service is stopped and
    /// started again; any other is started.
    RestartRequested,
    /// The stop timeout ran out.
    StopTimeout,
    /// Its healthcheck passed for the first time in this run (changes no state: dependents
    /// that wait for it may start).
    Healthy,
    /// Its healthcheck failed `retries` times in a row.
    Unhealthy,
    /// It did not send `WATCHDOG=1` within its `watchdog` time.
    WatchdogTimeout,
}

/// What the supervisor must do for the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Prepare, create and start its container, then report `Started` or `StartFailed`.
    Start,
    /// Delete its exited container and release its mounts.
    CleanUp,
    /// Send this signal to its container.
    Signal(Number),
    /// Report `StopTimeout` after this long.
    StopTimer(Duration),
    /// Kill every process of its container.
    Kill,
    /// Report `BackoffOver` after this long.
    RestartTimer(Duration),
    /// It failed for good and its `onFailure` ends the machine.
    EndMachine(OnFailure),
}

/// Why the supervisor stopped a service that had not asked to stop: its run counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Unhealthy,
    Watchdog,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unhealthy => "unhealthy",
            Self::Watchdog => "watchdog timeout",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The restart throttle: the delay doubles after each failure that came soon after a start, from
/// 1 s up to 30 s, and is back to 1 s once the service has been up for a minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next start, after a run that lasted `up_for`.
    pub fn next(&mut self, up_for: Duration) -> Duration {
        if up_for >= HEALTHY_AFTER {
            self.failures = 0;
        }
        let delay = BACKOFF_MIN
            .saturating_mul(1 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// How the service is to be run, from its runtime.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub restart: Restart,
    pub stop_signal: Number,
    pub stop_timeout: Duration,
    /// At most this many automatic restarts within this long (`restartLimit`).
    pub restart_limit: Option<(u32, Duration)>,
    /// What a failure for good does to the machine (`onFailure`).
    pub on_failure: Option<OnFailure>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            restart: Restart::Always,
            stop_signal: nix::sys::signal::Signal::SIGTERM.into(),
            stop_timeout: Duration::from_secs(10),
            restart_limit: None,
            on_failure: None,
        }
    }
}

/// One service's state and counters.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub policy: Policy,
    state: State,
    /// When the current process started.
    up_since: Option<Instant>,
    /// Starts after the first.
    restarts: u32,
    last_exit: Option<Exit>,
    backoff: Backoff,
    /// Start again once the stop in progress is over (`service restart`).
    start_after_stop: bool,
    /// Why the stop in progress was the supervisor's own: the run then counts as failed.
    fault: Option<Fault>,
    /// The fault that ended the last run, if one did.
    last_fault: Option<Fault>,
    /// When the automatic restarts inside the `restartLimit` window were decided.
    recent_restarts: VecDeque<Instant>,
    /// Set when `restartLimit` kept the last failure from being restarted.
    limit_reached: bool,
}

impl Lifecycle {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            state: State::Waiting,
            up_since: None,
            restarts: 0,
            last_exit: None,
            backoff: Backoff::default(),
            start_after_stop: false,
            fault: None,
            last_fault: None,
            recent_restarts: VecDeque::new(),
            limit_reached: false,
        }
    }

    /// A service found running by a new supervisor: `state` is running or ready, up since
    /// `up_since`, after `restarts` restarts.
    pub fn adopted(policy: Policy, state: State, restarts: u32, up_since: Instant) -> Self {
        Self {
            state,
            restarts,
            up_since: Some(up_since),
            ..Self::new(policy)
        }
    }

    /// A service that will not be started (its runtime.json is unusable, or its dependencies
    /// cannot be met).
    pub fn failed(policy: Policy) -> Self {
        Self {
            state: State::Failed,
            ..Self::new(policy)
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// The fault that ended the last run (unhealthy, watchdog), if one did.
    pub fn last_fault(&self) -> Option<Fault> {
        self.last_fault
    }

    /// Whether `restartLimit` kept the last failure from being restarted.
    pub fn limit_reached(&self) -> bool {
        self.limit_reached
    }

    /// When the current process started, while there is one.
    pub fn up_since(&self) -> Option<Instant> {
        self.up_since
    }

    /// Takes an event at time `now`; returns what to do. Events that do not apply in the
    /// current state (a late timer, a second stop request) change nothing.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        use Event as E;
        use State as S;
        let (next, actions) = match (self.state, event) {
            (S::Waiting, E::DependenciesMet) => (S::Starting, vec![Action::Start]),
            (S::Backoff, E::BackoffOver) => {
                self.restarts += 1;
                (S::Starting, vec![Action::Start])
            }
            (S::Starting, E::Started) => {
                self.up_since = Some(now);
                (S::Running, vec![])
            }
            (S::Starting, E::StartFailed { permanent }) => {
                if permanent || self.policy.restart == Restart::No || !self.may_restart(now) {
                    self.give_up(vec![])
                } else {
                    let delay = self.backoff.next(Duration::ZERO);
                    (S::Backoff, vec![Action::RestartTimer(delay)])
                }
            }
            (S::Running, E::BecameReady) => (S::Ready, vec![]),
            (S::Running | S::Ready, E::Exited(exit)) => {
                self.last_fault = None;
                self.exited(exit, !exit.success(), now)
            }
            (S::Running | S::Ready, E::StopRequested) => (S::Stopping, self.stop_actions()),
            (S::Running | S::Ready, E::Unhealthy) => {
                self.fault = Some(Fault::Unhealthy);
                (S::Stopping, self.stop_actions())
            }
            (S::Running | S::Ready, E::WatchdogTimeout) => {
                // As systemd: SIGABRT, so that the service can leave a core; SIGKILL after the
                // stop timeout.
                self.fault = Some(Fault::Watchdog);
                (
                    S::Stopping,
                    vec![
                        Action::Signal(nix::sys::signal::Signal::SIGABRT.into()),
                        Action::StopTimer(self.policy.stop_timeout),
                    ],
                )
            }
            (S::Stopping, E::StopTimeout) => (S::Stopping, vec![Action::Kill]),
            (S::Stopping, E::Exited(exit)) if self.fault.is_some() && !self.start_after_stop => {
                // Stopped for a fault: a failed run, for the restart policy to judge.
                self.last_fault = self.fault.take();
                self.exited(exit, true, now)
            }
            (S::Stopping, E::Exited(exit)) => {
                self.last_exit = Some(exit);
                // Asked to stop (or restart) while a fault's stop ran: the request wins.
                self.fault = None;
                self.last_fault = None;
                self.up_since = None;
                if std::mem::take(&mut self.start_after_stop) {
                    self.backoff = Backoff::default();
                    (S::Starting, vec![Action::CleanUp, Action::Start])
                } else {
                    (S::Stopped, vec![Action::CleanUp])
                }
            }
            (S::Stopping, E::StopRequested) => {
                self.start_after_stop = false;
                (S::Stopping, vec![])
            }
            (S::Stopping, E::StartRequested | E::RestartRequested) => {
                self.start_after_stop = true;
                (S::Stopping, vec![])
            }
            (S::Waiting | S::Backoff | S::Exited | S::Failed, E::StopRequested) => {
                (S::Stopped, vec![])
            }
            (S::Running | S::Ready, E::RestartRequested) => {
                self.start_after_stop = true;
                (S::Stopping, self.stop_actions())
            }
            (
                S::Waiting | S::Stopped | S::Exited | S::Failed | S::Backoff,
                E::StartRequested | E::RestartRequested,
            ) => {
                // The operator's start: a fresh throttle, as `systemctl reset-failed`.
                self.backoff = Backoff::default();
                self.recent_restarts.clear();
                self.limit_reached = false;
                (S::Starting, vec![Action::Start])
            }
            (state, _) => (state, vec![]),
        };
        self.state = next;
        actions
    }

    fn stop_actions(&self) -> Vec<Action> {
        vec![
            Action::Signal(self.policy.stop_signal),
            Action::StopTimer(self.policy.stop_timeout),
        ]
    }

    /// A run that ended without being asked to (`failed` when its exit status or a fault says
    /// so): restarted after the backoff delay if the policy and the restart limit allow it.
    fn exited(&mut self, exit: Exit, failed: bool, now: Instant) -> (State, Vec<Action>) {
        self.last_exit = Some(exit);
        let up_for = self
            .up_since
            .take()
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        let restart = match self.policy.restart {
            Restart::Always => true,
            Restart::OnFailure => failed,
            Restart::No => false,
        };
        if restart && self.may_restart(now) {
            let delay = self.backoff.next(up_for);
            (
                State::Backoff,
                vec![Action::CleanUp, Action::RestartTimer(delay)],
            )
        } else if !failed && !self.limit_reached {
            (State::Exited, vec![Action::CleanUp])
        } else {
            self.give_up(vec![Action::CleanUp])
        }
    }

    /// Whether `restartLimit` allows one more automatic restart now; if it does, the restart is
    /// counted.
    fn may_restart(&mut self, now: Instant) -> bool {
        let Some((burst, window)) = self.policy.restart_limit else {
            return true;
        };
        while self
            .recent_restarts
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            self.recent_restarts.pop_front();
        }
        if self.recent_restarts.len() >= burst as usize {
            self.limit_reached = true;
            return false;
        }
        self.recent_restarts.push_back(now);
        true
    }

    /// Failed for good: `actions`, then the machine's end if `onFailure` asks for it.
    fn give_up(&self, mut actions: Vec<Action>) -> (State, Vec<Action>) {
        actions.extend(self.policy.on_failure.map(Action::EndMachine));
        (State::Failed, actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn running(policy: Policy, now: Instant) -> Lifecycle {
        let mut service = Lifecycle::new(policy);
        assert_eq!(service.handle(Event::DependenciesMet, now), [Action::Start]);
        assert_eq!(service.handle(Event::Started, now), []);
        assert_eq!(service.state(), State::Running);
        service
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_healthy_minute() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| backoff.next(secs(2)).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.next(secs(60)), secs(1));
        assert_eq!(backoff.next(secs(0)), secs(2));
    }

    #[test]
    fn a_crashing_service_restarts_with_growing_delays() {
        let t0 = Instant::now();
        let mut service = running(Policy::default(), t0);
        let mut delays = Vec::new();
        for round in 0..4u64 {
            let actions = service.handle(Event::Exited(Exit::Code(3)), t0 + secs(round));
            assert_eq!(service.state(), State::Backoff);
            let [Action::CleanUp, Action::RestartTimer(delay)] = actions[..] else {
                panic!("{actions:?}");
            };
            delays.push(delay.as_secs());
            assert_eq!(service.handle(Event::BackoffOver, t0), [Action::Start]);
            service.handle(Event::Started, t0 + secs(round));
        }
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(service.restarts(), 4);
        assert_eq!(service.last_exit, Some(Exit::Code(3)));
    }

    #[test]
    fn restart_policies() {
        let t0 = Instant::now();
        let policy = |restart| Policy {
            restart,
            ..Policy::default()
        };
        let mut no = running(policy(Restart::No), t0);
        assert_eq!(
            no.handle(Event::Exited(Exit::Code(0)), t0),
            [Action::CleanUp]
        );
        assert_eq!(no.state(), State::Exited);
        let mut no = running(policy(Restart::No), t0);
        no.handle(Event::Exited(Exit::Signal(Signal::SIGKILL.into())), t0);
        assert_eq!(no.state(), State::Failed);

        let mut on_failure = running(policy(Restart::OnFailure), t0);
        on_failure.handle(Event::Exited(Exit::Code(0)), t0);
        assert_eq!(on_failure.state(), State::Exited);
        let mut on_failure = running(policy(Restart::OnFailure), t0);
        on_failure.handle(Event::Exited(Exit::Code(1)), t0);
        assert_eq!(on_failure.state(), State::Backoff);

        let mut always = running(policy(Restart::Always), t0);
        always.handle(Event::Exited(Exit::Code(0)), t0);
        assert_eq!(always.state(), State::Backoff);
    }

    #[test]
    fn stop_signals_then_kills_after_the_timeout() {
        let t0 = Instant::now();
        let policy = Policy {
            stop_signal: Signal::SIGHUP.into(),
            stop_timeout: secs(5),
            ..Policy::default()
        };
        let mut service = running(policy, t0);
        service.handle(Event::BecameReady, t0);
        assert_eq!(service.state(), State::Ready);
        assert_eq!(
            service.handle(Event::StopRequested, t0),
            [
                Action::Signal(Signal::SIGHUP.into()),
                Action::StopTimer(secs(5))
            ]
        );
        assert_eq!(service.handle(Event::StopRequested, t0), [], "asked twice");
        assert_eq!(service.handle(Event::StopTimeout, t0), [Action::Kill]);
        assert_eq!(
            service.handle(Event::Exited(Exit::Signal(Signal::SIGKILL.into())), t0),
            [Action::CleanUp]
        );
        assert_eq!(
            service.state(),
            State::Stopped,
            "a stopped service is not restarted"
        );
        assert_eq!(service.handle(Event::StopTimeout, t0), [], "late timer");
    }

    #[test]
    fn start_failures_back_off_unless_permanent() {
        let t0 = Instant::now();
        let mut service = Lifecycle::new(Policy::default());
        service.handle(Event::DependenciesMet, t0);
        assert_eq!(
            service.handle(Event::StartFailed { permanent: false }, t0),
            [Action::RestartTimer(secs(1))]
        );
        service.handle(Event::BackoffOver, t0);
        service.handle(Event::StartFailed { permanent: true }, t0);
        assert_eq!(service.state(), State::Failed);
        assert_eq!(service.handle(Event::BackoffOver, t0), []);
    }

    #[test]
    fn start_and_restart_work_on_stopped_crashed_and_running_services() {
        let t0 = Instant::now();
        // Failed (restart: no, exited 1): start brings it back.
        let mut failed = running(
            Policy {
                restart: Restart::No,
                ..Policy::default()
            },
            t0,
        );
        failed.handle(Event::Exited(Exit::Code(1)), t0);
        assert_eq!(failed.state(), State::Failed);
        assert_eq!(failed.handle(Event::StartRequested, t0), [Action::Start]);
        assert_eq!(failed.state(), State::Starting);

        // Backing off after crashes: start now, with the throttle reset.
        let mut crashing = running(Policy::default(), t0);
        for _ in 0..3 {
            crashing.handle(Event::Exited(Exit::Code(1)), t0);
            crashing.handle(Event::BackoffOver, t0);
            crashing.handle(Event::Started, t0);
        }
        crashing.handle(Event::Exited(Exit::Code(1)), t0);
        assert_eq!(crashing.state(), State::Backoff);
        assert_eq!(crashing.handle(Event::StartRequested, t0), [Action::Start]);
        crashing.handle(Event::Started, t0);
        assert_eq!(
            crashing.handle(Event::Exited(Exit::Code(1)), t0),
            [Action::CleanUp, Action::RestartTimer(secs(1))]
        );

        // Running: start changes nothing; restart stops it, then starts it once it exited.
        let mut up = running(Policy::default(), t0);
        assert_eq!(up.handle(Event::StartRequested, t0), []);
        assert_eq!(up.state(), State::Running);
        assert_eq!(
            up.handle(Event::RestartRequested, t0),
            [
                Action::Signal(Signal::SIGTERM.into()),
                Action::StopTimer(secs(10))
            ]
        );
        assert_eq!(
            up.handle(Event::Exited(Exit::Code(0)), t0),
            [Action::CleanUp, Action::Start]
        );
        assert_eq!(up.state(), State::Starting);
        assert_eq!(up.restarts(), 0, "only automatic restarts are counted");

        // Stopped: restart starts it; stop while a restart's stop runs cancels the start.
        let mut stopped = running(Policy::default(), t0);
        stopped.handle(Event::StopRequested, t0);
        stopped.handle(Event::Exited(Exit::Code(0)), t0);
        assert_eq!(stopped.state(), State::Stopped);
        assert_eq!(stopped.handle(Event::RestartRequested, t0), [Action::Start]);
        stopped.handle(Event::Started, t0);
        stopped.handle(Event::RestartRequested, t0);
        stopped.handle(Event::StopRequested, t0);
        assert_eq!(
            stopped.handle(Event::Exited(Exit::Code(0)), t0),
            [Action::CleanUp]
        );
        assert_eq!(stopped.state(), State::Stopped);

        // Stop on a failed or exited service: stopped, nothing to do.
        assert_eq!(
            failed.handle(Event::StartFailed { permanent: true }, t0),
            []
        );
        assert_eq!(failed.handle(Event::StopRequested, t0), []);
        assert_eq!(failed.state(), State::Stopped);
    }

    #[test]
    fn waiting_or_backing_off_services_stop_at_once() {
        let t0 = Instant::now();
        let mut waiting = Lifecycle::new(Policy::default());
        assert_eq!(waiting.handle(Event::StopRequested, t0), []);
        assert_eq!(waiting.state(), State::Stopped);
        let mut backing_off = running(Policy::default(), t0);
        backing_off.handle(Event::Exited(Exit::Code(1)), t0);
        backing_off.handle(Event::StopRequested, t0);
        assert_eq!(backing_off.state(), State::Stopped);
        assert_eq!(backing_off.handle(Event::BackoffOver, t0), [], "late timer");
    }

    fn limited(burst: u32, window: u64, on_failure: Option<OnFailure>) -> Policy {
        Policy {
            restart_limit: Some((burst, secs(window))),
            on_failure,
            ..Policy::default()
        }
    }

    #[test]
    fn a_burst_past_the_restart_limit_fails_for_good() {
        let t0 = Instant::now();
        let mut service = running(limited(2, 60, None), t0);
        for round in 0..2u64 {
            service.handle(Event::Exited(Exit::Code(1)), t0 + secs(round));
            assert_eq!(service.state(), State::Backoff, "restart {round}");
            service.handle(Event::BackoffOver, t0);
            service.handle(Event::Started, t0);
        }
        assert_eq!(
            service.handle(Event::Exited(Exit::Code(1)), t0 + secs(10)),
            [Action::CleanUp]
        );
        assert_eq!(service.state(), State::Failed);
        assert!(service.limit_reached());
        assert_eq!(service.handle(Event::BackoffOver, t0), [], "stays down");

        // Restarts outside the window do not count: one every minute goes on for ever.
        let mut slow = running(limited(1, 60, None), t0);
        for minute in 0..5u64 {
            slow.handle(Event::Exited(Exit::Code(1)), t0 + secs(61 * minute));
            assert_eq!(slow.state(), State::Backoff, "minute {minute}");
            slow.handle(Event::BackoffOver, t0);
            slow.handle(Event::Started, t0);
        }

        // Start failures count too; a start by the operator begins a fresh window.
        let mut broken = Lifecycle::new(limited(1, 60, None));
        broken.handle(Event::DependenciesMet, t0);
        broken.handle(Event::StartFailed { permanent: false }, t0);
        broken.handle(Event::BackoffOver, t0);
        assert_eq!(
            broken.handle(Event::StartFailed { permanent: false }, t0),
            []
        );
        assert_eq!(broken.state(), State::Failed);
        assert_eq!(broken.handle(Event::StartRequested, t0), [Action::Start]);
        assert!(!broken.limit_reached());
        broken.handle(Event::StartFailed { permanent: false }, t0);
        assert_eq!(broken.state(), State::Backoff);
    }

    #[test]
    fn on_failure_ends_the_machine_only_when_the_service_fails_for_good() {
        let t0 = Instant::now();
        let reboot = Some(OnFailure::Reboot);
        let mut service = running(limited(1, 60, reboot), t0);
        assert_eq!(
            service.handle(Event::Exited(Exit::Code(1)), t0),
            [Action::CleanUp, Action::RestartTimer(secs(1))]
        );
        service.handle(Event::BackoffOver, t0);
        service.handle(Event::Started, t0);
        assert_eq!(
            service.handle(Event::Exited(Exit::Code(1)), t0),
            [Action::CleanUp, Action::EndMachine(OnFailure::Reboot)]
        );

        let no = Policy {
            restart: Restart::No,
            on_failure: Some(OnFailure::Poweroff),
            ..Policy::default()
        };
        let mut done = running(no, t0);
        assert_eq!(
            done.handle(Event::Exited(Exit::Code(0)), t0),
            [Action::CleanUp],
            "a clean exit is no failure"
        );
        let mut crashed = running(no, t0);
        assert_eq!(
            crashed.handle(Event::Exited(Exit::Code(2)), t0),
            [Action::CleanUp, Action::EndMachine(OnFailure::Poweroff)]
        );
        let mut stopped = running(no, t0);
        stopped.handle(Event::StopRequested, t0);
        assert_eq!(
            stopped.handle(Event::Exited(Exit::Signal(Signal::SIGTERM.into())), t0),
            [Action::CleanUp],
            "a stop on request is no failure"
        );
    }

    #[test]
    fn an_unhealthy_service_is_stopped_and_its_run_counts_as_failed() {
        let t0 = Instant::now();
        let mut service = running(
            Policy {
                restart: Restart::OnFailure,
                ..Policy::default()
            },
            t0,
        );
        assert_eq!(
            service.handle(Event::Unhealthy, t0),
            [
                Action::Signal(Signal::SIGTERM.into()),
                Action::StopTimer(secs(10))
            ]
        );
        assert_eq!(service.state(), State::Stopping);
        // It exits 0 on SIGTERM: still a failure, so on-failure restarts it.
        assert_eq!(
            service.handle(Event::Exited(Exit::Code(0)), t0),
            [Action::CleanUp, Action::RestartTimer(secs(1))]
        );
        assert_eq!(service.last_fault(), Some(Fault::Unhealthy));
        service.handle(Event::BackoffOver, t0);
        service.handle(Event::Started, t0);
        service.handle(Event::Exited(Exit::Code(1)), t0);
        assert_eq!(service.last_fault(), None, "a plain crash is no fault");

        let mut no = running(
            Policy {
                restart: Restart::No,
                ..Policy::default()
            },
            t0,
        );
        no.handle(Event::Unhealthy, t0);
        no.handle(Event::Exited(Exit::Code(0)), t0);
        assert_eq!(no.state(), State::Failed);
        assert_eq!(no.last_fault(), Some(Fault::Unhealthy));

        // A stop asked for while the fault's stop runs is a stop.
        let mut asked = running(Policy::default(), t0);
        asked.handle(Event::Unhealthy, t0);
        asked.handle(Event::StartRequested, t0);
        assert_eq!(
            asked.handle(Event::Exited(Exit::Code(0)), t0),
            [Action::CleanUp, Action::Start]
        );
        assert_eq!(asked.last_fault(), None);
    }

    #[test]
    fn a_silent_watchdog_aborts_then_kills() {
        let t0 = Instant::now();
        let mut service = running(Policy::default(), t0);
        service.handle(Event::BecameReady, t0);
        assert_eq!(
            service.handle(Event::WatchdogTimeout, t0),
            [
                Action::Signal(Signal::SIGABRT.into()),
                Action::StopTimer(secs(10))
            ]
        );
        assert_eq!(service.handle(Event::WatchdogTimeout, t0), [], "once");
        assert_eq!(service.handle(Event::StopTimeout, t0), [Action::Kill]);
        service.handle(Event::Exited(Exit::Signal(Signal::SIGKILL.into())), t0);
        assert_eq!(service.state(), State::Backoff);
        assert_eq!(service.last_fault(), Some(Fault::Watchdog));
    }
}
