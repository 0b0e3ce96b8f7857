//! `metadata`: LinuxKit's pkg/metadata. `metadata [-v] [PROVIDER...]` asks the providers
//! (all, in LinuxKit's order, when none are named) and writes what the first to answer has
//! under /run/config: `provider`, `hostname` and the cloud's other facts, `ssh/authorized_keys`,
//! `userdata` and, when that is JSON, the files and directories it describes; then sets the
//! hostname. It says in one line which provider answered, or that none did, and exits 0
//! either way: a machine without configuration still boots. A command line naming an unknown
//! provider exits 2.
//! Runs in: pkg/metadata's onboot container.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use metadata::config::{Config, CONFIG_DIR};
use metadata::providers::{self, Answer, Provider, DEADLINE};
use metadata::userdata;
use storage::flags::Flag;
use storage::say;

const FLAGS: [Flag; 1] = [Flag {
    name: "v",
    value: None,
    default: "false",
    help: "say each provider asked and why it did not answer",
}];

const SYNOPSIS: &str =
    "metadata [-v] [aws|gcp|hetzner|openstack|vultr|digitalocean|metaldata|cdrom|file=PATH]...";

fn main() -> ExitCode {
    storage::main(
        SYNOPSIS,
        &FLAGS,
        |parsed| {
            let providers = providers::named(&parsed.args, Path::new("/sys"), Path::new("/dev"))?;
            Ok((providers, parsed.set("v")))
        },
        |(providers, verbose)| run(&providers, verbose, Path::new(CONFIG_DIR)),
    )
}

fn run(providers: &[Provider], verbose: bool, root: &Path) -> Result<()> {
    let config = Config::at(root)?;
    let names: Vec<String> = providers.iter().map(Provider::name).collect();
    if verbose {
        say!("asking {}", names.join(", "));
    }
    let asked = providers::ask(providers, DEADLINE);
    if verbose {
        for (index, why) in &asked.refusals {
            say!("{}: {why}", names[*index]);
        }
    }
    let Some((index, answer)) = asked.answer else {
        let asked = if providers.is_empty() {
            "no cidata volume or CD drive, no provider named".to_owned()
        } else {
            names.join(", ")
        };
        say!("no provider answered ({asked}): going on without");
        return Ok(());
    };
    let provider = &providers[index];
    let name = &names[index];
    config.write("provider", name.as_bytes(), 0o644)?;
    let data = match (provider, answer) {
        (Provider::Cloud(server), Answer::Cloud) => {
            let mut log = |line: String| say!("{name}: {line}");
            match server.extract(&config, &mut log) {
                Ok(data) => data,
                Err(err) => {
                    say!("{name}: {err:#}");
                    None
                }
            }
        }
        (_, Answer::Data(data)) => Some(data),
        (_, Answer::Cloud) => None,
    };
    let said = match &data {
        None => "no user data".to_owned(),
        Some(data) => {
            let unfolded = userdata::unfold(&config, data)?;
            for problem in &unfolded.problems {
                say!("{problem}");
            }
            if unfolded.json {
                format!(
                    "user data ({} bytes of JSON: {} files and directories written)",
                    data.len(),
                    unfolded.written.len()
                )
            } else {
                format!("user data ({} bytes, kept as it is)", data.len())
            }
        }
    };
    say!("{name} answered: {said}, in {}", root.display());
    if let Some(hostname) = config.hostname() {
        match nix::unistd::sethostname(&hostname) {
            Ok(()) => say!("hostname set to {hostname}"),
            Err(err) => say!("cannot set the hostname to {hostname}: {err}"),
        }
    }
    Ok(())
}
