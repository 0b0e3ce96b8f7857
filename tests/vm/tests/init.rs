//! `/init` as PID 1 of a real VM (qemu, Debian's kernel, an initramfs made here): the root moved
//! off the kernel's initial mount, LinuxKit's mount table, devices, hostname, limits, modules
//! from /etc/modules, loopback; a service container started on the relocated root (pivot_root
//! works there); the supervisor killed and started again; a thousand orphans reaped; and busybox `poweroff` and
//! `reboot` ending the VM cleanly, with the file a service wrote to an ext4 virtio disk still
//! there afterwards and the filesystem clean.
//! Runs on the host as any user that can run qemu; no test touches the host's system. A probe
//! script in the image reports `PROBE` lines on the console and drives the scenario.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::process::Command;
use std::time::Duration;

use vm::{Image, Kernel, Outcome, Run, Vm};

/// An image with busybox, Kiln, the disk modules and a probe started from /etc/init.d (in the
/// background, so init goes on to start the supervisor while it waits).
fn image(kernel: &Kernel, probe: &str) -> Image {
    let mut image = Image::new();
    image
        .busybox()
        .kiln()
        .modules(kernel, &["virtio_mmio", "virtio_blk"])
        .file("etc/hostname", "kiln-vm-test\n", 0o644)
        .symlink("etc/resolv.conf", "/run/resolvconf/resolv.conf")
        .dir("containers/services", 0o755)
        .script(
            "etc/init.d/010-probe",
            "#!/bin/sh\n/probe > /dev/console 2>&1 &\n",
        )
        .script("probe", &format!("#!/bin/sh\n{PROBE_LIB}\n{probe}\n"));
    image
}

/// Shell functions for probes.
const PROBE_LIB: &str = r#"
say() { echo "PROBE $*"; }
# The pid of the running supervisor, waiting for one that is not $1.
supervisor() {
    while :; do
        for p in $(pidof service); do
            if [ "$p" != "$1" ] && grep -q system-init /proc/$p/cmdline 2>/dev/null; then
                echo $p; return
            fi
        done
        sleep 0.1
    done
}
"#;

/// A service that writes to the disk bound at /disk and then sleeps; PID 1 of its pid
/// namespace, so SIGTERM does nothing and the stop timeout ends it.
const WRITER_CONFIG: &str = r#"{
    "ociVersion": "1.2.0",
    "process": {
        "user": {"uid": 0, "gid": 0},
        "args": ["/bin/sh", "-c", "echo from-a-service > /disk/hello; exec /bin/busybox sleep 1000"],
        "env": ["PATH=/bin"],
        "cwd": "/"
    },
    "root": {"path": "rootfs", "readonly": true},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        {"destination": "/disk", "type": "bind", "source": "/var/disk", "options": ["rbind", "rw"]}
    ],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
}"#;

fn boot(image: &Image, disk: Option<&std::path::Path>) -> Run {
    boot_with(image, disk, "")
}

fn boot_with(image: &Image, disk: Option<&std::path::Path>, cmdline: &str) -> Run {
    let kernel = Kernel::find();
    let mut vm = Vm::new(&kernel);
    vm.timeout(Duration::from_secs(150)).cmdline(cmdline);
    if let Some(disk) = disk {
        vm.disk(disk);
    }
    vm.boot(image)
}

/// `mountinfo` lines as (mount point, options, fstype, super options).
fn mounts(run: &Run) -> Vec<(String, String, String, String)> {
    run.lines_after("PROBE mountinfo ")
        .iter()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split_whitespace().collect();
            let tail: Vec<&str> = after.split_whitespace().collect();
            Some((
                (*fields.get(4)?).to_owned(),
                format!("{} {}", fields.get(5)?, fields[6..].join(" ")),
                (*tail.first()?).to_owned(),
                (*tail.get(2)?).to_owned(),
            ))
        })
        .collect()
}

#[test]
fn boots_sets_up_the_system_and_powers_off_with_the_disk_clean() {
    let kernel = Kernel::find();
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mkfs.success(), "mkfs.ext4: {mkfs}");

    let probe = r#"
while [ "$(cat /var/disk/hello 2>/dev/null)" != from-a-service ]; do sleep 0.05; done
say service wrote
first=$(supervisor)
say supervisor $first
while read line; do say mountinfo $line; done < /proc/self/mountinfo
say hostname $(hostname)
say nofile $(ulimit -n)
say lo $(cat /sys/class/net/lo/flags)
say console $(stat -c %F /dev/console)
say var-run $(readlink /var/run)
say modes $(stat -c %a /tmp /var/tmp /var/log /dev/shm)
say resolv $(test -f /run/resolvconf/resolv.conf && echo made)
say modules $(test -d /sys/module/virtio_blk && echo virtio_blk)
say kmsg $(dmesg | grep -c 'init: started /usr/bin/service system-init')
i=0; while [ $i -lt 1000 ]; do (true &); i=$((i+1)); done
zombies=1; tries=0
while [ $zombies -gt 0 ] && [ $tries -lt 100 ]; do
    zombies=$(grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
    tries=$((tries+1)); sleep 0.05
done
say zombies $zombies
kill -9 $first
second=$(supervisor $first)
say restarted $second
poweroff
"#;
    let mut image = image(&kernel, probe);
    // The disk is mounted before the supervisor starts; a service writes to it and keeps
    // running until the shutdown stops it.
    image
        .script(
            "etc/init.d/005-disk",
            "#!/bin/sh\nmkdir -p /var/disk && mount -t ext4 /dev/vda /var/disk && echo PROBE disk mounted\n",
        )
        .copy(
            "containers/services/writer/rootfs/bin/busybox",
            std::path::Path::new("/bin/busybox"),
            0o755,
        )
        .symlink("containers/services/writer/rootfs/bin/sh", "busybox")
        .dir("containers/services/writer/rootfs/disk", 0o755)
        .dir("containers/services/writer/rootfs/proc", 0o755)
        .dir("containers/services/writer/rootfs/dev", 0o755)
        .file("containers/services/writer/config.json", WRITER_CONFIG, 0o644)
        .file(
            "containers/services/writer/runtime.json",
            r#"{"stopTimeout": 1}"#,
            0o644,
        );
    // Every supervisor event on the console, a shutdown's stops included.
    let run = boot_with(&image, Some(&disk), "kiln.console=all");
    assert_eq!(
        run.outcome,
        Outcome::PoweredOff,
        "a clean poweroff ends qemu with 0:\n{}",
        run.console
    );

    let mounts = mounts(&run);
    let find = |point: &str| {
        mounts
            .iter()
            .find(|m| m.0 == point)
            .unwrap_or_else(|| panic!("{point} is not mounted: {mounts:?}\n{}", run.console))
    };
    let root = find("/");
    // The kernel's tmpfs, bound over itself (its type reads `rootfs`): containers pivot_root
    // from it, which the writer service below proves.
    assert_eq!(
        root.2, "rootfs",
        "the initramfs root is kept in place, not copied: {root:?}"
    );
    assert!(root.1.starts_with("ro"), "the root is read-only: {root:?}");
    assert!(root.1.contains("shared:"), "the root is shared: {root:?}");
    for (point, fstype, options) in [
        ("/proc", "proc", "nosuid,nodev,noexec"),
        ("/run", "tmpfs", "nosuid,nodev,noexec"),
        ("/tmp", "tmpfs", "nosuid,nodev,noexec"),
        ("/var", "tmpfs", "nosuid,nodev,noexec"),
        ("/dev", "devtmpfs", "nosuid,noexec"),
        ("/dev/mqueue", "mqueue", "nosuid,nodev,noexec"),
        ("/dev/shm", "tmpfs", "nosuid,nodev,noexec"),
        ("/dev/pts", "devpts", "nosuid,noexec"),
        ("/sys", "sysfs", "nosuid,nodev,noexec"),
        ("/sys/fs/cgroup", "cgroup2", "nosuid,nodev,noexec"),
    ] {
        let mount = find(point);
        assert_eq!(mount.2, fstype, "{point}: {mount:?}");
        assert!(
            mount.1.contains(options),
            "{point} has {options}: {mount:?}"
        );
    }
    // Containers share mounts below /var (and /run, /tmp) with the system, never below the
    // kernel's filesystems: those are private.
    for point in ["/var", "/run", "/tmp"] {
        assert!(
            find(point).1.contains("shared:"),
            "{point} is shared: {:?}",
            find(point)
        );
    }
    for point in [
        "/proc",
        "/sys",
        "/sys/fs/cgroup",
        "/dev",
        "/dev/pts",
        "/dev/shm",
    ] {
        assert!(
            !find(point).1.contains("shared:"),
            "{point} is private: {:?}",
            find(point)
        );
    }
    assert!(find("/run").3.contains("mode=755"), "{:?}", find("/run"));
    assert_eq!(run.lines_after("PROBE modes "), ["1777 1777 755 1777"]);
    assert!(find("/dev/pts").3.contains("gid=5"));
    assert_eq!(run.lines_after("PROBE hostname "), ["kiln-vm-test"]);
    assert_eq!(run.lines_after("PROBE nofile "), ["1048576"]);
    // IFF_UP | IFF_LOOPBACK and the kernel's running flags: up.
    let lo = u32::from_str_radix(run.lines_after("PROBE lo 0x")[0].trim(), 16).unwrap();
    assert_eq!(lo & 0x1, 0x1, "lo is up: {lo:#x}");
    assert_eq!(
        run.lines_after("PROBE console "),
        ["character special file"]
    );
    assert_eq!(run.lines_after("PROBE var-run "), ["/run"]);
    assert_eq!(run.lines_after("PROBE resolv "), ["made"]);
    assert_eq!(run.lines_after("PROBE modules "), ["virtio_blk"]);
    assert_eq!(
        run.lines_after("PROBE kmsg "),
        ["1"],
        "init's lines in the kernel log"
    );
    assert_eq!(run.lines_after("PROBE zombies "), ["0"], "{}", run.console);
    let first = &run.lines_after("PROBE supervisor ")[0];
    let second = &run.lines_after("PROBE restarted ")[0];
    assert_ne!(first, second, "a new supervisor");
    run.assert_printed("killed by SIGKILL");
    run.assert_printed("PROBE disk mounted");
    run.assert_printed("PROBE service wrote");
    run.assert_printed("service: writer: running, pid ");
    run.assert_printed("service: writer: stopping with SIGTERM");
    run.assert_printed("init: SIGUSR2 received: poweroff");
    assert!(
        run.lines_after("init: ").iter().any(|l| l == "poweroff"),
        "{}",
        run.console
    );

    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "the disk is clean: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let cat = Command::new("debugfs")
        .args(["-R", "cat /hello"])
        .arg(&disk)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "from-a-service\n");
}

#[test]
fn reboot_from_a_shell_ends_the_vm() {
    let kernel = Kernel::find();
    let mut image = image(&kernel, "supervisor > /dev/null; say rebooting; reboot");
    image.script("etc/init.d/020-fails", "#!/bin/sh\nexit 3\n");
    let run = boot(&image, None);
    assert_eq!(run.outcome, Outcome::PoweredOff, "{}", run.console);
    run.assert_printed("init: /etc/init.d/020-fails: exited with status 3");
    run.assert_printed("PROBE rebooting");
    run.assert_printed("init: SIGTERM received: reboot");
    assert!(
        run.lines_after("init: ").iter().any(|l| l == "reboot"),
        "{}",
        run.console
    );
}

#[test]
fn ctrl_alt_del_reboots_and_cgroup_v1_is_mounted_on_request() {
    let kernel = Kernel::find();
    let probe = r#"
supervisor > /dev/null
while read line; do say mountinfo $line; done < /proc/self/mountinfo
kill -INT 1
"#;
    let run = boot_with(
        &image(&kernel, probe),
        None,
        "linuxkit.unified_cgroup_hierarchy=0",
    );
    assert_eq!(run.outcome, Outcome::PoweredOff, "{}", run.console);
    run.assert_printed("init: SIGINT received: reboot");
    let mounts = mounts(&run);
    let cgroup = |point: &str| {
        mounts
            .iter()
            .find(|m| m.0 == point)
            .unwrap_or_else(|| panic!("{point} is not mounted: {mounts:?}"))
            .clone()
    };
    assert_eq!(cgroup("/sys/fs/cgroup").2, "tmpfs");
    for (point, option) in [
        ("/sys/fs/cgroup/memory", "memory"),
        ("/sys/fs/cgroup/cpu", "cpu"),
        ("/sys/fs/cgroup/pids", "pids"),
        ("/sys/fs/cgroup/systemd", "name=systemd"),
    ] {
        let mount = cgroup(point);
        assert_eq!(mount.2, "cgroup", "{point}: {mount:?}");
        assert!(mount.3.contains(option), "{point}: {mount:?}");
    }
}
