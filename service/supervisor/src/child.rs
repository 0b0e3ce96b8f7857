//! Waiting for a child process (a container init, which the runtime helper makes a child of the
//! supervisor) to exit, with an optional deadline, through a pidfd: no polling, no SIGCHLD
//! handler, and no risk of reaping someone else's child.
//! Runs in: the supervisor, inside a tokio runtime.

use std::fmt;
use std::io;
use std::time::Duration;

use nix::unistd::Pid;
use rustix::process::{pidfd_open, PidfdFlags};
use spec::signal::Number;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Number),
    /// It ended, but how is not known: it was adopted from an earlier supervisor, so its exit
    /// status went to PID 1.
    Unknown,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exited with status {code}"),
            Self::Signal(signal) => write!(f, "killed by {signal}"),
            Self::Unknown => f.write_str("ended (status unknown: adopted)"),
        }
    }
}

/// A child process being watched.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    pidfd: AsyncFd<std::os::fd::OwnedFd>,
    /// A child of this process (reaped here), not one adopted from an earlier supervisor.
    own: bool,
}

impl Child {
    /// Starts watching child `pid`. Must be called inside a tokio runtime.
    pub fn new(pid: Pid) -> io::Result<Self> {
        Self::watch(pid, true)
    }

    /// Starts watching `pid`, which is not a child of this process (a container init an
    /// earlier supervisor started): its end is seen through the pidfd, its status is not.
    pub fn adopt(pid: Pid) -> io::Result<Self> {
        Self::watch(pid, false)
    }

    fn watch(pid: Pid, own: bool) -> io::Result<Self> {
        let raw = rustix::process::Pid::from_raw(pid.as_raw())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("pid {pid}")))?;
        let pidfd = pidfd_open(raw, PidfdFlags::NONBLOCK)
            .map_err(|err| io::Error::new(err.kind(), format!("pidfd_open {pid}: {err}")))?;
        // SAFETY: the AsyncFd owns the pidfd (an OwnedFd) and nothing else closes or replaces
        // it while registered; it is deregistered when the AsyncFd drops, before the fd closes.
        #[allow(unsafe_code, reason = "tokio's fd registration is unsafe; see SAFETY")]
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE)? };
        Ok(Self { pid, pidfd, own })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits until the child exits and reaps it (an adopted one is not ours to reap: its exit
    /// is [`Exit::Unknown`]); `None` if `deadline` passed first (the child
    /// is then left running and unreaped).
    pub async fn wait(&self, deadline: Option<Duration>) -> io::Result<Option<Exit>> {
        let exited = self.pidfd.readable();
        match deadline {
            Some(deadline) => match tokio::time::timeout(deadline, exited).await {
                Ok(guard) => drop(guard?),
                Err(_elapsed) => return Ok(None),
            },
            None => drop(exited.await?),
        }
        if !self.own {
            return Ok(Some(Exit::Unknown));
        }
        self.reap().map(Some)
    }

    fn reap(&self) -> io::Result<Exit> {
        // Read raw: a death by a real-time signal (systemd's SIGRTMIN+3) is an exit too.
        match runtime::wait_ended(Some(self.pid), false).map_err(io::Error::from)? {
            Some((_, runtime::Ended::Code(code))) => Ok(Exit::Code(code)),
            Some((_, runtime::Ended::Signal(signal))) => Ok(Exit::Signal(signal)),
            None => Err(io::Error::other(format!(
                "wait for {}: no status",
                self.pid
            ))),
        }
    }
}
