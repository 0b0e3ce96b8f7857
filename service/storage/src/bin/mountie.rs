//! `mountie`: LinuxKit's pkg/mount. Mounts a filesystem on MOUNTPOINT, found by `-label`,
//! `-uuid` or `-device` (or a device before the mount point), else the first Linux partition
//! no one has mounted. It waits up to `-timeout` seconds for the device to appear, checks the
//! filesystem first (e2fsck for ext2/3/4: a power cut's damage is repaired before anything
//! uses it), and mounts it; the container's shared propagation makes the mount the host's and
//! every later container's. A device that is not there in time fails with a line saying so
//! (exit 1), and the boot goes on. As LinuxKit's, it makes /dev/disk/by-uuid links.
//! Runs in: pkg/mount's onboot container, as root with /dev and /var bound in (rshared).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, MsFlags};
use storage::check::{self, Checked};
use storage::flags::{Flag, Parsed};
use storage::{block, probe, say};

const FLAGS: [Flag; 4] = [
    Flag {
        name: "device",
        value: Some("DEVICE"),
        default: "",
        help: "the device to mount",
    },
    Flag {
        name: "label",
        value: Some("LABEL"),
        default: "",
        help: "mount the filesystem with this label",
    },
    Flag {
        name: "uuid",
        value: Some("UUID"),
        default: "",
        help: "mount the filesystem with this UUID",
    },
    Flag {
        name: "timeout",
        value: Some("SECONDS"),
        default: "10",
        help: "how long to wait for the device to appear",
    },
];

const SYNOPSIS: &str =
    "mountie [-label LABEL | -uuid UUID | -device DEVICE] [-timeout SECONDS] [DEVICE] MOUNTPOINT";

fn main() -> ExitCode {
    storage::main(SYNOPSIS, &FLAGS, Request::of, |request| {
        request.run(Path::new("/dev"), Path::new("/sys"))
    })
}

/// Which filesystem to mount.
#[derive(Debug)]
enum Wanted {
    Device(PathBuf),
    /// A blkid field (`LABEL`, `UUID`) and its value.
    Field(&'static str, String),
    /// The first Linux partition not in use.
    First,
}

#[derive(Debug)]
struct Request {
    wanted: Wanted,
    mountpoint: PathBuf,
    timeout: Duration,
}

impl Request {
    fn of(parsed: &Parsed) -> Result<Self> {
        let (device, mountpoint) = match parsed.args.as_slice() {
            [] => bail!("no mount point given"),
            [mountpoint] => (parsed.value(&FLAGS, "device"), mountpoint),
            [device, mountpoint] => (device.clone(), mountpoint),
            _ => bail!(
                "too many arguments ({}): give [DEVICE] MOUNTPOINT",
                parsed.args.join(" ")
            ),
        };
        let label = parsed.value(&FLAGS, "label");
        let uuid = parsed.value(&FLAGS, "uuid");
        let wanted = if !device.is_empty() {
            Wanted::Device(PathBuf::from(device))
        } else if !label.is_empty() {
            Wanted::Field("LABEL", label)
        } else if !uuid.is_empty() {
            Wanted::Field("UUID", uuid)
        } else {
            Wanted::First
        };
        let timeout = parsed.value(&FLAGS, "timeout");
        let timeout = timeout
            .parse::<u64>()
            .map_err(|_| anyhow!("-timeout {timeout}: not a number of seconds"))?;
        Ok(Self {
            wanted,
            mountpoint: PathBuf::from(mountpoint),
            timeout: Duration::from_secs(timeout),
        })
    }

    fn run(&self, dev: &Path, sys: &Path) -> Result<()> {
        let mountpoint = self.mountpoint.display();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.mountpoint)
            .with_context(|| format!("cannot create the mount point {mountpoint}"))?;
        let Some(device) = block::wait_for(dev, self.timeout, || Ok(self.find(dev, sys)))? else {
            bail!(
                "{} did not appear within {} s: {mountpoint} is left unmounted",
                self.describe(),
                self.timeout.as_secs()
            );
        };
        let node = device.display();
        uuid_links(dev, sys);
        if mounted_at(&device, &self.mountpoint) {
            say!("{node} is already mounted on {mountpoint}");
            return Ok(());
        }
        let found = probe::probe(&device)?;
        let Some(kind) = found.filesystem() else {
            bail!("{node} holds no filesystem blkid knows: format it first ({mountpoint} is left unmounted)");
        };
        if in_use(&device) {
            say!("{node} is mounted elsewhere already: not checked");
        } else {
            match check::check(&device, kind)
                .with_context(|| format!("{mountpoint} is left unmounted"))?
            {
                Checked::Clean(said) => say!("checked {node} ({kind}): clean ({said})"),
                Checked::Fixed(said) => say!("checked {node} ({kind}): repaired: {said}"),
                Checked::NotNeeded => {}
            }
        }
        mount(
            Some(&device),
            &self.mountpoint,
            Some(kind),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("cannot mount {node} ({kind}) on {mountpoint}"))?;
        say!("mounted {node} ({}) on {mountpoint}", found.describe());
        Ok(())
    }

    /// The device wanted, if it is there now.
    fn find(&self, dev: &Path, sys: &Path) -> Option<PathBuf> {
        match &self.wanted {
            Wanted::Device(path) => block::is_block_device(path).then(|| path.clone()),
            Wanted::Field(field, value) => block::devices(sys).into_iter().find_map(|name| {
                let node = block::node(dev, &name);
                let found = probe::probe(&node).ok()?;
                (found.get(field) == Some(value.as_str())).then_some(node)
            }),
            Wanted::First => block::disks(sys).into_iter().find_map(|disk| {
                block::partitions(sys, &disk).into_iter().find_map(|name| {
                    let node = block::node(dev, &name);
                    let found = probe::probe(&node).ok()?;
                    (found.is_linux_partition() && !in_use(&node)).then_some(node)
                })
            }),
        }
    }

    fn describe(&self) -> String {
        match &self.wanted {
            Wanted::Device(path) => path.display().to_string(),
            Wanted::Field(field, value) => {
                format!("a filesystem with {field} {value}")
            }
            Wanted::First => "a Linux partition not in use".to_owned(),
        }
    }
}

/// udev's `/dev/disk/by-uuid/UUID` links (`../../NAME`) for every device whose filesystem
/// has a UUID, as LinuxKit's mountie makes them; a link already there is kept, and a link that
/// cannot be made is said and skipped.
fn uuid_links(dev: &Path, sys: &Path) {
    let dir = dev.join("disk/by-uuid");
    if let Err(err) = fs::create_dir_all(&dir) {
        say!("cannot create {}: {err}", dir.display());
        return;
    }
    for name in block::devices(sys) {
        let Ok(found) = probe::probe(&block::node(dev, &name)) else {
            continue;
        };
        let Some(uuid) = found.get("UUID").filter(|uuid| !uuid.contains('/')) else {
            continue;
        };
        let link = dir.join(uuid);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Err(err) = std::os::unix::fs::symlink(format!("../../{name}"), &link) {
            say!("cannot link {} to {name}: {err}", link.display());
        }
    }
}

/// Whether a block device is in use (mounted anywhere, in any namespace): the kernel refuses
/// an exclusive open of it then.
fn in_use(device: &Path) -> bool {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_EXCL)
        .open(device)
        .is_err_and(|err| err.raw_os_error() == Some(nix::libc::EBUSY))
}

/// Whether `device` is what is mounted at `mountpoint` in this mount namespace.
fn mounted_at(device: &Path, mountpoint: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mountpoint = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_owned());
    let found = spec::mountinfo::parse_mounts(&mounts)
        .any(|entry| entry.mount_point == mountpoint && Path::new(&entry.source) == device);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(args: &[&str]) -> Result<Request> {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let parsed = storage::flags::parse(&FLAGS, &args).map_err(|stop| anyhow!("{stop:?}"))?;
        Request::of(&parsed)
    }

    #[test]
    fn the_filesystem_is_named_by_device_label_uuid_or_nothing() {
        let by_label = request(&["-label", "data", "/var/lib/data"]).expect("ok");
        assert!(matches!(&by_label.wanted, Wanted::Field("LABEL", label) if label == "data"));
        assert_eq!(by_label.mountpoint, PathBuf::from("/var/lib/data"));
        assert_eq!(by_label.timeout, Duration::from_secs(10));
        let by_uuid = request(&["-uuid", "0b5e", "-timeout", "3", "/mnt"]).expect("ok");
        assert!(matches!(&by_uuid.wanted, Wanted::Field("UUID", uuid) if uuid == "0b5e"));
        assert_eq!(by_uuid.timeout, Duration::from_secs(3));
        let by_device = request(&["/dev/vdb1", "/var/lib/docker"]).expect("ok");
        assert!(
            matches!(&by_device.wanted, Wanted::Device(path) if path == Path::new("/dev/vdb1"))
        );
        let first = request(&["/var/lib/docker"]).expect("ok");
        assert!(matches!(first.wanted, Wanted::First));

        let err = |args: &[&str]| format!("{:#}", request(args).expect_err("refused"));
        assert!(err(&[]).contains("no mount point given"));
        assert!(err(&["a", "b", "c"]).contains("too many arguments"));
        assert!(err(&["-timeout", "soon", "/mnt"]).contains("-timeout soon: not a number"));
    }
}
