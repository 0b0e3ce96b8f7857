//! The mounted cgroup hierarchies on which runtime.json `cgroups` are created: the cgroup v2
//! hierarchy and every v1 hierarchy, named ones (`name=systemd`) included, each once.
//! Runs in: the supervisor, before each container is created. Reads /proc/self/mountinfo.
//! Mirrors LinuxKit's `newCgroup`, which creates the directory under every directory of
//! /sys/fs/cgroup; reading the mount table instead skips the v1 alias symlinks (cpu -> cpu,cpuacct)
//! and finds hierarchies mounted elsewhere.

use std::fs;
use std::io;
use std::path::PathBuf;

use spec::mountinfo;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mount point of every mounted cgroup hierarchy, in mount order, one per hierarchy.
pub fn hierarchies() -> io::Result<Vec<PathBuf>> {
    let mountinfo = fs::read_to_string(MOUNTINFO)
        .map_err(|err| io::Error::new(err.kind(), format!("read {MOUNTINFO}: {err}")))?;
    Ok(parse(&mountinfo))
}

/// Picks the cgroup and cgroup2 mounts out of a mountinfo table; a hierarchy mounted twice (same
/// device number) is listed once, at its first mount point.
fn parse(table: &str) -> Vec<PathBuf> {
    let mut seen: Vec<(u32, u32)> = Vec::new();
    let mut found = Vec::new();
    for mount in mountinfo::parse(table) {
        let device = (mount.major, mount.minor);
        if !matches!(mount.fs_type.as_str(), "cgroup" | "cgroup2") || seen.contains(&device) {
            continue;
        }
        seen.push(device);
        found.push(mount.mount_point);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host_lists_each_hierarchy_once() {
        let table = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 23 0:32 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory
91 23 0:50 / /mnt/other\\040cg rw,relatime shared:4 - cgroup2 cgroup2 rw
";
        assert_eq!(
            parse(table),
            [
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
                "/mnt/other cg",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn pure_v2_host() {
        let table = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(parse(table), [PathBuf::from("/sys/fs/cgroup")]);
    }
}
