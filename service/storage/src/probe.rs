//! What a block device holds, as Debian's `blkid -p` (libblkid's low-level probe, no cache)
//! reads it: a filesystem (`TYPE`, `LABEL`, `UUID`), a partition table (`PTTYPE`), and for a
//! partition its entry in the table (`PART_ENTRY_TYPE`).
//! Runs in: format and mountie.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use crate::tool;

/// The Linux filesystem partition types: MBR's 0x83 and GPT's GUID.
const LINUX_PARTITION_TYPES: [&str; 2] = ["0x83", "0fc63daf-8483-4772-8e79-3d69d8477de4"];

/// What blkid found on a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    fields: BTreeMap<String, String>,
}

impl Found {
    /// Reads `blkid -o export` output: `NAME=value` lines.
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        Self { fields }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// The filesystem's type, if it holds one.
    pub fn filesystem(&self) -> Option<&str> {
        self.get("TYPE")
    }

    /// The partition table's type (`dos`, `gpt`), if it holds one.
    pub fn table(&self) -> Option<&str> {
        self.get("PTTYPE")
    }

    /// Whether it is a partition of the type Linux filesystems go in.
    pub fn is_linux_partition(&self) -> bool {
        self.get("PART_ENTRY_TYPE")
            .is_some_and(|kind| LINUX_PARTITION_TYPES.contains(&kind.to_ascii_lowercase().as_str()))
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.filesystem().is_none() && self.table().is_none()
    }

    /// What it holds, in words: `an ext4 filesystem labelled data`, `a gpt partition table`.
    pub fn describe(&self) -> String {
        match (self.filesystem(), self.table()) {
            (Some(kind), _) => match self.get("LABEL") {
                Some(label) => format!("{kind} labelled {label}"),
                None => format!("{kind} (no label)"),
            },
            (None, Some(table)) => format!("a {table} partition table"),
            (None, None) => "nothing blkid knows".to_owned(),
        }
    }
}

/// Probes `device` with `blkid -p -o export`. Nothing found (blkid's exit 2) is an empty
/// answer; several signatures at once (exit 8) count as content.
pub fn probe(device: &Path) -> Result<Found> {
    let path = device.to_string_lossy();
    let ran = tool::run("blkid", &["-p", "-o", "export", &path], None)?;
    match ran.code() {
        0 => Ok(Found::parse(&ran.stdout)),
        2 => Ok(Found::default()),
        8 => {
            let mut found = Found::parse(&ran.stdout);
            found
                .fields
                .entry("TYPE".to_owned())
                .or_insert_with(|| "several signatures".to_owned());
            Ok(found)
        }
        _ => bail!("blkid -p {path} failed ({}): {}", ran.status, ran.said()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkid_finds_a_filesystem_and_its_label_and_nothing_on_a_blank_file() {
        let dir = tempfile::tempdir().expect("dir");
        let image = crate::testing::ext4(dir.path());
        let found = probe(&image).expect("probed");
        assert_eq!(found.filesystem(), Some("ext4"));
        assert_eq!(found.get("LABEL"), Some("t"));
        assert!(found.get("UUID").is_some_and(|uuid| uuid.len() == 36));
        let blank = dir.path().join("blank.img");
        std::fs::write(&blank, vec![0u8; 1 << 20]).expect("blank");
        assert!(probe(&blank).expect("probed").is_empty());
    }

    #[test]
    fn blkid_export_reads_as_fields() {
        let found = Found::parse(
            "DEVNAME=/dev/vda1\nUUID=0b5e\nBLOCK_SIZE=4096\nTYPE=ext4\nLABEL=data\n\
             PART_ENTRY_TYPE=0x83\nPART_ENTRY_NUMBER=1\n",
        );
        assert_eq!(found.filesystem(), Some("ext4"));
        assert_eq!(found.get("UUID"), Some("0b5e"));
        assert!(found.is_linux_partition());
        assert_eq!(found.describe(), "ext4 labelled data");
        let disk = Found::parse("DEVNAME=/dev/vda\nPTUUID=1c2d\nPTTYPE=gpt\n");
        assert_eq!(disk.describe(), "a gpt partition table");
        assert!(!disk.is_empty() && !disk.is_linux_partition());
        let gpt = Found::parse("PART_ENTRY_TYPE=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n");
        assert!(gpt.is_linux_partition());
        assert!(Found::default().is_empty());
    }
}
