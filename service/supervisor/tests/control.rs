//! The control socket and the `service` CLI against a running `service system-init`: list and
//! status with and without --json; stop, start, restart and kill on running, crashed and stopped
//! services; logs -n and -f; exec's exit code and namespaces; a garbage request answered with
//! an error on a connection that goes on serving; a non-root client refused (by the socket's mode
//! and, with the mode opened up, by its credentials); a second supervisor refused; shutdown
//! waited for.
//! Runs as root inside the sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;

/// One request and its answer on an open connection.
fn ask(stream: &mut BufReader<UnixStream>, line: &str) -> Value {
    stream.get_mut().write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|err| panic!("{answer:?}: {err}"))
}

#[test]
fn the_cli_lists_controls_and_follows_services_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ready,
        } = Tree::new();
        service(
            &services,
            "sleeper",
            "trap 'echo got-usr1' USR1; trap 'exit 0' TERM; echo sleeper-up; \
             while true; do sleep 0.05; done",
            json!({}),
        );
        // Fails until /ready/fixed exists; not restarted.
        service(
            &services,
            "flaky",
            "test -e /ready/fixed || { echo not-fixed; exit 3; }; \
             trap 'exit 0' TERM; while true; do sleep 0.05; done",
            json!({"restart": "no"}),
        );
        service(
            &services,
            "needs-flaky",
            "trap 'exit 0' TERM; while true; do sleep 0.05; done",
            json!({"dependsOn": ["flaky"], "restart": "no"}),
        );
        let (mut daemon, mut lines) = start_daemon(&containers, &[]);
        let sleeper = pid_of(&lines.expect("sleeper: running, pid "));
        // needs-flaky starts once flaky runs, so all three are up, briefly: said with the clocks.
        let up = lines.expect("all 3 services up, ");
        let clocks = up.split_once("up, ").unwrap().1;
        let (boot, supervisor) = clocks.split_once(" s after boot, ").unwrap();
        let supervisor = supervisor
            .strip_suffix(" s after the supervisor started")
            .unwrap();
        assert!(boot.parse::<f64>()? > supervisor.parse::<f64>()?, "{up}");
        assert!(lines.position("all 3 services up") > lines.position("needs-flaky: running"));
        lines.expect("flaky: exited with status 3");

        // list: a table, and the same as JSON.
        let table = cli_ok(&["list"]);
        let rows: Vec<&str> = table.lines().collect();
        assert!(
            rows[0].starts_with("NAME") && rows[0].contains("LAST EXIT"),
            "{table}"
        );
        let row = rows.iter().find(|row| row.starts_with("sleeper ")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "running", "{table}");
        assert_eq!(cells[2], "-", "no healthcheck: {table}");
        assert_eq!(cells[3], sleeper.to_string(), "{table}");
        let row = rows.iter().find(|row| row.starts_with("flaky ")).unwrap();
        assert!(
            row.contains(" failed ") && row.ends_with("status 3"),
            "{table}"
        );
        assert_eq!(listed("sleeper")["pid"], sleeper);
        assert_eq!(listed("flaky")["last_exit"], json!({"code": 3}));
        // It started once flaky ran (no readiness declared), before flaky failed.
        assert_eq!(listed("needs-flaky")["state"], "running");

        // status: facts and the last lines.
        let status = cli_ok(&["status", "flaky"]);
        assert!(status.starts_with("flaky - failed for "), "{status}");
        assert!(status.contains("last exit: status 3"), "{status}");
        assert!(status.contains(" stdout: not-fixed"), "{status}");
        let status = json_of(&["status", "sleeper"]);
        assert_eq!(status["service"]["state"], "running");
        assert_eq!(status["lines"][0]["text"], "sleeper-up");
        let err = cli_fails(&["status", "nosuch"]);
        assert!(
            err.contains("no service `nosuch` (services: flaky, needs-flaky, sleeper)"),
            "{err}"
        );

        // A crashed service: start refuses a dependent of it, then starts it once fixed.
        assert!(cli_ok(&["stop", "needs-flaky"]).starts_with("needs-flaky: stopped"));
        let err = cli_fails(&["start", "needs-flaky"]);
        assert!(
            err.contains("dependsOn `flaky` (failed), not up: start it first"),
            "{err}"
        );
        // Started while still broken: it runs, fails again, and says why.
        lines.mark();
        assert!(cli_ok(&["start", "flaky"]).starts_with("flaky: running, pid "));
        lines.expect("flaky: exited with status 3");
        assert_eq!(listed("flaky")["state"], "failed");
        fs::write(ready.join("fixed"), "")?;
        let started = cli_ok(&["start", "flaky"]);
        assert!(started.starts_with("flaky: running, pid "), "{started}");
        assert!(cli_ok(&["start", "needs-flaky"]).starts_with("needs-flaky: running"));

        // A running service: stop, stop again, start, restart; each a new pid.
        assert!(cli_ok(&["stop", "sleeper"]).starts_with("sleeper: stopped"));
        lines.expect("sleeper: stopping with SIGTERM");
        assert_eq!(listed("sleeper")["state"], "stopped");
        assert_eq!(listed("sleeper")["pid"], Value::Null);
        assert!(cli_ok(&["stop", "sleeper"]).starts_with("sleeper: stopped"));
        let started = json_of(&["start", "sleeper"]);
        let second = started["service"]["pid"].as_i64().unwrap();
        assert_ne!(second, i64::from(sleeper));
        assert_eq!(started["service"]["state"], "running");
        let restarted = json_of(&["restart", "sleeper"]);
        let third = restarted["service"]["pid"].as_i64().unwrap();
        assert_ne!(third, second, "restart makes a new process");
        assert_eq!(listed("sleeper")["restarts"], 0, "asked for, not automatic");

        // logs -f: a line printed after the follow started arrives. The first line (the ring's
        // last) shows the follow is in place.
        let mut follower = Command::new(SERVICE)
            .args(["logs", "-f", "-n", "1", "sleeper", "--socket", SOCKET])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut followed = BufReader::new(follower.stdout.take().unwrap());
        let mut line = String::new();
        followed.read_line(&mut line)?;
        assert!(line.ends_with(" stdout: sleeper-up\n"), "{line:?}");
        let killed = cli_ok(&["kill", "sleeper", "USR1"]);
        assert!(killed.starts_with("sleeper: running"), "{killed}");
        loop {
            line.clear();
            assert_ne!(followed.read_line(&mut line)?, 0, "the follow ended");
            if line.ends_with(" stdout: got-usr1\n") {
                break;
            }
            // Only the new run's first line can come before it.
            assert!(line.ends_with(" stdout: sleeper-up\n"), "{line:?}");
        }
        follower.kill()?;
        follower.wait()?;
        // logs -n: the last lines of every run so far.
        let logs = cli_ok(&["logs", "-n", "2", "sleeper"]);
        let texts: Vec<&str> = logs
            .lines()
            .map(|line| line.split_once(": ").unwrap().1)
            .collect();
        assert_eq!(texts, ["sleeper-up", "got-usr1"], "{logs}");
        let all = json_of(&["logs", "sleeper"]);
        assert_eq!(all["lines"].as_array().unwrap().len(), 4, "{all}");

        // kill TERM: the trap exits 0 and the policy (always) brings it back.
        cli_ok(&["kill", "sleeper", "TERM"]);
        lines.expect("sleeper: exited with status 0");
        lines.expect("sleeper: restart 1 in 1s");
        assert_eq!(lines.count("services up"), 1, "said once, the first time");
        let err = cli_fails(&["kill", "sleeper", "SIGNOPE"]);
        assert!(
            err.contains("kill sleeper: unknown signal `SIGNOPE`"),
            "{err}"
        );

        // exec: inside the service's namespaces and cgroup, stdio attached, status returned.
        lines.mark();
        lines.expect("sleeper: running, pid ");
        let inside = cli(&["exec", "sleeper", "--", "sh", "-c", "hostname; exit 7"]);
        assert_eq!(inside.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&inside.stdout), "sleeper\n");
        let cgroup = cli_ok(&["exec", "sleeper", "--", "cat", "/proc/self/cgroup"]);
        assert!(cgroup.contains("/sleeper"), "{cgroup}");
        let err = cli_fails(&["exec", "needs-flaky-typo", "--", "true"]);
        assert!(err.contains("no service `needs-flaky-typo`"), "{err}");

        // Garbage on a connection: an error answer, and the connection still serves.
        let mut stream = BufReader::new(UnixStream::connect(SOCKET)?);
        let answer = ask(&mut stream, "this is not json\n");
        assert_eq!(answer["ok"], false);
        assert!(answer["error"].as_str().unwrap().starts_with("request: "));
        let answer = ask(&mut stream, "{\"command\":\"frobnicate\"}\n");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("unknown variant `frobnicate`"),
            "{answer}"
        );
        let answer = ask(&mut stream, "{\"command\":\"list\"}\n");
        assert_eq!(answer["ok"], true);
        drop(stream);

        // A non-root client: the socket's mode keeps it out; opened up, its credentials do.
        let as_nobody = |args: &str| {
            let mut command = Command::new(SERVICE);
            command.arg(args).args(["--socket", SOCKET]).uid(65534);
            output_via_files(&mut command)
        };
        assert_eq!(fs::metadata(SOCKET)?.permissions().mode() & 0o777, 0o600);
        let err = failure(&as_nobody("list"), "list as nobody");
        assert!(
            err.contains("Permission denied") && err.contains("for root only"),
            "{err}"
        );
        fs::set_permissions(SOCKET, fs::Permissions::from_mode(0o666))?;
        let err = failure(&as_nobody("list"), "list as nobody");
        assert!(
            err.contains("the control socket serves root only (this client runs as uid 65534)"),
            "{err}"
        );
        assert_eq!(listed("sleeper")["state"], "running", "still serving");

        // A second supervisor finds the first one answering and leaves everything alone.
        let second = output_via_files(&mut daemon_command(&containers, &[]));
        let err = failure(&second, "a second system-init");
        assert!(
            err.contains("another supervisor answers on /run/service.sock"),
            "{err}"
        );
        assert_eq!(listed("sleeper")["state"], "running", "still serving");

        // shutdown: waited for; the daemon is gone with its socket when it returns.
        assert_eq!(cli_ok(&["shutdown"]), "all services stopped\n");
        lines.expect("shutdown requested: shutting down");
        let status = daemon.wait()?;
        assert!(status.success(), "{status}");
        assert!(!Path::new(SOCKET).exists());
        let err = cli_fails(&["list"]);
        assert!(err.contains("is `service system-init` running?"), "{err}");
        assert_nothing_left("the daemon's shutdown");
        Ok(())
    });
}

#[test]
fn a_service_under_the_container_init_stops_on_the_forwarded_signal_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ..
        } = Tree::new();
        // PID 1 of its pid namespace would ignore SIGTERM (no handler); under the init it is
        // PID 2 and dies of it. The subshell's sleep is orphaned to PID 1 and must be reaped.
        service(
            &services,
            "wrapped",
            "(sleep 0.1 &); exec sleep 1000",
            json!({"init": true, "stopTimeout": 3}),
        );
        // systemd in a container stops on SIGRTMIN+3, a real-time signal.
        service(
            &services,
            "systemdish",
            "exec sleep 1000",
            json!({"init": true, "stopSignal": "SIGRTMIN+3", "stopTimeout": 3}),
        );
        let (mut daemon, mut lines) = start_daemon(&containers, &[]);
        lines.expect("wrapped: running, pid ");
        lines.expect("systemdish: running, pid ");

        // The init is PID 1 and the service's process its only child, PID 2, once the orphan
        // has been reaped (not left a zombie): polled from inside, 10 s at most.
        let children = cli_ok(&[
            "exec",
            "wrapped",
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do set -- $(cat /proc/1/task/1/children); \
             [ $# -eq 1 ] && break; i=$((i+1)); sleep 0.05; done; \
             echo $(cat /proc/1/comm) $(cat /proc/1/task/1/children) $(cat /proc/2/comm)",
        ]);
        assert_eq!(children, "kiln-init 2 sleep\n");

        // Stopped by the forwarded SIGTERM, long before the stop timeout's SIGKILL.
        lines.mark();
        assert!(cli_ok(&["stop", "wrapped"]).starts_with("wrapped: stopped"));
        lines.expect("wrapped: stopping with SIGTERM");
        assert_eq!(listed("wrapped")["last_exit"], json!({"code": 143}));
        assert_eq!(lines.count("wrapped: still running"), 0, "no SIGKILL");

        // The real-time stop signal reaches the process, which dies of it: 128 + 37.
        lines.mark();
        assert!(cli_ok(&["stop", "systemdish"]).starts_with("systemdish: stopped"));
        lines.expect("systemdish: stopping with SIGRTMIN+3");
        assert_eq!(listed("systemdish")["last_exit"], json!({"code": 165}));
        assert_eq!(lines.count("systemdish: still running"), 0, "no SIGKILL");

        assert_eq!(cli_ok(&["shutdown"]), "all services stopped\n");
        assert!(daemon.wait()?.success());
        assert_nothing_left("the daemon's shutdown");
        Ok(())
    });
}

/// Reads a terminal's master until `text` has come; returns everything read.
fn read_terminal_until(master: &mut fs::File, text: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0_u8; 1024];
    while !seen.contains(text) {
        let count = std::io::Read::read(master, &mut buf).unwrap_or(0);
        assert_ne!(count, 0, "the terminal closed before `{text}`: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..count]));
    }
    seen
}

#[test]
fn exec_runs_through_the_supervisor_with_the_clients_stdio_root() {
    sandbox::test(|| {
        let Tree {
            containers,
            services,
            ..
        } = Tree::new();
        let mut boxed = service(
            &services,
            "box",
            "trap 'exit 0' TERM; while true; do sleep 0.05; done",
            json!({}),
        );
        // Where `exec -t` makes its terminals, as LinuxKit's default mounts give every container.
        boxed.edit(|config| {
            config["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
            }))
        });
        let (mut daemon, mut lines) = start_daemon(&containers, &[]);
        lines.expect("box: running, pid ");

        // The client's stdin, stdout and stderr are the command's, passed over the socket; the
        // client runs where neither cgroupfs nor the runtime's state can be seen or written.
        let script = "read line; echo \"got $line\"; echo to-stderr >&2; \
                      grep -c . /proc/self/cgroup >/dev/null && exit 5";
        let hidden = format!(
            "mount -t tmpfs none /sys/fs/cgroup && mount -t tmpfs none {} && exec \"$@\"",
            state_root().display()
        );
        let mut client = Command::new("unshare");
        client
            .args([
                "-m", "sh", "-c", &hidden, "sh", SERVICE, "exec", "--socket", SOCKET,
            ])
            .args(["box", "--", "sh", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = client.spawn()?;
        child.stdin.take().unwrap().write_all(b"hello\n")?;
        let output = child.wait_with_output()?;
        assert_eq!(String::from_utf8_lossy(&output.stdout), "got hello\n");
        assert_eq!(String::from_utf8_lossy(&output.stderr), "to-stderr\n");
        assert_eq!(output.status.code(), Some(5), "the command's status");

        // Killed by a signal: 128+N, as a shell says it.
        let killed = cli(&["exec", "box", "--", "sh", "-c", "kill -KILL $$"]);
        assert_eq!(killed.status.code(), Some(128 + 9));

        // A signal the client gets reaches the command.
        let mut client = Command::new(SERVICE)
            .args(["exec", "--socket", SOCKET, "box", "--", "sh", "-c"])
            .arg("trap 'echo got-int; exit 3' INT; echo ready; while true; do sleep 0.05; done")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(client.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)?;
        assert_eq!(line, "ready\n");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(client.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        line.clear();
        out.read_line(&mut line)?;
        assert_eq!(line, "got-int\n");
        assert_eq!(client.wait()?.code(), Some(3));

        // -t: an interactive shell on a terminal of its own, relayed to the client's terminal
        // (a pseudo-terminal here, 33 rows by 77 columns), which is put back as it was.
        let outer = nix::pty::openpty(
            &nix::pty::Winsize {
                ws_row: 33,
                ws_col: 77,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
            None,
        )?;
        let before = nix::sys::termios::tcgetattr(&outer.slave)?;
        let mut client = Command::new(SERVICE)
            .args(["exec", "-t", "--socket", SOCKET, "box", "--", "sh"])
            .stdin(outer.slave.try_clone()?)
            .stdout(outer.slave.try_clone()?)
            .stderr(outer.slave.try_clone()?)
            .spawn()?;
        let mut master = fs::File::from(outer.master);
        master.write_all(b"echo out-$((6*7)) $(stty size) $(tty)\n")?;
        let seen = read_terminal_until(&mut master, "out-42 33 77 /dev/pts/");
        master.write_all(b"exit 4\n")?;
        assert_eq!(client.wait()?.code(), Some(4), "{seen}");
        let after = nix::sys::termios::tcgetattr(&outer.slave)?;
        assert_eq!(
            after.local_flags, before.local_flags,
            "the terminal is put back"
        );

        // Failures: one line each, no runtime noise.
        let err = cli_fails(&["exec", "nosuch", "--", "true"]);
        assert_eq!(err, "service: no service `nosuch` (services: box)\n");
        let err = cli_fails(&["exec", "box", "--", "/bin/no-such-program"]);
        assert_eq!(
            err,
            "service: exec in box: process.args[0]: `/bin/no-such-program` is not an \
             executable file in the container\n"
        );
        assert!(cli_ok(&["stop", "box"]).starts_with("box: stopped"));
        let err = cli_fails(&["exec", "box", "--", "true"]);
        assert_eq!(err, "service: exec in box: not running (stopped)\n");

        // A client that is not root is refused, even with the socket's mode opened up.
        fs::set_permissions(SOCKET, fs::Permissions::from_mode(0o666))?;
        let mut command = Command::new(SERVICE);
        command
            .args(["exec", "--socket", SOCKET, "box", "--", "true"])
            .uid(65534);
        let err = failure(&output_via_files(&mut command), "exec as nobody");
        assert!(err.contains("serves root only"), "{err}");

        assert_eq!(cli_ok(&["shutdown"]), "all services stopped\n");
        assert!(daemon.wait()?.success());
        assert_nothing_left("the daemon's shutdown");
        Ok(())
    });
}
