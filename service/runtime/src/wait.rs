//! Waiting in the foreground for a container process (`run`, `exec`), passing on the signals the
//! runtime itself receives, as runc does, and turning its end into an exit code.
//! Runs in: the single-threaded `service runtime run|exec` process, after the container started.
//! Mirrors runc's signal forwarding (signals.go) and the shell convention 128+N for death by signal.

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use rustix::process::WaitOptions;
use spec::signal::Number;

/// Signals passed on to the container process while waiting.
const FORWARDED: [Signal; 8] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// The shell's exit code for a finished process: its status, or 128+N when killed by signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    /// Killed by a signal, real-time ones included.
    Signal(Number),
}

impl Ended {
    /// The shell's exit code: the status, or 128+N when killed by signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Code(code) => code,
            Self::Signal(signal) => 128 + signal.raw(),
        }
    }
}

/// Reaps `pid` (any child with `None`) once it has ended: blocking, or with `nohang` returning
/// `None` while none has. A stop or continue is not an end. Unlike nix's waitpid, which reaps
/// the child and then fails with EINVAL, this reads a death by a real-time signal.
pub fn wait_ended(pid: Option<Pid>, nohang: bool) -> Result<Option<(Pid, Ended)>, Errno> {
    let pid = pid
        .map(|pid| rustix::process::Pid::from_raw(pid.as_raw()).ok_or(Errno::EINVAL))
        .transpose()?;
    let options = if nohang {
        WaitOptions::NOHANG
    } else {
        WaitOptions::empty()
    };
    loop {
        // rustix's waitpid without a pid waits for the process group only; `wait` is any child.
        let waited = match pid {
            Some(pid) => rustix::process::waitpid(Some(pid), options),
            None => rustix::process::wait(options),
        }
        .map_err(|err| Errno::from_raw(err.raw_os_error()))?;
        let Some((reaped, status)) = waited else {
            return Ok(None);
        };
        let ended = if let Some(code) = status.exit_status() {
            Ended::Code(code)
        } else if let Some(signal) = status.terminating_signal().and_then(Number::new) {
            Ended::Signal(signal)
        } else {
            continue;
        };
        return Ok(Some((Pid::from_raw(reaped.as_raw_nonzero().get()), ended)));
    }
}

/// The [`FORWARDED`] signals and SIGCHLD blocked in this process from [`Forwarding::block`]
/// on, so that one that comes while the child is being started waits, pending, for
/// [`Forwarding::wait`] to pass it on, instead of ending this process (the child would be left
/// running without it: Ctrl-C just after `exec` started its command). The child's executor
/// clears the mask it inherits. The mask is put back when this is dropped.
pub(crate) struct Forwarding {
    mask: SigSet,
    previous: SigSet,
}

impl Forwarding {
    pub(crate) fn block() -> Result<Self, Errno> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for signal in FORWARDED {
            mask.add(signal);
        }
        let mut previous = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut previous))?;
        Ok(Self { mask, previous })
    }

    /// Waits for `pid`, a child of this process started since [`Forwarding::block`],
    /// forwarding [`FORWARDED`] signals to it, those that came before included; returns its
    /// exit code.
    pub(crate) fn wait(&self, pid: Pid) -> Result<i32, Errno> {
        wait_loop(pid, &self.mask)
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}

fn wait_loop(pid: Pid, mask: &SigSet) -> Result<i32, Errno> {
    let signals = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC)?;
    loop {
        // Checked before every read: the child may have ended before the mask was set.
        match wait_ended(Some(pid), true) {
            Ok(Some((_, ended))) => return Ok(ended.exit_code()),
            Ok(None) | Err(Errno::EINTR) => {}
            Err(err) => return Err(err),
        }
        let Some(info) = signals.read_signal()? else {
            continue;
        };
        let signal = i32::try_from(info.ssi_signo)
            .ok()
            .and_then(|number| Signal::try_from(number).ok());
        match signal {
            Some(Signal::SIGCHLD) | None => {}
            Some(signal) => {
                let _ = kill(pid, signal);
            }
        }
    }
}
