//! `service onboot` / `service onshutdown`: bundles run in order, each to completion, with their
//! runtime.json actions (a network namespace built by one bundle and joined by the next), their
//! logs under LinuxKit's names, failures named while the rest still runs, and timeouts.
//! Every root test runs inside the sandbox, with a tmpfs over /run and /var/log.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;
use spec::mountinfo;
use support::*;

/// `service SECTION --path DIR` with the sandbox's runtime root and cgroup parent.
fn run_section(section: &str, dir: &Path) -> Output {
    output_via_files(
        Command::new(SERVICE)
            .arg(section)
            .arg("--path")
            .arg(dir)
            .arg("--root")
            .arg(state_root())
            .arg("--cgroup-parent")
            .arg(sandbox::cgroup_parent()),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mount_points() -> Vec<PathBuf> {
    mountinfo::parse(&read(Path::new("/proc/self/mountinfo")))
        .map(|mount| mount.mount_point)
        .collect()
}

fn root_links() -> String {
    let output = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(output.status.success());
    text(&output.stdout)
}

#[test]
fn onboot_bundles_share_a_network_namespace_root() {
    sandbox::test(|| {
        private_run_and_var_log();
        let onboot = sandbox::scratch().join("containers/onboot");
        let cgroup = format!("{}/podruntime/net", &sandbox::cgroup_parent()[1..]);

        let first = Bundle::new_in(
            &onboot,
            "000-net",
            &[
                "sh",
                "-c",
                "ip link show eth1 >/dev/null && ip link show br0 >/dev/null \
                 && ip link show if0 >/dev/null && echo first-sees-links; \
                 grep -q ' /mnt/scratch tmpfs' /proc/mounts && echo first-sees-mount; \
                 echo to-stderr >&2",
            ],
        );
        first.runtime_json(&json!({
            "mounts": [
                {"type": "tmpfs", "source": "tmpfs", "destination": "mnt/scratch", "options": ["size=1m", "nosuid"]},
                {"type": "tmpfs", "source": "tmpfs", "destination": "/run/kept", "options": ["size=1m"]}
            ],
            "mkdir": ["/run/made/by-first", "var/relative"],
            "cgroups": [cgroup],
            "interfaces": [
                {"name": "eth1", "peer": "kiln-peer0"},
                {"name": "br0", "add": "bridge"},
                {"name": "if0", "add": "ifb", "createInRoot": true}
            ],
            "bindNS": {"net": "/run/netns/x"}
        }));
        let mut second = Bundle::new_in(
            &onboot,
            "001-join",
            &[
                "sh",
                "-c",
                "ip link show eth1 >/dev/null && echo second-sees-eth1",
            ],
        );
        second.edit(|config| {
            config["linux"]["namespaces"] = json!([
                {"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "network", "path": "/run/netns/x"}
            ]);
        });

        let output = run_section("onboot", &onboot);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
        for line in [
            "first-sees-links",
            "first-sees-mount",
            "to-stderr",
            "second-sees-eth1",
        ] {
            assert!(
                stdout.contains(line),
                "console has {line}: {stdout}\n{stderr}"
            );
        }
        assert!(
            stderr.contains("onboot 000-net: exited with status 0"),
            "{stderr}"
        );
        assert!(
            stderr.contains("onboot 001-join: exited with status 0"),
            "{stderr}"
        );

        let logs = Path::new("/run/log/onboot");
        assert_eq!(
            read(&logs.join("onboot.000-net.out.log")),
            "first-sees-links\nfirst-sees-mount\n"
        );
        assert_eq!(read(&logs.join("onboot.000-net.log")), "to-stderr\n");
        assert_eq!(
            read(&logs.join("onboot.001-join.out.log")),
            "second-sees-eth1\n"
        );
        assert_eq!(fs::read_link("/var/log/onboot")?, logs);

        assert!(
            root_links().contains("kiln-peer0"),
            "the peer stays in root"
        );
        assert!(!root_links().contains("if0"), "if0 was moved");
        for hierarchy in sandbox::hierarchies()? {
            let dir = hierarchy.mount_point.join(&cgroup);
            assert!(dir.is_dir(), "{} exists", dir.display());
        }
        assert!(Path::new("/run/made/by-first").is_dir());
        assert!(first.dir.join("rootfs/var/relative").is_dir());
        let mounts = mount_points();
        assert!(
            mounts.contains(&PathBuf::from("/run/kept")),
            "host mounts stay"
        );
        assert!(
            mounts.contains(&PathBuf::from("/run/netns/x")),
            "the netns bind stays"
        );
        assert!(
            !mounts.iter().any(|point| point.starts_with(&onboot)),
            "the bundles' own mounts are released: {mounts:?}"
        );
        assert!(leftover_state().is_empty(), "{:?}", leftover_state());
        Ok(())
    });
}

#[test]
fn a_writable_bundle_runs_on_its_overlay_root() {
    sandbox::test(|| {
        private_run_and_var_log();
        let onboot = sandbox::scratch().join("containers/onboot");
        let mut bundle = Bundle::new_in(
            &onboot,
            "000-writable",
            &[
                "sh",
                "-c",
                "echo written > /etc/written && cat /etc/written",
            ],
        );
        bundle.edit(|config| config["root"]["readonly"] = json!(false));
        // The layout and runtime.json `kiln build` (like LinuxKit's) writes for a writable image.
        let dir = bundle.dir.clone();
        fs::rename(dir.join("rootfs"), dir.join("lower"))?;
        fs::create_dir(dir.join("rootfs"))?;
        fs::create_dir(dir.join("tmp"))?;
        let at = |sub: &str| dir.join(sub).display().to_string();
        bundle.runtime_json(&json!({"mounts": [
            {"type": "tmpfs", "source": "tmpfs", "destination": at("tmp")},
            {"destination": at("tmp"), "options": ["remount", "private"]},
            {"type": "overlay", "source": "overlay", "destination": at("rootfs"), "options": [
                format!("lowerdir={}", at("lower")),
                format!("upperdir={}", at("tmp/upper")),
                format!("workdir={}", at("tmp/work")),
            ]}
        ]}));

        let output = run_section("onboot", &onboot);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("written"), "{stdout}");
        assert!(
            !dir.join("lower/etc/written").exists(),
            "the image is untouched"
        );
        let mounts = mount_points();
        assert!(
            !mounts.iter().any(|point| point.starts_with(&dir)),
            "overlay and tmpfs are released: {mounts:?}"
        );
        assert_eq!(fs::read_dir(dir.join("rootfs"))?.count(), 0);
        assert_nothing_left("a writable onboot bundle");
        Ok(())
    });
}

#[test]
fn failures_are_named_undone_and_the_rest_still_runs_root() {
    sandbox::test(|| {
        private_run_and_var_log();
        let onboot = sandbox::scratch().join("containers/onboot");
        let missing = sandbox::scratch().join("no/such/source");
        let scratch_mount = json!({"type": "tmpfs", "source": "tmpfs", "destination": "mnt/a"});

        let bad_json = Bundle::new_in(&onboot, "000-badjson", &["true"]);
        fs::write(bad_json.dir.join("runtime.json"), "{\"mounts\": [")?;
        let no_rootfs = Bundle::new_in(&onboot, "001-norootfs", &["true"]);
        fs::remove_dir_all(no_rootfs.dir.join("rootfs"))?;
        let mut no_args = Bundle::new_in(&onboot, "002-noargs", &["true"]);
        no_args.edit(|config| config["process"]["args"] = json!([]));
        no_args.runtime_json(&json!({"mounts": [scratch_mount]}));
        let no_peer = Bundle::new_in(&onboot, "003-nopeer", &["true"]);
        no_peer.runtime_json(&json!({"interfaces": [{"name": "eth1", "add": "veth"}]}));
        let bad_mount = Bundle::new_in(&onboot, "004-badmount", &["true"]);
        bad_mount.runtime_json(&json!({"mounts": [
            scratch_mount,
            {"type": "bind", "source": missing, "destination": "mnt/b", "options": ["bind"]}
        ]}));
        let late_link = Bundle::new_in(&onboot, "005-badlink", &["true"]);
        late_link.runtime_json(&json!({
            "mounts": [scratch_mount],
            "interfaces": [{"name": "eth1", "peer": "kiln-late0"}, {"name": "x0", "add": "no-such-kind"}],
            "bindNS": {"uts": "/run/uts/late"}
        }));
        Bundle::new_in(&onboot, "006-exit3", &["sh", "-c", "exit 3"]);
        Bundle::new_in(&onboot, "007-good", &["echo", "good-ran"]);

        let output = run_section("onboot", &onboot);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        let line = |id: &str| {
            stderr
                .lines()
                .find(|line| line.starts_with(&format!("onboot {id}: ")))
                .unwrap_or_else(|| panic!("a line for {id}: {stderr}"))
                .to_owned()
        };
        let expect = |id: &str, parts: &[&str]| {
            let line = line(id);
            assert!(line.contains("failed"), "{line}");
            for part in parts {
                assert!(line.contains(part), "{id}: `{part}` in {line}");
            }
        };
        expect("000-badjson", &["runtime.json"]);
        expect("001-norootfs", &["rootfs"]);
        expect("002-noargs", &["process.args"]);
        expect("003-nopeer", &["interfaces[0].peer"]);
        expect(
            "004-badmount",
            &[
                "mounts[1]",
                &missing.display().to_string(),
                "No such file or directory",
            ],
        );
        expect(
            "005-badlink",
            &[
                "interfaces[1]",
                "x0",
                "the kernel has no link type `no-such-kind`",
            ],
        );
        expect("006-exit3", &["exited with status 3"]);
        assert_eq!(line("007-good"), "onboot 007-good: exited with status 0");
        assert!(stdout.contains("good-ran"), "{stdout}");
        assert!(
            stderr.contains("7 of 8 bundles failed: 000-badjson, 001-norootfs, 002-noargs"),
            "{stderr}"
        );

        let mounts = mount_points();
        assert!(
            !mounts.iter().any(|point| point.starts_with(&onboot)),
            "nothing of a failed bundle stays mounted: {mounts:?}"
        );
        assert!(!mounts.contains(&PathBuf::from("/run/uts/late")));
        assert!(!root_links().contains("kiln-late0"), "the veth is deleted");
        assert!(
            !no_args.dir.join("rootfs/mnt").exists(),
            "mount points removed"
        );
        assert_nothing_left("failed onboot bundles");
        Ok(())
    });
}

#[test]
fn a_bundle_past_its_timeout_is_killed_and_the_next_runs_root() {
    sandbox::test(|| {
        private_run_and_var_log();
        let onshutdown = sandbox::scratch().join("containers/onshutdown");
        let mut hang = Bundle::new_in(
            &onshutdown,
            "000-hang",
            &["sh", "-c", "sleep 1000 & sleep 1000"],
        );
        // No pid namespace: the container's processes must be found through its cgroup.
        hang.edit(|config| {
            config["linux"]["namespaces"] =
                json!([{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]);
        });
        hang.runtime_json(&json!({"timeout": 1}));
        Bundle::new_in(&onshutdown, "001-after", &["echo", "after-ran"]);

        let output = run_section("onshutdown", &onshutdown);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
        assert!(
            stderr.contains(
                "onshutdown 000-hang: failed: still running after its timeout of 1s: killed"
            ),
            "{stderr}"
        );
        assert!(
            stderr.contains("onshutdown 001-after: exited with status 0"),
            "{stderr}"
        );
        assert!(stdout.contains("after-ran"), "{stdout}");
        assert_eq!(
            read(Path::new("/run/log/shutdown/shutdown.001-after.out.log")),
            "after-ran\n"
        );
        assert_eq!(
            fs::read_link("/var/log/shutdown")?,
            Path::new("/run/log/shutdown")
        );
        assert_nothing_left("a timed-out onshutdown bundle");
        Ok(())
    });
}

#[test]
fn dry_run_prints_the_plan_and_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("000-net");
    fs::create_dir(&bundle).unwrap();
    fs::write(
        bundle.join("runtime.json"),
        r#"{"mounts":[{"type":"tmpfs","source":"tmpfs","destination":"mnt/x"}],
            "interfaces":[{"name":"eth1","peer":"host1"}],"bindNS":{"net":"/run/netns/n"},"timeout":5}"#,
    )
    .unwrap();
    let bad = dir.path().join("001-bad");
    fs::create_dir(&bad).unwrap();
    fs::write(
        bad.join("runtime.json"),
        r#"{"interfaces":[{"add":"veth"}]}"#,
    )
    .unwrap();

    let output = Command::new(SERVICE)
        .args(["onboot", "--dry-run", "--path"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        stdout,
        format!(
            "onboot 000-net:\n  mounts[0]: create mount point {mnt}\n  mounts[0]: mount tmpfs on {mnt} type tmpfs\n  \
             create container 000-net from {bundle}\n  \
             interfaces[0]: create veth eth1 with peer host1 in the root namespace\n  \
             interfaces[0]: move link eth1 into the container's network namespace\n  \
             bindNS.net: create directory /run/netns\n  \
             bindNS.net: bind the net namespace on /run/netns/n\n  \
             start and wait, killing it after 5s\n",
            mnt = rootfs.join("mnt/x").display(),
            bundle = bundle.display(),
        )
    );
    assert!(
        stderr.contains("onboot 001-bad: runtime.json: interfaces[0].name: missing"),
        "{stderr}"
    );
    assert!(!rootfs.exists(), "nothing was done");
}

#[test]
fn a_missing_directory_is_nothing_to_run() {
    let missing = tempfile::tempdir().unwrap().path().join("onboot");
    let output = Command::new(SERVICE)
        .args(["onboot", "--path"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{output:?}"
    );
}
