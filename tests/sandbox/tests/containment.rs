//! The sandbox's self-test: whatever a test does inside, the machine that runs it is untouched.
//! Runs as root (in CI); every body runs as PID 1 of its own namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{gethostname, getpid, sethostname, Pid};
use spec::mountinfo;

const MARKER: &str = "kiln-sandbox-containment-marker";

fn mounts_on(path: &str) -> usize {
    mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap())
        .filter(|mount| mount.mount_point == Path::new(path))
        .count()
}

#[test]
fn kill_all_and_mount_over_tmp_leave_host_untouched_root() {
    // A process of the host that a leaking kill(-1) would hit.
    let mut canary = Command::new("sleep").arg("600").spawn().unwrap();
    let host_tmp_mounts = mounts_on("/tmp");
    let host_name = gethostname().unwrap();

    let outcome = sandbox::run(|| {
        sandbox::check_isolated()?;
        assert_eq!(getpid().as_raw(), 1);
        let mut victim = Command::new("sleep").arg("600").spawn()?;
        kill(Pid::from_raw(-1), Signal::SIGKILL)?;
        let status = victim.wait()?;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "kill(-1) reached the sandbox's own process"
        );

        mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )?;
        fs::write(Path::new("/tmp").join(MARKER), "inside")?;
        sethostname("kiln-sandbox-inside")?;
        for hierarchy in sandbox::hierarchies()? {
            let dir = hierarchy.mount_point.join(&sandbox::cgroup_parent()[1..]);
            assert!(
                dir.is_dir(),
                "cgroup parent {} exists inside",
                dir.display()
            );
            fs::create_dir(dir.join("child"))?;
        }
        println!("body reached its end");
        Ok(())
    });
    let Some(outcome) = outcome else {
        canary.kill().unwrap();
        canary.wait().unwrap();
        return;
    };
    outcome.assert_passed();
    assert!(outcome.stdout.contains("body reached its end"), "{outcome}");

    assert_eq!(
        canary.try_wait().unwrap(),
        None,
        "the host's canary process was killed"
    );
    canary.kill().unwrap();
    canary.wait().unwrap();
    assert!(
        !Path::new("/tmp").join(MARKER).exists(),
        "a file written inside reached the host's /tmp"
    );
    assert_eq!(
        mounts_on("/tmp"),
        host_tmp_mounts,
        "a mount inside reached the host"
    );
    assert_eq!(
        gethostname().unwrap(),
        host_name,
        "the hostname set inside reached the host"
    );
    assert!(!outcome.cgroup_dirs.is_empty());
    for dir in &outcome.cgroup_dirs {
        assert!(!dir.exists(), "cgroup {} was not removed", dir.display());
    }
}

#[test]
fn body_sees_only_its_own_processes_and_loopback_root() {
    sandbox::test(|| {
        let pids: Vec<_> = fs::read_dir("/proc")?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .collect();
        assert_eq!(pids, [1], "a fresh /proc shows only the sandbox's PID 1");
        let links: Vec<String> = fs::read_to_string("/proc/net/dev")?
            .lines()
            .skip(2)
            .filter_map(|line| Some(line.split(':').next()?.trim().to_owned()))
            .collect();
        assert_eq!(links, ["lo"], "a new network namespace has only loopback");
        let scratch = sandbox::scratch();
        let fstype = mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo")?)
            .find(|mount| mount.mount_point == scratch)
            .map(|mount| mount.fs_type);
        assert_eq!(
            fstype.as_deref(),
            Some("tmpfs"),
            "scratch is a private tmpfs"
        );
        Ok(())
    });
}

#[test]
fn failing_body_reports_its_error_and_output_root() {
    let Some(outcome) = sandbox::run(|| {
        println!("output before failing");
        Err("the body's own error".into())
    }) else {
        return;
    };
    assert!(!outcome.passed());
    assert_eq!(outcome.status.code(), Some(1), "{outcome}");
    assert!(
        outcome.stdout.contains("output before failing"),
        "{outcome}"
    );
    assert!(outcome.stderr.contains("the body's own error"), "{outcome}");
}

/// Runs one test of this binary again as user `nobody`, with or without CI=true.
/// The binary is copied to a directory `nobody` can reach, wherever the build tree is.
fn run_as_nobody(test: &str, ci: bool) -> (Option<i32>, String) {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("containment");
    // Copied by cp(1): a write fd of this multithreaded process could leak into a child that
    // another test forks meanwhile, and exec of the copy would then fail with ETXTBSY.
    let copied = Command::new("cp")
        .arg(std::env::current_exe().unwrap())
        .arg(&exe)
        .status()
        .unwrap();
    assert!(copied.success(), "copy the test binary");
    let mut command = Command::new(&exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env_remove("CI")
        .current_dir(dir.path())
        .uid(65534)
        .gid(65534);
    if ci {
        command.env("CI", "true");
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn without_root_fails_in_ci_and_skips_visibly_elsewhere() {
    if !nix::unistd::geteuid().is_root() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "needs root in CI"
        );
        return;
    }
    let test = "body_sees_only_its_own_processes_and_loopback_root";
    let (code, text) = run_as_nobody(test, true);
    assert_eq!(code, Some(101), "{text}");
    assert!(text.contains("needs root: CI=true"), "{text}");
    let (code, text) = run_as_nobody(test, false);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("SKIPPED {test}: needs root")),
        "{text}"
    );
}
