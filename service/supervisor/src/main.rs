//! `service`: the command that runs on an image beside PID 1: it checks bundles, runs the onboot
//! and onshutdown containers, and embeds the OCI runtime; it grows into the supervisor daemon and
//! the control-socket client.
//! Runs in: the image (as root), or on a build host for `service check`.
#![deny(unsafe_code)]

mod check;
mod child;
mod daemon;
mod launch;
mod lifecycle;
mod logfile;
mod notify;
mod oneshot;
mod order;
mod ring;
mod volumes;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use runtime::cli::RuntimeOptions;
use runtime::helper::Helper;
use spec::Section;

#[derive(Debug, Parser)]
#[command(name = "service", version, about = "Kiln's service supervisor")]
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
    /// The embedded OCI runtime, with runc's command line.
    Runtime(runtime::cli::RuntimeArgs),
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

fn main() -> ExitCode {
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
                },
                Helper::new(args.runtime.runtime()),
            ),
        ),
        Command::Onboot(args) => args.run(Section::Onboot),
        Command::Onshutdown(args) => args.run(Section::Onshutdown),
        Command::Notify { ready, assignments } => notify::send(ready, &assignments),
        Command::Runtime(args) => runtime::cli::run(args),
    }
}
