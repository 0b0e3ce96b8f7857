//! `kiln`: the host tool. `kiln validate FILE.yml...` checks manifests without fetching
//! anything and reports every problem with its file, line and field.
//! Runs in: a user's shell on the build host.

use std::io::{self, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln::{defaults, Input};

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build and check LinuxKit-style image manifests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests (merged in order, as a build would) without fetching anything.
    /// Exits 1 if any problem is found.
    Validate {
        /// Print the problems as a JSON list of {file, line, path, message}.
        #[arg(long)]
        json: bool,
        /// Print the merged manifest with the build's defaults filled in.
        #[arg(long)]
        print: bool,
        /// Manifest files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE.yml")]
        files: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { json, print, files } => validate(&files, json, print),
    }
}

fn validate(files: &[String], json: bool, print: bool) -> ExitCode {
    let mut inputs = Vec::new();
    let mut unreadable = Vec::new();
    for file in files {
        match read(file) {
            Ok(input) => inputs.push(input),
            Err(err) => unreadable.push(kiln::Diagnostic {
                file: file.clone(),
                line: 0,
                path: ".".into(),
                message: format!("cannot read: {err}"),
            }),
        }
    }
    let (mut manifest, report) = kiln::load(&inputs);
    let mut diagnostics = unreadable;
    diagnostics.extend(report.diagnostics);
    if json {
        match serde_json::to_string_pretty(&diagnostics) {
            Ok(text) => println!("{text}"),
            Err(err) => eprintln!("kiln: cannot write the report: {err}"),
        }
    } else {
        for diagnostic in &diagnostics {
            eprintln!("{diagnostic}");
        }
    }
    if !diagnostics.is_empty() {
        if !json {
            let count = diagnostics.len();
            eprintln!(
                "kiln: {count} problem{} found",
                if count == 1 { "" } else { "s" }
            );
        }
        return ExitCode::FAILURE;
    }
    if print {
        defaults::fill(&mut manifest);
        match serde_yaml_ng::to_string(&manifest) {
            Ok(text) => print!("{text}"),
            Err(err) => {
                eprintln!("kiln: cannot print the manifest: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Reads a manifest file, or standard input for `-`.
fn read(file: &str) -> io::Result<Input> {
    if file == "-" {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text)?;
        return Ok(Input {
            name: "<stdin>".into(),
            text,
        });
    }
    Ok(Input {
        name: file.to_owned(),
        text: std::fs::read_to_string(file)?,
    })
}
