//! Starting children: init blocks the signals it reads through its signalfd, and a blocked
//! mask survives fork and exec, so every child gets an empty mask back before it runs its
//! program; otherwise the supervisor and scripts would never see SIGTERM or SIGCHLD.
//! Runs in: PID 1; the reset runs in the child between fork and exec.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// The search path children get (the kernel starts init with none).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command for `program` that starts with no signal blocked and PATH set.
pub fn command(program: impl AsRef<Path>) -> Command {
    let mut command = Command::new(program.as_ref());
    command.env("PATH", PATH);
    // SAFETY: runs in the forked child before exec; sigprocmask is async-signal-safe, touches
    // only the calling thread's mask and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(std::io::Error::from)
        });
    }
    command
}
