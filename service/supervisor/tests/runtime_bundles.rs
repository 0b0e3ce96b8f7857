//! `service runtime create` on bad bundles: each is refused in our words, naming the path or the
//! field, and leaves no state directory, cgroup or process behind; the id stays free.
//! Every test runs as root inside the sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;

use serde_json::json;
use support::*;

/// Creating `id` from `bundle` fails with a message containing every `expected` text, and
/// leaves nothing behind.
fn refused(bundle: &str, id: &str, expected: &[&str]) {
    let err = fails(&["create", "-b", bundle, id]);
    for text in expected {
        assert!(err.contains(text), "expected `{text}` in: {err}");
    }
    assert_nothing_left(&format!("refusing {id}"));
}

#[test]
fn missing_config_and_rootfs_name_the_path_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("noconfig", &["true"]);
        fs::remove_file(bundle.dir.join("config.json"))?;
        let config = bundle.dir.join("config.json");
        refused(
            bundle.path(),
            "noconfig",
            &["config.json: missing", &config.display().to_string()],
        );

        let bundle = Bundle::new("norootfs", &["true"]);
        fs::remove_dir_all(bundle.dir.join("rootfs"))?;
        let rootfs = bundle.dir.join("rootfs");
        refused(
            bundle.path(),
            "norootfs",
            &["rootfs: the root filesystem", &rootfs.display().to_string()],
        );

        let missing = sandbox::scratch().join("bundles/never-made");
        refused(
            missing.to_str().unwrap(),
            "nobundle",
            &["never-made", "does not exist"],
        );
        Ok(())
    });
}

#[test]
fn malformed_config_names_the_field_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("malformed", &["true"]);
        fs::write(
            bundle.dir.join("config.json"),
            r#"{"ociVersion": "1.2.0", "process": {"args": ["true"]"#,
        )?;
        refused(bundle.path(), "malformed", &["config.json", "EOF"]);

        let mut bundle = Bundle::new("wrongtype", &["true"]);
        bundle.edit(|config| config["process"]["env"] = json!("PATH=/bin"));
        refused(
            bundle.path(),
            "wrongtype",
            &["config.json: process.env", "expected a sequence"],
        );
        Ok(())
    });
}

#[test]
fn bad_process_fields_are_named_root() {
    sandbox::test(|| {
        let mut bundle = Bundle::new("noargs", &["true"]);
        bundle.edit(|config| config["process"]["args"] = json!([]));
        refused(
            bundle.path(),
            "noargs",
            &["config.json: process.args: must not be empty"],
        );

        let mut bundle = Bundle::new("relcwd", &["true"]);
        bundle.edit(|config| config["process"]["cwd"] = json!("home"));
        refused(
            bundle.path(),
            "relcwd",
            &["config.json: process.cwd: `home` is not an absolute path"],
        );

        let mut bundle = Bundle::new("badcap", &["true"]);
        bundle.edit(|config| {
            config["process"]["capabilities"] = caps(&["CAP_KILL", "CAP_TIME_TRAVEL"])
        });
        refused(
            bundle.path(),
            "badcap",
            &[
                "config.json: process.capabilities",
                "unknown capability `CAP_TIME_TRAVEL`",
            ],
        );

        let mut bundle = Bundle::new("badmount", &["true"]);
        bundle.edit(|config| {
            config["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": "/data", "type": "notafilesystem", "source": "x"}))
        });
        refused(
            bundle.path(),
            "badmount",
            &["config.json: mounts[3].type: unknown filesystem type `notafilesystem`"],
        );

        let mut bundle = Bundle::new("tty", &["true"]);
        bundle.edit(|config| config["process"]["terminal"] = json!(true));
        refused(bundle.path(), "tty", &["config.json: process.terminal"]);

        let bundle = Bundle::new("notfound", &["no-such-program"]);
        refused(
            bundle.path(),
            "notfound",
            &["`no-such-program` not found in the container's PATH (/bin)"],
        );
        Ok(())
    });
}

#[test]
fn dangerous_cgroups_paths_are_refused_root() {
    sandbox::test(|| {
        let mut bundle = Bundle::new("rootcg", &["true"]);
        bundle.edit(|config| config["linux"]["cgroupsPath"] = json!("/"));
        refused(
            bundle.path(),
            "rootcg",
            &["linux.cgroupsPath", "root cgroup"],
        );

        // The runtime's own cgroup (the test's: this sandbox does not move processes).
        let own = fs::read_to_string("/proc/self/cgroup")?;
        let own_path = own
            .lines()
            .find_map(|line| line.splitn(3, ':').nth(2))
            .unwrap()
            .to_owned();
        if own_path != "/" {
            let mut bundle = Bundle::new("owncg", &["true"]);
            bundle.edit(|config| config["linux"]["cgroupsPath"] = json!(own_path));
            refused(bundle.path(), "owncg", &["linux.cgroupsPath", "own cgroup"]);
        }
        let mut bundle = Bundle::new("dotdot", &["true"]);
        bundle.edit(|config| config["linux"]["cgroupsPath"] = json!("/a/../b"));
        refused(bundle.path(), "dotdot", &["linux.cgroupsPath", "`..`"]);
        Ok(())
    });
}

#[test]
fn refused_id_can_be_created_once_the_bundle_is_fixed_root() {
    sandbox::test(|| {
        let mut bundle = Bundle::new("fixme", &["true"]);
        bundle.edit(|config| config["process"]["args"] = json!(["missing-tool"]));
        refused(bundle.path(), "fixme", &["missing-tool"]);
        bundle.edit(|config| config["process"]["args"] = json!(["sh", "-c", "exit 3"]));
        let output = runtime_output(&["run", "-b", bundle.path(), "fixme"]);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    });
}

#[test]
fn invalid_ids_are_refused_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("ids", &["true"]);
        let long = "x".repeat(spec::layout::MAX_ID_LEN + 1);
        for id in ["../escape", "a/b", ".hidden", "", long.as_str()] {
            let err = fails(&["create", "-b", bundle.path(), id]);
            assert!(err.contains("invalid container id"), "{id}: {err}");
        }
        // The longest id is taken.
        let longest = "x".repeat(spec::layout::MAX_ID_LEN);
        ok(&["create", "-b", bundle.path(), &longest]);
        ok(&["delete", "--force", &longest]);
        assert!(leftover_state().is_empty());
        Ok(())
    });
}

#[test]
fn a_rootfs_failure_names_its_cause_root() {
    sandbox::test(|| {
        use nix::mount::{mount, MsFlags};
        // The root filesystem on a read-only mount, as on an image, and a bind onto a path
        // it lacks: the runtime cannot make the mount point.
        let mut bundle = Bundle::new("nomountpoint", &["true"]);
        let rootfs = bundle.dir.join("rootfs");
        mount(
            Some(&rootfs),
            &rootfs,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        mount(
            None::<&str>,
            &rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )?;
        let source = sandbox::scratch().join("probe-source");
        fs::create_dir_all(&source)?;
        bundle.edit(|config| {
            config["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/probe", "type": "bind",
                "source": source, "options": ["rbind"]
            }))
        });
        // Beyond the top-level "failed to prepare rootfs": the mount, the path, the errno.
        refused(
            bundle.path(),
            "nomountpoint",
            &["prepare rootfs", "/probe", "Read-only file system"],
        );
        Ok(())
    });
}
