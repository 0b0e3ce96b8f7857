//! User data on a disk or CD, as LinuxKit's cdrom provider finds it: every block device whose
//! ISO 9660 volume is labelled `cidata` (cloud-init's NoCloud volume, and what `kiln run
//! --data` attaches as a virtio disk), then every CD drive (`/dev/sr*`). The volume is mounted
//! read-only on a directory under /tmp, its `user-data` read (or `config`, what LinuxKit's
//! `run --data` writes), and unmounted. A volume without user data does not answer.
//! Runs in: the metadata program.

use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{mount, umount, MsFlags};

/// Where an ISO 9660 volume's primary volume descriptor is: sector 16 of 2048 bytes.
const DESCRIPTOR: u64 = 16 * 2048;

/// The labels LinuxKit looks for.
const LABELS: [&str; 2] = ["cidata", "CIDATA"];

/// The files that hold the user data, in the order they are looked for.
const FILES: [&str; 2] = ["user-data", "config"];

/// A block device that may hold user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdrom {
    pub device: PathBuf,
}

impl Cdrom {
    /// The provider's name as /run/config/provider and the log say it: `CDROM /dev/vdb`.
    pub fn name(&self) -> String {
        format!("CDROM {}", self.device.display())
    }

    /// Mounts the volume, reads its user data and unmounts it: `None` when it holds none.
    pub fn read(&self) -> Result<Option<Vec<u8>>> {
        let dir = tempfile::Builder::new()
            .prefix("cd")
            .tempdir_in("/tmp")
            .context("cannot make a directory under /tmp to mount on")?;
        mount(
            Some(&self.device),
            dir.path(),
            Some("iso9660"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .with_context(|| format!("cannot mount {} (iso9660)", self.device.display()))?;
        let data = user_data(dir.path());
        umount(dir.path()).with_context(|| format!("cannot unmount {}", self.device.display()))?;
        Ok(data)
    }
}

/// The devices to look at: those with a `cidata` ISO 9660 volume among the block devices and
/// partitions sysfs (`sys`) lists, then the CD drives; nodes under `dev`.
pub fn candidates(sys: &Path, dev: &Path) -> Vec<Cdrom> {
    let mut found: Vec<PathBuf> = storage::block::devices(sys)
        .into_iter()
        .map(|name| dev.join(name))
        .filter(|path| iso_label(path).is_some_and(|label| LABELS.contains(&label.as_str())))
        .collect();
    let mut drives: Vec<PathBuf> = fs::read_dir(dev)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|name| name.to_str())
                        .and_then(|name| name.strip_prefix("sr"))
                        .is_some_and(|rest| {
                            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    drives.sort();
    for drive in drives {
        if !found.contains(&drive) {
            found.push(drive);
        }
    }
    found.into_iter().map(|device| Cdrom { device }).collect()
}

/// The volume identifier of the ISO 9660 filesystem on `device`, if it holds one.
pub fn iso_label(device: &Path) -> Option<String> {
    let file = File::open(device).ok()?;
    let mut sector = [0u8; 2048];
    file.read_exact_at(&mut sector, DESCRIPTOR).ok()?;
    // Type 1 (primary), the standard identifier, version 1; the identifier at 40..72, padded
    // with spaces.
    if sector[0] != 1 || &sector[1..6] != b"CD001" || sector[6] != 1 {
        return None;
    }
    let label = String::from_utf8_lossy(&sector[40..72]);
    Some(label.trim_end_matches([' ', '\0']).to_owned())
}

/// The user data in the mounted volume at `dir`: the first of [`FILES`] that reads and is not
/// empty.
pub fn user_data(dir: &Path) -> Option<Vec<u8>> {
    FILES.iter().find_map(|name| {
        let mut data = Vec::new();
        File::open(dir.join(name))
            .and_then(|mut file| file.read_to_end(&mut data))
            .ok()?;
        (!data.is_empty()).then_some(data)
    })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// An ISO 9660 image labelled `label` holding `files`, made by xorriso.
    fn iso(dir: &Path, label: &str, files: &[(&str, &str)]) -> PathBuf {
        let tree = dir.join(format!("tree-{label}"));
        fs::create_dir_all(&tree).unwrap_or_else(|e| panic!("{e}"));
        for (name, content) in files {
            fs::write(tree.join(name), content).unwrap_or_else(|e| panic!("{e}"));
        }
        let out = dir.join(format!("{label}.iso"));
        let status = Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-r", "-J", "-V", label, "-o"])
            .arg(&out)
            .arg(&tree)
            .status()
            .unwrap_or_else(|e| panic!("xorriso (Debian package xorriso): {e}"));
        assert!(status.success());
        out
    }

    #[test]
    fn the_label_is_read_from_an_iso_and_nothing_from_other_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cidata = iso(dir.path(), "cidata", &[("user-data", "{}")]);
        assert_eq!(iso_label(&cidata).as_deref(), Some("cidata"));
        let other = iso(dir.path(), "config", &[("config", "x")]);
        assert_eq!(iso_label(&other).as_deref(), Some("config"));
        let blank = dir.path().join("blank");
        fs::write(&blank, vec![0u8; 64 * 1024]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(iso_label(&blank), None);
        assert_eq!(iso_label(&dir.path().join("missing")), None);
    }

    #[test]
    fn cidata_volumes_come_first_then_cd_drives() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (sys, dev) = (dir.path().join("sys"), dir.path().join("dev"));
        for name in ["vda", "vdb", "sr0", "loop0"] {
            fs::create_dir_all(sys.join("class/block").join(name))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        fs::create_dir_all(&dev).unwrap_or_else(|e| panic!("{e}"));
        let cidata = iso(dir.path(), "cidata", &[("user-data", "{}")]);
        fs::copy(&cidata, dev.join("vdb")).unwrap_or_else(|e| panic!("{e}"));
        fs::write(dev.join("vda"), vec![0u8; 64 * 1024]).unwrap_or_else(|e| panic!("{e}"));
        fs::copy(&cidata, dev.join("loop0")).unwrap_or_else(|e| panic!("{e}"));
        for name in ["sr0", "sr1", "srx"] {
            fs::write(dev.join(name), "").unwrap_or_else(|e| panic!("{e}"));
        }
        let names: Vec<String> = candidates(&sys, &dev).iter().map(Cdrom::name).collect();
        let at = |name: &str| format!("CDROM {}", dev.join(name).display());
        assert_eq!(names, [at("vdb"), at("sr0"), at("sr1")]);
    }

    #[test]
    fn user_data_is_user_data_else_config_and_never_empty() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user_data(dir.path()), None);
        fs::write(dir.path().join("config"), "from config").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(user_data(dir.path()).as_deref(), Some(&b"from config"[..]));
        fs::write(dir.path().join("user-data"), "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            user_data(dir.path()).as_deref(),
            Some(&b"from config"[..]),
            "empty: next"
        );
        fs::write(dir.path().join("user-data"), "from user-data").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            user_data(dir.path()).as_deref(),
            Some(&b"from user-data"[..])
        );
    }
}
