//! The host programs `kiln` runs (apt-get, dpkg-deb, depmod, cargo): run to completion with no
//! input, their output kept, and a failure reported with the command and what it said.
//! Runs in: `kiln` on the build host.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `command` and returns its standard output. `what` names it in errors ("apt-get
/// download busybox"); a failure carries its exit status and standard error.
pub fn run(command: &mut Command, what: &str) -> Result<Vec<u8>> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        bail!("{what} failed ({}): {}", output.status, said.trim());
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_or_the_failure_with_what_was_said() {
        let out = run(Command::new("sh").args(["-c", "echo hi"]), "sh echo").expect("runs");
        assert_eq!(out, b"hi\n");
        let err = run(
            Command::new("sh").args(["-c", "echo broken >&2; exit 3"]),
            "sh fail",
        )
        .expect_err("fails");
        let err = err.to_string();
        assert!(
            err.starts_with("sh fail failed (exit status: 3): broken"),
            "{err}"
        );
        let err = run(&mut Command::new("/nonexistent/tool"), "the tool").expect_err("missing");
        assert!(err.to_string().contains("cannot run the tool"), "{err}");
    }
}
