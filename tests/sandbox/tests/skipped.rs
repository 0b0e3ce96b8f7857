//! A non-root run outside CI says how many root tests it did not run, once the test binary
//! ends. This binary runs itself again, as nobody when it is root, without `CI`, on its one root
//! test, and reads what that run says.
//! Runs as root in CI (the re-run drops to nobody with setpriv), or as any user.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::process::Command;

/// The root test the re-run does not run: a body that passes wherever it does run.
#[test]
fn an_empty_body_passes_root() {
    sandbox::test(|| Ok(()));
}

#[test]
fn a_run_that_is_not_root_says_how_many_root_tests_did_not_run() {
    let me = std::env::current_exe().unwrap();
    let mut rerun = if nix::unistd::geteuid().is_root() {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        setpriv.arg(&me);
        setpriv
    } else {
        Command::new(&me)
    };
    let output = rerun
        .args(["--exact", "an_empty_body_passes_root", "--test-threads=1"])
        .env_remove("CI")
        .output()
        .expect("run the test binary again (setpriv is in util-linux)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        stderr.contains(&sandbox::skipped_line(1)),
        "the count is missing from:\n{stderr}"
    );
}
