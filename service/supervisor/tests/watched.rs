//! Watching running services beyond their exits: an exec healthcheck that gates a dependent and,
//! once its file is gone, gets the service restarted; an http healthcheck answered by a server
//! on the service's own loopback (its network namespace), with `restart: no` leaving it failed
//! as unhealthy; a tcp healthcheck; a service that stops sending `WATCHDOG=1` aborted, killed
//! and restarted, its `STATUS=` text shown; a crash loop past its `restartLimit` left failed.
//! Runs as root inside the sandbox; the test follows the daemon's event lines and asks the
//! control socket.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;
use std::path::Path;

use serde_json::json;
use support::*;

/// A service that runs until SIGTERM.
const RUNS: &str = "trap 'exit 0' TERM; while true; do sleep 0.05; done";

#[test]
fn health_probes_gate_dependents_and_restart_or_fail_their_service_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ready,
        } = Tree::new();
        service(
            &services,
            "web",
            &format!("echo web-up; {RUNS}"),
            json!({"healthcheck": {"exec": ["sh", "-c", "echo checking; test -e /ready/web-ok"],
                   "interval": 1, "retries": 2, "startPeriod": 600}}),
        );
        service(&services, "needs-web", RUNS, json!({"dependsOn": ["web"]}));
        // A web server on the loopback of its own network namespace.
        let www = ready.join("www");
        fs::create_dir_all(&www)?;
        fs::write(www.join("health"), "fine\n")?;
        let server = "ip link set lo up && exec httpd -f -p 127.0.0.1:8080 -h /ready/www";
        let mut api = service(
            &services,
            "api",
            server,
            json!({"restart": "no", "stopTimeout": 1,
                   "healthcheck": {"http": "http://127.0.0.1:8080/health", "interval": 1, "retries": 1}}),
        );
        let mut port = service(
            &services,
            "port",
            server,
            json!({"stopTimeout": 1, "healthcheck": {"tcp": "127.0.0.1:8080", "interval": 1}}),
        );
        for bundle in [&mut api, &mut port] {
            bundle.edit(|config| {
                config["process"]["capabilities"] = caps(&[
                    "CAP_NET_ADMIN",
                    "CAP_NET_BIND_SERVICE",
                    "CAP_SETUID",
                    "CAP_SETGID",
                ]);
            });
        }
        let (mut daemon, mut lines) = start_daemon(&containers, &[]);

        // web: starting until its probe passes (failures in its start period do not count);
        // its dependent waits for that.
        let first = pid_of(&lines.expect("web: running, pid "));
        lines.expect("api: healthy (HTTP 200)");
        lines.expect("port: healthy (connected)");
        assert_eq!(listed("web")["health"], "starting");
        assert_eq!(listed("needs-web")["state"], "waiting");
        fs::write(ready.join("web-ok"), "")?;
        lines.expect("web: healthy (exit 0: checking)");
        lines.expect("needs-web: running, pid ");
        assert!(lines.position("web: healthy") < lines.position("needs-web: running"));
        let web = listed("web");
        assert_eq!(web["health"], "healthy");
        assert_eq!(web["last_probe"]["passed"], true);
        assert_eq!(web["last_probe"]["detail"], "exit 0: checking");
        let table = cli_ok(&["list"]);
        let row = table.lines().find(|row| row.starts_with("web ")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..3], ["web", "running", "healthy"], "{table}");
        let status = cli_ok(&["status", "web"]);
        assert!(status.contains("  health:    healthy\n"), "{status}");
        assert!(status.contains("  probe:     passed ("), "{status}");

        // Its file gone: two failed probes, stopped, restarted by `restart: always`.
        lines.mark();
        fs::remove_file(ready.join("web-ok"))?;
        lines.expect("web: unhealthy (2 failed probes in a row, the last: exit 1: checking): stopping with SIGTERM");
        lines.expect("web: exited with status 0 (stopped: unhealthy)");
        lines.restarted("web", first);
        let web = listed("web");
        assert_eq!(web["restarts"], 1);
        assert_eq!(web["health"], "starting", "a new run starts unchecked");

        // api: a 404 is unhealthy; `restart: no` leaves it failed as unhealthy.
        fs::remove_file(www.join("health"))?;
        lines.expect("api: unhealthy (1 failed probes in a row, the last: HTTP 404)");
        lines.expect("(stopped: unhealthy); failed");
        let api = listed("api");
        assert_eq!(api["state"], "failed");
        assert_eq!(api["problem"], "unhealthy");
        assert_eq!(api.get("health"), None, "no health once it is not running");
        assert_eq!(listed("port")["health"], "healthy");

        stop_daemon(&mut daemon, &mut lines);
        Ok(())
    });
}

#[test]
fn a_silent_watchdog_gets_its_service_restarted_and_a_crash_loop_stops_at_its_limit_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ready,
        } = Tree::new();
        // Each run counts itself and feeds the watchdog until /ready/starve-RUN exists; sh as
        // its container's PID 1 ignores SIGABRT, so the stop timeout's SIGKILL ends it.
        let dog = service(
            &services,
            "dog",
            "n=$(($(cat /ready/dog-runs 2>/dev/null || echo 0) + 1)); echo $n > /ready/dog-runs; \
             echo run $n usec=$WATCHDOG_USEC; service notify STATUS=\"feeding, run $n\"; \
             while [ ! -e /ready/starve-$n ]; do service notify WATCHDOG=1; sleep 0.2; done; \
             echo starving; while true; do sleep 1; done",
            json!({"watchdog": 2, "stopTimeout": 1}),
        );
        fs::copy(SERVICE, dog.dir.join("rootfs/bin/service"))?;
        service(
            &services,
            "crashy",
            "echo crash; exit 1",
            json!({"restartLimit": {"burst": 2, "interval": 60}}),
        );
        let (mut daemon, mut lines) = start_daemon(&containers, &[]);

        let first = pid_of(&lines.expect("dog: running, pid "));
        // Over 3 s of backoff (1 s, 2 s): longer than the dog's watchdog time, which it fed.
        lines.expect("crashy: exited with status 1; restartLimit reached (2 restarts within 60s): failed, not restarted");
        assert_eq!(lines.count("dog: no WATCHDOG=1"), 0);
        assert!(
            read(Path::new("/var/log/dog.out.log")).starts_with("run 1 usec=2000000\n"),
            "WATCHDOG_USEC is the watchdog time in microseconds"
        );
        let status = cli_ok(&["status", "dog"]);
        assert!(status.contains("  status:    feeding, run 1\n"), "{status}");
        assert_eq!(listed("dog")["status_text"], "feeding, run 1");

        fs::write(ready.join("starve-1"), "")?;
        lines.expect("dog: no WATCHDOG=1 within 2s: aborting it with SIGABRT");
        lines.expect("dog: still running 1s after the stop signal: killing");
        lines.expect("dog: killed by SIGKILL (stopped: watchdog timeout)");
        lines.expect("dog: restart 1 in 1s");
        lines.restarted("dog", first);
        // The new run has a notify socket of its own and says its own status.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while listed("dog")["status_text"] != "feeding, run 2" {
            assert!(std::time::Instant::now() < deadline, "{}", listed("dog"));
            std::thread::sleep(std::time::Duration::from_millis(50));
        }

        let crashy = listed("crashy");
        assert_eq!(crashy["state"], "failed");
        assert_eq!(crashy["restarts"], 2);
        assert_eq!(
            lines.count("crashy: running"),
            3,
            "started once, restarted twice"
        );

        stop_daemon(&mut daemon, &mut lines);
        Ok(())
    });
}
