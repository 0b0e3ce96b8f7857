//! Starting the sandbox: the test binary is run again, for the one test, as PID 1 of new pid,
//! mount, network, uts and ipc namespaces, and its output and exit status are collected.
//! Runs in: the test process (multithreaded, under libtest). Between fork and exec only
//! async-signal-safe calls are made: unshare, fork, prctl, waitpid, _exit.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::cgroup::CgroupParent;
use crate::inside::pid_namespace_inode;
use crate::{Outcome, ENV_CGROUP, ENV_HOST_PIDNS, ENV_SCRATCH, ENV_TEST};

/// The namespaces the sandbox gets.
const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

/// Runs test `name` in a new sandbox, killing it after `timeout`.
pub(crate) fn run_outside(name: &str, timeout: Duration) -> io::Result<Outcome> {
    let exe = std::env::current_exe()?;
    let scratch = tempfile::Builder::new().prefix("kiln-sandbox-").tempdir()?;
    let host_pidns =
        pid_namespace_inode(Path::new("/proc/self/ns/pid")).map_err(io::Error::other)?;
    let mut cgroups = CgroupParent::create()?;

    let mut command = Command::new(exe);
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_TEST, name)
        .env(ENV_SCRATCH, scratch.path())
        .env(ENV_CGROUP, &cgroups.relative)
        .env(ENV_HOST_PIDNS, host_pidns.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child of a multithreaded process, before exec. It
    // calls only async-signal-safe functions (unshare, fork, prctl, waitpid, _exit), allocates
    // nothing and takes no locks.
    unsafe {
        command.pre_exec(enter_namespaces);
    }
    let child = command.spawn()?;

    // A watchdog kills the sandbox if it runs too long; killing the intermediate process kills
    // the sandbox's PID 1 (parent-death signal), and with it every process in the namespace.
    let (done, finished) = mpsc::channel::<()>();
    let intermediate = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    let watchdog = thread::spawn(move || {
        if finished.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = kill(intermediate, Signal::SIGKILL);
            true
        } else {
            false
        }
    });
    let output = child.wait_with_output();
    let _ = done.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let output = output?;

    let cgroup_dirs = cgroups.dirs.clone();
    cgroups.remove()?;
    let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if timed_out {
        stderr.push_str(&format!(
            "\nsandbox: killed after {} s\n",
            timeout.as_secs()
        ));
    }
    Ok(Outcome {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        cgroup_dirs,
    })
}

/// In the forked child: unshare the namespaces, then fork again so that the process that execs
/// the test is PID 1 of the new pid namespace. This process waits for it and exits with its
/// status, as `unshare --fork` does.
fn enter_namespaces() -> io::Result<()> {
    unshare(NAMESPACES)?;
    // SAFETY: this process is single-threaded (a fresh fork); the child only calls prctl and
    // returns to std's exec path.
    match unsafe { fork() }? {
        ForkResult::Child => {
            // SAFETY: prctl(PR_SET_PDEATHSIG) takes no pointers. If the waiting parent dies,
            // the sandbox's PID 1 dies too, taking every process in its namespace with it.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            Ok(())
        }
        ForkResult::Parent { child } => {
            let code = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(_, signal, _)) => break 128 + signal as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break 127,
                }
            };
            // SAFETY: _exit ends this intermediate process without running atexit handlers
            // or destructors that belong to the parent's copy of the address space.
            unsafe { libc::_exit(code) }
        }
    }
}
