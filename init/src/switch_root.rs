//! Moving an initramfs root off the kernel's initial mount. The kernel unpacks the initramfs
//! into `rootfs`, the mount at the bottom of the tree, which has no parent: pivot_root(2)
//! refuses to move a root that is on it, so no container could be started. When rootfs is a
//! tmpfs (the kernel makes it one unless `root=` is given), init binds it onto /mnt, moves
//! that bind over `/` and chroots into it: the files stay where the kernel unpacked them, and
//! the root is now a mount with a parent, which pivot_root accepts (a container's root is
//! still entered by pivot_root, not chroot). On a ramfs (a kernel without tmpfs), which has
//! no size limit, init mounts a fresh tmpfs on /mnt instead and moves every file into it one
//! by one (each copied, then unlinked, so memory holds one copy at a time), as LinuxKit's
//! init does for every initramfs.
//! Runs in: PID 1 as the system's init, first of all, only when `/` is a ramfs or tmpfs (a
//! disk or ISO root stays where it is). A copy keeps modes (setuid too), owners, times,
//! symlinks, device nodes, FIFOs and hard links; a socket cannot be moved and is reported.
//! Mirrors LinuxKit pkg/init/cmd/init (copyTree, then MS_MOVE and chroot), without the copy.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{lchown, symlink, DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
use nix::sys::time::TimeSpec;

/// ramfs's statfs magic (linux/magic.h; nix names only tmpfs's).
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// Where the new root is assembled.
const NEW_ROOT: &str = "/mnt";

/// Whether `/` is a ramfs or tmpfs (an initramfs).
pub fn needed() -> bool {
    root_type().is_some_and(|kind| kind == RAMFS_MAGIC || kind == TMPFS_MAGIC)
}

fn root_type() -> Option<FsType> {
    statfs("/").ok().map(|fs| fs.filesystem_type())
}

/// Makes the root a mount pivot_root accepts: the initial tmpfs bound over itself, or a
/// ramfs's files moved into a new tmpfs. An error names the step; the files that could not
/// be moved are listed first (the move goes on past them).
pub fn relocate() -> Result<(), String> {
    let new_root = Path::new(NEW_ROOT);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(new_root)
        .map_err(|err| format!("make {NEW_ROOT}: {err}"))?;
    if root_type() == Some(TMPFS_MAGIC) {
        mount(
            Some("/"),
            new_root,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|err| format!("bind / on {NEW_ROOT}: {err}"))?;
    } else {
        mount(
            Some("rootfs"),
            new_root,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|err| format!("mount tmpfs on {NEW_ROOT}: {err}"))?;
        let problems = move_tree(Path::new("/"), new_root);
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        // The new root's own /mnt, empty, as the image had it.
        fs::DirBuilder::new()
            .mode(0o755)
            .create(new_root.join("mnt"))
            .map_err(|err| format!("make /mnt in the new root: {err}"))?;
    }
    std::env::set_current_dir(new_root).map_err(|err| format!("chdir {NEW_ROOT}: {err}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|err| format!("move {NEW_ROOT} to /: {err}"))?;
    nix::unistd::chroot(".").map_err(|err| format!("chroot: {err}"))?;
    std::env::set_current_dir("/").map_err(|err| format!("chdir /: {err}"))
}

/// Moves everything under `from` that is on its filesystem into `to` (which may lie inside
/// `from` and is then left alone). Directories on other filesystems are recreated empty.
/// Returns a message for each entry that could not be moved.
pub fn move_tree(from: &Path, to: &Path) -> Vec<String> {
    let mut mover = Mover {
        device: match fs::symlink_metadata(from) {
            Ok(meta) => meta.dev(),
            Err(err) => return vec![format!("{}: {err}", from.display())],
        },
        skip: to.to_path_buf(),
        links: HashMap::new(),
        problems: Vec::new(),
    };
    mover.move_dir_contents(from, to);
    mover.problems
}

struct Mover {
    device: u64,
    skip: PathBuf,
    /// Files with more than one link already moved: (device, inode) -> new path.
    links: HashMap<(u64, u64), PathBuf>,
    problems: Vec<String>,
}

impl Mover {
    fn move_dir_contents(&mut self, from: &Path, to: &Path) {
        let entries = match fs::read_dir(from) {
            Ok(entries) => entries,
            Err(err) => {
                self.problems
                    .push(format!("read {}: {err}", from.display()));
                return;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    self.problems
                        .push(format!("read {}: {err}", from.display()));
                    continue;
                }
            };
            let source = entry.path();
            if source == self.skip {
                continue;
            }
            let target = to.join(entry.file_name());
            if let Err(err) = self.move_entry(&source, &target) {
                self.problems
                    .push(format!("move {}: {err}", source.display()));
            }
        }
    }

    fn move_entry(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(source)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::DirBuilder::new().mode(0o700).create(target)?;
            if meta.dev() == self.device {
                self.move_dir_contents(source, target);
                // Not empty if something could not be moved; that was reported.
                let _ = fs::remove_dir(source);
            }
        } else if kind.is_file() {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                fs::hard_link(first, target)?;
                fs::remove_file(source)?;
                return Ok(());
            }
            copy_file(source, target)?;
            if meta.nlink() > 1 {
                self.links.insert(key, target.to_path_buf());
            }
            fs::remove_file(source)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(source)?, target)?;
            fs::remove_file(source)?;
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
            let node = if kind.is_char_device() {
                SFlag::S_IFCHR
            } else if kind.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            mknod(
                target,
                node,
                Mode::from_bits_truncate(meta.mode()),
                meta.rdev(),
            )?;
            fs::remove_file(source)?;
        } else {
            return Err(io::Error::other("a socket cannot be moved"));
        }
        copy_attributes(&meta, target)
    }
}

fn copy_file(source: &Path, target: &Path) -> io::Result<()> {
    let mut input = File::open(source)?;
    let mut output = File::create(target)?;
    io::copy(&mut input, &mut output)?;
    Ok(())
}

/// Owner, then mode (chown clears setuid bits), then times (last: writing changes them).
fn copy_attributes(meta: &fs::Metadata, target: &Path) -> io::Result<()> {
    lchown(target, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    utimensat(
        None,
        target,
        &TimeSpec::new(meta.atime(), meta.atime_nsec()),
        &TimeSpec::new(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::os::unix::net::UnixListener;

    use nix::mount::{mount, MsFlags};
    use nix::sys::stat::makedev;

    use super::*;

    #[test]
    fn move_tree_keeps_every_kind_of_file_and_its_attributes_root() {
        sandbox::test(|| {
            let from = sandbox::scratch().join("old-root");
            let to = from.join("mnt");
            fs::create_dir_all(from.join("a/deep"))?;
            fs::create_dir(&to)?;
            fs::write(from.join("a/f"), "payload")?;
            lchown(from.join("a/f"), Some(1000), Some(100))?;
            fs::set_permissions(from.join("a/f"), fs::Permissions::from_mode(0o4755))?;
            utimensat(
                None,
                &from.join("a/f"),
                &TimeSpec::new(1_000_000, 5),
                &TimeSpec::new(2_000_000, 7),
                UtimensatFlags::NoFollowSymlink,
            )?;
            fs::hard_link(from.join("a/f"), from.join("a/g"))?;
            fs::set_permissions(from.join("a"), fs::Permissions::from_mode(0o750))?;
            symlink("a/f", from.join("link"))?;
            mknod(
                &from.join("fifo"),
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(0o640),
                0,
            )?;
            mknod(
                &from.join("null"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(1, 3),
            )?;
            fs::create_dir(from.join("other-fs"))?;
            mount(
                Some("tmpfs"),
                &from.join("other-fs"),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )?;
            fs::write(from.join("other-fs/stays"), "")?;
            let _socket = UnixListener::bind(from.join("socket"))?;

            let problems = move_tree(&from, &to);

            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].contains("socket cannot be moved"),
                "{problems:?}"
            );
            let f = fs::symlink_metadata(to.join("a/f"))?;
            assert_eq!(fs::read_to_string(to.join("a/f"))?, "payload");
            assert_eq!((f.uid(), f.gid()), (1000, 100));
            assert_eq!(f.mode() & 0o7777, 0o4755, "setuid kept after chown");
            assert_eq!((f.mtime(), f.mtime_nsec()), (2_000_000, 7));
            assert_eq!((f.atime(), f.atime_nsec()), (1_000_000, 5));
            let g = fs::symlink_metadata(to.join("a/g"))?;
            assert_eq!(g.ino(), f.ino(), "hard links stay one file");
            assert_eq!(fs::symlink_metadata(to.join("a"))?.mode() & 0o7777, 0o750);
            assert!(to.join("a/deep").is_dir());
            assert_eq!(fs::read_link(to.join("link"))?, Path::new("a/f"));
            assert!(fs::symlink_metadata(to.join("fifo"))?.file_type().is_fifo());
            let null = fs::symlink_metadata(to.join("null"))?;
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), makedev(1, 3));
            assert!(to.join("other-fs").is_dir());
            assert!(
                !to.join("other-fs/stays").exists(),
                "another filesystem is not entered"
            );
            assert!(from.join("other-fs/stays").exists());
            // Moved, not copied: only what could not move is left.
            let mut left: Vec<String> = fs::read_dir(&from)?
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(left, ["mnt", "other-fs", "socket"]);
            Ok(())
        });
    }
}
