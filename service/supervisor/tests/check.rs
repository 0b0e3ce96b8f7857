//! `service check` on bundles made here: every bundle is reported, each problem names the
//! bundle and the field, and the exit code says whether all were valid.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn config() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "cwd": "/", "env": ["PATH=/bin"]},
        "root": {"path": "rootfs", "readonly": true},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    })
}

/// Writes a bundle: config.json (raw text), optional runtime.json, and rootfs/ when asked.
fn bundle(dir: &Path, config: &str, runtime: Option<&str>, rootfs: bool) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("config.json"), config).unwrap();
    if let Some(runtime) = runtime {
        fs::write(dir.join("runtime.json"), runtime).unwrap();
    }
    if rootfs {
        fs::create_dir_all(dir.join("rootfs")).unwrap();
    }
    dir.to_owned()
}

fn good(dir: &Path) -> PathBuf {
    bundle(dir, &config().to_string(), Some(r#"{"bindNS":{}}"#), true)
}

fn service(args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_service"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

fn lines_about<'a>(stdout: &'a str, bundle: &Path) -> Vec<&'a str> {
    let prefix = format!("{}: ", bundle.display());
    stdout
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

#[test]
fn check_path_with_valid_bundles_exits_zero() {
    let tree = tempfile::tempdir().unwrap();
    good(&tree.path().join("onboot/000-sysctl"));
    good(&tree.path().join("services/sshd"));
    good(&tree.path().join("onshutdown/000-shutdown"));
    // A writable bundle: the image in lower/, rootfs/ is the overlay's mount point.
    let writable = good(&tree.path().join("services/writable"));
    fs::create_dir_all(writable.join("lower")).unwrap();
    fs::create_dir_all(writable.join("tmp")).unwrap();

    let (output, stdout) = service(&["check", "--path", tree.path().to_str().unwrap()]);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("4 bundles checked, 0 invalid"), "{stdout}");
}

#[test]
fn check_path_reports_every_bad_bundle_by_field_and_exits_one() {
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    let malformed = bundle(
        &root.join("services/malformed"),
        r#"{"process": {"args": ["/x"]"#,
        None,
        true,
    );
    let unknown_key = bundle(
        &root.join("services/unknown-key"),
        &config().to_string(),
        Some(r#"{"bindNS":{},"cgroup":["x"]}"#),
        true,
    );
    let no_rootfs = bundle(
        &root.join("onboot/001-no-rootfs"),
        &config().to_string(),
        None,
        false,
    );
    let mut empty = config();
    empty["process"]["args"] = json!([]);
    let empty_args = bundle(
        &root.join("onboot/000-empty-args"),
        &empty.to_string(),
        None,
        true,
    );
    let bad_veth = bundle(
        &root.join("onshutdown/000-bad-veth"),
        &config().to_string(),
        Some(r#"{"interfaces":[{"name":"eth1","add":"veth"}]}"#),
        true,
    );
    let fine = good(&root.join("services/fine"));

    let (output, stdout) = service(&["check", "--path", root.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("6 bundles checked, 5 invalid"), "{stdout}");

    let about = |b: &Path| lines_about(&stdout, b);
    assert_eq!(about(&malformed).len(), 1, "{stdout}");
    assert!(about(&malformed)[0].contains("config.json"), "{stdout}");
    assert!(about(&malformed)[0].contains("EOF"), "{stdout}");
    assert_eq!(about(&unknown_key).len(), 1, "{stdout}");
    assert!(about(&unknown_key)[0].contains("runtime.json"), "{stdout}");
    assert!(
        about(&unknown_key)[0].contains("unknown field `cgroup`"),
        "{stdout}"
    );
    assert_eq!(about(&no_rootfs).len(), 1, "{stdout}");
    assert!(
        about(&no_rootfs)[0].contains("rootfs: the root filesystem"),
        "{stdout}"
    );
    assert_eq!(
        about(&empty_args),
        [format!(
            "{}: config.json: process.args: must not be empty: give the program to run",
            empty_args.display()
        )]
    );
    assert_eq!(about(&bad_veth).len(), 1, "{stdout}");
    assert!(
        about(&bad_veth)[0].contains("runtime.json: interfaces[0].peer"),
        "{stdout}"
    );
    assert!(about(&fine).is_empty(), "{stdout}");
}

#[test]
fn check_given_bundles_checks_each_even_after_a_bad_one() {
    let tree = tempfile::tempdir().unwrap();
    let missing_config = tree.path().join("no-config");
    fs::create_dir_all(missing_config.join("rootfs")).unwrap();
    let mut cwd = config();
    cwd["process"]["cwd"] = json!("relative");
    let bad_cwd = bundle(&tree.path().join("bad-cwd"), &cwd.to_string(), None, true);
    let fine = good(&tree.path().join("fine"));

    let (output, stdout) = service(&[
        "check",
        missing_config.to_str().unwrap(),
        bad_cwd.to_str().unwrap(),
        fine.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("3 bundles checked, 2 invalid"), "{stdout}");
    let missing = lines_about(&stdout, &missing_config);
    assert_eq!(missing.len(), 1, "{stdout}");
    assert!(missing[0].contains("config.json: cannot read"), "{stdout}");
    assert!(
        lines_about(&stdout, &bad_cwd)[0].contains("process.cwd"),
        "{stdout}"
    );

    let (output, stdout) = service(&["check", fine.to_str().unwrap()]);
    assert!(output.status.success(), "{stdout}");
}

#[test]
fn check_with_nothing_to_check_fails() {
    let (output, stdout) = service(&["check"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("no bundles to check"), "{stdout}");
    let (output, stdout) = service(&["check", "--path", "/nonexistent/kiln/containers"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout.contains("not a directory"), "{stdout}");
}

#[test]
fn version_and_help() {
    let (output, stdout) = service(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        stdout.trim(),
        format!("service {}", env!("CARGO_PKG_VERSION"))
    );
    let (output, stdout) = service(&["--help"]);
    assert!(output.status.success());
    assert!(stdout.contains("check"), "{stdout}");
}

#[test]
fn example_bundles_are_valid() {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bundles/containers");
    let (output, stdout) = service(&["check", "--path", tree.to_str().unwrap()]);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("5 bundles checked, 0 invalid"), "{stdout}");
}
