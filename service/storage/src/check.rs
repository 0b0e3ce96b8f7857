//! A filesystem checked before it is mounted, as a boot after a power cut needs: ext2/3/4 by
//! `e2fsck -p` (preen: replays the journal, fixes what is safe), and `e2fsck -y` when preening
//! is not enough; XFS and Btrfs replay their logs at mount and need nothing first.
//! Runs in: mountie, before the mount.

use std::path::Path;

use anyhow::{bail, Result};

use crate::tool;

/// What a check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// It was clean, or made so by replaying its journal; the words are the checker's.
    Clean(String),
    /// Errors were found and fixed; the words say what.
    Fixed(String),
    /// The filesystem has no check here.
    NotNeeded,
}

/// Checks the filesystem of type `kind` on `device`.
pub fn check(device: &Path, kind: &str) -> Result<Checked> {
    let path = device.to_string_lossy();
    match kind {
        "ext2" | "ext3" | "ext4" => {
            let preen = tool::run("e2fsck", &["-p", &path], None)?;
            match outcome(preen.code()) {
                Some(checked) => Ok(checked.with(preen.said())),
                None => {
                    let fix = tool::run("e2fsck", &["-y", "-f", &path], None)?;
                    match outcome(fix.code()) {
                        Some(checked) => Ok(checked.with(fix.said())),
                        None => bail!(
                            "e2fsck cannot repair {path} ({}): {}",
                            fix.status,
                            fix.said()
                        ),
                    }
                }
            }
        }
        _ => Ok(Checked::NotNeeded),
    }
}

/// e2fsck's exit code read (fsck(8)): 0 clean, 1 errors fixed, 2 fixed and a reboot advised
/// (which only matters for a mounted root), 4 and above not fixed (`None`).
fn outcome(code: i32) -> Option<Checked> {
    match code {
        0 => Some(Checked::Clean(String::new())),
        1..=3 => Some(Checked::Fixed(String::new())),
        _ => None,
    }
}

impl Checked {
    fn with(self, said: String) -> Self {
        match self {
            Self::Clean(_) => Self::Clean(said),
            Self::Fixed(_) => Self::Fixed(said),
            Self::NotNeeded => Self::NotNeeded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ext4;

    #[test]
    fn a_clean_filesystem_is_clean_a_damaged_one_repaired_a_ruined_one_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let image = ext4(dir.path());
        let Checked::Clean(said) = check(&image, "ext4").expect("checked") else {
            panic!("a new filesystem is clean");
        };
        assert!(said.contains("t: clean"), "{said}");

        // A wrong free-block count, as a crash may leave: preening fixes it.
        let path = image.to_string_lossy().into_owned();
        tool::succeed(
            "debugfs",
            &["-w", "-R", "ssv free_blocks_count 7", &path],
            None,
        )
        .expect("debugfs");
        tool::succeed("debugfs", &["-w", "-R", "ssv state 0", &path], None).expect("debugfs");
        let checked = check(&image, "ext4").expect("checked");
        assert!(matches!(checked, Checked::Fixed(_)), "{checked:?}");
        assert!(
            matches!(check(&image, "ext4"), Ok(Checked::Clean(_))),
            "fixed for good"
        );

        // No superblock left anywhere: nothing to repair, and the mount is refused.
        std::fs::write(&image, vec![0u8; 16 << 20]).expect("wipe");
        let err = check(&image, "ext4").expect_err("ruined");
        assert!(err.to_string().contains("e2fsck cannot repair"), "{err}");

        assert_eq!(check(&image, "xfs").expect("xfs"), Checked::NotNeeded);
    }

    #[test]
    fn e2fsck_codes_read_as_fsck_documents_them() {
        assert_eq!(outcome(0), Some(Checked::Clean(String::new())));
        assert_eq!(outcome(1), Some(Checked::Fixed(String::new())));
        assert_eq!(outcome(2), Some(Checked::Fixed(String::new())));
        assert_eq!(outcome(4), None);
        assert_eq!(outcome(8), None);
        assert_eq!(
            Checked::Fixed(String::new()).with("journal recovered".into()),
            Checked::Fixed("journal recovered".into())
        );
    }
}
