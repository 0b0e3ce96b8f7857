//! `/init` in userspace mode over an image-like root: it runs /etc/init.d, sets the hostname,
//! starts the supervisor and starts it again when it is killed -9 (the new one reruns no onboot
//! and adopts the running services: the same pids, no second copy, output still read, a later
//! crash restarted), reaps a thousand orphans, and on SIGUSR2 (busybox `poweroff`) has the
//! supervisor stop every service before it exits.
//! Runs as root inside the sandbox: the image root is chrooted into there, with its own /proc,
//! /run and the sandbox's /sys and /dev; init is not PID 1 there, so it only ever signals its
//! own descendants.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

/// The `init` binary (debug), built here: `cargo test` builds another package's binary only
/// for that package's own integration tests.
fn init_binary() -> std::path::PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "--locked", "--offline", "-p", "init"])
        .status()
        .expect("run cargo build -p init");
    assert!(status.success(), "cargo build -p init: {status}");
    Path::new(SERVICE).with_file_name("init")
}

/// Processes whose command line is `words`.
fn processes_running(words: &[&str]) -> usize {
    let wanted: Vec<u8> = words
        .iter()
        .flat_map(|word| [word.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| line == wanted))
        .count()
}

/// Children of `parent` that are zombies.
fn zombie_children(parent: i32) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the fields after the last `)`.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&parent.to_string().as_str())
        })
        .count()
}

#[test]
fn init_keeps_the_supervisor_alive_and_reaps_orphans_root() {
    let init = init_binary();
    sandbox::test(|| {
        let image = Bundle::new_in(&sandbox::scratch(), "image", &["true"]);
        let root = image.dir.join("rootfs");
        fs::copy(&init, root.join("init"))?;
        fs::create_dir_all(root.join("usr/bin"))?;
        fs::copy(SERVICE, root.join("usr/bin/service"))?;
        for dir in ["run", "var/log", "etc/init.d", "containers"] {
            fs::create_dir_all(root.join(dir))?;
        }
        fs::write(root.join("etc/hostname"), "kiln-under-test\n")?;
        // A thousand background processes the script never waits for: orphans for init.
        let script = root.join("etc/init.d/010-orphans");
        fs::write(
            &script,
            "#!/bin/sh\ni=0\nwhile [ $i -lt 1000 ]; do (sleep 0.1 &); i=$((i+1)); done\necho orphans-made\n",
        )?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
        Bundle::new_in(
            &root.join("containers/services"),
            "sleeper",
            &["sleep", "1000"],
        )
        .runtime_json(&serde_json::json!({"stopTimeout": 1}));
        // Writes all the time: with no reader it would die of SIGPIPE.
        Bundle::new_in(
            &root.join("containers/services"),
            "ticker",
            &["sh", "-c", "while true; do echo tick; sleep 0.01; done"],
        )
        .runtime_json(&serde_json::json!({"stopTimeout": 1}));
        Bundle::new_in(
            &root.join("containers/onboot"),
            "000-hello",
            &["echo", "hello-from-onboot"],
        );

        // A mount point, as an image's root is: pivot_root(2) refuses any other root.
        mount(
            Some(root.as_path()),
            &root,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        mount(
            Some("proc"),
            &root.join("proc"),
            Some("proc"),
            MsFlags::empty(),
            None::<&str>,
        )?;
        for dir in ["sys", "dev"] {
            mount(
                Some(Path::new("/").join(dir).as_path()),
                &root.join(dir),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
        }
        mount(
            Some("tmpfs"),
            &root.join("run"),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )?;

        // Every event on the console: the test follows restarts and stops there.
        let supervisor = format!(
            "/usr/bin/service system-init --console all --cgroup-parent {}",
            sandbox::cgroup_parent()
        );
        let mut init = Command::new("/usr/sbin/chroot")
            .arg(&root)
            .arg("/init")
            .env_clear()
            .env("KILN_SUPERVISOR", &supervisor)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let init_pid = i32::try_from(init.id())?;
        let mut lines = Lines::follow(init.stdout.take().unwrap());

        lines.expect("init: userspace mode");
        // init's first line says where userspace began on the boot clock.
        assert!(
            lines.seen[0].starts_with("init: kiln init ")
                && lines.seen[0].ends_with(" s after boot"),
            "{}",
            lines.seen[0]
        );
        lines.expect("orphans-made");
        let first = pid_of(&lines.expect(&format!("init: started {supervisor}, pid ")));
        lines.expect("hello-from-onboot");
        let sleeper = pid_of(&lines.expect("service: sleeper: running, pid "));
        let ticker = pid_of(&lines.expect("service: ticker: running, pid "));
        assert_eq!(
            fs::read_to_string("/proc/sys/kernel/hostname")?.trim(),
            "kiln-under-test"
        );

        // Orphans land on init (a child subreaper) and are reaped.
        let deadline = Instant::now() + Duration::from_secs(30);
        while zombie_children(init_pid) > 0 {
            assert!(
                Instant::now() < deadline,
                "{} zombies still wait for init",
                zombie_children(init_pid)
            );
            std::thread::sleep(Duration::from_millis(50));
        }

        lines.mark();
        kill(Pid::from_raw(first), Signal::SIGKILL)?;
        lines.expect(&format!("init: {supervisor} killed by SIGKILL"));
        lines.expect(&format!("init: restarting {supervisor} in 1s"));
        let second = pid_of(&lines.expect(&format!("init: started {supervisor}, pid ")));
        assert_ne!(second, first);
        lines.expect("volumes and onboot already ran at this boot");
        lines.expect(&format!(
            "service: sleeper: adopted, pid {sleeper}, running for "
        ));
        lines.expect(&format!(
            "service: ticker: adopted, pid {ticker}, running for "
        ));
        assert_eq!(lines.count("hello-from-onboot"), 1, "onboot ran once");

        // The new supervisor serves the same processes, once each.
        let socket = root.join("run/service.sock");
        let cli = |args: &[&str]| {
            let mut command = Command::new(SERVICE);
            command
                .arg(args[0])
                .arg("--socket")
                .arg(&socket)
                .args(&args[1..]);
            let output = output_via_files(&mut command);
            assert!(output.status.success(), "service {args:?}: {output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        let list: serde_json::Value = serde_json::from_str(&cli(&["list", "--json"]))?;
        let pids: Vec<(&str, i64)> = list["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|service| {
                (
                    service["name"].as_str().unwrap(),
                    service["pid"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            pids,
            [
                ("sleeper", i64::from(sleeper)),
                ("ticker", i64::from(ticker))
            ]
        );
        assert_eq!(
            processes_running(&["sleep", "1000"]),
            1,
            "no second sleeper"
        );
        // The ticker's output is read again: lines written after the adoption arrive.
        let mut follower = Command::new(SERVICE)
            .args(["logs", "-f", "-n", "0", "ticker", "--socket"])
            .arg(&socket)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut followed = std::io::BufReader::new(follower.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut followed, &mut line)?;
        assert!(line.ends_with(" stdout: tick\n"), "{line:?}");
        follower.kill()?;
        follower.wait()?;
        assert!(
            read(&root.join("var/log/ticker.out.log")).lines().count() > 1,
            "the log file goes on"
        );

        // A crash of an adopted service: seen through its pidfd, restarted by the policy.
        kill(Pid::from_raw(sleeper), Signal::SIGKILL)?;
        lines.expect("service: sleeper: ended (status unknown: adopted)");
        lines.expect("service: sleeper: restart 1 in 1s");
        let restarted = pid_of(&lines.expect("service: sleeper: running, pid "));
        assert_ne!(restarted, sleeper);
        assert_eq!(
            lines.count("service: ticker: running, pid "),
            1,
            "never started twice"
        );
        assert_eq!(
            lines.count("removing the container an earlier supervisor left"),
            0
        );

        kill(Pid::from_raw(init_pid), Signal::SIGUSR2)?;
        lines.expect("init: SIGUSR2 received: poweroff");
        lines.expect("service: sleeper: stopping with SIGTERM");
        lines.expect("service: ticker: stopping with SIGTERM");
        lines.expect("service: all services stopped");
        lines.expect("init: poweroff: done");
        let status = init.wait()?;
        assert!(status.success(), "init: {status}");
        lines.drain();
        assert_nothing_left("init's poweroff");
        Ok(())
    });
}
