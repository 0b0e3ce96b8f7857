//! `service`: the command that runs on an image beside PID 1: the supervisor daemon
//! (`system-init`), the operator's commands that talk to it over its control socket (`list`,
//! `status`, `start`, `stop`, `restart`, `kill`, `logs`, `exec`, `shutdown`), the onboot and
//! onshutdown runners, bundle checks, the embedded OCI runtime, and its own shell completions
//! and manual pages.
//! Runs in: the image (as root), or on a build host for `service check`.
#![deny(unsafe_code)]

mod check;
mod child;
mod client;
mod console;
mod control;
mod daemon;
mod exec;
mod exec_client;
mod fdpass;
mod health;
mod launch;
mod lifecycle;
mod logfile;
mod notify;
mod oneshot;
mod order;
mod protocol;
mod record;
mod ring;
mod volumes;

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use runtime::cli::RuntimeOptions;
use runtime::container_init;
use runtime::helper::Helper;
use spec::Section;

use crate::client::Show;
use crate::protocol::Request;

#[derive(Debug, Parser)]
#[command(
    name = "service",
    version,
    about = "Kiln's service supervisor: runs an image's services and answers the operator's commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check bundles (config.json, runtime.json, root filesystem) without running anything.
    ///
    /// Prints one line per problem, naming the bundle and the field; exits 1 if any bundle is
    /// invalid. Every bundle is checked, whatever the others hold.
    Check {
        /// A /containers tree: check every bundle under onboot/, services/ and onshutdown/.
        #[arg(long)]
        path: Option<PathBuf>,
        /// Bundle directories to check.
        bundles: Vec<PathBuf>,
    },
    /// The supervisor daemon: volumes, onboot, then every service started in dependency order
    /// and kept running by its restart policy; on SIGTERM, onshutdown and every service stopped.
    ///
    /// Events (start, exit, restart, ready, stop) go to stdout and <log-dir>/service.log; each
    /// service's output to <log-dir>/NAME.out.log (stdout) and NAME.log (stderr), rotated by size.
    SystemInit(SystemInitArgs),
    /// Run the onboot containers (default /containers/onboot) in name order, each to completion.
    ///
    /// Logs go to /run/log/onboot/onboot.NNN-name.log (stderr) and .out.log (stdout), linked
    /// from /var/log/onboot, and to the console. A failed bundle is reported and the next runs;
    /// exits 1 if any failed. A missing directory means nothing to run.
    Onboot(OneshotArgs),
    /// Run the onshutdown containers (default /containers/onshutdown) like `onboot`; logs in
    /// /run/log/shutdown, linked from /var/log/shutdown.
    Onshutdown(OneshotArgs),
    /// Tell the supervisor this service is ready, like systemd-notify: sends `READY=1` (and any
    /// KEY=VALUE given) to $NOTIFY_SOCKET, which the supervisor sets for services that declare
    /// `ready: {notify: true}` in runtime.json.
    Notify {
        /// Send READY=1.
        #[arg(long)]
        ready: bool,
        /// More sd_notify assignments to send.
        #[arg(value_name = "KEY=VALUE")]
        assignments: Vec<String>,
    },
    /// Every service: name, state, pid, uptime, restarts, last exit.
    List(ClientArgs),
    /// One service: state and since when, pid, uptime, restarts, last exit, its last lines.
    Status {
        /// The service (its name in the manifest).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a service, whatever it is doing (stopped, failed, backing off); waits until it runs.
    Start {
        /// The service (its name in the manifest).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a service (its stop signal, then SIGKILL after its stop timeout); it stays stopped.
    Stop {
        /// The service (its name in the manifest).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a running service and start it again (or start one that is not running).
    Restart {
        /// The service (its name in the manifest).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send a signal to a service's init (`HUP`, `SIGUSR1`, `9`); an exit it causes is handled
    /// by the service's restart policy.
    Kill {
        /// The service (its name in the manifest).
        name: String,
        /// The signal: a name with or without SIG (`HUP`, `SIGUSR1`) or a number (`9`).
        signal: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A service's recent output (kept in memory, across restarts), then with -f what follows.
    Logs {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long, value_name = "N")]
        lines: Option<usize>,
        /// The service (its name in the manifest).
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a command in a running service's container (its namespaces, cgroup, environment,
    /// user and capabilities), started by the supervisor with this command's stdin, stdout and
    /// stderr; signals this command gets (Ctrl-C) are passed on; exits with the command's
    /// status (128+N when signal N ended it). Needs only the control socket.
    Exec {
        /// Give the command a new pseudo-terminal, relayed to this one (an interactive shell:
        /// `service exec -t web -- sh`).
        #[arg(short, long)]
        tty: bool,
        /// The running service whose container the command joins.
        name: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run onshutdown, stop every service and end the supervisor; waits until it is done.
    Shutdown(ClientArgs),
    /// The embedded OCI runtime, with runc's command line.
    #[command(version)]
    Runtime(runtime::cli::RuntimeArgs),
    /// Print a shell's completion script for service, e.g. `service completions bash >
    /// /usr/share/bash-completion/completions/service`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write service's manual pages (service.1, service-list.1, ...) into a directory.
    Man {
        /// The directory the pages are written to (made if missing).
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// How the operator's commands reach the supervisor.
#[derive(Debug, Args)]
struct ClientArgs {
    /// The supervisor's control socket.
    #[arg(long, default_value = protocol::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print the supervisor's answers as JSON lines.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn run(&self, request: Request, show: Show) -> ExitCode {
        client::run(&self.socket, &request, show, self.json)
    }
}

#[derive(Debug, Args)]
struct OneshotArgs {
    /// The directory of bundles.
    #[arg(long)]
    path: Option<PathBuf>,
    /// Where the log files are written.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The symlink made to the log directory.
    #[arg(long)]
    log_link: Option<PathBuf>,
    /// Print the steps each bundle would take (runtime.json actions, create, start), and do nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    runtime: RuntimeOptions,
}

#[derive(Debug, Args)]
struct SystemInitArgs {
    /// The /containers tree: volumes/, onboot/, services/, onshutdown/.
    #[arg(long, default_value = spec::layout::CONTAINERS_DIR)]
    path: PathBuf,
    /// Where service logs and service.log are written.
    #[arg(long, default_value = "/var/log")]
    log_dir: PathBuf,
    /// Where the onboot and onshutdown logs are written (in onboot/ and shutdown/).
    #[arg(long, default_value = "/run/log")]
    oneshot_log_dir: PathBuf,
    /// Rotate a service log once it would pass this many bytes.
    #[arg(long, default_value_t = logfile::DEFAULT_MAX_SIZE)]
    log_max_size: u64,
    /// Rotated logs kept (NAME.log.0 newest).
    #[arg(long, default_value_t = logfile::DEFAULT_KEEP)]
    log_keep: usize,
    /// Where services with `ready.notify` get their notify sockets (NAME/notify.sock).
    #[arg(long, default_value = "/run/kiln/notify")]
    notify_dir: PathBuf,
    /// The control socket the operator's commands talk to.
    #[arg(long, default_value = protocol::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Where each running service's record is kept, for a supervisor started after this one
    /// to adopt it.
    #[arg(long, default_value = "/run/kiln/services")]
    state_dir: PathBuf,
    /// How much of the event log goes to the console (stdout): all, errors (a service's first
    /// start and failure, one given up, the shutdown; not a crash loop's every round) or none.
    /// By default `kiln.console=` on the kernel command line, else errors.
    #[arg(long, value_enum)]
    console: Option<console::Level>,
    #[command(flatten)]
    runtime: RuntimeOptions,
}

impl OneshotArgs {
    fn run(self, section: Section) -> ExitCode {
        let defaults = oneshot::Paths::default_for(section);
        let paths = oneshot::Paths {
            bundles: self.path.unwrap_or(defaults.bundles),
            log_dir: self.log_dir.unwrap_or(defaults.log_dir),
            log_link: self.log_link.unwrap_or(defaults.log_link),
        };
        if self.dry_run {
            return oneshot::print_plans(section, &paths);
        }
        let helper = Helper::new(self.runtime.runtime());
        event_loop(
            section.dir_name(),
            oneshot::run_section(section, &paths, &helper),
        )
    }
}

/// Runs `future` on a single-threaded tokio runtime (the supervisor never has other threads:
/// containers are created by a re-executed helper, and netlink and timers need no thread).
fn event_loop(command: &str, future: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(tokio) => tokio.block_on(future),
        Err(err) => {
            eprintln!("service {command}: start the event loop: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The console level `kiln.console=` sets on the kernel command line; a bad value is said.
fn console_from_cmdline() -> console::Level {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (level, problem) = console::Level::from_cmdline(&cmdline);
    if let Some(problem) = problem {
        let _ = writeln!(std::io::stdout(), "service: {problem}");
    }
    level
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let called = args.next().map(PathBuf::from);
    if called.as_deref().and_then(|path| path.file_name()) == Some(container_init::NAME.as_ref()) {
        let code = container_init::main(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    let cli = Cli::parse();
    runtime::diagnostics::install();
    match cli.command {
        Command::Check { path, bundles } => check::run(path.as_deref(), &bundles),
        Command::SystemInit(args) => event_loop(
            "system-init",
            daemon::run(
                daemon::Config {
                    containers: args.path,
                    log_dir: args.log_dir,
                    oneshot_log_dir: args.oneshot_log_dir,
                    log_max_size: args.log_max_size,
                    log_keep: args.log_keep,
                    notify_dir: args.notify_dir,
                    socket: args.socket,
                    state_dir: args.state_dir,
                    console: args.console.unwrap_or_else(console_from_cmdline),
                },
                Helper::new(args.runtime.runtime()),
            ),
        ),
        Command::Onboot(args) => args.run(Section::Onboot),
        Command::Onshutdown(args) => args.run(Section::Onshutdown),
        Command::Notify { ready, assignments } => notify::send(ready, &assignments),
        Command::List(client) => client.run(Request::List, Show::List),
        Command::Status { name, client } => client.run(Request::Status { name }, Show::Status),
        Command::Start { name, client } => client.run(Request::Start { name }, Show::State),
        Command::Stop { name, client } => client.run(Request::Stop { name }, Show::State),
        Command::Restart { name, client } => client.run(Request::Restart { name }, Show::State),
        Command::Kill {
            name,
            signal,
            client,
        } => client.run(Request::Kill { name, signal }, Show::State),
        Command::Logs {
            follow,
            lines,
            name,
            client,
        } => client.run(
            Request::Logs {
                name,
                lines,
                follow,
            },
            Show::Logs,
        ),
        Command::Exec {
            tty,
            name,
            command,
            client,
        } => exec_client::run(&client.socket, &name, command, tty, client.json),
        Command::Shutdown(client) => client.run(Request::Shutdown, Show::Done),
        Command::Runtime(args) => runtime::cli::run(args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "service", &mut script);
            // A closed stdout ends the output quietly.
            let _ = std::io::stdout().write_all(&script);
            ExitCode::SUCCESS
        }
        Command::Man { dir } => man(&dir),
    }
}

fn man(dir: &std::path::Path) -> ExitCode {
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("service man: {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_argument_says_what_it_is() {
        Cli::command().debug_assert();
        assert_eq!(clidoc::undocumented(&Cli::command()), Vec::<String>::new());
    }
}
