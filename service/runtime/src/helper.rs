//! Container creation for multithreaded callers (the supervisor): the `service` binary is run
//! again as `service runtime create`, a short-lived single-threaded process, so libcontainer's
//! cloned children never inherit another thread's locks. The container init becomes a child of
//! the caller (libcontainer's `as_sibling`), which reaps it.
//! Runs in: the supervisor. Between fork and exec only dup2 runs (async-signal-safe).

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::unistd::{pipe2, Pid};

use crate::container::Runtime;
use crate::error::Error;

/// The fd on which the helper writes its error messages.
const LOG_FD: i32 = 3;

/// The container's standard input, output and error.
#[derive(Debug)]
pub struct ContainerStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What `create` passes on besides the bundle and stdio.
#[derive(Debug, Clone, Default)]
pub struct HelperOptions {
    /// Where to write the container init's pid.
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// The sd_notify socket to bind into the container (`--notify-socket`).
    pub notify_socket: Option<PathBuf>,
    /// `KEY=VALUE` variables set in the process's environment (`--env`).
    pub env: Vec<String>,
    /// Run the process under the container init (`--init`).
    pub init: bool,
}

/// Runs `service runtime create` for a runtime.
#[derive(Debug, Clone)]
pub struct Helper {
    runtime: Runtime,
    executable: PathBuf,
}

impl Helper {
    /// A helper that re-executes the running binary (`/proc/self/exe`).
    pub fn new(runtime: Runtime) -> Self {
        Self {
            runtime,
            executable: PathBuf::from("/proc/self/exe"),
        }
    }

    /// Uses another `service` binary (tests run it from the build directory).
    pub fn with_executable(mut self, executable: impl Into<PathBuf>) -> Self {
        self.executable = executable.into();
        self
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Creates container `id` from `bundle` with the given stdio; returns the init's pid. The
    /// init is a child of the calling process and waits for `start`.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: ContainerStdio,
        options: &HelperOptions,
    ) -> Result<Pid, Error> {
        let (log_read, log_write) = self.log_pipe()?;
        let mut command = self.command(&log_write, stdio);
        command.arg("create").arg("--bundle").arg(bundle);
        if options.no_pivot {
            command.arg("--no-pivot");
        }
        if let Some(pid_file) = &options.pid_file {
            command.arg("--pid-file").arg(pid_file);
        }
        if let Some(socket) = &options.notify_socket {
            command.arg("--notify-socket").arg(socket);
        }
        for variable in &options.env {
            command.arg("--env").arg(variable);
        }
        if options.init {
            command.arg("--init");
        }
        command.arg(id);
        let status = command
            .status()
            .map_err(|err| Error::io("run", &self.executable, err))?;
        drop(log_write);
        if status.success() {
            return self.runtime.state(id).map(|state| Pid::from_raw(state.pid));
        }
        // The helper has exited; whatever it wrote is in the pipe (far below its capacity).
        let message = read_message(log_read);
        Err(Error::runtime(
            "create",
            id,
            std::io::Error::other(if message.is_empty() {
                format!("helper {status}")
            } else {
                message
            }),
        ))
    }

    /// Starts `service runtime exec` for `args` in container `id` and returns at once: the
    /// helper (a child of the caller, which must reap it) waits for the process, passes on the
    /// signals it gets and exits with the process's exit code. Its own messages, never the
    /// process's output, go to the returned pipe; read them with [`read_message`] once it has
    /// exited. With `console_socket` the process gets a new pseudo-terminal whose master is
    /// sent there, and `stdio` should be /dev/null.
    pub fn spawn_exec(
        &self,
        id: &str,
        args: &[String],
        console_socket: Option<&Path>,
        stdio: ContainerStdio,
    ) -> Result<(Pid, OwnedFd), Error> {
        let (log_read, log_write) = self.log_pipe()?;
        let mut command = self.command(&log_write, stdio);
        command.arg("exec");
        if let Some(socket) = console_socket {
            command.arg("--tty").arg("--console-socket").arg(socket);
        }
        command.arg(id).arg("--").args(args);
        let child = command
            .spawn()
            .map_err(|err| Error::io("run", &self.executable, err))?;
        let pid = i32::try_from(child.id())
            .map_err(|err| Error::io("run", &self.executable, std::io::Error::other(err)))?;
        Ok((Pid::from_raw(pid), log_read))
    }

    fn log_pipe(&self) -> Result<(OwnedFd, OwnedFd), Error> {
        pipe2(OFlag::O_CLOEXEC)
            .map_err(|err| Error::io("create pipe for", &self.executable, err.into()))
    }

    /// `service runtime` with this runtime's root and cgroup parent and `stdio`, its messages
    /// going to `log` (inherited as fd 3).
    fn command(&self, log: &OwnedFd, stdio: ContainerStdio) -> Command {
        let mut command = Command::new(&self.executable);
        command
            .stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr))
            .arg("runtime")
            .arg("--root")
            .arg(self.runtime.root())
            .arg("--cgroup-parent")
            .arg(self.runtime.cgroup_parent())
            .arg("--log")
            .arg(format!("/proc/self/fd/{LOG_FD}"));
        let log_fd = log.as_raw_fd();
        // SAFETY: runs between fork and exec; dup2 and fcntl are async-signal-safe, allocates nothing and
        // leaves the new fd without FD_CLOEXEC, so the helper inherits it as fd 3.
        unsafe {
            command.pre_exec(move || {
                let result = if log_fd == LOG_FD {
                    // Already fd 3: dup2 would be a no-op and keep FD_CLOEXEC; clear it.
                    libc::fcntl(LOG_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(log_fd, LOG_FD)
                };
                if result < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

/// What a helper that has exited wrote to its message pipe `log`: its last `service runtime:`
/// line without that prefix (libcontainer's own lines before it are left out), else the whole.
pub fn read_message(log: OwnedFd) -> String {
    if nix::fcntl::fcntl(
        log.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )
    .is_err()
    {
        return String::new();
    }
    let mut text = String::new();
    let _ = std::fs::File::from(log).read_to_string(&mut text);
    let prefix = "service runtime: ";
    match text.lines().rev().find(|line| line.starts_with(prefix)) {
        Some(line) => line.trim_start_matches(prefix).trim().to_owned(),
        None => text.trim().to_owned(),
    }
}
