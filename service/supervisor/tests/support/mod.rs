//! Shared by the runtime and onboot tests: busybox bundles, the `service runtime` command line pointed at
//! the sandbox's scratch directory and cgroup parent, and process checks.
//! Runs in: test bodies inside the sandbox (PID 1 of fresh namespaces).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

pub const SERVICE: &str = env!("CARGO_BIN_EXE_service");

/// A bundle under the sandbox's scratch directory: busybox as the root filesystem.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// A bundle named `name` running `args`, in new pid, mount, ipc, uts and network namespaces,
    /// with its cgroup below the sandbox's.
    pub fn new(name: &str, args: &[&str]) -> Self {
        Self::new_in(&sandbox::scratch().join("bundles"), name, args)
    }

    /// Like [`Bundle::new`], in directory `parent` (an onboot or onshutdown directory).
    pub fn new_in(parent: &Path, name: &str, args: &[&str]) -> Self {
        let dir = parent.join(name);
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
        assert!(applets.status.success(), "busybox --list");
        for applet in String::from_utf8(applets.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
            }
        }
        let config = json!({
            "ociVersion": "1.2.0",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin", "TERM=dumb"],
                "cwd": "/",
                "capabilities": caps(&["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"]),
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": name,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}
            ],
            "linux": {
                "cgroupsPath": format!("{}/{name}", sandbox::cgroup_parent()),
                "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"}]
            }
        });
        let bundle = Bundle { dir, config };
        bundle.write();
        bundle
    }

    /// Writes config.json from `self.config`.
    pub fn write(&self) {
        fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Changes the config and writes it.
    pub fn edit(&mut self, change: impl FnOnce(&mut Value)) {
        change(&mut self.config);
        self.write();
    }

    /// Writes runtime.json.
    pub fn runtime_json(&self, runtime: &Value) {
        fs::write(
            self.dir.join("runtime.json"),
            serde_json::to_vec_pretty(runtime).unwrap(),
        )
        .unwrap();
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

/// A daemon's world in the sandbox: fresh /run and /var/log, a `/containers` tree, and the
/// `ready` directory that [`service`] bundles see as `/ready`.
pub struct Tree {
    pub containers: PathBuf,
    pub services: PathBuf,
    pub ready: PathBuf,
}

impl Tree {
    pub fn new() -> Self {
        private_run_and_var_log();
        let containers = sandbox::scratch().join("containers");
        let ready = sandbox::scratch().join("ready");
        fs::create_dir_all(&ready).unwrap();
        Self {
            services: containers.join("services"),
            containers,
            ready,
        }
    }
}

/// A service bundle in `dir` running `sh -c script`, that can see `<scratch>/ready` as
/// `/ready`, with `runtime` as its runtime.json.
pub fn service(dir: &Path, name: &str, script: &str, runtime: Value) -> Bundle {
    let mut bundle = Bundle::new_in(dir, name, &["sh", "-c", script]);
    let ready = sandbox::scratch().join("ready");
    bundle.edit(|config| {
        config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/ready", "type": "bind", "source": ready, "options": ["rbind", "rw"]}));
    });
    fs::create_dir_all(bundle.dir.join("rootfs/ready")).unwrap();
    bundle.runtime_json(&runtime);
    bundle
}

/// The pid at the end of an event line (`web: running, pid 312`).
pub fn pid_of(line: &str) -> i32 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The `service system-init` command on the `containers` tree with the sandbox's runtime root
/// and cgroup parent and `extra` arguments; every event on stdout unless `extra` sets
/// `--console`.
pub fn daemon_command(containers: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(SERVICE);
    command
        .arg("system-init")
        .arg("--path")
        .arg(containers)
        .args(extra);
    if !extra.contains(&"--console") {
        command.args(["--console", "all"]);
    }
    command
        .arg("--root")
        .arg(state_root())
        .arg("--cgroup-parent")
        .arg(sandbox::cgroup_parent());
    command
}

/// [`daemon_command`] started, its event lines followed.
pub fn start_daemon(containers: &Path, extra: &[&str]) -> (std::process::Child, Lines) {
    let mut daemon = daemon_command(containers, extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = Lines::follow(daemon.stdout.take().unwrap());
    (daemon, lines)
}

/// OCI capability sets with the same names in every set.
pub fn caps(names: &[&str]) -> Value {
    json!({"bounding": names, "effective": names, "permitted": names, "inheritable": names, "ambient": names})
}

/// The state root of the runtime in this sandbox.
pub fn state_root() -> PathBuf {
    sandbox::scratch().join("state")
}

/// `service runtime --root <scratch>/state ARGS...`, not yet run.
pub fn runtime(args: &[&str]) -> Command {
    let mut command = Command::new(SERVICE);
    command
        .arg("runtime")
        .arg("--root")
        .arg(state_root())
        .arg("--cgroup-parent")
        .arg(sandbox::cgroup_parent())
        .args(args);
    command
}

/// Runs `service runtime ARGS...` and returns its output.
pub fn runtime_output(args: &[&str]) -> Output {
    output_via_files(&mut runtime(args))
}

/// Runs a command and returns its output. Output goes through files, not pipes: `create` and the
/// one-shot runner hand their stdio to containers, which would hold a pipe open until they end.
pub fn output_via_files(command: &mut Command) -> Output {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_path = sandbox::scratch().join(format!("command-{n}.out"));
    let err_path = sandbox::scratch().join(format!("command-{n}.err"));
    let status = command
        .stdin(std::process::Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .status()
        .unwrap();
    let output = Output {
        status,
        stdout: fs::read(&out_path).unwrap(),
        stderr: fs::read(&err_path).unwrap(),
    };
    let _ = fs::remove_file(out_path);
    let _ = fs::remove_file(err_path);
    output
}

/// Runs `service runtime ARGS...`, asserting success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let output = runtime_output(args);
    assert!(
        output.status.success(),
        "service runtime {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `service runtime ARGS...`, asserting failure with exit code 1; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let output = runtime_output(args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "service runtime {args:?} should fail: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// The container's OCI state as JSON.
pub fn state(id: &str) -> Value {
    serde_json::from_str(&ok(&["state", id])).unwrap()
}

/// The pid of the container's init, from its state.
pub fn init_pid(id: &str) -> i32 {
    i32::try_from(state(id)["pid"].as_i64().unwrap()).unwrap()
}

/// Waits for a child process of this test (a container init created with `create`) and
/// returns its wait status.
pub fn wait_child(pid: i32) -> nix::sys::wait::WaitStatus {
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap()
}

/// Directories of the sandbox's cgroup parent on every hierarchy.
pub fn cgroup_parent_dirs() -> Vec<PathBuf> {
    sandbox::hierarchies()
        .unwrap()
        .into_iter()
        .map(|h| h.mount_point.join(&sandbox::cgroup_parent()[1..]))
        .collect()
}

/// The cgroups left below the sandbox's parent, on any hierarchy.
pub fn leftover_cgroups() -> Vec<PathBuf> {
    cgroup_parent_dirs()
        .iter()
        .flat_map(|dir| fs::read_dir(dir).unwrap())
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.path())
        .collect()
}

/// Container state left under the state root (its lock file aside).
pub fn leftover_state() -> Vec<PathBuf> {
    match fs::read_dir(state_root()) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| !path.ends_with(".lock"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Reaps the children of this test process (container inits made with `create` and
/// libcontainer's intermediate processes become its children) until none is left, waiting for
/// SIGCHLD up to `limit` in all; returns the pids still alive then.
pub fn reap_children(limit: std::time::Duration) -> Vec<i32> {
    use nix::errno::Errno;
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut previous)).unwrap();
    let deadline = std::time::Instant::now() + limit;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => continue,
            Err(Errno::ECHILD) => break,
            Err(err) => panic!("waitpid: {err}"),
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap(),
            tv_nsec: libc::c_long::from(left.subsec_nanos()),
        };
        // SAFETY: the set and the timespec are valid for the call; the siginfo pointer may be null.
        unsafe { libc::sigtimedwait(chld.as_ref(), std::ptr::null_mut(), &timeout) };
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None).unwrap();
    other_processes()
        .into_iter()
        .map(|pid| i32::try_from(pid).unwrap())
        .collect()
}

/// Asserts that no container state, cgroup below the sandbox's parent or process other than this
/// test's is left (after reaping what has ended); `after` says what was done, for messages.
pub fn assert_nothing_left(after: &str) {
    let alive = reap_children(std::time::Duration::from_secs(10));
    let alive: Vec<String> = alive.iter().map(|pid| describe_process(*pid)).collect();
    assert!(alive.is_empty(), "processes left after {after}: {alive:?}");
    let state = leftover_state();
    assert!(state.is_empty(), "state left after {after}: {state:?}");
    let cgroups = leftover_cgroups();
    assert!(
        cgroups.is_empty(),
        "cgroups left after {after}: {cgroups:?}"
    );
}

/// Pids in this sandbox other than its PID 1.
pub fn other_processes() -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != 1)
        .collect()
}

/// A process's name, state and parent, for messages.
pub fn describe_process(pid: i32) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    format!(
        "pid {pid} {} ({}) parent {}",
        field("Name:"),
        field("State:"),
        field("PPid:")
    )
}

/// Fresh /run and /var/log for this sandbox, where the supervisor writes its logs by default.
pub fn private_run_and_var_log() {
    for dir in ["/run", "/var/log"] {
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
    }
}

/// Reads a file that must exist.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The daemon's stdout, line by line, as it comes.
pub struct Lines {
    receiver: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
    /// Where `expect` starts looking in `seen`.
    from: usize,
}

impl Lines {
    /// Follows `output` (a child's stdout) on a thread.
    pub fn follow(output: impl std::io::Read + Send + 'static) -> Self {
        use std::io::BufRead;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            receiver,
            seen: Vec::new(),
            from: 0,
        }
    }

    /// Makes later `expect`s look only at lines that come after those seen so far.
    pub fn mark(&mut self) {
        self.from = self.seen.len();
    }

    /// Waits for a line containing `text` (up to a minute); returns it.
    pub fn expect(&mut self, text: &str) -> String {
        if let Some(line) = self.seen[self.from..]
            .iter()
            .find(|line| line.contains(text))
        {
            return line.clone();
        }
        loop {
            match self
                .receiver
                .recv_timeout(std::time::Duration::from_secs(60))
            {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(err) => panic!(
                    "no line with `{text}` ({err}); so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The position of the first line seen containing `text`.
    pub fn position(&self, text: &str) -> usize {
        self.seen
            .iter()
            .position(|line| line.contains(text))
            .unwrap_or_else(|| panic!("`{text}` not seen:\n{}", self.seen.join("\n")))
    }

    pub fn count(&self, text: &str) -> usize {
        self.seen.iter().filter(|line| line.contains(text)).count()
    }

    /// Reads everything up to the end of the output.
    pub fn drain(&mut self) {
        while let Ok(line) = self
            .receiver
            .recv_timeout(std::time::Duration::from_secs(60))
        {
            self.seen.push(line);
        }
    }
}

/// The control socket of a daemon started by [`start_daemon`].
pub const SOCKET: &str = "/run/service.sock";

/// `service COMMAND --socket SOCKET ARGS...`.
pub fn cli(args: &[&str]) -> Output {
    let mut command = Command::new(SERVICE);
    command
        .arg(args[0])
        .args(["--socket", SOCKET])
        .args(&args[1..]);
    output_via_files(&mut command)
}

/// Runs a CLI command that must succeed; returns its stdout.
pub fn cli_ok(args: &[&str]) -> String {
    let output = cli(args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "service {args:?}: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs a CLI command that must fail; returns its stderr.
pub fn cli_fails(args: &[&str]) -> String {
    failure(&cli(args), &format!("service {args:?}"))
}

/// The stderr of `what`, which must have failed.
pub fn failure(output: &Output, what: &str) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json_of(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&cli_ok(&args)).unwrap()
}

/// The `list --json` entry of service `name`.
pub fn listed(name: &str) -> Value {
    let list = json_of(&["list"]);
    list["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|service| service["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
        .clone()
}

/// Stops a daemon started by [`start_daemon`] with SIGTERM, as init does, and checks that it
/// ended well and left nothing behind.
pub fn stop_daemon(daemon: &mut std::process::Child, lines: &mut Lines) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    lines.expect("all services stopped");
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_nothing_left("the daemon's shutdown");
}

impl Lines {
    /// Waits for `NAME: running, pid N` with N other than `old` (a restart); returns N.
    pub fn restarted(&mut self, name: &str, old: i32) -> i32 {
        let running = format!("{name}: running, pid ");
        loop {
            let pid = pid_of(&self.expect(&running));
            if pid != old {
                return pid;
            }
            // The earlier run's line: look past it.
            self.seen
                .retain(|seen| !seen.contains(&running) || pid_of(seen) != old);
        }
    }
}
