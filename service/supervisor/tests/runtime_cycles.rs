//! 200 create/start/wait/delete cycles of one container id leave nothing behind: no cgroup
//! directory, mount, process, state directory or open fd.
//! Runs as root inside the sandbox.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

mod support;

use std::fs;

use support::*;

const CYCLES: usize = 200;

fn count_entries(dir: &str) -> usize {
    fs::read_dir(dir).unwrap().count()
}

fn mount_count() -> usize {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn create_start_wait_delete_cycles_leave_nothing_behind_root() {
    sandbox::test(|| {
        let bundle = Bundle::new("cycle", &["sh", "-c", "echo cycle > /dev/null"]);
        let mounts = mount_count();
        let fds = count_entries("/proc/self/fd");
        for cycle in 0..CYCLES {
            ok(&["create", "-b", bundle.path(), "cycle"]);
            let pid = init_pid("cycle");
            ok(&["start", "cycle"]);
            let code = runtime::exit_code(wait_child(pid));
            assert_eq!(code, Some(0), "cycle {cycle}");
            ok(&["delete", "cycle"]);
        }
        assert_nothing_left(&format!("{CYCLES} cycles"));
        assert_eq!(mount_count(), mounts, "mounts left");
        assert_eq!(count_entries("/proc/self/fd"), fds, "fds left");
        Ok(())
    });
}
