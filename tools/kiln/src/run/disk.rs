//! `kiln run --disk`: LinuxKit's `file=PATH[,size=SIZE][,format=raw|qcow2]` (a plain path
//! still means a raw disk, or qcow2 by its `.qcow2` name), created at SIZE when the file is
//! missing, so a VM's data lives across runs in a file the user names. SIZE is a number of
//! MiB or carries its unit (`512M`, `4G`), as LinuxKit reads it.
//! Runs in: `kiln run` on the host, before qemu starts; creates the file (qemu-img for
//! qcow2), never changes one that exists.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::media::host;
use crate::pkg::tool;

/// How the disk's bytes are kept in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// qemu's name for it (`-drive format=`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

/// One `--disk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Bytes, when the file is made if missing.
    pub size: Option<u64>,
}

impl Disk {
    /// An existing raw disk image.
    pub fn raw(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: DiskFormat::Raw,
            size: None,
        }
    }

    /// Makes the file at its size when it is missing; an existing one is used as it is.
    pub fn prepare(&self) -> Result<()> {
        if self.path.exists() {
            return Ok(());
        }
        let path = self.path.display();
        let Some(size) = self.size else {
            bail!("--disk {path}: no such file (give size= to create it: file={path},size=1G)");
        };
        match self.format {
            DiskFormat::Raw => OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&self.path)
                .and_then(|file| file.set_len(size))
                .with_context(|| format!("--disk {path}: cannot create it"))?,
            DiskFormat::Qcow2 => {
                let mut command = host::QEMU_IMG.command()?;
                command
                    .args(["create", "-q", "-f", "qcow2"])
                    .arg(&self.path)
                    .arg(size.to_string());
                tool::run(&mut command, &format!("qemu-img create {path}"))?;
            }
        }
        eprintln!(
            "kiln run: created {path} ({} MiB, {})",
            size >> 20,
            self.format.name()
        );
        Ok(())
    }
}

impl FromStr for Disk {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if !text.contains('=') {
            return Ok(Self {
                path: PathBuf::from(text),
                format: format_of(Path::new(text)),
                size: None,
            });
        }
        let (mut path, mut format, mut size) = (None, None, None);
        for part in text.split(',') {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "`{part}` is not KEY=VALUE (file=PATH,size=SIZE,format=raw|qcow2)"
                ));
            };
            match key {
                "file" if !value.is_empty() => path = Some(PathBuf::from(value)),
                "size" => size = Some(parse_size(value)?),
                "format" => {
                    format = Some(match value {
                        "raw" => DiskFormat::Raw,
                        "qcow2" => DiskFormat::Qcow2,
                        _ => return Err(format!("format={value}: not raw or qcow2")),
                    })
                }
                "file" => return Err("file= needs a path".to_owned()),
                _ => {
                    return Err(format!(
                        "`{key}` is not a disk setting (file, size, format)"
                    ))
                }
            }
        }
        let path = path.ok_or("file=PATH is missing")?;
        Ok(Self {
            format: format.unwrap_or_else(|| format_of(&path)),
            path,
            size,
        })
    }
}

impl fmt::Display for Disk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "file={},format={}",
            self.path.display(),
            self.format.name()
        )?;
        if let Some(size) = self.size {
            write!(f, ",size={}M", size >> 20)?;
        }
        Ok(())
    }
}

/// qcow2 for a `.qcow2` file, else raw.
fn format_of(path: &Path) -> DiskFormat {
    if path.extension().is_some_and(|ext| ext == "qcow2") {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    }
}

/// A size as LinuxKit reads it: a number of MiB, or a number with K, M, G or T (an optional
/// `B` or `iB` after it), powers of 1024.
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("size={text}: not a size such as 512M, 4G or 1024 (MiB)");
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let number: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches('B')
        .trim_end_matches('I')
    {
        "" if unit.is_empty() => 20,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    let size = number
        .checked_shl(shift)
        .filter(|size| size >> shift == number);
    match size {
        Some(size) if size > 0 => Ok(size),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linuxkit_disk_settings_and_plain_paths_are_read() {
        let disk: Disk = "file=data.img,size=512M".parse().expect("disk");
        assert_eq!(
            disk,
            Disk {
                path: "data.img".into(),
                format: DiskFormat::Raw,
                size: Some(512 << 20)
            }
        );
        let disk: Disk = "format=qcow2,file=/v/d,size=4G".parse().expect("disk");
        assert_eq!((disk.format, disk.size), (DiskFormat::Qcow2, Some(4 << 30)));
        let disk: Disk = "state/disk.qcow2".parse().expect("plain");
        assert_eq!((disk.format, disk.size), (DiskFormat::Qcow2, None));
        assert_eq!("d.img".parse::<Disk>().expect("plain"), Disk::raw("d.img"));
        let disk: Disk = "file=d.img,size=100".parse().expect("MiB");
        assert_eq!(disk.size, Some(100 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("64kb"), Ok(64 << 10));
    }

    #[test]
    fn bad_disk_settings_say_which_and_why() {
        let err = |text: &str| text.parse::<Disk>().expect_err(text);
        assert!(err("size=1G").contains("file=PATH is missing"));
        assert!(err("file=d.img,size=lots").contains("size=lots: not a size"));
        assert!(err("file=d.img,size=0").contains("size=0: not a size"));
        assert!(err("file=d.img,size=99999999999T").contains("not a size"));
        assert!(err("file=d.img,format=vmdk").contains("format=vmdk: not raw or qcow2"));
        assert!(err("file=d.img,cache=none").contains("`cache` is not a disk setting"));
        assert!(err("file=d.img,ro").contains("`ro` is not KEY=VALUE"));
    }

    #[test]
    fn a_missing_disk_is_created_at_its_size_and_an_existing_one_is_left_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("data.img");
        let disk: Disk = format!("file={},size=8M", path.display())
            .parse()
            .expect("disk");
        disk.prepare().expect("created");
        assert_eq!(std::fs::metadata(&path).expect("made").len(), 8 << 20);
        std::fs::write(&path, b"data").expect("write");
        disk.prepare().expect("kept");
        assert_eq!(std::fs::read(&path).expect("read"), b"data");

        let missing = Disk::raw(dir.path().join("none.img"));
        let err = missing.prepare().expect_err("no size");
        assert!(err.to_string().contains("give size= to create it"), "{err}");

        let qcow2: Disk = format!("file={},size=16M", dir.path().join("d.qcow2").display())
            .parse()
            .expect("disk");
        qcow2.prepare().expect("qemu-img made it");
        let head = std::fs::read(dir.path().join("d.qcow2")).expect("read");
        assert_eq!(&head[..4], b"QFI\xfb", "a qcow2 file");
    }
}
