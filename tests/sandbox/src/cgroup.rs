//! The sandbox's own cgroup parent: one directory of the same name at the root of every mounted
//! hierarchy (cgroup v2 and each v1 controller), created before the sandbox starts and removed,
//! children first, after it ends. Nothing here touches a cgroup it did not create.
//! Runs in: the test process, outside the sandbox.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use spec::mountinfo;

/// How often and how long removal retries a cgroup whose last processes are still exiting.
const REMOVE_ATTEMPTS: u32 = 200;
const REMOVE_PAUSE: Duration = Duration::from_millis(10);

/// The name of every sandbox cgroup starts with this, then `<pid>-<n>`.
const PREFIX: &str = "kiln-sandbox-";

/// Mount options of a v1 cgroup mount that are not controllers.
const NOT_CONTROLLERS: [&str; 6] = [
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
];

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// The v1 controllers bound to it (a named hierarchy has `name=...`); empty for cgroup v2.
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// The cgroup v2 hierarchy and every v1 hierarchy, controller-less named ones (`name=systemd`)
/// included, from /proc/self/mountinfo.
pub fn hierarchies() -> io::Result<Vec<Hierarchy>> {
    Ok(parse_hierarchies(&fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

fn parse_hierarchies(table: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for mount in mountinfo::parse(table) {
        let controllers: Vec<String> = match mount.fs_type.as_str() {
            "cgroup2" => Vec::new(),
            "cgroup" => {
                let controllers: Vec<String> = mount
                    .super_options
                    .split(',')
                    .filter(|option| {
                        !NOT_CONTROLLERS.contains(option)
                            && (!option.contains('=') || option.starts_with("name="))
                    })
                    .map(str::to_owned)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                controllers
            }
            _ => continue,
        };
        if found.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        found.push(Hierarchy {
            mount_point: mount.mount_point,
            controllers,
        });
    }
    found
}

/// A cgroup directory of ours on every hierarchy.
#[derive(Debug)]
pub(crate) struct CgroupParent {
    /// The path relative to each hierarchy's root, starting with `/`.
    pub relative: String,
    pub dirs: Vec<PathBuf>,
}

impl CgroupParent {
    /// Creates `/kiln-sandbox-<pid>-<n>` on every hierarchy, first removing those left by test
    /// processes that no longer exist (killed before they could clean up).
    pub fn create() -> io::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let relative = format!(
            "/{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut parent = Self {
            relative,
            dirs: Vec::new(),
        };
        for hierarchy in hierarchies()? {
            remove_stale(&hierarchy.mount_point);
            let dir = hierarchy.mount_point.join(&parent.relative[1..]);
            fs::create_dir(&dir).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("create cgroup {}: {err}", dir.display()),
                )
            })?;
            parent.dirs.push(dir);
        }
        Ok(parent)
    }

    /// Removes every directory created, with whatever was created below them.
    pub fn remove(&mut self) -> io::Result<()> {
        let mut first_error = None;
        for dir in self.dirs.drain(..) {
            if let Err(err) = remove_tree(&dir) {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        if let Err(err) = self.remove() {
            eprintln!("sandbox: {err}");
        }
    }
}

/// Removes `kiln-sandbox-<pid>-<n>` directories whose test process is gone.
fn remove_stale(mount_point: &Path) {
    let Ok(entries) = fs::read_dir(mount_point) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            if let Err(err) = remove_tree(&entry.path()) {
                eprintln!("sandbox: stale {}", err);
            }
        }
    }
}

/// Removes a cgroup and its children, deepest first. Processes still in it (left by a test that
/// failed half-way) are killed: they are in a cgroup that this sandbox created.
fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) && attempt < REMOVE_ATTEMPTS => {
                kill_members(dir);
                attempt += 1;
                std::thread::sleep(REMOVE_PAUSE);
            }
            Err(err) => {
                return Err(io::Error::new(
                    err.kind(),
                    format!("remove cgroup {}: {err}", dir.display()),
                ))
            }
        }
    }
}

fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        if pid > 1 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hierarchies_finds_v2_and_every_v1_hierarchy_once() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
35 30 0:30 / /mnt/memory-again rw,relatime - cgroup cgroup rw,memory";
        let found = parse_hierarchies(mountinfo);
        assert_eq!(found.len(), 4);
        assert!(found[0].is_v2());
        assert_eq!(found[0].mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(found[1].controllers, ["name=systemd"]);
        assert!(!found[1].is_v2());
        assert_eq!(found[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(found[3].mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn parse_hierarchies_unescapes_mount_points() {
        let mountinfo = "40 30 0:40 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        let found = parse_hierarchies(mountinfo);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].mount_point, Path::new("/mnt/my cgroups"));
    }
}
