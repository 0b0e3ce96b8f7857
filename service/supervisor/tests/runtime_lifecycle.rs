//! `service runtime`: exit codes, stdio, the lifecycle and OCI state, runc's wrong-state errors.
//! Every test runs as root inside the sandbox, with busybox bundles made here.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};

use support::*;

#[test]
fn run_returns_the_container_exit_code_root() {
    sandbox::test(|| {
        Bundle::new("seven", &["sh", "-c", "exit 7"]);
        let output = runtime_output(&[
            "run",
            "--bundle",
            &sandbox::scratch().join("bundles/seven").to_string_lossy(),
            "seven",
        ]);
        assert_eq!(
            output.status.code(),
            Some(7),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let killed = Bundle::new("killed", &["sh", "-c", "sh -c 'kill -9 $$'; exit $?"]);
        let output = runtime_output(&["run", "-b", killed.path(), "killed"]);
        assert_eq!(
            output.status.code(),
            Some(137),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            leftover_state().is_empty(),
            "run deletes the container: {:?}",
            leftover_state()
        );
        Ok(())
    });
}

#[test]
fn run_killed_by_signal_exits_128_plus_n_root() {
    sandbox::test(|| {
        // The container's own init dies of SIGKILL, sent from outside once it says it runs.
        let bundle = Bundle::new("victim", &["sh", "-c", "echo up; exec sleep 1000"]);
        let mut run = runtime(&["run", "-b", bundle.path(), "victim"])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(run.stdout.take().unwrap()).read_line(&mut line)?;
        assert_eq!(line, "up\n");
        assert_eq!(state("victim")["status"], "running");
        ok(&["kill", "victim", "KILL"]);
        let status = run.wait()?;
        assert_eq!(status.code(), Some(137));

        // A process that is not a namespace's init dies of a real-time signal's default
        // action: 128 + 37 (nix's waitpid cannot name the signal and failed the wait).
        let mut bundle = Bundle::new("rt-victim", &["sh", "-c", "kill -37 $$; echo survived"]);
        bundle.edit(|config| {
            config["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|ns| ns["type"] != "pid");
        });
        let output = runtime_output(&["run", "-b", bundle.path(), "rt-victim"]);
        assert_eq!(output.status.code(), Some(128 + 37), "{output:?}");
        assert!(output.stdout.is_empty(), "{output:?}");
        Ok(())
    });
}

#[test]
fn stdout_and_stderr_reach_the_given_files_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("stdio", &["sh", "-c", "echo to-stdout; echo to-stderr >&2"]);
        let out_path = sandbox::scratch().join("out.log");
        let err_path = sandbox::scratch().join("err.log");
        let status = runtime(&["run", "-b", bundle.path(), "stdio"])
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .status()?;
        assert!(status.success());
        assert_eq!(read(&out_path), "to-stdout\n");
        assert_eq!(read(&err_path), "to-stderr\n");

        // Output to /dev/null is writable in the container.
        let bundle = Bundle::new(
            "devnull",
            &["sh", "-c", "echo discarded; echo status=$? >&2"],
        );
        let err_path = sandbox::scratch().join("devnull.err");
        let status = runtime(&["run", "-b", bundle.path(), "devnull"])
            .stdout(Stdio::null())
            .stderr(File::create(&err_path)?)
            .status()?;
        assert!(status.success());
        assert_eq!(read(&err_path), "status=0\n");

        // create passes its stdio to the container, as runc create does.
        let bundle = Bundle::new(
            "stdio2",
            &["sh", "-c", "echo created-out; echo created-err >&2"],
        );
        let out_path = sandbox::scratch().join("out2.log");
        let err_path = sandbox::scratch().join("err2.log");
        let status = runtime(&["create", "-b", bundle.path(), "stdio2"])
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .status()?;
        assert!(status.success());
        let pid = init_pid("stdio2");
        ok(&["start", "stdio2"]);
        assert_eq!(exit_status(wait_child(pid)), 0);
        assert_eq!(read(&out_path), "created-out\n");
        assert_eq!(read(&err_path), "created-err\n");
        ok(&["delete", "stdio2"]);
        Ok(())
    });
}

fn exit_status(status: nix::sys::wait::WaitStatus) -> i32 {
    runtime::exit_code(status).expect("the process ended")
}

#[test]
fn lifecycle_states_and_pid_file_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("life", &["sh", "-c", "echo started; exec sleep 1000"]);
        let pid_file = sandbox::scratch().join("life.pid");
        // The container writes to a pipe of ours once it runs: create hands it our stdout.
        let mut create = runtime(&["create", "-b", bundle.path(), "--pid-file"])
            .arg(&pid_file)
            .arg("life")
            .stdout(Stdio::piped())
            .spawn()?;
        let container_output = create.stdout.take().unwrap();
        assert!(create.wait()?.success());

        let created = state("life");
        assert_eq!(created["status"], "created");
        assert_eq!(created["id"], "life");
        assert_eq!(created["ociVersion"], "1.2.0");
        assert_eq!(created["bundle"], bundle.path());
        let pid = i32::try_from(created["pid"].as_i64().unwrap()).unwrap();
        assert!(pid > 1);
        assert_eq!(
            read(&pid_file).trim(),
            pid.to_string(),
            "--pid-file holds the init pid"
        );

        ok(&["start", "life"]);
        let running = state("life");
        assert_eq!(running["status"], "running");
        assert_eq!(running["pid"], pid);
        let mut line = String::new();
        BufReader::new(container_output).read_line(&mut line)?;
        assert_eq!(line, "started\n", "the process runs once started");

        ok(&["kill", "life", "SIGKILL"]);
        assert_eq!(exit_status(wait_child(pid)), 137);
        let stopped = state("life");
        assert_eq!(stopped["status"], "stopped");
        assert_eq!(stopped["pid"], 0);

        ok(&["delete", "life"]);
        let err = fails(&["state", "life"]);
        assert!(err.contains("container `life` does not exist"), "{err}");
        assert!(leftover_state().is_empty(), "{:?}", leftover_state());
        assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
        Ok(())
    });
}

#[test]
fn hooks_read_the_state_the_spec_gives_them_root() {
    sandbox::test(|| {
        // Each hook saves the state it reads on stdin; create-time hooks see the caller's
        // bundle (not the runtime's prepared copy) and `created`, as config.md gives it.
        let saved = sandbox::scratch().join("hook-states");
        fs::create_dir_all(&saved)?;
        let hook = |kind: &str| {
            let file = saved.join(kind);
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", file.display())]})
        };
        let mut bundle = Bundle::new("hooked", &["sleep", "1000"]);
        bundle.edit(|config| {
            config["hooks"] = json!({
                "prestart": [hook("prestart")],
                "createRuntime": [hook("createRuntime")],
                "createContainer": [hook("createContainer")],
                "poststart": [hook("poststart")],
                "poststop": [hook("poststop")],
            });
        });
        ok(&["create", "-b", bundle.path(), "hooked"]);
        let pid = init_pid("hooked");
        let read_state = |kind: &str| -> Value {
            let text = read(&saved.join(kind));
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{kind}: {err}: {text}"))
        };
        for kind in ["prestart", "createRuntime", "createContainer"] {
            let state = read_state(kind);
            assert_eq!(state["bundle"], bundle.path(), "{kind}: {state}");
            assert_eq!(state["status"], "created", "{kind}: {state}");
            assert_eq!(state["id"], "hooked", "{kind}: {state}");
        }
        assert_eq!(read_state("prestart")["pid"], pid);
        ok(&["start", "hooked"]);
        let state = read_state("poststart");
        assert_eq!(
            (&state["status"], &state["bundle"]),
            (&json!("running"), &json!(bundle.path()))
        );
        ok(&["kill", "hooked", "KILL"]);
        assert_eq!(exit_status(wait_child(pid)), 137);
        ok(&["delete", "hooked"]);
        let state = read_state("poststop");
        assert_eq!(state["bundle"], bundle.path(), "{state}");
        Ok(())
    });
}

#[test]
fn a_failing_poststart_or_poststop_hook_warns_and_the_rest_run_root() {
    sandbox::test(|| {
        // runtime.md: a failing poststart or poststop hook is a warning; the remaining hooks
        // and the lifecycle carry on. A failing poststop hook used to leave a container that
        // no delete could remove.
        let marks = sandbox::scratch().join("hook-marks");
        fs::create_dir_all(&marks)?;
        let failing = json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]});
        let marking = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marks.join(name).display())]});
        let mut bundle = Bundle::new("failhooks", &["sleep", "1000"]);
        bundle.edit(|config| {
            config["hooks"] = json!({
                "poststart": [failing, marking("poststart")],
                "poststop": [failing, marking("poststop")],
            });
        });
        ok(&["create", "-b", bundle.path(), "failhooks"]);
        let pid = init_pid("failhooks");
        let output = runtime_output(&["start", "failhooks"]);
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{err}");
        assert!(
            err.contains("WARN container `failhooks`: hooks.poststart[0] (/bin/sh) failed"),
            "{err}"
        );
        assert!(
            marks.join("poststart").exists(),
            "the next poststart hook ran"
        );
        assert_eq!(state("failhooks")["status"], "running");

        ok(&["kill", "failhooks", "KILL"]);
        assert_eq!(exit_status(wait_child(pid)), 137);
        let output = runtime_output(&["delete", "failhooks"]);
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{err}");
        assert!(err.contains("hooks.poststop[0] (/bin/sh) failed"), "{err}");
        assert!(
            marks.join("poststop").exists(),
            "the next poststop hook ran"
        );
        assert!(fails(&["state", "failhooks"]).contains("does not exist"));
        assert!(leftover_state().is_empty(), "{:?}", leftover_state());
        Ok(())
    });
}

#[test]
fn kill_delivers_each_signal_to_the_process_traps_root() {
    sandbox::test(|| {
        // A shell as the container's PID 1 with a trap per signal; its root is writable (no
        // `readonly`), so each trap leaves a file. `kill` must reach the trap for each, the
        // real-time ones too, by name or number (SIGRTMIN is 34, as glibc and runc count).
        let signals = [
            ("TERM", "TERM"),
            ("USR1", "USR1"),
            ("USR2", "USR2"),
            ("HUP", "HUP"),
            ("SIGRTMIN+3", "37"),
            ("34", "34"),
            ("RTMAX", "64"),
        ];
        for (given, signal) in signals {
            let script = format!(
                "trap 'touch /{signal}; exit 0' {signal}; echo ready; sleep 1000 & wait $!"
            );
            let mut bundle = Bundle::new(&format!("trap-{signal}"), &["sh", "-c", &script]);
            bundle.edit(|config| {
                config["root"].as_object_mut().unwrap().remove("readonly");
            });
            let id = format!("trap-{signal}");
            let mut create = runtime(&["create", "-b", bundle.path(), &id])
                .stdout(Stdio::piped())
                .spawn()?;
            let output = create.stdout.take().unwrap();
            assert!(create.wait()?.success());
            let pid = init_pid(&id);
            ok(&["start", &id]);
            let mut line = String::new();
            BufReader::new(output).read_line(&mut line)?;
            assert_eq!(line, "ready\n", "the trap is set");
            ok(&["kill", &id, given]);
            assert_eq!(
                exit_status(wait_child(pid)),
                0,
                "{signal}: the trap ran `exit 0`"
            );
            assert!(
                bundle.dir.join("rootfs").join(signal).exists(),
                "{signal}: the trap ran"
            );
            ok(&["delete", &id]);
        }
        Ok(())
    });
}

#[test]
fn wrong_state_operations_fail_like_runc_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("twice", &["sleep", "1000"]);
        ok(&["create", "-b", bundle.path(), "twice"]);
        let pid = init_pid("twice");
        let err = fails(&["create", "-b", bundle.path(), "twice"]);
        assert!(err.contains("container `twice` already exists"), "{err}");

        ok(&["start", "twice"]);
        let err = fails(&["start", "twice"]);
        assert!(
            err.contains("cannot start container `twice`: it is running"),
            "{err}"
        );
        let err = fails(&["delete", "twice"]);
        assert!(
            err.contains("cannot delete container `twice`: it is running"),
            "{err}"
        );
        assert_eq!(
            state("twice")["status"],
            "running",
            "a refused delete leaves it running"
        );

        ok(&["delete", "--force", "twice"]);
        assert_eq!(
            exit_status(wait_child(pid)),
            137,
            "delete --force kills the init"
        );
        let err = fails(&["delete", "twice"]);
        assert!(err.contains("does not exist"), "{err}");
        ok(&["delete", "--force", "twice"]);
        let err = fails(&["kill", "twice"]);
        assert!(err.contains("does not exist"), "{err}");
        let err = fails(&["start", "no-such"]);
        assert!(err.contains("container `no-such` does not exist"), "{err}");

        // A stopped container can be neither started nor signalled, only deleted.
        let bundle = Bundle::new("done", &["true"]);
        ok(&["create", "-b", bundle.path(), "done"]);
        let pid = init_pid("done");
        ok(&["start", "done"]);
        assert_eq!(exit_status(wait_child(pid)), 0);
        let err = fails(&["start", "done"]);
        assert!(err.contains("it is stopped"), "{err}");
        let err = fails(&["kill", "done", "TERM"]);
        assert!(
            err.contains("cannot kill container `done`: it is stopped"),
            "{err}"
        );
        ok(&["delete", "done"]);

        // A created container is not stopped: runtime.md has delete refuse it and leave it as
        // it was (runc and crun delete it). Killed, it is stopped and deleted.
        ok(&["create", "-b", bundle.path(), "created"]);
        let pid = init_pid("created");
        let err = fails(&["delete", "created"]);
        assert!(
            err.contains("cannot delete container `created`: it is created"),
            "{err}"
        );
        assert_eq!(state("created")["status"], "created");
        ok(&["kill", "created", "KILL"]);
        assert_eq!(exit_status(wait_child(pid)), 137);
        assert_eq!(state("created")["status"], "stopped");
        ok(&["delete", "created"]);
        // --force still deletes a created one.
        ok(&["create", "-b", bundle.path(), "forced"]);
        let pid = init_pid("forced");
        ok(&["delete", "--force", "forced"]);
        assert_eq!(exit_status(wait_child(pid)), 137);
        assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
        Ok(())
    });
}

#[test]
fn a_failed_create_says_in_one_line_which_container_and_why_root() {
    sandbox::test(|| {
        // 10 MB of environment: more than execve takes (E2BIG).
        let mut bundle = Bundle::new("bigenv", &["true"]);
        bundle.edit(|config| {
            let env = config["process"]["env"].as_array_mut().unwrap();
            env.push(json!(format!("HUGE={}", "x".repeat(10 << 20))));
        });
        for command in ["create", "run"] {
            let output = runtime_output(&[command, "-b", bundle.path(), "bigenv"]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{command}: one line: {stderr}");
            assert!(lines[0].contains("`bigenv`"), "{command}: {stderr}");
            assert!(lines[0].contains("E2BIG"), "{command}: {stderr}");
            assert!(lines[0].contains("environment"), "{command}: {stderr}");
            let err = fails(&["state", "bigenv"]);
            assert!(err.contains("does not exist"), "{command}: {err}");
        }
        assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
        Ok(())
    });
}

/// Accepts one connection on `listener` and returns the descriptor sent on it (a terminal's
/// master, from the runtime).
fn receive_master(listener: &UnixListener) -> File {
    let (stream, _) = listener.accept().unwrap();
    let mut name = [0_u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    for control in message.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = control {
            // SAFETY: the fd was just received for this test and is owned by nothing else.
            #[allow(unsafe_code, reason = "a received fd")]
            return unsafe { File::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

/// Reads `master` until `text` has come; returns everything read.
fn read_until(master: &mut File, text: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0_u8; 1024];
    while !seen.contains(text) {
        let count = master.read(&mut buf).unwrap_or(0);
        assert_ne!(count, 0, "the terminal closed before `{text}`: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..count]));
    }
    seen
}

/// A devpts of the container's own at /dev/pts, where its terminals are made.
fn with_devpts(config: &mut serde_json::Value) {
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/dev/pts", "type": "devpts", "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    }));
}

#[test]
fn a_terminal_is_made_and_its_master_sent_to_the_console_socket_root() {
    sandbox::test(|| {
        let socket = sandbox::scratch().join("console.sock");
        let listener = UnixListener::bind(&socket)?;
        let socket = socket.to_str().unwrap();

        // create: the init's stdio is a new terminal, its master sent before create returns.
        let mut bundle = Bundle::new(
            "tty",
            &["sh", "-c", "[ -t 0 ] && echo is-a-tty; read x; echo got-$x"],
        );
        bundle.edit(|config| {
            config["process"]["terminal"] = json!(true);
            with_devpts(config);
        });
        ok(&[
            "create",
            "--console-socket",
            socket,
            "-b",
            bundle.path(),
            "tty",
        ]);
        let pid = init_pid("tty");
        let mut master = receive_master(&listener);
        ok(&["start", "tty"]);
        read_until(&mut master, "is-a-tty");
        master.write_all(b"hello\n")?;
        read_until(&mut master, "got-hello");
        assert_eq!(exit_status(wait_child(pid)), 0);
        ok(&["delete", "tty"]);

        // exec --tty: the same for a process in a running container, whose code comes back.
        let mut running = Bundle::new("running", &["sleep", "1000"]);
        running.edit(with_devpts);
        ok(&["run", "-d", "-b", running.path(), "running"]);
        let script = "[ -t 1 ] && echo exec-tty; read x; echo got-$x; exit 6";
        let mut exec = runtime(&[
            "exec",
            "--tty",
            "--console-socket",
            socket,
            "running",
            "--",
            "sh",
            "-c",
            script,
        ])
        .stdin(Stdio::null())
        .spawn()?;
        let mut master = receive_master(&listener);
        read_until(&mut master, "exec-tty");
        master.write_all(b"there\n")?;
        read_until(&mut master, "got-there");
        assert_eq!(exec.wait()?.code(), Some(6));

        // What does not fit together is named.
        let err = fails(&["exec", "--tty", "running", "--", "true"]);
        assert!(err.contains("--tty needs --console-socket"), "{err}");
        let err = fails(&["exec", "--console-socket", socket, "running", "--", "true"]);
        assert!(err.contains("--console-socket needs --tty"), "{err}");
        ok(&["delete", "--force", "running"]);
        let err = fails(&["create", "-b", bundle.path(), "tty"]);
        assert!(
            err.contains("config.json: process.terminal: a terminal needs --console-socket"),
            "{err}"
        );
        let plain = Bundle::new("plain", &["true"]);
        let err = fails(&[
            "create",
            "--console-socket",
            socket,
            "-b",
            plain.path(),
            "plain",
        ]);
        assert!(
            err.contains("--console-socket needs process.terminal: true"),
            "{err}"
        );
        assert!(leftover_state().is_empty(), "{:?}", leftover_state());
        Ok(())
    });
}
