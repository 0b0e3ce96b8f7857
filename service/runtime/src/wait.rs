//! Waiting in the foreground for a container process (`run`, `exec`), passing on the signals the
//! runtime itself receives, as runc does, and turning its end into an exit code.
//! Runs in: the single-threaded `service runtime run|exec` process, after the container started.
//! Mirrors runc's signal forwarding (signals.go) and the shell convention 128+N for death by signal.

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

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

/// Waits for `pid`, a child of this process, forwarding [`FORWARDED`] signals to it; returns its
/// exit code.
pub(crate) fn wait_forwarding(pid: Pid) -> Result<i32, Errno> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        mask.add(signal);
    }
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut previous))?;
    let result = wait_loop(pid, &mask);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    result
}

fn wait_loop(pid: Pid, mask: &SigSet) -> Result<i32, Errno> {
    let signals = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC)?;
    loop {
        // Checked before every read: the child may have ended before the mask was set.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(Errno::EINTR) => continue,
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
