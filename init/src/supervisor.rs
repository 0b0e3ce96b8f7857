//! Keeping `service system-init` alive: init starts it once the early set-up is done and starts
//! it again whenever it ends, after a delay that doubles from 1 s to 30 s and falls back to 1 s
//! once a run has lasted a minute. The supervisor re-adopts or restarts the services itself.
//! An exit with status 0 is the end of a shutdown the operator asked for (`service shutdown`,
//! every service stopped): that one is not restarted.
//! Runs in: PID 1's main loop, which reaps the supervisor like any other child and tells this
//! module about it.
//! The command is `/usr/bin/service system-init`, or the words of `$KILN_SUPERVISOR` (for
//! running init in userspace mode with other paths).

use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::{say, spawn};

/// The supervisor's command line unless `$KILN_SUPERVISOR` gives one.
const DEFAULT_COMMAND: [&str; 2] = ["/usr/bin/service", "system-init"];
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A run this long resets the delay.
const STABLE: Duration = Duration::from_secs(60);

/// The supervisor process and when to start it again.
#[derive(Debug)]
pub struct Supervisor {
    argv: Vec<String>,
    pid: Option<Pid>,
    started: Instant,
    delay: Duration,
    restart_at: Option<Instant>,
}

impl Supervisor {
    /// The command from `$KILN_SUPERVISOR` (split on white space), else the default.
    pub fn from_env() -> Self {
        let argv: Vec<String> = std::env::var("KILN_SUPERVISOR")
            .ok()
            .map(|words| words.split_whitespace().map(str::to_owned).collect())
            .filter(|argv: &Vec<String>| !argv.is_empty())
            .unwrap_or_else(|| DEFAULT_COMMAND.map(str::to_owned).to_vec());
        Self {
            argv,
            pid: None,
            started: Instant::now(),
            delay: FIRST_DELAY,
            restart_at: None,
        }
    }

    fn name(&self) -> String {
        self.argv.join(" ")
    }

    pub fn pid(&self) -> Option<Pid> {
        self.pid
    }

    /// When the next start is due, if one is waiting.
    pub fn restart_at(&self) -> Option<Instant> {
        self.restart_at
    }

    /// Starts the supervisor; a failure to start counts as an exit.
    pub fn start(&mut self, now: Instant) {
        self.restart_at = None;
        let Some((program, args)) = self.argv.split_first() else {
            return;
        };
        match spawn::command(program).args(args).spawn() {
            Ok(child) => {
                let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
                say!("started {}, pid {pid}", self.name());
                self.pid = Some(pid);
                self.started = now;
            }
            Err(err) => {
                say!("start {}: {err}", self.name());
                self.schedule_restart(now);
            }
        }
    }

    /// Starts the supervisor if its restart is due.
    pub fn tick(&mut self, now: Instant) {
        if self.restart_at.is_some_and(|at| at <= now) {
            self.start(now);
        }
    }

    /// Whether `pid` is the supervisor; if so it has ended with `status`, which is logged, and
    /// a restart is scheduled unless `stopping`.
    pub fn reaped(&mut self, pid: Pid, status: WaitStatus, now: Instant, stopping: bool) -> bool {
        if self.pid != Some(pid) {
            return false;
        }
        self.pid = None;
        let how = match status {
            WaitStatus::Exited(_, code) => format!("exited with status {code}"),
            WaitStatus::Signaled(_, signal, _) => format!("killed by {}", signal.as_str()),
            other => format!("ended ({other:?})"),
        };
        say!("{} {how}", self.name());
        if matches!(status, WaitStatus::Exited(_, 0)) && !stopping {
            say!("the services were shut down on request: not restarting the supervisor");
            return true;
        }
        if !stopping {
            if now.duration_since(self.started) >= STABLE {
                self.delay = FIRST_DELAY;
            }
            self.schedule_restart(now);
        }
        true
    }

    fn schedule_restart(&mut self, now: Instant) {
        say!("restarting {} in {}s", self.name(), self.delay.as_secs());
        self.restart_at = Some(now + self.delay);
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    /// No more restarts (shutdown).
    pub fn cancel_restart(&mut self) {
        self.restart_at = None;
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;

    use super::*;

    fn supervisor() -> Supervisor {
        Supervisor {
            argv: vec!["service".to_owned()],
            pid: Some(Pid::from_raw(42)),
            started: Instant::now(),
            delay: FIRST_DELAY,
            restart_at: None,
        }
    }

    #[test]
    fn restarts_back_off_and_reset_after_a_stable_run() {
        let mut sup = supervisor();
        let t0 = sup.started;
        let killed = WaitStatus::Signaled(Pid::from_raw(42), Signal::SIGKILL, false);
        assert!(
            !sup.reaped(Pid::from_raw(7), killed, t0, false),
            "not the supervisor"
        );
        let mut delays = Vec::new();
        let mut now = t0;
        for _ in 0..7 {
            sup.pid = Some(Pid::from_raw(42));
            sup.started = now;
            assert!(sup.reaped(Pid::from_raw(42), killed, now, false));
            let at = sup.restart_at().unwrap();
            delays.push((at - now).as_secs());
            now = at;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        sup.pid = Some(Pid::from_raw(42));
        sup.started = now;
        let later = now + STABLE;
        assert!(sup.reaped(Pid::from_raw(42), killed, later, false));
        assert_eq!((sup.restart_at().unwrap() - later).as_secs(), 1);
    }

    #[test]
    fn a_clean_exit_is_not_restarted() {
        let mut sup = supervisor();
        let status = WaitStatus::Exited(Pid::from_raw(42), 0);
        assert!(sup.reaped(Pid::from_raw(42), status, Instant::now(), false));
        assert!(sup.restart_at().is_none());
        let mut sup = supervisor();
        let status = WaitStatus::Exited(Pid::from_raw(42), 1);
        assert!(sup.reaped(Pid::from_raw(42), status, Instant::now(), false));
        assert!(sup.restart_at().is_some(), "a failure is restarted");
    }

    #[test]
    fn no_restart_while_stopping() {
        let mut sup = supervisor();
        let status = WaitStatus::Exited(Pid::from_raw(42), 0);
        assert!(sup.reaped(Pid::from_raw(42), status, Instant::now(), true));
        assert!(sup.restart_at().is_none());
        assert!(sup.pid().is_none());
    }
}
