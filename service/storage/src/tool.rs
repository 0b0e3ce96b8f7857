//! Running one of Debian's tools (blkid, sfdisk, mkfs.*, e2fsck) and saying what went wrong in
//! its own words.
//! Runs in: format and mountie.

use std::io::Write as _;
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};

/// What a tool did: its exit status and what it printed.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Its exit code (128 + N for signal N).
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt as _;
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    /// What it said, stderr first, on one line.
    pub fn said(&self) -> String {
        let both = format!("{} {}", self.stderr.trim(), self.stdout.trim());
        both.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Runs `program` with `args`, `input` on its stdin; any exit status is returned.
pub fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<Ran> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program} (is it in the image, on PATH?)"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("cannot write to {program}'s input"))?;
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for {program}"))?;
    Ok(Ran {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs `program` as [`run`] and fails unless it exits 0, with its words.
pub fn succeed(program: &str, args: &[&str], input: Option<&str>) -> Result<Ran> {
    let ran = run(program, args, input)?;
    if !ran.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            ran.status,
            ran.said()
        );
    }
    Ok(ran)
}
