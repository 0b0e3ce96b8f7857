//! `service`: the command that runs on an image beside PID 1: it checks bundles and embeds the
//! OCI runtime; it grows into the supervisor daemon and the control-socket client.
//! Runs in: the image (as root), or on a build host for `service check`.
#![forbid(unsafe_code)]

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// The embedded OCI runtime, with runc's command line.
    Runtime(runtime::cli::RuntimeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { path, bundles } => check::run(path.as_deref(), &bundles),
        Command::Runtime(args) => runtime::cli::run(args),
    }
}
