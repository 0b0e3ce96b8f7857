//! `service system-init`: a volume overlaid, services started in dependency order (on ready
//! files and on `READY=1` sent with `service notify`), restarted by policy with
//! backoff, a killed service brought back with a new pid, `restart: no` left exited, a cycle
//! reported while the rest runs, logs written and rotated, and SIGTERM running onshutdown and
//! stopping everything in reverse dependency order within the stop timeouts.
//! Runs as root inside the sandbox; the test follows the daemon's event lines on its stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;
use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use support::*;

#[test]
fn services_are_supervised_and_stopped_in_order_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ready,
        } = Tree::new();
        let waits_for_term = "trap 'exit 0' TERM; sleep 1000 & wait";

        // PID 1 of its pid namespace with no handler: SIGTERM does nothing, SIGKILL after 1 s.
        service(
            &services,
            "sleeper",
            "exec sleep 1000",
            json!({"stopTimeout": 1}),
        );
        service(
            &services,
            "crasher",
            "echo crash; echo why-it-crashed >&2; exit 3",
            json!({}),
        );
        service(
            &services,
            "printer",
            &format!("echo hello from printer; touch /ready/printer; {waits_for_term}"),
            json!({"ready": {"file": ready.join("printer")}}),
        );
        service(
            &services,
            "dependent",
            &format!("test -e /ready/printer && echo saw-ready; {waits_for_term}"),
            json!({"dependsOn": ["printer"]}),
        );
        // Ready once it says so on its notify socket, which it does when the test lets it.
        let notifier = service(
            &services,
            "notifier",
            &format!("echo socket=$NOTIFY_SOCKET; while [ ! -e /ready/go ]; do sleep 0.05; done; service notify --ready; {waits_for_term}"),
            json!({"ready": {"notify": true}}),
        );
        fs::copy(SERVICE, notifier.dir.join("rootfs/bin/service"))?;
        service(
            &services,
            "after-notifier",
            waits_for_term,
            json!({"dependsOn": ["notifier"]}),
        );
        service(&services, "once", "echo once-ran", json!({"restart": "no"}));
        service(
            &services,
            "cycle-a",
            "true",
            json!({"dependsOn": ["cycle-b"]}),
        );
        service(
            &services,
            "cycle-b",
            "true",
            json!({"dependsOn": ["cycle-a"]}),
        );
        service(
            &services,
            "chatty",
            &format!("i=0; while [ $i -lt 80 ]; do echo chatty-line-$i; i=$((i+1)); done; {waits_for_term}"),
            json!({}),
        );
        let broken = service(&services, "broken", "true", json!({}));
        fs::write(
            broken.dir.join("runtime.json"),
            "{\"restart\": \"sometimes\"}",
        )?;
        service(
            &services,
            "needs-broken",
            "true",
            json!({"dependsOn": ["broken"]}),
        );
        let missing = sandbox::scratch().join("no/such/source");
        service(
            &services,
            "badmount",
            "true",
            json!({"mounts": [{"type": "bind", "source": missing, "destination": "mnt", "options": ["bind"]}]}),
        );
        Bundle::new_in(
            &containers.join("onshutdown"),
            "000-bye",
            &["echo", "bye-from-onshutdown"],
        );
        Bundle::new_in(
            &containers.join("onboot"),
            "000-hello",
            &["echo", "hello-from-onboot"],
        );

        let volume = containers.join("volumes/data");
        for dir in ["lower", "tmp", "merged"] {
            fs::create_dir_all(volume.join(dir))?;
        }
        fs::write(volume.join("lower/hello"), "from the image")?;

        let (mut daemon, mut lines) =
            start_daemon(&containers, &["--log-max-size", "200", "--log-keep", "3"]);

        lines.expect("hello-from-onboot");
        // Volumes are set up before onboot: an overlay on merged/ with a tmpfs upper layer.
        assert_eq!(read(&volume.join("merged/hello")), "from the image");
        fs::write(volume.join("merged/new"), "written")?;
        assert!(
            !volume.join("lower/new").exists(),
            "writes go to the upper layer"
        );
        lines.expect(
            "cycle-a: not started: dependsOn: dependency cycle cycle-a -> cycle-b -> cycle-a",
        );
        lines.expect("cycle-b: not started");
        let line = lines.expect("broken: not started: ");
        assert!(
            line.contains("runtime.json") && line.contains("restart"),
            "{line}"
        );
        lines.expect("needs-broken: not started: dependsOn: `broken` cannot start");
        let line = lines.expect("badmount: failed to start: ");
        assert!(
            line.contains("runtime.json mounts[0]")
                && line.contains(&missing.display().to_string()),
            "{line}"
        );
        lines.expect("badmount: restart 1 in 1s");
        let sleeper = pid_of(&lines.expect("sleeper: running, pid "));
        lines.expect("printer: ready");
        lines.expect("dependent: running, pid ");
        assert!(
            lines.position("printer: ready") < lines.position("dependent: running"),
            "the dependent waits for the printer's ready file"
        );
        lines.expect("notifier: running, pid ");
        assert_eq!(
            lines.count("notifier: ready"),
            0,
            "not ready before READY=1"
        );
        assert_eq!(lines.count("after-notifier: running"), 0);
        fs::write(ready.join("go"), "")?;
        lines.expect("notifier: ready");
        lines.expect("after-notifier: running, pid ");
        assert_eq!(
            read(Path::new("/var/log/notifier.out.log")),
            "socket=/run/notify/notify.sock\n"
        );
        lines.expect("once: exited with status 0");
        lines.expect("crasher: exited with status 3");
        // A failed run's last lines follow its exit on the console, from the in-memory ring.
        let line = lines.expect("crasher: output: ");
        assert!(
            line.ends_with(" stdout: crash") || line.ends_with(" stderr: why-it-crashed"),
            "{line}"
        );
        lines.expect("stderr: why-it-crashed");
        lines.expect("crasher: restart 1 in 1s");
        lines.expect("crasher: restart 2 in 2s");
        lines.expect("crasher: restart 3 in 4s");
        assert_eq!(
            lines.count("sleeper: running"),
            1,
            "the sleeper was not disturbed"
        );

        kill(Pid::from_raw(sleeper), Signal::SIGKILL)?;
        lines.expect("sleeper: killed by SIGKILL");
        lines.expect("sleeper: restart 1 in 1s");
        lines.restarted("sleeper", sleeper);

        assert_eq!(
            read(Path::new("/var/log/printer.out.log")),
            "hello from printer\n"
        );
        assert_eq!(read(Path::new("/var/log/dependent.out.log")), "saw-ready\n");
        assert!(read(Path::new("/var/log/crasher.out.log")).starts_with("crash\ncrash\n"));
        assert!(read(Path::new("/var/log/service.log")).contains("crasher: restart 1 in 1s"));

        kill(Pid::from_raw(i32::try_from(daemon.id())?), Signal::SIGTERM)?;
        lines.expect("SIGTERM: shutting down");
        lines.expect("bye-from-onshutdown");
        lines.expect("sleeper: still running 1s after the stop signal: killing");
        lines.expect("all services stopped");
        // Some services never came up: "all services up" was never said.
        assert_eq!(lines.count("services up"), 0, "{}", lines.seen.join("\n"));
        let status = daemon.wait()?;
        lines.drain();
        assert!(status.success(), "{status}");
        assert!(
            lines.position("dependent: stopping") < lines.position("printer: stopping"),
            "dependents stop first"
        );
        assert!(lines.position("bye-from-onshutdown") < lines.position("printer: stopping"));
        assert_eq!(lines.count("once: running"), 1, "restart: no stays exited");
        assert_eq!(
            lines.count("once: output"),
            0,
            "a run that succeeded is not reported"
        );
        assert!(lines
            .seen
            .iter()
            .any(|line| line.starts_with("service: dependent: exited with status 0; stopped")));

        // 80 lines of 14-15 bytes with a 200-byte limit and 3 kept: six files written, the oldest
        // dropped, the newest lines in the live file.
        let chatty = read(Path::new("/var/log/chatty.out.log"));
        assert!(chatty.ends_with("chatty-line-79\n"), "{chatty}");
        assert!(chatty.len() <= 200);
        assert!(Path::new("/var/log/chatty.out.log.2").exists());
        assert!(!Path::new("/var/log/chatty.out.log.3").exists());

        assert_nothing_left("the daemon's shutdown");
        Ok(())
    });
}

#[test]
fn the_console_shows_a_crash_loop_once_and_service_log_keeps_it_all_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ..
        } = Tree::new();
        service(&services, "looper", "echo round; exit 1", json!({}));
        service(
            &services,
            "steady",
            "trap 'exit 0' TERM; sleep 1000 & wait",
            json!({}),
        );
        let (mut daemon, mut lines) = start_daemon(&containers, &["--console", "errors"]);
        lines.expect("steady: running, pid ");
        lines.expect("looper: exited with status 1");
        // Two more rounds of the loop, seen in service.log (polled: nothing else says it).
        let log = Path::new("/var/log/service.log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !read(log).contains("looper: restart 3 in") {
            assert!(std::time::Instant::now() < deadline, "{}", read(log));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        kill(Pid::from_raw(i32::try_from(daemon.id())?), Signal::SIGTERM)?;
        lines.expect("all services stopped");
        assert!(daemon.wait()?.success());
        lines.drain();

        // The console: the first round only, then the shutdown's milestones.
        assert_eq!(lines.count("looper: running"), 1);
        assert_eq!(lines.count("looper: exited"), 1);
        assert_eq!(lines.count("looper: output: "), 1, "why it failed, once");
        assert_eq!(lines.count("restart"), 0);
        assert_eq!(lines.count("stopping with"), 0);
        assert_eq!(lines.count("SIGTERM: shutting down"), 1);
        // service.log: every round and every stop.
        let all = read(log);
        assert_eq!(all.matches("looper: running").count(), 3, "{all}");
        assert_eq!(all.matches("looper: output: ").count(), 3, "{all}");
        assert!(all.contains("looper: restart 2 in"), "{all}");
        assert!(all.contains("steady: stopping with SIGTERM"), "{all}");
        Ok(())
    });
}
