//! What config.json asks for takes effect inside the container, checked from inside: seccomp,
//! signal dispositions, capabilities, rlimits, hostname, read-only root, masked and read-only
//! paths; and exec, list and the helper API.
//! Every test runs as root inside the sandbox, with busybox bundles made here.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs::{self, File};
use std::time::Duration;

use runtime::helper::{ContainerStdio, Helper, HelperOptions};
use runtime::Runtime;
use serde_json::json;
use support::*;

/// Runs the bundle in the foreground; returns (exit code, stdout, stderr).
fn run(bundle: &Bundle, id: &str) -> (i32, String, String) {
    let output = runtime_output(&["run", "-b", bundle.path(), id]);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn seccomp_profile_denies_a_syscall_root() {
    sandbox::test(|| {
        let script = "mkdir /tmp/made; echo status=$?";
        let mut bundle = Bundle::new("seccomp", &["sh", "-c", script]);
        let (code, out, err) = run(&bundle, "allowed");
        assert_eq!(
            (code, out.as_str()),
            (0, "status=0\n"),
            "without a profile: {err}"
        );

        bundle.edit(|config| {
            config["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            })
        });
        let (code, out, err) = run(&bundle, "denied");
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, "status=1\n", "mkdir is denied by the profile: {err}");
        assert!(err.contains("Operation not permitted"), "{err}");
        Ok(())
    });
}

#[test]
fn a_profile_denying_getcwd_without_no_new_privileges_still_starts_root() {
    sandbox::test(|| {
        // Without noNewPrivileges the filter needs CAP_SYS_ADMIN to load; loaded before the
        // working directory was checked with getcwd, it stopped every such container.
        let script = "grep -E '^Cap(Prm|Eff)' /proc/self/status; echo cwd=$(pwd -P); sleep 1000";
        let mut bundle = Bundle::new("getcwd", &["sh", "-c", script]);
        bundle.edit(|config| {
            config["process"]
                .as_object_mut()
                .unwrap()
                .remove("noNewPrivileges");
            config["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            });
        });
        // The container's stdout is create's: a pipe read here.
        let mut create = runtime(&["create", "-b", bundle.path(), "getcwd"])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let container_output = create.stdout.take().unwrap();
        assert!(create.wait()?.success(), "create with the profile");
        ok(&["start", "getcwd"]);
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(container_output));
        let out: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
        // getcwd denied, `pwd -P` prints nothing (`/` without the filter).
        assert_eq!(
            out,
            [
                "CapPrm:\t00000000000004e0",
                "CapEff:\t00000000000004e0",
                "cwd="
            ],
            "the process has the bundle's caps and the filter"
        );
        // The caps of the bundle (KILL, NET_BIND_SERVICE, SETGID, SETUID): no CAP_SYS_ADMIN
        // (bit 21) left in any set, and getcwd denied by the profile.
        let exec = |script: &str| {
            let output = runtime_output(&["exec", "getcwd", "--", "sh", "-c", script]);
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let seen = exec("grep -E '^Cap(Prm|Eff)' /proc/1/status; echo cwd=$(pwd -P)");
        assert!(seen.contains("CapPrm:\t00000000000004e0"), "{seen}");
        assert!(seen.contains("CapEff:\t00000000000004e0"), "{seen}");
        assert!(
            seen.ends_with("cwd=\n"),
            "the exec'd process has the filter: {seen}"
        );
        let seen = exec("grep -E '^Cap(Prm|Eff)' /proc/self/status");
        assert!(seen.contains("CapPrm:\t00000000000004e0"), "exec: {seen}");
        ok(&["kill", "getcwd", "KILL"]);

        // A profile that cannot be loaded still fails create, naming the field.
        bundle
            .edit(|config| config["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_NOTIFY"));
        let err = fails(&["create", "-b", bundle.path(), "unloadable"]);
        assert!(err.contains("linux.seccomp: load the filter"), "{err}");
        assert!(fails(&["state", "unloadable"]).contains("does not exist"));
        Ok(())
    });
}

#[test]
fn disable_oom_killer_reaches_the_memory_cgroup_root() {
    sandbox::test(|| {
        // libcontainer reads linux.resources.memory.disableOOMKiller and writes 0 all the same.
        let memory = fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .find(|line| line.contains(" - cgroup ") && line.ends_with(",memory"))
            .map(|line| line.split(' ').nth(4).unwrap().to_owned())
            .expect("a cgroup v1 memory hierarchy on this machine");
        let oom_control = |id: &str| {
            read(&std::path::PathBuf::from(format!(
                "{memory}{}/{id}/memory.oom_control",
                sandbox::cgroup_parent()
            )))
        };
        let mut bundle = Bundle::new("oomless", &["sleep", "1000"]);
        for (id, disable) in [("oomless", true), ("oomful", false)] {
            bundle.edit(|config| {
                config["linux"]["cgroupsPath"] =
                    json!(format!("{}/{id}", sandbox::cgroup_parent()));
                config["linux"]["resources"] = json!({
                    "memory": {"limit": 64 << 20, "disableOOMKiller": disable}
                });
            });
            ok(&["create", "-b", bundle.path(), id]);
            let expected = format!("oom_kill_disable {}", u8::from(disable));
            assert!(
                oom_control(id).contains(&expected),
                "{id}: {}",
                oom_control(id)
            );
            ok(&["delete", "--force", id]);
        }
        Ok(())
    });
}

#[test]
fn the_container_init_runs_the_process_and_passes_signals_on_root() {
    sandbox::test(|| {
        // The root is read-only and has no /sbin: the init's mount point is made all the same
        // (as any bind's is, before the root is made read-only).
        // PID 1 sends SIGTERM to itself; the init passes it on to the shell, which dies of it
        // (as PID 1 it would ignore it and print `survived`).
        let script = "echo $(cat /proc/1/comm) $$; kill -TERM 1; sleep 5; echo survived";
        let bundle = Bundle::new("init", &["sh", "-c", script]);
        let run_init = |id: &str| runtime_output(&["run", "--init", "-b", bundle.path(), id]);
        let output = run_init("forwarded");
        let out = String::from_utf8_lossy(&output.stdout);
        assert_eq!(out, "kiln-init 2\n", "{output:?}");
        assert_eq!(output.status.code(), Some(128 + 15), "{output:?}");
        // A real-time signal is passed on too, and the shell's death by it read.
        let script = "kill -37 1; sleep 5; echo survived";
        let bundle = Bundle::new("init-rt", &["sh", "-c", script]);
        let output = runtime_output(&["run", "--init", "-b", bundle.path(), "rt"]);
        assert_eq!(output.status.code(), Some(128 + 37), "{output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");

        let mut bundle = Bundle::new("init-exit", &["sh", "-c", "exit 7"]);
        let run_init =
            |bundle: &Bundle, id: &str| runtime_output(&["run", "--init", "-b", bundle.path(), id]);
        assert_eq!(run_init(&bundle, "exit").status.code(), Some(7));
        bundle.edit(|config| config["process"]["args"] = json!(["/bin/no-such-program"]));
        let output = run_init(&bundle, "missing");
        assert_eq!(output.status.code(), Some(127), "{output:?}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            err.contains("kiln-init: exec /bin/no-such-program: ENOENT"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn signals_are_not_ignored_or_blocked_in_the_container_root() {
    sandbox::test(|| {
        let script = "grep -E '^Sig(Ign|Blk)' /proc/self/status; \
                      sh -c 'kill -PIPE $$; echo survived'; echo pipe-status=$?";
        let bundle = Bundle::new("sigpipe", &["sh", "-c", script]);
        let (code, out, err) = run(&bundle, "sigpipe");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("SigIgn:\t0000000000000000"),
            "nothing ignored: {out}"
        );
        assert!(
            out.contains("SigBlk:\t0000000000000000"),
            "nothing blocked: {out}"
        );
        assert!(!out.contains("survived"), "SIGPIPE ended the shell: {out}");
        assert!(out.contains("pipe-status=141"), "{out}");
        Ok(())
    });
}

#[test]
fn capabilities_rlimits_hostname_and_readonly_root_take_effect_root() {
    sandbox::test(|| {
        let script = "grep -E '^Cap(Eff|Bnd)' /proc/self/status; echo nofile=$(ulimit -n); \
                      echo host=$(hostname); touch /written 2>/dev/null; echo touch=$?";
        let mut bundle = Bundle::new("limits", &["sh", "-c", script]);
        bundle.edit(|config| {
            config["process"]["capabilities"] = caps(&["CAP_NET_ADMIN", "CAP_KILL"]);
            config["process"]["rlimits"] =
                json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1234}]);
            config["hostname"] = json!("kiln-box");
        });
        let (code, out, err) = run(&bundle, "limits");
        assert_eq!(code, 0, "{err}");
        // CAP_KILL is bit 5, CAP_NET_ADMIN bit 12.
        assert!(out.contains("CapEff:\t0000000000001020"), "{out}");
        assert!(out.contains("CapBnd:\t0000000000001020"), "{out}");
        assert!(out.contains("nofile=1234"), "{out}");
        assert!(out.contains("host=kiln-box"), "{out}");
        assert!(out.contains("touch=1"), "the root is read-only: {out}");

        bundle.edit(|config| config["root"]["readonly"] = json!(false));
        let (code, out, err) = run(&bundle, "writable");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("touch=0"),
            "a writable root takes the file: {out}"
        );

        // Without `readonly` the root is writable, as config.md gives the default.
        bundle.edit(|config| {
            config["root"].as_object_mut().unwrap().remove("readonly");
        });
        fs::remove_file(bundle.dir.join("rootfs/written")).unwrap();
        let (code, out, err) = run(&bundle, "default");
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("touch=0"),
            "a root without `readonly` is writable: {out}"
        );
        Ok(())
    });
}

#[test]
fn masked_and_readonly_paths_take_effect_root() {
    sandbox::test(|| {
        let script =
            "echo secret=$(cat /etc/secret); echo 1 > /proc/sys/kernel/domainname 2>/dev/null; \
                      echo sysctl=$?";
        let mut bundle = Bundle::new("masked", &["sh", "-c", script]);
        fs::write(bundle.dir.join("rootfs/etc/secret"), "hunter2\n")?;
        let (_, out, _) = run(&bundle, "unmasked");
        assert!(
            out.contains("secret=hunter2"),
            "control run sees the file: {out}"
        );

        bundle.edit(|config| {
            config["linux"]["maskedPaths"] = json!(["/etc/secret", "/proc/kcore"]);
            config["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
        });
        let (code, out, err) = run(&bundle, "masked");
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("secret=\n"), "masked file reads empty: {out}");
        assert!(
            out.contains("sysctl=1"),
            "read-only /proc/sys refuses writes: {out}"
        );
        Ok(())
    });
}

#[test]
fn exec_runs_in_the_container_and_returns_its_exit_code_root() {
    sandbox::test(|| {
        let mut bundle = Bundle::new("execbox", &["sleep", "1000"]);
        bundle.edit(|config| config["hostname"] = json!("exec-host"));
        ok(&["create", "-b", bundle.path(), "execbox"]);
        let pid = init_pid("execbox");
        let err = fails(&["exec", "execbox", "--", "true"]);
        assert!(
            err.contains("cannot exec in container `execbox`: it is created"),
            "{err}"
        );
        ok(&["start", "execbox"]);

        let output = runtime_output(&[
            "exec",
            "execbox",
            "--",
            "sh",
            "-c",
            "hostname; cat /proc/1/comm; exit 3",
        ]);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "exec-host\nsleep\n"
        );

        let output = runtime_output(&["exec", "execbox", "--", "cat", "/proc/self/cgroup"]);
        let cgroups = String::from_utf8_lossy(&output.stdout);
        assert!(
            cgroups.contains(&format!("{}/execbox", sandbox::cgroup_parent())),
            "{cgroups}"
        );

        let err = fails(&["kill", "execbox", "SIGNOPE"]);
        assert!(err.contains("unknown signal `SIGNOPE`"), "{err}");
        ok(&["kill", "execbox", "9"]);
        wait_child(pid);
        let err = fails(&["exec", "execbox", "--", "true"]);
        assert!(err.contains("it is stopped"), "{err}");
        ok(&["delete", "execbox"]);
        Ok(())
    });
}

#[test]
fn list_shows_every_container_root() {
    sandbox::test(|| {
        assert_eq!(ok(&["list", "-q"]), "");
        let first = Bundle::new("first", &["sleep", "1000"]);
        let second = Bundle::new("second", &["sleep", "1000"]);
        ok(&["create", "-b", first.path(), "first"]);
        ok(&["create", "-b", second.path(), "second"]);
        ok(&["start", "second"]);

        let table = ok(&["list"]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("STATUS"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("first") && lines[1].contains("created"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("second") && lines[2].contains("running"),
            "{table}"
        );

        let json: serde_json::Value = serde_json::from_str(&ok(&["list", "--format", "json"]))?;
        let ids: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["first", "second"]);
        assert_eq!(ok(&["list", "-q"]), "first\nsecond\n");
        ok(&["delete", "--force", "first"]);
        ok(&["delete", "--force", "second"]);
        assert_eq!(ok(&["list", "-q"]), "");
        Ok(())
    });
}

#[test]
fn helper_creates_a_container_whose_init_is_the_callers_child_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("helped", &["sh", "-c", "echo helped-out; exit 4"]);
        let runtime = Runtime::new(state_root()).with_cgroup_parent(sandbox::cgroup_parent());
        let helper = Helper::new(runtime.clone()).with_executable(SERVICE);
        let out_path = sandbox::scratch().join("helped.out");
        let stdio = || -> std::io::Result<ContainerStdio> {
            Ok(ContainerStdio {
                stdin: File::open("/dev/null")?.into(),
                stdout: File::create(&out_path)?.into(),
                stderr: File::create(sandbox::scratch().join("helped.err"))?.into(),
            })
        };
        let pid_file = sandbox::scratch().join("helped.pid");
        let options = HelperOptions {
            pid_file: Some(pid_file.clone()),
            ..HelperOptions::default()
        };
        let pid = helper.create("helped", &bundle.dir, stdio()?, &options)?;
        assert_eq!(read(&pid_file).trim(), pid.to_string());
        let status = read(&std::path::PathBuf::from(format!("/proc/{pid}/status")));
        assert!(
            status.contains("\nPPid:\t1\n"),
            "the init is this process's child: {status}"
        );
        runtime.start("helped")?;
        assert_eq!(runtime::exit_code(wait_child(pid.as_raw())), Some(4));
        assert_eq!(read(&out_path), "helped-out\n");
        runtime.delete("helped", false)?;

        let mut bad = Bundle::new("unhelped", &["true"]);
        bad.edit(|config| config["process"]["args"] = json!([]));
        let err = helper
            .create("unhelped", &bad.dir, stdio()?, &HelperOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("process.args: must not be empty"), "{err}");
        assert!(reap_children(Duration::from_secs(10)).is_empty());
        assert!(leftover_state().is_empty(), "{:?}", leftover_state());
        Ok(())
    });
}

#[test]
fn rootfs_propagation_takes_the_recursive_names_as_runc_does_root() {
    sandbox::test(|| {
        let mut bundle = Bundle::new("propagation", &["true"]);
        for mode in [
            "rshared", "rslave", "rprivate", "shared", "slave", "private",
        ] {
            bundle.edit(|config| config["linux"]["rootfsPropagation"] = json!(mode));
            let (code, _, err) = run(&bundle, &format!("propagation-{mode}"));
            assert_eq!(code, 0, "{mode}: {err}");
        }
        Ok(())
    });
}

#[test]
fn no_pivot_runs_the_container_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("nopivot", &["sh", "-c", "cat /proc/1/comm; exit 5"]);
        let output = runtime_output(&["run", "--no-pivot", "-b", bundle.path(), "nopivot"]);
        assert_eq!(
            output.status.code(),
            Some(5),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), "sh\n");
        Ok(())
    });
}

#[test]
fn a_bind_at_dev_is_seen_whole_and_left_unchanged_root() {
    sandbox::test(|| {
        use nix::sys::stat::{mknod, Mode, SFlag};
        use std::os::unix::fs::{symlink, FileTypeExt};
        // A /dev of our own, holding what libcontainer would otherwise trip over or rewrite:
        // an `fd` link and a `ptmx` that is not a link.
        let dev = sandbox::scratch().join("host-dev");
        fs::create_dir_all(dev.join("pts"))?;
        mknod(
            &dev.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )?;
        symlink("/proc/self/fd", dev.join("fd"))?;
        fs::write(dev.join("ptmx"), "not a device")?;
        fs::write(dev.join("marker"), "from the bound dev\n")?;
        let script = "cat /dev/marker; \
                      awk '$5 == \"/dev/pts\" {for (i = 7; $i != \"-\"; i++); print \"pts:\", $(i + 1)}' \
                      /proc/self/mountinfo; \
                      awk '$5 == \"/dev\" {split($6, o, \",\"); print \"dev:\", o[1]}' /proc/self/mountinfo; \
                      echo x > /dev/new 2>/dev/null; echo write=$?";
        let mut bundle = Bundle::new("devbind", &["sh", "-c", script]);
        let source = dev.clone();
        bundle.edit(|config| {
            let mounts = config["mounts"].as_array_mut().unwrap();
            mounts.retain(|mount| mount["destination"] != "/dev");
            mounts.push(
                json!({"destination": "/dev", "type": "bind", "source": source,
                               "options": ["rbind", "ro"]}),
            );
            mounts.push(
                json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666"]}),
            );
        });
        for round in ["first", "second"] {
            let (code, out, err) = run(&bundle, &format!("devbind-{round}"));
            assert_eq!(code, 0, "{round}: {err}");
            assert_eq!(
                out, "from the bound dev\npts: devpts\ndev: ro\nwrite=1\n",
                "{round}: {err}"
            );
        }
        // Nothing was made or replaced in the bound directory.
        let mut names: Vec<String> = fs::read_dir(&dev)?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        assert_eq!(names, ["fd", "marker", "null", "ptmx", "pts"]);
        assert_eq!(fs::read_to_string(dev.join("ptmx"))?, "not a device");
        assert!(fs::symlink_metadata(dev.join("null"))?
            .file_type()
            .is_char_device());
        Ok(())
    });
}
