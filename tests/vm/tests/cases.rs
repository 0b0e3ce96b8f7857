//! The VM suite: images built from manifests the way users build them (`kiln build` with the
//! packages of pkg/, examples from yml/ and cases from tests/vm/cases/), booted with `kiln
//! run`. In each image the probe (pkg/probe) checks from inside what should hold, prints
//! `PROBE PASS`/`PROBE FAIL` lines and ends the VM: a poweroff through init when all passed,
//! so shutdown runs as for a user, else a failure code. The test asserts the probe's verdict,
//! the check count, `kiln run`'s exit status 0 and what the console must show besides.
//! Runs on the host as root or any user that can run qemu and write the image cache; cases run
//! in parallel (cargo's test threads). Packages are built into the user's cache on first use.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::process::Command;

use vm::{release_binary, workspace, Outcome, Run};

/// Seconds a case's VM may run.
const TIMEOUT: &str = "240";

/// Builds `manifests` (paths from the workspace root) as image `name`, boots it with `kiln
/// run`, and asserts the probe ran `checks` checks, all passed, and the VM powered off.
fn boot(name: &str, manifests: &[&str], checks: usize) -> Run {
    let root = workspace();
    let out = tempfile::tempdir().expect("output directory");
    let kiln = release_binary("kiln");
    let build = Command::new(&kiln)
        .current_dir(&root)
        .args(["build", "-o"])
        .arg(out.path())
        .args(["--name", name])
        .args(manifests)
        .output()
        .expect("run kiln build");
    assert!(
        build.status.success(),
        "kiln build {manifests:?}:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(&kiln)
        .args(["run", "--timeout", TIMEOUT])
        .arg(out.path().join(name))
        .output()
        .expect("run kiln run");
    let console = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let failed: Vec<&str> = console
        .lines()
        .filter(|line| line.contains("PROBE FAIL") || line.contains("PROBE ERROR"))
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {failed:#?}\n{console}\n{stderr}"
    );
    assert!(
        console.contains(&format!("PROBE DONE passed={checks} failed=0")),
        "{name}: the probe did not pass its {checks} checks:\n{console}\n{stderr}"
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{name}: the VM did not power off cleanly:\n{console}\n{stderr}"
    );
    Run {
        outcome: Outcome::PoweredOff,
        console,
    }
}

#[test]
fn minimal_example_applies_sysctl_runs_getty_and_listens_nowhere() {
    let console = boot(
        "minimal",
        &["yml/minimal.yml", "tests/vm/cases/minimal.yml"],
        4,
    );
    console.assert_printed("onboot 000-sysctl: exited with status 0");
    console.assert_printed("service: getty: running");
    console.assert_printed("init: poweroff");
}

#[test]
fn onboot_runs_in_order_past_a_failure_and_onshutdown_runs_at_poweroff() {
    let console = boot(
        "onboot",
        &["tests/vm/cases/base.yml", "tests/vm/cases/onboot.yml"],
        2,
    );
    console.assert_printed("first-says-hello");
    console.assert_printed("onboot 001-second: failed: exited with status 3");
    console.assert_printed("onboot 002-third: exited with status 0");
    let done = console.assert_printed("PROBE DONE");
    let shutdown = console.assert_printed("onshutdown saw 1,2,3,");
    assert!(
        done < shutdown,
        "onshutdown runs at poweroff, after the probe"
    );
}

#[test]
fn runtime_json_makes_cgroups_directories_and_mounts() {
    boot(
        "runtime",
        &["tests/vm/cases/base.yml", "tests/vm/cases/runtime.yml"],
        5,
    );
}

#[test]
fn the_example_connects_a_veth_pair_across_namespaces() {
    let console = boot(
        "example",
        &["yml/example.yml", "tests/vm/cases/example.yml"],
        4,
    );
    console.assert_printed("onboot 000-sysctl: exited with status 0");
    console.assert_printed("service: web: running");
    console.assert_printed("service: getty: running");
}

#[test]
fn volumes_example_is_writable_read_only_and_from_its_image() {
    boot(
        "volumes",
        &["yml/volumes.yml", "tests/vm/cases/volumes.yml"],
        3,
    );
}

#[test]
fn a_crashing_service_is_restarted_and_dependents_wait_for_readiness() {
    let console = boot(
        "restart",
        &["tests/vm/cases/base.yml", "tests/vm/cases/restart.yml"],
        5,
    );
    console.assert_printed("service: crasher: exited with status 1");
    console.assert_printed("service: early: ready");
    // `service list` from inside, shown by the probe: the table, every service in it.
    let shown = console.assert_printed("PROBE PASS show service list");
    let table: Vec<&str> = console.console[shown..]
        .lines()
        .skip(1)
        .take(5)
        .map(str::trim_end)
        .collect();
    assert!(
        table[0].starts_with("NAME ") && table[0].ends_with("LAST EXIT"),
        "{table:#?}"
    );
    for (row, name) in table[1..].iter().zip(["crasher", "early", "late", "probe"]) {
        assert!(row.starts_with(&format!("{name} ")), "{table:#?}");
        assert!(
            row.contains(" running ") || row.contains(" ready "),
            "{table:#?}"
        );
    }
}
