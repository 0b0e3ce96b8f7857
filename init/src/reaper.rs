//! The signals init acts on, read through a signalfd, and the reaping of every child that has
//! ended. init blocks these signals so they queue on the signalfd; a wait is a poll(2) on it
//! with the deadline of whatever comes next, so there is no handler code and no busy loop.
//! Runs in: PID 1, single-threaded.
//! Mirrors catatonit's signalfd loop and tini's reap_zombies (waitpid(-1, WNOHANG) until empty).

use std::os::fd::AsFd;
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What init listens for: children ending, and the shutdown requests of busybox's
/// `reboot` (SIGTERM), `poweroff` (SIGUSR2), `halt` (SIGUSR1) and ctrl-alt-del (SIGINT).
const HANDLED: [Signal; 6] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGUSR2,
    Signal::SIGUSR1,
    Signal::SIGINT,
    Signal::SIGHUP,
];

/// The blocked signals and their signalfd.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the handled signals and opens the signalfd.
    pub fn new() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        for signal in HANDLED {
            set.add(signal);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Self { fd })
    }

    /// Waits until a signal comes or `deadline` passes; returns the signals that came (SIGCHLD
    /// included: the caller then reaps).
    pub fn wait(&self, deadline: Option<Instant>) -> Vec<Signal> {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                // Rounded up, so that the deadline has passed when poll returns.
                let millis = left.as_millis().saturating_add(1);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return Vec::new(),
        }
        let mut signals = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            if let Ok(signal) = Signal::try_from(i32::try_from(info.ssi_signo).unwrap_or(0)) {
                signals.push(signal);
            }
        }
        signals
    }
}

/// Reaps every child that has ended, telling `ended` about each. Returns false once init has
/// no children left at all.
pub fn reap(mut ended: impl FnMut(Pid, WaitStatus)) -> bool {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    ended(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}
