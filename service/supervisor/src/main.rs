//! `service`: the command that runs on an image beside PID 1. Today it checks bundles; it grows
//! into the supervisor daemon, the embedded OCI runtime and the control-socket client.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { path, bundles } => check::run(path.as_deref(), &bundles),
    }
}
