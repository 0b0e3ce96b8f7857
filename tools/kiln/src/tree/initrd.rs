//! Writing a root filesystem [`Tree`] as an initramfs: a newc cpio archive, compressed (zstd
//! unless asked otherwise),
//! optionally after an uncompressed microcode cpio. Entries are in path order (parents first),
//! hard-linked files share an inode number (the kernel links the later names to the first,
//! which carries the data), and `/dev/console` is added when the tree has none, so the kernel
//! can give init a console. `boot/` (kernel, cmdline, microcode) is left out: those are
//! separate outputs.
//! Runs in: `kiln` on the build host. Writes only to the stream it is given.

use std::collections::HashMap;
use std::io::{self, Write};

use cpio::newc::{self, ModeFileType};

use crate::tree::compression::Compression;
use crate::tree::{Content, Kind, Node, Tree};

/// The directory whose files are outputs of their own, not part of the initramfs.
const BOOT: &str = "boot";

/// What an entry's cpio record carries.
enum Bytes<'a> {
    None,
    Slice(&'a [u8]),
    File(&'a Content),
}

impl Bytes<'_> {
    fn len(&self) -> u64 {
        match self {
            Bytes::None => 0,
            Bytes::Slice(bytes) => bytes.len() as u64,
            Bytes::File(content) => content.len(),
        }
    }
}

/// Writes `ucode` (if any) and then `tree` as a newc cpio compressed with `compression` to
/// `out`.
pub fn write_initrd<W: Write>(
    tree: &Tree,
    ucode: Option<&Content>,
    compression: Compression,
    mut out: W,
) -> io::Result<W> {
    if let Some(ucode) = ucode {
        io::copy(&mut ucode.reader(), &mut out)?;
    }
    let mut encoder = compression.encoder(out)?;
    let with_console;
    let tree = if tree.contains("dev/console") {
        tree
    } else {
        let console = Node::new(Kind::Char { major: 5, minor: 1 }, 0o600);
        with_console = {
            let mut copy = tree.clone();
            copy.put("dev/console", console);
            copy
        };
        &with_console
    };
    let entries = tree
        .iter()
        .filter(|(key, _)| *key != BOOT && !key.starts_with("boot/"));
    let mut links: HashMap<u64, u32> = HashMap::new();
    for (_, node) in tree.iter() {
        if let Kind::File { inode, .. } = node.kind {
            *links.entry(inode).or_default() += 1;
        }
    }
    let mut written: HashMap<u64, u32> = HashMap::new();
    let mut next_ino = 0u32;
    for (key, node) in entries {
        next_ino += 1;
        let too_big =
            |what: &str| io::Error::other(format!("{key}: {what} does not fit in a cpio archive"));
        let mtime = u32::try_from(node.mtime).map_err(|_| too_big("the time"))?;
        let builder = newc::Builder::new(key)
            .uid(node.uid)
            .gid(node.gid)
            .mtime(mtime)
            .mode(node.mode);
        let (builder, data): (newc::Builder, Bytes<'_>) = match &node.kind {
            Kind::Dir => (
                builder
                    .ino(next_ino)
                    .nlink(2)
                    .set_mode_file_type(ModeFileType::Directory),
                Bytes::None,
            ),
            Kind::File { data, inode } => {
                let count = links.get(inode).copied().unwrap_or(1);
                let first = !written.contains_key(inode);
                let ino = *written.entry(*inode).or_insert(next_ino);
                let builder = builder
                    .ino(ino)
                    .nlink(count)
                    .set_mode_file_type(ModeFileType::Regular);
                (
                    builder,
                    if first {
                        Bytes::File(data)
                    } else {
                        Bytes::None
                    },
                )
            }
            Kind::Symlink(target) => (
                builder
                    .ino(next_ino)
                    .nlink(1)
                    .mode(0o777)
                    .set_mode_file_type(ModeFileType::Symlink),
                Bytes::Slice(target.as_bytes()),
            ),
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                let kind = if matches!(node.kind, Kind::Char { .. }) {
                    ModeFileType::Char
                } else {
                    ModeFileType::Block
                };
                (
                    builder
                        .ino(next_ino)
                        .nlink(1)
                        .rdev_major(*major)
                        .rdev_minor(*minor)
                        .set_mode_file_type(kind),
                    Bytes::None,
                )
            }
            Kind::Fifo => (
                builder
                    .ino(next_ino)
                    .nlink(1)
                    .set_mode_file_type(ModeFileType::Fifo),
                Bytes::None,
            ),
        };
        let size = u32::try_from(data.len()).map_err(|_| too_big("the size"))?;
        let mut writer = builder.write(encoder, size);
        match data {
            Bytes::None => {}
            Bytes::Slice(bytes) => writer.write_all(bytes)?,
            Bytes::File(content) => {
                io::copy(&mut content.reader(), &mut writer)?;
            }
        }
        encoder = writer.finish()?;
    }
    newc::trailer(encoder)?.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_archive_holds_the_tree_without_boot_and_with_a_console() {
        let mut tree = Tree::new();
        tree.put("boot/kernel", Node::file(&b"vmlinuz"[..], 0o644));
        tree.put("bin/busybox", Node::file(&b"elf"[..], 0o755).owned(1, 2));
        assert!(tree.link("bin/sh", "bin/busybox"));
        tree.put("etc/mtab", Node::symlink("/proc/mounts"));
        let bytes = write_initrd(
            &tree,
            Some(&Content::from(b"UCODE")),
            Compression::Gzip,
            Vec::new(),
        )
        .expect("write");
        assert_eq!(
            bytes,
            write_initrd(
                &tree,
                Some(&Content::from(b"UCODE")),
                Compression::Gzip,
                Vec::new()
            )
            .expect("again"),
            "reproducible"
        );
        assert!(bytes.starts_with(b"UCODE"));
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&bytes[5..])
            .read_to_end(&mut cpio)
            .expect("gunzip");
        let mut entries = Vec::new();
        let mut rest = &cpio[..];
        loop {
            let reader = newc::Reader::new(rest).expect("entry");
            let entry = reader.entry();
            if entry.is_trailer() {
                break;
            }
            entries.push((
                entry.name().to_owned(),
                entry.ino(),
                entry.nlink(),
                entry.file_size(),
                entry.mode(),
                entry.uid(),
            ));
            rest = reader.finish().expect("next");
        }
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev",
                "dev/console",
                "etc",
                "etc/mtab"
            ]
        );
        let (busybox, sh) = (&entries[1], &entries[2]);
        assert_eq!((busybox.1, busybox.2, busybox.3), (sh.1, 2, 3), "data once");
        assert_eq!(sh.3, 0);
        assert_eq!(busybox.4, 0o100_755);
        assert_eq!(busybox.5, 1);
        assert_eq!(entries[4].4, 0o020_600, "console is a char device");
    }
}
