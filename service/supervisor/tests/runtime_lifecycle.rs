//! `service runtime`: exit codes, stdio, the lifecycle and OCI state, runc's wrong-state errors.
//! Every test runs as root inside the sandbox, with busybox bundles made here.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

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

        // A created container can be deleted without --force, like runc.
        ok(&["create", "-b", bundle.path(), "created"]);
        let pid = init_pid("created");
        ok(&["delete", "created"]);
        assert_eq!(exit_status(wait_child(pid)), 137);
        assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
        Ok(())
    });
}

#[test]
fn terminals_are_refused_clearly_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("tty", &["true"]);
        let err = fails(&[
            "create",
            "--console-socket",
            "/tmp/x.sock",
            "-b",
            bundle.path(),
            "tty",
        ]);
        assert!(err.contains("terminals are not supported"), "{err}");
        let err = fails(&["exec", "--tty", "tty", "--", "true"]);
        assert!(err.contains("terminals are not supported"), "{err}");
        assert!(leftover_state().is_empty());
        Ok(())
    });
}
