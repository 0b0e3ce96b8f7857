//! What the tests of `kiln` and `service` check about their documentation: every command and
//! argument has a help text, a bash completion script parses, a manual page renders under
//! man(1), and the README's commands (in [`readme`]) are found for the tests that run them.
//! Runs in: the tests, on the build host, as any user.

pub mod readme;

use std::path::Path;
use std::process::Command;

/// Every visible command and argument of `cmd` and below without a help text, each by its
/// path (`kiln cache rm images`).
pub fn undocumented(cmd: &clap::Command) -> Vec<String> {
    let mut missing = Vec::new();
    walk(cmd, "", &mut missing);
    missing
}

fn walk(cmd: &clap::Command, parent: &str, missing: &mut Vec<String>) {
    let path = format!("{parent}{}", cmd.get_name());
    if cmd.get_about().is_none() {
        missing.push(path.clone());
    }
    missing.extend(
        cmd.get_arguments()
            .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
            .filter(|arg| arg.get_help().is_none())
            .map(|arg| format!("{path} {}", arg.get_id())),
    );
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        walk(sub, &format!("{path} "), missing);
    }
}

/// Whether `bash -n` accepts the script at `path`; bash's complaint if not.
pub fn bash_parses(path: &Path) -> Result<(), String> {
    let checked = Command::new("bash")
        .arg("-n")
        .arg(path)
        .output()
        .map_err(|err| format!("run bash: {err}"))?;
    if checked.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&checked.stderr).into_owned())
    }
}

/// The manual page at `path` as `man -l` shows it, 100 columns wide, with the overstriking
/// that emboldens text (`N\x08N`) taken out; man's complaint if it fails.
pub fn rendered(path: &Path) -> Result<String, String> {
    let out = Command::new("man")
        .arg("-l")
        .arg(path)
        .env("MANWIDTH", "100")
        .output()
        .map_err(|err| format!("run man: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut shown = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            shown.pop();
        } else {
            shown.push(c);
        }
    }
    Ok(shown)
}
