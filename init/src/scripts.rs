//! The scripts of /etc/init.d (at boot) and /etc/shutdown.d (at shutdown): every regular file,
//! in name order, run to completion with the console as its output; exit codes are logged and
//! never stop the next script.
//! Runs in: PID 1, synchronously, before the supervisor starts (init.d) or before it is
//! stopped (shutdown.d). A script's orphans are reaped once the main loop runs.
//! Mirrors LinuxKit rc.init's runInit: sorted entries, `stat` following symlinks, non-regular
//! files skipped.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use crate::{say, spawn};

/// Runs every script in `dir`; a missing directory has none.
pub fn run_all(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut scripts: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| fs::metadata(path).is_ok_and(|meta| meta.is_file()))
        .collect();
    scripts.sort();
    for script in scripts {
        match spawn::command(&script).status() {
            Ok(status) if status.success() => {}
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => say!("{}: exited with status {code}", script.display()),
                (None, Some(signal)) => say!("{}: killed by signal {signal}", script.display()),
                _ => say!("{}: {status}", script.display()),
            },
            Err(err) => say!("{}: run: {err}", script.display()),
        }
    }
}
