//! `service runtime ...`: the runc-compatible command line of the embedded runtime, so that
//! scripts and tests written for runc work unchanged.
//! Runs in: the `service` binary, single-threaded (the supervisor re-executes itself with
//! `runtime create` to create containers).
//! Mirrors runc's commands and flags (create, start, state, kill, delete, run, exec, list).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use libcontainer::oci_spec::runtime::Mount;

use crate::container::{CreateOptions, Runtime, Stdio, DEFAULT_CGROUP_PARENT, DEFAULT_ROOT};
use crate::devbind;
use crate::diagnostics;
use crate::error::{self, Error};
use crate::exec::ExecOptions;
use crate::hooks;
use crate::state::State;

/// Where the runtime keeps state and puts containers; shared by every command that runs them.
#[derive(Debug, Clone, Args)]
pub struct RuntimeOptions {
    /// Directory for container state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// Cgroup under which a container without linux.cgroupsPath gets <parent>/<id>.
    #[arg(long, global = true, default_value = DEFAULT_CGROUP_PARENT)]
    cgroup_parent: String,
}

impl RuntimeOptions {
    /// The runtime these options describe.
    pub fn runtime(&self) -> Runtime {
        Runtime::new(&self.root).with_cgroup_parent(&self.cgroup_parent)
    }
}

/// `service runtime`: global options and the command.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    #[command(flatten)]
    options: RuntimeOptions,
    /// Write error messages to this file (appended) instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Accepted for runc compatibility; messages are plain text.
    #[arg(long, global = true, hide = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create {
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Start a created container.
    Start {
        /// The container's id.
        id: String,
    },
    /// Print a container's OCI state as JSON.
    State {
        /// The container's id.
        id: String,
    },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes.
    Kill {
        /// Signal every process in the container's cgroup.
        #[arg(short, long)]
        all: bool,
        /// The container's id.
        id: String,
        /// A name (TERM, SIGTERM) or number.
        signal: Option<String>,
    },
    /// Delete a stopped container (any container with --force).
    Delete {
        /// Delete a running container too (SIGKILL to every process in its cgroup first); a
        /// missing one is no error.
        #[arg(short, long)]
        force: bool,
        /// The container's id.
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it, delete it and exit with its
    /// exit code (128+N when killed by signal N).
    Run {
        /// Return once the container has started.
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Run a command in a running container's namespaces and cgroup, with the container's
    /// environment, user and capabilities; waits for it and exits with its exit code (128+N
    /// when signal N ended it), passing on the signals it gets. With --log, this runtime's own
    /// messages go to that file and the command keeps this process's stderr.
    Exec {
        /// Give the command a new pseudo-terminal (its controlling terminal and stdio); its
        /// master is sent to --console-socket.
        #[arg(short, long)]
        tty: bool,
        /// A unix socket to which the pseudo-terminal's master is sent (SCM_RIGHTS), as runc
        /// sends it.
        #[arg(long, value_name = "PATH")]
        console_socket: Option<PathBuf>,
        /// The container's id.
        id: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// The createContainer hook that binds a bundle's `/dev` (see the devbind module): run by a
    /// container's init before pivot_root, never by hand.
    #[command(name = devbind::COMMAND, hide = true)]
    DevBind {
        #[arg(long)]
        rootfs: PathBuf,
        #[arg(long)]
        source: PathBuf,
        /// The bind's options, as a JSON list.
        #[arg(long)]
        options: String,
        /// The mounts to make below /dev afterwards, as a JSON list of OCI mounts.
        #[arg(long)]
        then: String,
    },
    /// A prestart, createRuntime or createContainer hook of a bundle, run with the state the
    /// spec gives it (see the hooks module): run by the runtime, never by hand.
    #[command(name = hooks::COMMAND, hide = true)]
    Hook {
        /// The bundle the state names.
        #[arg(long)]
        bundle: PathBuf,
        /// The hook's path, then its argv (argv[0] first).
        #[arg(last = true, required = true)]
        program: Vec<OsString>,
    },
    /// List containers.
    List {
        /// `table` (runc's columns) or `json` (a list of OCI states).
        #[arg(short, long, value_enum, default_value = "table")]
        format: Format,
        /// Print ids only.
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The bundle directory (config.json and the root filesystem).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container init's pid here.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a root on initramfs).
    #[arg(long)]
    no_pivot: bool,
    /// A unix datagram socket for sd_notify messages (READY=1): its directory is bound into the
    /// container at /run/notify and NOTIFY_SOCKET is set to the socket there.
    #[arg(long, value_name = "PATH")]
    notify_socket: Option<PathBuf>,
    /// Set KEY=VALUE in the process's environment, replacing the config's value (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_assignment)]
    env: Vec<String>,
    /// Run the process under Kiln's container init, as `docker run --init`: this binary bound
    /// read-only at /sbin/kiln-init runs as the container's PID 1, passes signals on to the
    /// process, reaps zombies and exits with the process's status.
    #[arg(long)]
    init: bool,
    /// For a process with `terminal: true`: a unix socket to which the new pseudo-terminal's
    /// master is sent (SCM_RIGHTS), as runc sends it.
    #[arg(long, value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// The container's id: unique on this runtime root.
    id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Runs one `service runtime` command; the exit code follows runc.
pub fn run(args: RuntimeArgs) -> ExitCode {
    let runtime = args.options.runtime();
    match dispatch(&runtime, args.command, args.log.as_deref()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report(args.log.as_deref(), &err);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(runtime: &Runtime, command: Command, log: Option<&Path>) -> Result<u8, Error> {
    match command {
        Command::Create { create } => {
            let (id, bundle, options) = create_options(create, true)?;
            runtime.create(&id, &bundle, options)?;
        }
        Command::Start { id } => runtime.start(&id)?,
        Command::State { id } => print_json(&runtime.state(&id)?)?,
        Command::Kill { all, id, signal } => {
            let name = signal.as_deref().unwrap_or("SIGTERM");
            let signal =
                spec::signal::parse(name).ok_or_else(|| Error::UnknownSignal(name.to_owned()))?;
            runtime.kill(&id, signal, all)?;
        }
        Command::Delete { force, id } => runtime.delete(&id, force)?,
        Command::Run { detach, create } => {
            let (id, bundle, options) = create_options(create, false)?;
            if detach {
                runtime.create_and_start(&id, &bundle, options)?;
            } else {
                return Ok(clamp(runtime.run(&id, &bundle, options)?));
            }
        }
        Command::Exec {
            tty,
            console_socket,
            id,
            command,
        } => {
            let mut options = ExecOptions {
                args: command,
                tty,
                console_socket,
                ..ExecOptions::default()
            };
            if let Some(log) = log {
                // The command's stdio stays this process's; this process's messages (and
                // libcontainer's, in the children it clones) go to the log from now on.
                let copy = |fd: BorrowedFd<'_>, name: &str| {
                    fd.try_clone_to_owned()
                        .map(Some)
                        .map_err(|err| Error::io("duplicate", name, err))
                };
                options.stdio = Stdio {
                    stdin: copy(io::stdin().as_fd(), "stdin")?,
                    stdout: copy(io::stdout().as_fd(), "stdout")?,
                    stderr: copy(io::stderr().as_fd(), "stderr")?,
                };
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .map_err(|err| Error::io("open", log, err))?;
                nix::unistd::dup2(file.as_raw_fd(), libc::STDERR_FILENO)
                    .map_err(|err| Error::io("redirect stderr to", log, err.into()))?;
                diagnostics::write_to(OwnedFd::from(file));
            }
            return Ok(clamp(runtime.exec(&id, options)?));
        }
        Command::List { format, quiet } => list(runtime, format, quiet)?,
        Command::Hook { bundle, program } => return Err(hooks::run(&bundle, &program)),
        Command::DevBind {
            rootfs,
            source,
            options,
            then,
        } => {
            let options: Vec<String> = serde_json::from_str(&options)
                .map_err(|err| Error::io("read the options of", &source, io::Error::other(err)))?;
            let then: Vec<Mount> = serde_json::from_str(&then).map_err(|err| {
                Error::io("read the mounts after", &source, io::Error::other(err))
            })?;
            devbind::bind(&rootfs, &source, &options, &then)?;
        }
    }
    Ok(0)
}

fn create_options(
    args: CreateArgs,
    as_sibling: bool,
) -> Result<(String, PathBuf, CreateOptions), Error> {
    let options = CreateOptions {
        pid_file: args.pid_file,
        no_pivot: args.no_pivot,
        notify_socket: args.notify_socket,
        env: args.env,
        init: args.init,
        console_socket: args.console_socket,
        as_sibling,
        ..CreateOptions::default()
    };
    Ok((args.id, args.bundle, options))
}

/// Exit codes outside 0..=255 cannot occur for a process; clamp defensively.
fn clamp(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| Error::io("print", "stdout", io::Error::other(err)))?;
    quiet_if_closed(writeln!(io::stdout(), "{text}"))
}

/// A write to stdout's result: a reader that went away (`| head`) ends the output quietly.
fn quiet_if_closed(written: io::Result<()>) -> Result<(), Error> {
    match written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(|err| Error::io("print", "stdout", err)),
    }
}

fn list(runtime: &Runtime, format: Format, quiet: bool) -> Result<(), Error> {
    let states = runtime.list()?;
    let text = if quiet {
        states
            .iter()
            .map(|state| format!("{}\n", state.id))
            .collect()
    } else if format == Format::Json {
        return print_json(&states);
    } else {
        table(&states)
    };
    quiet_if_closed(io::stdout().lock().write_all(text.as_bytes()))
}

/// runc's list table: ID, PID, STATUS, BUNDLE, CREATED, OWNER, in aligned columns.
fn table(states: &[State]) -> String {
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned);
    let rows: Vec<[String; 6]> = std::iter::once(header)
        .chain(states.iter().map(|state| {
            [
                state.id.clone(),
                state.pid.to_string(),
                state.status.to_string(),
                state.bundle.display().to_string(),
                state.created.clone().unwrap_or_default(),
                state.owner.clone(),
            ]
        }))
        .collect();
    let mut widths = [0usize; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(cells.join("   ").trim_end());
        text.push('\n');
    }
    text
}

/// Prints an error with its causes on one line, to the log file when given, else to stderr.
fn report(log: Option<&Path>, err: &Error) {
    let message = error::with_causes(format!("service runtime: {err}"), err);
    if let Some(path) = log {
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
            if writeln!(file, "{message}").is_ok() {
                return;
            }
        }
    }
    let _ = writeln!(io::stderr(), "{message}");
}

/// `--env KEY=VALUE`: a name that is not empty and has no `=`, then the value.
fn parse_assignment(value: &str) -> Result<String, String> {
    match value.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(value.to_owned()),
        _ => Err(format!("`{value}` is not KEY=VALUE")),
    }
}
