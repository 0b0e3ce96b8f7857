//! The container init, as `docker run --init` gives one (tini, catatonit): a container created
//! with [`CreateOptions::init`](crate::CreateOptions) runs `/sbin/kiln-init -- ARGS...`, this
//! binary bound read-only into it, so the image need not contain one. It starts ARGS as its only
//! child, with default signal dispositions and nothing blocked, in a process group of its own
//! that takes the terminal when stdin is one; passes every signal it gets on to that child (a
//! program that ignores SIGTERM as PID 1 of its pid namespace now gets the default action);
//! reaps every process that ends below it; and exits with the child's status (128+N when
//! signal N killed it).
//! Runs in: a container, as PID 1 of its pid namespace or, with a shared pid namespace, as a
//! subreaper below the supervisor; single-threaded, as the `service` binary called `kiln-init`.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{ForkResult, Pid};

use crate::executor::reset_signals;
use crate::wait::wait_ended;

/// Where the init is bound inside a container.
pub const PATH: &str = spec::runtime::CONTAINER_INIT;

/// The name (argv[0]'s file name) under which the `service` binary acts as the container init.
pub const NAME: &str = "kiln-init";

/// Exit code when the program cannot be started (as a shell gives for a command not found).
const NOT_STARTED: i32 = 127;

/// Runs the init with `args` (everything after argv[0]; a leading `--` is skipped) and returns
/// the exit code: the child's, or [`NOT_STARTED`].
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let mut args: Vec<OsString> = args.collect();
    if args.first().is_some_and(|first| first == "--") {
        args.remove(0);
    }
    let argv: Result<Vec<CString>, _> = args
        .into_iter()
        .map(|arg| CString::new(arg.into_vec()))
        .collect();
    let argv = match argv {
        Ok(argv) if !argv.is_empty() => argv,
        Ok(_) => return fail("no program given (usage: kiln-init -- PROGRAM [ARG...])"),
        Err(_) => return fail("an argument holds a NUL byte"),
    };
    // Ignored signals are dropped, never queued: every one back to its default first, so that
    // the signalfd below sees them all and the child inherits no ignored disposition.
    reset_signals();
    let all = SigSet::all();
    if let Err(err) = all.thread_set_mask() {
        return fail(&format!("block signals: {err}"));
    }
    let signals = match SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC) {
        Ok(signals) => signals,
        Err(err) => return fail(&format!("open a signalfd: {err}")),
    };
    if nix::unistd::getpid() != Pid::from_raw(1) {
        // Orphans of the child come here instead of going past the container.
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    // SAFETY: this process is single-threaded (the init runs before anything starts a thread),
    // so the child may run any code; it only sets up its process group and execs.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => exec_child(&argv),
        Ok(ForkResult::Parent { child }) => child,
        Err(err) => return fail(&format!("fork: {err}")),
    };
    supervise(child, &signals)
}

/// In the forked child: its own process group, the terminal's foreground when stdin is one,
/// signals unblocked, then the program. Never returns.
fn exec_child(argv: &[CString]) -> ! {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    if nix::unistd::isatty(libc::STDIN_FILENO).unwrap_or(false) {
        // SIGTTOU is still blocked, so a background group may take the terminal.
        let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpid());
    }
    let _ = SigSet::empty().thread_set_mask();
    let err = nix::unistd::execvp(&argv[0], argv).unwrap_err();
    eprintln!("kiln-init: exec {}: {err}", argv[0].to_string_lossy());
    // SAFETY: _exit(2) ends this forked child at once, running none of the parent's exit
    // handlers or destructors twice.
    unsafe { libc::_exit(NOT_STARTED) }
}

/// Passes signals on to `child` and reaps whatever ends, until `child` has ended.
fn supervise(child: Pid, signals: &SignalFd) -> i32 {
    loop {
        if let Some(code) = reap(child) {
            return code;
        }
        let number = match signals.read_signal() {
            Ok(Some(info)) => info.ssi_signo,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(err) => {
                eprintln!("kiln-init: read signals: {err}");
                continue;
            }
        };
        let Ok(number) = i32::try_from(number) else {
            continue;
        };
        if number == Signal::SIGCHLD as i32 {
            continue;
        }
        // SAFETY: kill(2) with a plain pid and signal number touches no memory. A number
        // (real-time signals included, which nix's Signal cannot name) is passed on as it came.
        unsafe { libc::kill(child.as_raw(), number) };
    }
}

/// Reaps every process that has ended; the exit code once `child` is among them.
fn reap(child: Pid) -> Option<i32> {
    let mut code = None;
    loop {
        match wait_ended(None, true) {
            Ok(None) | Err(Errno::ECHILD) => return code,
            Ok(Some((pid, ended))) => {
                if pid == child {
                    code = Some(ended.exit_code());
                }
            }
            Err(Errno::EINTR) => {}
            Err(err) => {
                eprintln!("kiln-init: wait: {err}");
                return code;
            }
        }
    }
}

fn fail(message: &str) -> i32 {
    eprintln!("kiln-init: {message}");
    NOT_STARTED
}
