//! Block devices as the kernel lists them in sysfs: the whole disks a filesystem may go on
//! (`/sys/block`, less loop, RAM, network and optical devices and read-only ones), every
//! device and partition (`/sys/class/block`), a disk's first partition; and waiting for a
//! device node to appear in /dev, woken by inotify rather than polling.
//! Runs in: format and mountie.

use std::fs;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::AsFd as _;

/// Devices that are never a disk to format: loop, RAM and compressed RAM, network block
/// devices, CD/DVD drives, floppies.
const NOT_DISKS: [&str; 6] = ["loop", "ram", "zram", "nbd", "sr", "fd"];

/// The whole disks, by name (`vda`, `sdb`, `nvme0n1`), sorted.
pub fn disks(sys: &Path) -> Vec<String> {
    let mut names: Vec<String> = names_in(&sys.join("block"))
        .into_iter()
        .filter(|name| !NOT_DISKS.iter().any(|prefix| name.starts_with(prefix)))
        .filter(|name| {
            fs::read_to_string(sys.join("block").join(name).join("ro"))
                .map(|ro| ro.trim() != "1")
                .unwrap_or(true)
        })
        .collect();
    names.sort();
    names
}

/// Every block device and partition, by name, sorted; loop and RAM devices left out.
pub fn devices(sys: &Path) -> Vec<String> {
    let mut names: Vec<String> = names_in(&sys.join("class/block"))
        .into_iter()
        .filter(|name| !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)))
        .collect();
    names.sort();
    names
}

/// The partitions of `disk`, by name, in partition-number order.
pub fn partitions(sys: &Path, disk: &str) -> Vec<String> {
    let dir = sys.join("block").join(disk);
    let mut found: Vec<(u32, String)> = names_in(&dir)
        .into_iter()
        .filter_map(|name| {
            let number = fs::read_to_string(dir.join(&name).join("partition")).ok()?;
            Some((number.trim().parse().ok()?, name))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name).collect()
}

/// The name of partition `number` of `disk`: `vda1`, and `nvme0n1p1` or `mmcblk0p1` where
/// the disk's name ends in a digit.
pub fn partition_name(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether `path` is a block device node.
pub fn is_block_device(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.file_type().is_block_device())
}

/// Calls `found` each time /dev changes (and once at first) until it answers `Some`, or
/// `timeout` has passed (`None`). Device nodes appear in devtmpfs as the kernel adds the
/// devices; inotify says when.
pub fn wait_for<T>(
    dev: &Path,
    timeout: Duration,
    mut found: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .context("cannot watch /dev (inotify_init)")?;
    inotify
        .add_watch(
            dev,
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_MOVED_TO,
        )
        .with_context(|| format!("cannot watch {}", dev.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = found()? {
            return Ok(Some(value));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let millis = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err).context("cannot wait for /dev to change (poll)"),
        }
        // Drain the events: what matters is only that something changed.
        while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
    }
}

/// Waits up to `timeout` for `path` to be a block device node.
pub fn wait_for_node(dev: &Path, path: &Path, timeout: Duration) -> Result<bool> {
    Ok(wait_for(dev, timeout, || Ok(is_block_device(path).then_some(())))?.is_some())
}

/// `/dev/NAME`.
pub fn node(dev: &Path, name: &str) -> PathBuf {
    dev.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysfs(disks: &[(&str, &str, &[&str])]) -> tempfile::TempDir {
        let sys = tempfile::tempdir().expect("sys");
        for (disk, ro, parts) in disks {
            let dir = sys.path().join("block").join(disk);
            fs::create_dir_all(&dir).expect("mkdir");
            fs::write(dir.join("ro"), format!("{ro}\n")).expect("ro");
            fs::create_dir_all(sys.path().join("class/block").join(disk)).expect("class");
            for (index, part) in parts.iter().enumerate() {
                fs::create_dir_all(dir.join(part)).expect("part");
                fs::write(dir.join(part).join("partition"), format!("{}\n", index + 1))
                    .expect("partition");
                fs::create_dir_all(sys.path().join("class/block").join(part)).expect("class");
            }
        }
        sys
    }

    #[test]
    fn disks_leave_out_what_is_not_a_writable_disk() {
        let sys = sysfs(&[
            ("vdb", "0", &[]),
            ("vda", "0", &["vda1", "vda2"]),
            ("loop0", "0", &[]),
            ("sr0", "0", &[]),
            ("vdc", "1", &[]),
            ("nvme0n1", "0", &["nvme0n1p1"]),
        ]);
        assert_eq!(disks(sys.path()), ["nvme0n1", "vda", "vdb"]);
        assert_eq!(partitions(sys.path(), "vda"), ["vda1", "vda2"]);
        assert_eq!(
            devices(sys.path()),
            [
                "nvme0n1",
                "nvme0n1p1",
                "sr0",
                "vda",
                "vda1",
                "vda2",
                "vdb",
                "vdc"
            ]
        );
    }

    #[test]
    fn partitions_are_named_as_the_kernel_names_them() {
        assert_eq!(partition_name("vda", 1), "vda1");
        assert_eq!(partition_name("nvme0n1", 1), "nvme0n1p1");
        assert_eq!(partition_name("mmcblk0", 2), "mmcblk0p2");
    }

    #[test]
    fn waiting_wakes_when_the_directory_changes_and_gives_up_at_the_timeout() {
        let dev = tempfile::tempdir().expect("dev");
        let target = dev.path().join("vda1");
        let writer = {
            let target = target.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                fs::write(&target, "").expect("create");
            })
        };
        let mut calls = 0;
        let found = wait_for(dev.path(), Duration::from_secs(30), || {
            calls += 1;
            Ok(target.exists().then_some(calls))
        })
        .expect("waited");
        writer.join().expect("writer");
        assert!(found.is_some(), "woken by the new file");
        let none =
            wait_for(dev.path(), Duration::from_millis(50), || Ok(None::<()>)).expect("waited");
        assert!(none.is_none(), "nothing came");
    }
}
