//! The runtime.json actions applied for real, as root inside the sandbox: mounts (tmpfs, bind
//! read-only, a file bind), mkdir, cgroups on every hierarchy; a veth, generic links created in
//! the container's namespace and created in root then moved, an existing link moved, a namespace
//! bind; and the undo of each when a later step fails. The generic links are bridges (which the
//! kernel does not let move) and ifbs: the test machine's kernel has no dummy driver, and every
//! kind goes through the same request.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::unistd::Pid;
use prepare::{plan, Prepared};
use spec::mountinfo;
use spec::Runtime;

fn runtime(json: &str) -> Runtime {
    let runtime = Runtime::from_json(json.as_bytes()).unwrap();
    assert!(runtime.check().is_empty(), "{:?}", runtime.check());
    runtime
}

/// A bundle directory with an empty rootfs in the sandbox's scratch.
fn bundle(name: &str) -> PathBuf {
    let dir = sandbox::scratch().join(name);
    fs::create_dir_all(dir.join("rootfs")).unwrap();
    dir
}

/// The mount points of the current mount table.
fn mount_points() -> Vec<PathBuf> {
    mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap())
        .map(|mount| mount.mount_point)
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// The options field of the mount at `point`.
fn mount_options(point: &Path) -> String {
    mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap())
        .filter(|mount| mount.mount_point == point)
        .map(|mount| mount.mount_options)
        .next_back()
        .unwrap_or_else(|| panic!("{} is not mounted", point.display()))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A stand-in for a created container: a process in a network namespace of its own, which it
/// has entered before `spawn` returns. Killed and reaped when dropped.
struct ContainerProcess(Child);

impl ContainerProcess {
    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.0.id()).unwrap())
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn container_process() -> ContainerProcess {
    let mut command = Command::new("sleep");
    command.arg("1000");
    // SAFETY: runs between fork and exec of a single-threaded child; unshare is a plain syscall.
    unsafe {
        command.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(Into::into)
        });
    }
    ContainerProcess(command.spawn().unwrap())
}

/// The link names of a network namespace: the caller's (`None`) or the one bound at a path.
fn links(netns: Option<&Path>) -> Vec<String> {
    let mut command = match netns {
        Some(path) => {
            let mut command = Command::new("nsenter");
            command.arg(format!("--net={}", path.display())).arg("ip");
            command
        }
        None => Command::new("ip"),
    };
    let output = command.args(["-o", "link", "show"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let name = line.split(": ").nth(1).unwrap();
            name.split('@').next().unwrap().to_owned()
        })
        .collect()
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?}");
}

#[test]
fn filesystem_steps_are_applied_and_released_root() {
    sandbox::test(|| {
        let bundle = bundle("fs");
        let scratch = sandbox::scratch();
        fs::create_dir(scratch.join("data")).unwrap();
        fs::write(scratch.join("data/hello"), "hello").unwrap();
        fs::write(scratch.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let cgroup = format!("{}/podruntime/x", &sandbox::cgroup_parent()[1..]);
        let made = scratch.join("made/deep");
        let runtime = runtime(&format!(
            r#"{{"mounts":[
                {{"type":"tmpfs","source":"tmpfs","destination":"run","options":["nosuid","size=1m"]}},
                {{"type":"bind","source":"{data}","destination":"/{bundle}/rootfs/data","options":["rbind","ro"]}},
                {{"type":"bind","source":"{hosts}","destination":"etc/hosts","options":["bind"]}}
              ],
              "mkdir":["var/lib/x","{made}"],
              "cgroups":["{cgroup}"]}}"#,
            data = scratch.join("data").display(),
            bundle = bundle.display().to_string().trim_start_matches('/'),
            hosts = scratch.join("hosts").display(),
            made = made.display(),
        ));
        let hierarchies = prepare::cgroup::hierarchies()?;
        assert_eq!(
            hierarchies.len(),
            sandbox::hierarchies()?.len(),
            "every mounted hierarchy is found"
        );
        let steps = plan::filesystem(&bundle, &runtime, &hierarchies);
        let mut prepared = Prepared::new();
        prepared.apply_filesystem(&steps)?;

        let rootfs = bundle.join("rootfs");
        assert!(mount_options(&rootfs.join("run")).contains("nosuid"));
        assert_eq!(fs::read_to_string(rootfs.join("data/hello"))?, "hello");
        assert!(mount_options(&rootfs.join("data")).starts_with("ro"));
        let err = fs::write(rootfs.join("data/new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc_erofs()), "read-only bind");
        assert!(
            rootfs.join("etc/hosts").is_file(),
            "a file bind gets a file"
        );
        assert_eq!(
            fs::read_to_string(rootfs.join("etc/hosts"))?,
            "127.0.0.1 localhost\n"
        );
        assert!(rootfs.join("var/lib/x").is_dir());
        assert!(made.is_dir());
        for hierarchy in &hierarchies {
            assert!(hierarchy.join(&cgroup).is_dir(), "{}", hierarchy.display());
        }

        let problems = prepared.release_mounts_under(&bundle);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            mounts_under(&bundle).is_empty(),
            "{:?}",
            mounts_under(&bundle)
        );
        assert!(made.is_dir(), "release keeps directories");

        let problems = block_on(prepared.undo());
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!scratch.join("made").exists(), "undo removes what it made");
        for hierarchy in &hierarchies {
            assert!(!hierarchy.join(&cgroup).exists());
            assert!(hierarchy.join(&sandbox::cgroup_parent()[1..]).is_dir());
        }
        Ok(())
    });
}

fn libc_erofs() -> i32 {
    nix::errno::Errno::EROFS as i32
}

#[test]
fn failed_mount_names_its_field_and_undoes_the_bundle_root() {
    sandbox::test(|| {
        let bundle = bundle("broken");
        let missing = sandbox::scratch().join("no/such/source");
        let runtime = runtime(&format!(
            r#"{{"mounts":[
                {{"type":"tmpfs","source":"tmpfs","destination":"tmp/a"}},
                {{"type":"bind","source":"{}","destination":"mnt/b","options":["bind"]}}
              ]}}"#,
            missing.display()
        ));
        let steps = plan::filesystem(&bundle, &runtime, &[]);
        let mut prepared = Prepared::new();
        let err = prepared.apply_filesystem(&steps).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("runtime.json mounts[1]: "), "{message}");
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
        assert!(
            !mounts_under(&bundle).is_empty(),
            "the first mount was made"
        );

        let problems = block_on(prepared.undo());
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            mounts_under(&bundle).is_empty(),
            "{:?}",
            mounts_under(&bundle)
        );
        assert_eq!(
            fs::read_dir(bundle.join("rootfs"))?.count(),
            0,
            "the mount points made for the bundle are gone"
        );
        Ok(())
    });
}

#[test]
fn interfaces_and_namespace_binds_root() {
    sandbox::test(|| {
        let netns = sandbox::scratch().join("netns/x");
        ip(&["link", "add", "host0", "type", "ifb"]);
        let runtime = runtime(&format!(
            r#"{{"interfaces":[
                {{"name":"eth1","peer":"peer1"}},
                {{"name":"d0","add":"bridge"}},
                {{"name":"d1","add":"ifb","createInRoot":true}},
                {{"name":"host0"}}
              ],
              "bindNS":{{"net":"{}"}}}}"#,
            netns.display()
        ));
        let container = container_process();
        let pid = container.pid();
        let mut prepared = Prepared::new();
        block_on(prepared.apply_process(&plan::process(&runtime), pid))?;

        let inside = links(Some(&netns));
        for name in ["eth1", "d0", "d1", "host0"] {
            assert!(inside.contains(&name.to_owned()), "{name} in {inside:?}");
        }
        let root = links(None);
        assert!(root.contains(&"peer1".to_owned()), "{root:?}");
        for name in ["eth1", "d0", "d1", "host0"] {
            assert!(!root.contains(&name.to_owned()), "{name} not in {root:?}");
        }

        drop(container);
        assert!(
            links(Some(&netns)).contains(&"d0".to_owned()),
            "the bound namespace outlives the process"
        );
        let problems = block_on(prepared.undo());
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!netns.exists(), "undo unmounts and removes the bind file");
        assert!(!links(None).contains(&"peer1".to_owned()));
        Ok(())
    });
}

#[test]
fn failed_link_names_its_field_and_undoes_the_bundle_root() {
    sandbox::test(|| {
        let runtime = runtime(
            r#"{"interfaces":[
                {"name":"eth1","peer":"peer1"},
                {"name":"d1","add":"bridge","createInRoot":true},
                {"name":"x0","add":"no-such-kind"}
              ]}"#,
        );
        let container = container_process();
        let pid = container.pid();
        let mut prepared = Prepared::new();
        let steps = plan::process(&runtime);
        // Stop before d1 is moved: it is still in the root namespace when x0 fails.
        let steps: Vec<_> = steps
            .into_iter()
            .filter(
                |step| !matches!(&step.action, prepare::Action::MoveLink { name } if name == "d1"),
            )
            .collect();
        let err = block_on(prepared.apply_process(&steps, pid)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("runtime.json interfaces[2]: create link x0 of type no-such-kind"),
            "{message}"
        );
        assert!(
            message.ends_with("the kernel has no link type `no-such-kind`"),
            "{message}"
        );
        let root = links(None);
        assert!(root.contains(&"peer1".to_owned()) && root.contains(&"d1".to_owned()));

        let problems = block_on(prepared.undo());
        assert!(problems.is_empty(), "{problems:?}");
        let root = links(None);
        assert!(!root.contains(&"peer1".to_owned()), "{root:?}");
        assert!(!root.contains(&"d1".to_owned()), "{root:?}");
        drop(container);
        Ok(())
    });
}
