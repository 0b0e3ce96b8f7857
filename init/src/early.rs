//! Early system set-up, as LinuxKit's rc.init does it: the mount table, device nodes and links,
//! the /var skeleton, cgroups (v2 unless the kernel command line asks for v1), `/` made rshared
//! but /proc, /sys and /dev private, resource limits, the hostname and the resolv.conf target.
//! Runs in: PID 1 before anything else is started; the mounts and devices only as the system's
//! init (not in userspace mode). Every failure is logged and survived; optional filesystems
//! fail quietly.
//! Mirrors linuxkit pkg/init/cmd/rc.init: doMounts, doLimits, doHostname, doResolvConf.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::say;

/// One mount of the early table.
#[derive(Debug)]
struct EarlyMount {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
    /// Not every kernel has it: a failure is not reported.
    optional: bool,
}

const NODEV_NOSUID_NOEXEC: MsFlags = MsFlags::MS_NODEV
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NOEXEC);
const RELATIME: MsFlags = NODEV_NOSUID_NOEXEC.union(MsFlags::MS_RELATIME);

const fn required(
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
) -> EarlyMount {
    EarlyMount {
        target,
        fstype,
        flags,
        data,
        optional: false,
    }
}

const fn optional(target: &'static str, fstype: &'static str, flags: MsFlags) -> EarlyMount {
    EarlyMount {
        target,
        fstype,
        flags,
        data: "",
        optional: true,
    }
}

/// Before the device nodes: proc and the writable tmpfs directories.
const FIRST_MOUNTS: [EarlyMount; 4] = [
    required("/proc", "proc", RELATIME, ""),
    required("/run", "tmpfs", RELATIME, "size=10%,mode=755"),
    required("/tmp", "tmpfs", RELATIME, "size=10%,mode=1777"),
    required("/var", "tmpfs", RELATIME, "size=50%,mode=755"),
];

const DEV_MOUNT: EarlyMount = required(
    "/dev",
    "devtmpfs",
    MsFlags::MS_NOSUID
        .union(MsFlags::MS_NOEXEC)
        .union(MsFlags::MS_RELATIME),
    "size=10m,nr_inodes=248418,mode=755",
);

/// After the device nodes.
const LATER_MOUNTS: [EarlyMount; 13] = [
    required("/dev/mqueue", "mqueue", NODEV_NOSUID_NOEXEC, ""),
    required("/dev/shm", "tmpfs", NODEV_NOSUID_NOEXEC, "mode=1777"),
    required(
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOEXEC.union(MsFlags::MS_NOSUID),
        "gid=5,mode=0620",
    ),
    required("/sys", "sysfs", NODEV_NOSUID_NOEXEC, ""),
    optional("/sys/kernel/security", "securityfs", NODEV_NOSUID_NOEXEC),
    optional("/sys/kernel/debug", "debugfs", NODEV_NOSUID_NOEXEC),
    optional("/sys/kernel/config", "configfs", NODEV_NOSUID_NOEXEC),
    optional("/sys/fs/fuse/connections", "fusectl", NODEV_NOSUID_NOEXEC),
    optional("/sys/fs/selinux", "selinuxfs", NODEV_NOSUID_NOEXEC),
    optional("/sys/fs/pstore", "pstore", NODEV_NOSUID_NOEXEC),
    optional("/sys/fs/bpf", "bpf", MsFlags::MS_NODEV),
    optional("/sys/firmware/efi/efivars", "efivarfs", NODEV_NOSUID_NOEXEC),
    optional(
        "/proc/sys/fs/binfmt_misc",
        "binfmt_misc",
        NODEV_NOSUID_NOEXEC,
    ),
];

/// Directories under /var: path and mode.
const VAR_DIRS: [(&str, u32); 9] = [
    ("/var/cache", 0o755),
    ("/var/lib", 0o755),
    ("/var/local", 0o755),
    ("/var/lock", 0o755),
    ("/var/log", 0o755),
    ("/var/opt", 0o755),
    ("/var/spool", 0o755),
    ("/var/empty", 0o555),
    ("/var/tmp", 0o1777),
];

/// Character devices made if devtmpfs has not: path, major, minor, mode.
const DEVICES: [(&str, u64, u64, u32); 5] = [
    ("/dev/console", 5, 1, 0o600),
    ("/dev/tty1", 4, 1, 0o620),
    ("/dev/tty", 5, 0, 0o666),
    ("/dev/null", 1, 3, 0o666),
    ("/dev/kmsg", 1, 11, 0o660),
];

const DEV_LINKS: [(&str, &str); 5] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/kcore", "/proc/kcore"),
];

const DEV_DIRS: [(&str, u32); 3] = [
    ("/dev/mqueue", 0o1777),
    ("/dev/shm", 0o1777),
    ("/dev/pts", 0o755),
];

/// The cgroup version the kernel command line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    V2,
    V1,
}

impl Cgroups {
    /// v1 only with `linuxkit.unified_cgroup_hierarchy=0` (an exact token), as LinuxKit.
    pub fn from_cmdline(cmdline: &str) -> Self {
        if cmdline
            .split_whitespace()
            .any(|token| token == "linuxkit.unified_cgroup_hierarchy=0")
        {
            Self::V1
        } else {
            Self::V2
        }
    }
}

/// The mounts no container's mount may reach, made private after `/` is made rshared.
pub const PRIVATE_MOUNTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The mount table, device nodes and links, /var, cgroups, `/` rshared and [`PRIVATE_MOUNTS`]
/// private.
pub fn mount_all() {
    // Mount points are made while the root is still writable.
    for target in ["/proc", "/run", "/tmp", "/var", "/dev", "/sys"] {
        if let Err(err) = fs::create_dir_all(target) {
            say!("make directory {target}: {err}");
        }
    }
    apply(&FIRST_MOUNTS[..1]);
    // The root is read-only from here, as in LinuxKit; writable state lives on the tmpfs mounts.
    let _ = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    apply(&FIRST_MOUNTS[1..]);
    for (dir, mode) in VAR_DIRS {
        make_dir(dir, mode);
    }
    if let Err(err) = symlink("/run", "/var/run") {
        if err.kind() != io::ErrorKind::AlreadyExists {
            say!("symlink /var/run -> /run: {err}");
        }
    }
    apply(std::slice::from_ref(&DEV_MOUNT));
    crate::console::open_kernel_log();
    for (path, major, minor, mode) in DEVICES {
        match mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(mode),
            makedev(major, minor),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(err) => say!("make device {path}: {err}"),
        }
    }
    for (link, target) in DEV_LINKS {
        match symlink(target, link) {
            Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
                say!("symlink {link} -> {target}: {err}");
            }
            _ => {}
        }
    }
    for (dir, mode) in DEV_DIRS {
        make_dir(dir, mode);
    }
    apply(&LATER_MOUNTS);
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    match Cgroups::from_cmdline(&cmdline) {
        Cgroups::V2 => apply(&[required(
            "/sys/fs/cgroup",
            "cgroup2",
            NODEV_NOSUID_NOEXEC,
            "",
        )]),
        Cgroups::V1 => mount_cgroup_v1(),
    }
    if let Err(err) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    ) {
        say!("make / rshared: {err}");
    }
    // The kernel's own filesystems are private: a container whose root is shared and which binds
    // /sys (or /proc, /dev) would otherwise share its mounts below them with the system's, and
    // the read-only cgroup mount the runtime makes at its /sys/fs/cgroup would cover the
    // system's, failing every later container. /, /var, /run and /tmp stay shared.
    for target in PRIVATE_MOUNTS {
        if let Err(err) = mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ) {
            say!("make {target} rprivate: {err}");
        }
    }
}

fn apply(mounts: &[EarlyMount]) {
    for entry in mounts {
        let data = (!entry.data.is_empty()).then_some(entry.data);
        let result = fs::create_dir_all(entry.target)
            .map_err(|err| err.to_string())
            .and_then(|()| {
                mount(
                    Some(entry.fstype),
                    entry.target,
                    Some(entry.fstype),
                    entry.flags,
                    data,
                )
                .map_err(|err| err.to_string())
            });
        if let Err(err) = result {
            if !entry.optional {
                say!("mount {} on {}: {err}", entry.fstype, entry.target);
            }
        }
    }
}

/// A tmpfs on /sys/fs/cgroup with one hierarchy per enabled controller, and `name=systemd`.
fn mount_cgroup_v1() {
    let root = Path::new("/sys/fs/cgroup");
    if let Err(err) = mount(
        Some("cgroup_root"),
        root,
        Some("tmpfs"),
        NODEV_NOSUID_NOEXEC,
        Some("mode=755,size=10m"),
    ) {
        say!("mount tmpfs on {}: {err}", root.display());
        return;
    }
    let listed = fs::read_to_string("/proc/cgroups").unwrap_or_default();
    let controllers = enabled_controllers(&listed);
    for controller in &controllers {
        mount_hierarchy(&root.join(controller), controller);
    }
    if controllers.iter().any(|c| c == "memory") {
        let _ = fs::write(root.join("memory/memory.use_hierarchy"), "1");
    }
    mount_hierarchy(&root.join("systemd"), "none,name=systemd");
}

fn mount_hierarchy(dir: &Path, data: &str) {
    let result = fs::create_dir_all(dir)
        .map_err(|err| err.to_string())
        .and_then(|()| {
            mount(
                Some("cgroup"),
                dir,
                Some("cgroup"),
                NODEV_NOSUID_NOEXEC,
                Some(data),
            )
            .map_err(|err| err.to_string())
        });
    if let Err(err) = result {
        say!("mount cgroup {data} on {}: {err}", dir.display());
    }
}

/// Controller names from /proc/cgroups whose `enabled` column is 1.
fn enabled_controllers(listed: &str) -> Vec<String> {
    listed
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 4 && fields[3] == "1").then(|| fields[0].to_owned())
        })
        .collect()
}

fn make_dir(dir: &str, mode: u32) {
    let result = fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(mode)));
    if let Err(err) = result {
        say!("make directory {dir}: {err}");
    }
}

/// RLIMIT_NOFILE 1048576 and RLIMIT_NPROC unlimited, inherited by everything started later.
pub fn raise_limits() {
    if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, 1_048_576, 1_048_576) {
        say!("set RLIMIT_NOFILE: {err}");
    }
    if let Err(err) = setrlimit(Resource::RLIMIT_NPROC, RLIM_INFINITY, RLIM_INFINITY) {
        say!("set RLIMIT_NPROC: {err}");
    }
}

/// The hostname from /etc/hostname; if that leaves none, `kiln-<eth0's MAC without colons>`.
pub fn set_hostname() {
    if let Ok(name) = fs::read_to_string("/etc/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            if let Err(err) = nix::unistd::sethostname(name) {
                say!("set hostname {name}: {err}");
            }
        }
    }
    let current = nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if current.is_empty() || current == "(none)" {
        let mac = fs::read_to_string("/sys/class/net/eth0/address").unwrap_or_default();
        let name = fallback_hostname(&mac);
        if let Err(err) = nix::unistd::sethostname(&name) {
            say!("set hostname {name}: {err}");
        }
    }
}

fn fallback_hostname(mac: &str) -> String {
    let digits: String = mac.trim().chars().filter(|c| *c != ':').collect();
    if digits.is_empty() {
        "kiln".to_owned()
    } else {
        format!("kiln-{digits}")
    }
}

/// If /etc/resolv.conf is a symlink (images point it at /run/resolvconf/resolv.conf), makes its
/// target exist so that a DHCP client can write it.
pub fn make_resolv_conf_target() {
    let link = Path::new("/etc/resolv.conf");
    let Ok(target) = fs::read_link(link) else {
        return;
    };
    let target: PathBuf = Path::new("/etc").join(target);
    if target.exists() {
        return;
    }
    let result = target
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .and_then(|()| fs::File::create(&target).map(drop));
    if let Err(err) = result {
        say!("create {} (resolv.conf): {err}", target.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_only_on_the_exact_token() {
        assert_eq!(Cgroups::from_cmdline("console=ttyS0 quiet"), Cgroups::V2);
        assert_eq!(
            Cgroups::from_cmdline("quiet linuxkit.unified_cgroup_hierarchy=0"),
            Cgroups::V1
        );
        assert_eq!(
            Cgroups::from_cmdline("linuxkit.unified_cgroup_hierarchy=false"),
            Cgroups::V2
        );
        assert_eq!(
            Cgroups::from_cmdline("linuxkit.unified_cgroup_hierarchy=1"),
            Cgroups::V2
        );
    }

    #[test]
    fn enabled_controllers_are_read_from_proc_cgroups() {
        let listed = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                      cpuset\t0\t1\t1\nmemory\t0\t1\t1\nhugetlb\t0\t1\t0\n";
        assert_eq!(enabled_controllers(listed), ["cpuset", "memory"]);
    }

    #[test]
    fn the_fallback_hostname_uses_the_mac() {
        assert_eq!(
            fallback_hostname("52:54:00:12:34:56\n"),
            "kiln-525400123456"
        );
        assert_eq!(fallback_hostname(""), "kiln");
    }
}
