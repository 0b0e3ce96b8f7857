//! The runtime's operations on containers kept under a state root: create, start, state, kill,
//! delete, list and run (exec is in [`crate::exec`]).
//! Runs in: a single-threaded process (see the crate header). Create and exec clone children
//! that run Rust code before exec; a second thread holding a lock would deadlock them.
//! Mirrors runc's lifecycle rules: start only a created container, delete a running one only
//! with force, refuse an id that exists.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager as _, FreezerState};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::signal::Signal as ContainerSignal;
use libcontainer::syscall::syscall::SyscallType;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::Pid;
use spec::signal::Number;

use crate::bundle;
use crate::devbind;
use crate::error::Error;
use crate::exec;
use crate::executor::ResetSignalsExecutor;
use crate::hooks::{self, After};
use crate::oom;
use crate::seccomp;
use crate::state::{State, Status};
use crate::wait;

/// Where container state lives unless `--root` says otherwise.
pub const DEFAULT_ROOT: &str = "/run/kiln/runtime";
/// The cgroup under which containers without `linux.cgroupsPath` get `<parent>/<id>`.
pub const DEFAULT_CGROUP_PARENT: &str = "/kiln";

/// The file under the state root that every operation locks (flock) while it reads or writes
/// container state: libcontainer writes state.json in place, and records a start only after the
/// container's process was released, so an unlocked reader could see half a file or `created`
/// for a container that already runs.
const LOCK_FILE: &str = ".lock";

/// The directory under the state root where the prepared spec of a container being created
/// is written for libcontainer to read; removed when create returns.
const PREPARED_DIR: &str = ".prepared";

/// How to create a container.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// Where to write the container init's pid.
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (needed on an initramfs root).
    pub no_pivot: bool,
    /// A unix datagram socket on the host for sd_notify messages: its directory is bound into
    /// the container at [`bundle::NOTIFY_DIR`] and `NOTIFY_SOCKET` points at it there.
    pub notify_socket: Option<PathBuf>,
    /// `KEY=VALUE` variables set in the process's environment, replacing the config's.
    pub env: Vec<String>,
    /// Run the process under the container init (see [`crate::container_init`]), this binary
    /// bound read-only into the container.
    pub init: bool,
    /// Where the pseudo-terminal's master is sent when the process asks for a terminal.
    pub console_socket: Option<PathBuf>,
    /// Make the container init a child of the caller's parent (the supervisor that started this
    /// helper) instead of the caller.
    pub as_sibling: bool,
    /// The container's stdio.
    pub stdio: Stdio,
}

/// A process's stdin, stdout and stderr; each inherited from the caller where `None`.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    /// Gives the builder those that are set.
    pub(crate) fn apply(self, mut builder: ContainerBuilder) -> ContainerBuilder {
        if let Some(fd) = self.stdin {
            builder = builder.with_stdin(fd);
        }
        if let Some(fd) = self.stdout {
            builder = builder.with_stdout(fd);
        }
        if let Some(fd) = self.stderr {
            builder = builder.with_stderr(fd);
        }
        builder
    }
}

/// Containers under one state root.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    cgroup_parent: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cgroup_parent: DEFAULT_CGROUP_PARENT.to_owned(),
        }
    }

    /// Sets the cgroup under which containers without `linux.cgroupsPath` are placed.
    pub fn with_cgroup_parent(mut self, parent: impl Into<String>) -> Self {
        self.cgroup_parent = parent.into();
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// Creates container `id` from `bundle`, leaving its init waiting for [`Runtime::start`];
    /// returns the init's pid. On failure nothing is left behind: state directory, cgroups and
    /// processes are removed, so the same id can be created again.
    pub fn create(&self, id: &str, bundle: &Path, options: CreateOptions) -> Result<Pid, Error> {
        self.create_checked(id, bundle, options)
            .map_err(|err| match err {
                // A bundle problem says which container it stopped.
                Error::Bundle { .. } => Error::runtime("create", id, err),
                err => err,
            })
    }

    fn create_checked(
        &self,
        id: &str,
        bundle: &Path,
        options: CreateOptions,
    ) -> Result<Pid, Error> {
        check_id(id)?;
        let _lock = self.lock()?;
        if self.container_dir(id).exists() {
            return Err(Error::Exists { id: id.to_owned() });
        }
        let bundle = fs::canonicalize(bundle).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::Bundle {
                bundle: bundle.to_owned(),
                problems: vec![spec::Problem::new(".", "does not exist")],
            },
            _ => Error::io("resolve bundle", bundle, source),
        })?;
        let mut spec = bundle::prepare(&bundle, id, &self.cgroup_parent)?;
        let terminal = spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
        match (terminal, &options.console_socket) {
            (true, None) => {
                return Err(Error::Bundle {
                    bundle,
                    problems: vec![spec::Problem::new(
                        "config.json: process.terminal",
                        "a terminal needs --console-socket, to which its master is sent",
                    )],
                })
            }
            (false, Some(_)) => {
                return Err(Error::Unsupported(
                    "--console-socket needs process.terminal: true in config.json",
                ))
            }
            _ => {}
        }
        if let Some(socket) = &options.notify_socket {
            bundle::add_notify_socket(&mut spec, socket).map_err(|problem| Error::Bundle {
                bundle: bundle.clone(),
                problems: vec![problem],
            })?;
        }

        let exe = std::env::current_exe()
            .map_err(|err| Error::io("find the runtime's own binary", "/proc/self/exe", err))?;
        bundle::set_env(&mut spec, &options.env);
        if options.init {
            bundle::add_init(&mut spec, &exe).map_err(|problem| Error::Bundle {
                bundle: bundle.clone(),
                problems: vec![problem],
            })?;
        }
        hooks::wrap(&mut spec, &bundle, &exe);
        if let Some(root) = spec.root().as_ref().map(|root| root.path().clone()) {
            devbind::defer(&mut spec, &root, &exe).map_err(|problem| Error::Bundle {
                bundle: bundle.clone(),
                problems: vec![problem],
            })?;
        }

        // Kept for exec, which needs the spec the container was made from.
        let kept_spec = spec.clone();
        let seccomp = seccomp::defer(&mut spec);
        hooks::take_post_hooks(&mut spec);
        let prepared = self.root.join(PREPARED_DIR).join(id);
        fs::create_dir_all(&prepared).map_err(|err| Error::io("create", &prepared, err))?;
        let config = prepared.join(spec::config::FILE_NAME);
        let written = spec
            .save(&config)
            .map_err(|err| Error::io("write", &config, io::Error::other(err)));
        let result = written
            .and_then(|()| self.build(id, &prepared, options, seccomp))
            .and_then(|container| oom::apply(&spec, id).map(|()| container))
            .and_then(|container| {
                let kept = self.container_dir(id).join(exec::CREATED_SPEC);
                kept_spec
                    .save(&kept)
                    .map(|()| container)
                    .map_err(|err| Error::io("keep the spec in", kept, io::Error::other(err)))
            });
        let _ = fs::remove_dir_all(&prepared);
        // Gone once no other create is in progress; another one's files keep it.
        let _ = fs::remove_dir(self.root.join(PREPARED_DIR));

        match result {
            Ok(mut container) => {
                // libcontainer records the prepared copy's directory; the OCI state names the
                // bundle the caller gave.
                container.state.bundle = bundle;
                container
                    .save()
                    .map_err(|err| Error::runtime("save state of", id, err))?;
                container.pid().ok_or_else(|| {
                    Error::runtime("create", id, io::Error::other("no init pid recorded"))
                })
            }
            Err(err) => {
                self.clean_up_failed_create(id);
                Err(err)
            }
        }
    }

    fn build(
        &self,
        id: &str,
        prepared: &Path,
        options: CreateOptions,
        seccomp: Option<seccomp::Deferred>,
    ) -> Result<Container, Error> {
        let create_error = |err: LibcontainerError| Error::runtime("create", id, err);
        let mut builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(create_error)?
            .with_executor(ResetSignalsExecutor::new(seccomp))
            .with_console_socket(options.console_socket);
        if let Some(pid_file) = options.pid_file {
            builder = builder
                .with_pid_file(Some(pid_file))
                .map_err(create_error)?;
        }
        options
            .stdio
            .apply(builder)
            .validate_id()
            .map_err(|_| Error::InvalidId { id: id.to_owned() })?
            .as_init(prepared)
            .with_systemd(false)
            .with_detach(true)
            .with_no_pivot(options.no_pivot)
            .as_sibling(options.as_sibling)
            .build()
            .map_err(create_error)
    }

    /// After a failed create: kill what was started, remove cgroups and the state directory.
    fn clean_up_failed_create(&self, id: &str) {
        let dir = self.container_dir(id);
        if let Ok(mut container) = Container::load(dir.clone()) {
            let _ = container.delete(true);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// Starts a created container: its init execs the process.
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut container = self.load(id)?;
        if container.status() != ContainerStatus::Created {
            return Err(self.wrong_state(id, "start", &container));
        }
        let kept = self.kept_spec(id);
        container
            .start()
            .map_err(|err| Error::runtime("start", id, err))?;
        if let Some(spec) = kept {
            let dir = self.container_dir(id);
            hooks::run_each(&spec, After::Start, &container.state, Some(&dir));
        }
        Ok(())
    }

    /// The OCI state of container `id`.
    pub fn state(&self, id: &str) -> Result<State, Error> {
        let _lock = self.lock()?;
        Ok(State::of(&self.load(id)?))
    }

    /// Sends `signal` to the container's init, or with `all` to every process in its cgroup.
    /// Real-time signals, which libcontainer cannot name, are sent here the same way.
    pub fn kill(&self, id: &str, signal: Number, all: bool) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut container = self.load(id)?;
        let stopped = matches!(container.status(), ContainerStatus::Stopped);
        if !(container.can_kill() || all && stopped) {
            return Err(self.wrong_state(id, "kill", &container));
        }
        match signal.as_nix() {
            Some(signal) => container
                .kill(ContainerSignal::from(signal), all)
                .map_err(|err| Error::runtime("kill", id, err)),
            None => {
                kill_raw(&container, signal, all).map_err(|err| Error::runtime("kill", id, err))
            }
        }
    }

    /// Deletes a stopped container (any container with `force`): kills what is left in its
    /// cgroup, removes its cgroups and its state. With `force` a missing container is not an
    /// error, as with runc. A created container is refused without `force`, as runtime.md
    /// requires ("attempting to delete a container that is not stopped MUST generate an
    /// error"), where runc and crun delete it.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut container = match self.load(id) {
            Ok(container) => container,
            Err(Error::NotFound { .. }) if force => return Ok(()),
            Err(err) => return Err(err),
        };
        if container.status() != ContainerStatus::Stopped && !force {
            return Err(Error::NotStopped {
                id: id.to_owned(),
                status: Status::from(container.status()),
            });
        }
        let kept = self.kept_spec(id);
        container
            .delete(force)
            .map_err(|err| Error::runtime("delete", id, err))?;
        if let Some(spec) = kept {
            hooks::run_each(&spec, After::Stop, &container.state, None);
        }
        Ok(())
    }

    /// The spec container `id` was created from, kept for exec and the poststart and poststop
    /// hooks; `None` for a container an earlier version made (libcontainer runs its hooks).
    fn kept_spec(&self, id: &str) -> Option<Spec> {
        Spec::load(self.container_dir(id).join(exec::CREATED_SPEC)).ok()
    }

    /// Every container under the state root, by id.
    pub fn list(&self) -> Result<Vec<State>, Error> {
        let _lock = self.lock()?;
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io("list", &self.root, err)),
        };
        let mut states = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| Error::io("list", &self.root, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            if let Ok(container) = Container::load(entry.path()) {
                states.push(State::of(&container));
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }

    /// Creates and starts container `id`, waits for it, deletes it and returns its exit code
    /// (`run` without `--detach`).
    pub fn run(&self, id: &str, bundle: &Path, options: CreateOptions) -> Result<i32, Error> {
        let options = CreateOptions {
            as_sibling: false,
            ..options
        };
        let forwarding = wait::Forwarding::block()
            .map_err(|err| Error::runtime("block signals for", id, err))?;
        let pid = self.create_and_start(id, bundle, options)?;
        let code = forwarding
            .wait(pid)
            .map_err(|err| Error::runtime("wait for", id, err));
        drop(forwarding);
        let deleted = self.delete(id, true);
        let code = code?;
        deleted?;
        Ok(code)
    }

    /// Creates and starts container `id`; if start fails, the container is deleted again.
    pub fn create_and_start(
        &self,
        id: &str,
        bundle: &Path,
        options: CreateOptions,
    ) -> Result<Pid, Error> {
        let pid = self.create(id, bundle, options)?;
        if let Err(err) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(err);
        }
        Ok(pid)
    }

    /// Holds the state root's lock until the returned guard is dropped.
    pub(crate) fn lock(&self) -> Result<Flock<fs::File>, Error> {
        fs::create_dir_all(&self.root).map_err(|err| Error::io("create", &self.root, err))?;
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|err| Error::io("open", &path, err))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("lock", &path, errno.into()))
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub(crate) fn load(&self, id: &str) -> Result<Container, Error> {
        check_id(id)?;
        let dir = self.container_dir(id);
        if !dir.join("state.json").exists() {
            return Err(Error::NotFound { id: id.to_owned() });
        }
        Container::load(dir).map_err(|err| Error::runtime("load", id, err))
    }

    pub(crate) fn wrong_state(
        &self,
        id: &str,
        operation: &'static str,
        container: &Container,
    ) -> Error {
        Error::WrongState {
            id: id.to_owned(),
            operation,
            status: Status::from(container.status()),
        }
    }
}

/// Ids name directories: no separators, no dot-names, nothing that could escape the root.
/// Sends a signal nix cannot name to the init, or with `all` to every process in the cgroup
/// (frozen meanwhile, so none forks away unsignalled), as libcontainer does for the others.
fn kill_raw(container: &Container, signal: Number, all: bool) -> Result<(), io::Error> {
    let send = |pid: Pid| {
        // SAFETY: kill(2) with a plain pid and signal number touches no memory.
        let sent = unsafe { libc::kill(pid.as_raw(), signal.raw()) };
        match Errno::result(sent) {
            Ok(_) | Err(Errno::ESRCH) => Ok(()),
            Err(err) => Err(io::Error::from(err)),
        }
    };
    if !all {
        return container
            .pid()
            .map_or_else(|| Err(io::Error::other("no init pid recorded")), send);
    }
    let cgroup_path = container
        .spec()
        .map_err(|err| io::Error::other(err.to_string()))?
        .cgroup_path;
    let manager = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path,
        systemd_cgroup: false,
        container_name: container.id().to_owned(),
    })
    .map_err(|err| io::Error::other(err.to_string()))?;
    let _ = manager.freeze(FreezerState::Frozen);
    let pids = manager.get_all_pids();
    let sent = pids
        .map_err(|err| io::Error::other(err.to_string()))
        .and_then(|pids| pids.into_iter().try_for_each(send));
    let _ = manager.freeze(FreezerState::Thawed);
    sent
}

fn check_id(id: &str) -> Result<(), Error> {
    if spec::layout::is_valid_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidId { id: id.to_owned() })
    }
}
