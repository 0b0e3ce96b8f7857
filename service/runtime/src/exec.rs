//! `exec`: a process run in a running container's namespaces and cgroup, with the container's
//! own process settings (environment, user, capabilities, working directory, rlimits, no new
//! privileges) and other args, as `runc exec` runs it.
//! Runs in: a single-threaded process (see the crate header); libcontainer's tenant builder
//! clones children that run Rust code before exec.
//!
//! The spec the container was created from (the prepared copy: cgroups path filled in,
//! `--init` and `--notify-socket` applied) is kept in its state directory at create. The tenant
//! builder reads the spec from the directory the state names as the bundle, and the state must
//! name the bundle the caller gave; so each exec gets a private root under `.exec/` holding a
//! copy of the state that names a copy of the kept spec, and the process's own `process.json`.
//! Nothing of it outlives the call.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;

use crate::bundle;
use crate::container::{Runtime, Stdio};
use crate::error::Error;
use crate::executor::ResetSignalsExecutor;
use crate::seccomp;
use crate::wait;

/// The file in a container's state directory that keeps the spec it was created from.
pub(crate) const CREATED_SPEC: &str = "kiln-config.json";

/// The directory under the state root where each exec gets a private root while it starts.
const EXEC_DIR: &str = ".exec";

/// What to run and with what stdio.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// The program and its arguments (the container's `process.args` are replaced).
    pub args: Vec<String>,
    /// Give the process a new pseudo-terminal as its controlling terminal and stdio; the master
    /// is sent to `console_socket` (SCM_RIGHTS), as runc sends it.
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    /// The process's stdio (unused with a terminal).
    pub stdio: Stdio,
}

impl Runtime {
    /// Runs a process in running container `id` and waits for it, passing on the signals this
    /// process gets; returns its exit code (128+N when signal N ended it).
    pub fn exec(&self, id: &str, options: ExecOptions) -> Result<i32, Error> {
        let lock = self.lock()?;
        let container = self.load(id)?;
        if container.status() != ContainerStatus::Running {
            return Err(self.wrong_state(id, "exec in", &container));
        }
        if options.args.is_empty() {
            return Err(Error::Unsupported("exec needs a command to run"));
        }
        match (options.tty, &options.console_socket) {
            (true, None) => {
                return Err(Error::Unsupported(
                    "--tty needs --console-socket: the pseudo-terminal's master is sent there",
                ))
            }
            (false, Some(_)) => {
                return Err(Error::Unsupported(
                    "--console-socket needs --tty: without one there is no terminal to send",
                ))
            }
            _ => {}
        }
        let dir = self.container_dir(id);
        let mut spec = match Spec::load(dir.join(CREATED_SPEC)) {
            Ok(spec) => spec,
            // Created by an earlier version that kept no copy: prepared again from the bundle.
            Err(_) => bundle::prepare(container.bundle(), id, self.cgroup_parent())?,
        };
        let seccomp = seccomp::defer(&mut spec);
        let private = PrivateRoot::new(&self.root().join(EXEC_DIR))?;
        let process = private.write(id, &dir, spec, &options)?;

        let exec_error = |err: LibcontainerError| {
            // An exec that fails in the new process (a missing program) comes wrapped in
            // libcontainer's words; the cause alone is what the operator needs.
            let text = err.to_string();
            match text.split_once("error in executing process : ") {
                Some((_, cause)) => {
                    Error::runtime("exec in", id, io::Error::other(cause.to_owned()))
                }
                None => Error::runtime("exec in", id, err),
            }
        };
        let builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(&private.dir)
            .map_err(exec_error)?
            .with_executor(ResetSignalsExecutor::new(seccomp))
            .with_console_socket(options.console_socket);
        let forwarding = wait::Forwarding::block()
            .map_err(|err| Error::runtime("block signals for exec in", id, err))?;
        let pid = options
            .stdio
            .apply(builder)
            .as_tenant()
            .with_process(Some(process))
            // libcontainer takes a console socket only from a detached caller; this one still
            // waits for the process, which is its child either way.
            .with_detach(options.tty)
            .as_sibling(false)
            .build()
            .map_err(exec_error)?;
        drop(private);
        drop(lock);
        forwarding
            .wait(pid)
            .map_err(|err| Error::runtime("wait for exec in", id, err))
    }
}

/// One exec's private state root, removed when dropped.
struct PrivateRoot {
    dir: PathBuf,
}

impl PrivateRoot {
    fn new(parent: &Path) -> Result<Self, Error> {
        let dir = parent.join(std::process::id().to_string());
        // A crashed exec with this pid may have left one behind.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|err| Error::io("create", &dir, err))?;
        Ok(Self { dir })
    }

    /// Writes the state (from container directory `container`, naming a copy of `spec` as its
    /// bundle) and the process to run; returns the process file's path.
    fn write(
        &self,
        id: &str,
        container: &Path,
        mut spec: Spec,
        options: &ExecOptions,
    ) -> Result<PathBuf, Error> {
        let bundle = self.dir.join("bundle");
        let state_dir = self.dir.join(id);
        for dir in [&bundle, &state_dir] {
            fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
        }
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(options.args.clone()));
        process.set_terminal(Some(options.tty));
        spec.set_process(Some(process.clone()));
        let config = bundle.join(spec::config::FILE_NAME);
        spec.save(&config)
            .map_err(|err| Error::io("write", &config, io::Error::other(err)))?;

        let source = container.join("state.json");
        let text = fs::read(&source).map_err(|err| Error::io("read", &source, err))?;
        let mut state: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|err| Error::io("read", &source, io::Error::other(err)))?;
        state["bundle"] = serde_json::Value::String(bundle.display().to_string());
        let copy = state_dir.join("state.json");
        let text = serde_json::to_vec(&state)
            .map_err(|err| Error::io("write", &copy, io::Error::other(err)))?;
        fs::write(&copy, text).map_err(|err| Error::io("write", &copy, err))?;

        let path = self.dir.join("process.json");
        let text = serde_json::to_vec(&process)
            .map_err(|err| Error::io("write", &path, io::Error::other(err)))?;
        fs::write(&path, text).map_err(|err| Error::io("write", &path, err))?;
        Ok(path)
    }
}

impl Drop for PrivateRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        // Gone once no other exec is starting; another one's root keeps it.
        if let Some(parent) = self.dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}
