//! Applying one image layer (an uncompressed tar) onto a [`Tree`] with the OCI rules:
//! `.wh.NAME` removes `NAME` from the layers below, `.wh..wh..opq` empties its directory of
//! what the layers below put there, and everything else is added in archive order (hard links
//! to entries of this layer or of the layers below). Modes, owners, times, device numbers and
//! `SCHILY.xattr.*` extended attributes are kept. A layer is read whole before any of it is
//! applied, so a caller can check its digest between the two.
//! Runs in: `kiln` on the build host. Large files' bytes go to the spill ([`Content`]), or
//! stay where they are when the tar is a file that does not change.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use tar::EntryType;

use crate::tree::{self, Content, Kind, Node, Tree};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const XATTR: &str = "SCHILY.xattr.";

/// What an entry of the layer asks for, applied after the whiteouts.
#[derive(Debug)]
enum Change {
    Put(String, Node),
    Link(String, String),
}

/// A layer read but not yet applied.
#[derive(Debug)]
pub struct Layer {
    removed: Vec<String>,
    emptied: Vec<String>,
    changes: Vec<Change>,
}

/// Applies the layer read from `tar` onto `tree`. The error names the entry that could not be
/// read or applied.
pub fn apply(tree: &mut Tree, tar: impl Read) -> Result<(), String> {
    read(tar, None)?.apply(tree)
}

/// Reads the layer from `tar` up to the archive's end marker. When `tar` reads `in_place`
/// from its start, and that file does not change, a large file's content is its range of
/// `in_place`, read through (so whatever `tar` hashes sees it) but not copied. The error
/// names the entry that could not be read.
pub fn read(tar: impl Read, in_place: Option<&Arc<File>>) -> Result<Layer, String> {
    let mut archive = tar::Archive::new(tar);
    let mut removed = Vec::new();
    let mut emptied = Vec::new();
    let mut changes = Vec::new();
    let entries = archive
        .entries()
        .map_err(|err| format!("cannot read the layer: {err}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| format!("cannot read the layer: {err}"))?;
        let raw = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|err| format!("entry name is not UTF-8: {:?}", err.as_bytes()))?;
        let Some(key) = tree::key(&raw)? else {
            // The layer's own root: nothing to put, the tree's root always exists.
            continue;
        };
        let name = key.rsplit('/').next().unwrap_or(&key);
        let dir = tree::parent(&key);
        if name == OPAQUE {
            emptied.push(dir.unwrap_or("").to_owned());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            removed.push(dir.map_or_else(|| hidden.to_owned(), |dir| format!("{dir}/{hidden}")));
            continue;
        }
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => Kind::File {
                data: content(&mut entry, in_place)
                    .map_err(|err| format!("{raw}: cannot read: {err}"))?,
                inode: 0,
            },
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(link_name(&entry, &raw)?),
            EntryType::Link => {
                let target = tree::key(&link_name(&entry, &raw)?)?
                    .ok_or_else(|| format!("{raw}: hard link to the root"))?;
                changes.push(Change::Link(key, target));
                continue;
            }
            EntryType::Char | EntryType::Block => {
                let number = |value: std::io::Result<Option<u32>>| {
                    value
                        .map(Option::unwrap_or_default)
                        .map_err(|err| format!("{raw}: bad device number: {err}"))
                };
                let (major, minor) = (
                    number(header.device_major())?,
                    number(header.device_minor())?,
                );
                if header.entry_type() == EntryType::Char {
                    Kind::Char { major, minor }
                } else {
                    Kind::Block { major, minor }
                }
            }
            EntryType::Fifo => Kind::Fifo,
            // Global PAX headers carry nothing a file tree keeps.
            EntryType::XGlobalHeader => continue,
            other => return Err(format!("{raw}: unsupported entry type {other:?}")),
        };
        let node = node(&mut entry, &header, &raw, kind)?;
        changes.push(Change::Put(key, node));
    }
    Ok(Layer {
        removed,
        emptied,
        changes,
    })
}

/// A regular file's bytes: copied, or where they are in `in_place` when large.
fn content(
    entry: &mut tar::Entry<'_, impl Read>,
    in_place: Option<&Arc<File>>,
) -> io::Result<Content> {
    let len = entry.size();
    match in_place {
        Some(file) if len > crate::tree::content::INLINE_MAX as u64 => {
            let offset = entry.raw_file_position();
            let read = io::copy(entry, &mut io::sink())?;
            if read != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{read} of {len} bytes"),
                ));
            }
            Ok(Content::in_file(file.clone(), offset, len))
        }
        _ => Content::read_from(entry),
    }
}

/// The entry's node: `kind` with the mode, owner, time and `SCHILY.xattr.*` extended
/// attributes of its header.
fn node(
    entry: &mut tar::Entry<'_, impl Read>,
    header: &tar::Header,
    raw: &str,
    kind: Kind,
) -> Result<Node, String> {
    let field = |value: std::io::Result<u64>, what: &str| {
        value.map_err(|err| format!("{raw}: bad {what}: {err}"))
    };
    let id = |value: u64, what: &str| {
        u32::try_from(value).map_err(|_| format!("{raw}: {what} {value} is out of range"))
    };
    let mode = field(header.mode().map(u64::from), "mode")?;
    let uid = id(field(header.uid(), "uid")?, "uid")?;
    let gid = id(field(header.gid(), "gid")?, "gid")?;
    let mtime = field(header.mtime(), "mtime")?;
    let mut xattrs = BTreeMap::new();
    if let Some(extensions) = entry
        .pax_extensions()
        .map_err(|err| format!("{raw}: bad PAX header: {err}"))?
    {
        for extension in extensions {
            let extension = extension.map_err(|err| format!("{raw}: bad PAX header: {err}"))?;
            if let Some(name) = extension.key().ok().and_then(|k| k.strip_prefix(XATTR)) {
                xattrs.insert(name.to_owned(), extension.value_bytes().to_vec());
            }
        }
    }
    Ok(Node {
        kind,
        mode: u32::try_from(mode & 0o7777).unwrap_or_default(),
        uid,
        gid,
        mtime,
        xattrs,
    })
}

impl Layer {
    /// Applies the whiteouts, the opaque directories, then the entries. The error names a
    /// hard link whose target is missing.
    pub fn apply(self, tree: &mut Tree) -> Result<(), String> {
        let Layer {
            removed,
            emptied,
            changes,
        } = self;
        for key in removed {
            tree.remove(&key);
        }
        for key in emptied {
            if key.is_empty() {
                *tree = Tree::new();
            } else {
                tree.remove_below(&key);
            }
        }
        for change in changes {
            match change {
                Change::Put(key, node) => tree.put(&key, node),
                Change::Link(key, target) => {
                    if !tree.link(&key, &target) {
                        return Err(format!(
                            "{key}: hard link to `{target}`, which is not a file in this image"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, raw: &str) -> Result<String, String> {
    let name = entry
        .link_name_bytes()
        .ok_or_else(|| format!("{raw}: link without a target"))?;
    String::from_utf8(name.into_owned()).map_err(|_| format!("{raw}: link target is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a layer from (path, type, data-or-target) entries.
    fn layer(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, text) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_uid(7);
            header.set_gid(8);
            header.set_mtime(99);
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    header.set_size(0);
                    builder
                        .append_link(&mut header, path, text)
                        .expect("append");
                }
                EntryType::Char | EntryType::Block => {
                    header.set_device_major(5).expect("major");
                    header.set_device_minor(1).expect("minor");
                    header.set_size(0);
                    builder
                        .append_data(&mut header, path, &[][..])
                        .expect("append");
                }
                _ => {
                    header.set_size(text.len() as u64);
                    builder
                        .append_data(&mut header, path, text.as_bytes())
                        .expect("append");
                }
            }
        }
        builder.into_inner().expect("finish")
    }

    fn data(tree: &Tree, key: &str) -> String {
        match tree.get(key).map(|node| &node.kind) {
            Some(Kind::File { data, .. }) => {
                String::from_utf8_lossy(&data.to_vec().unwrap()).into_owned()
            }
            other => panic!("{key}: {other:?}"),
        }
    }

    #[test]
    fn large_files_of_a_tar_file_are_read_in_place() {
        use std::io::{Seek, Write};
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let long_name = format!("usr/lib/{}/module.ko", "deep".repeat(40));
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("etc/small", &b"small"[..]),
            (long_name.as_str(), &big[..]),
            ("boot/vmlinux", &big[1..]),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(EntryType::Regular);
            builder
                .append_data(&mut header, path, data)
                .expect("append");
        }
        let bytes = builder.into_inner().expect("tar");
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(&bytes).expect("write");
        file.rewind().expect("rewind");
        let file = Arc::new(file);
        let mut tree = Tree::new();
        read(&bytes[..], Some(&file))
            .expect("read")
            .apply(&mut tree)
            .expect("apply");
        assert_eq!(data(&tree, "etc/small"), "small");
        let read_back = |key: &str| match &tree.get(key).expect(key).kind {
            Kind::File { data, .. } => data.to_vec().expect("read back"),
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(read_back(&long_name), big, "after a long-name entry");
        assert_eq!(read_back("boot/vmlinux"), &big[1..]);
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts_and_opaque_directories() {
        let mut tree = Tree::new();
        let base = layer(&[
            ("etc/", EntryType::Directory, ""),
            ("etc/passwd", EntryType::Regular, "root"),
            ("etc/group", EntryType::Regular, "root"),
            ("var/lib/a/", EntryType::Directory, ""),
            ("var/lib/a/x", EntryType::Regular, "x"),
            ("var/lib/a/sub/y", EntryType::Regular, "y"),
            ("bin/busybox", EntryType::Regular, "elf"),
            ("bin/sh", EntryType::Link, "bin/busybox"),
            ("bin/ls", EntryType::Symlink, "busybox"),
            ("dev/console", EntryType::Char, ""),
            ("dev/sda", EntryType::Block, ""),
            ("run/fifo", EntryType::Fifo, ""),
        ]);
        apply(&mut tree, &base[..]).expect("base layer");
        let top = layer(&[
            // The new entry comes before the opaque marker and must survive it.
            ("var/lib/a/new", EntryType::Regular, "new"),
            ("var/lib/a/.wh..wh..opq", EntryType::Regular, ""),
            ("etc/.wh.group", EntryType::Regular, ""),
            ("etc/passwd", EntryType::Regular, "root\nuser"),
            ("bin/.wh.busybox", EntryType::Regular, ""),
            ("usr/bin/sh", EntryType::Link, "bin/sh"),
        ]);
        apply(&mut tree, &top[..]).expect("top layer");

        assert!(!tree.contains("etc/group"), "whiteout removes");
        assert!(!tree.contains("etc/.wh.group"), "whiteouts are not kept");
        assert_eq!(data(&tree, "etc/passwd"), "root\nuser");
        let in_a: Vec<_> = tree.below("var/lib/a").map(|(key, _)| key).collect();
        assert_eq!(
            in_a,
            ["var/lib/a/new"],
            "opaque directory keeps only its layer"
        );
        // The hard link keeps the file after the name it linked to is whited out, and a link
        // in the upper layer to an entry of the lower one works.
        assert!(!tree.contains("bin/busybox"));
        assert_eq!(data(&tree, "bin/sh"), "elf");
        assert_eq!(tree.get("usr/bin/sh"), tree.get("bin/sh"));
        assert_eq!(
            tree.get("bin/ls").map(|n| &n.kind),
            Some(&Kind::Symlink("busybox".into()))
        );
        assert_eq!(
            tree.get("dev/console").map(|n| &n.kind),
            Some(&Kind::Char { major: 5, minor: 1 })
        );
        assert_eq!(
            tree.get("dev/sda").map(|n| &n.kind),
            Some(&Kind::Block { major: 5, minor: 1 })
        );
        assert_eq!(tree.get("run/fifo").map(|n| &n.kind), Some(&Kind::Fifo));
        let passwd = tree.get("etc/passwd").expect("passwd");
        assert_eq!(
            (passwd.mode, passwd.uid, passwd.gid, passwd.mtime),
            (0o644, 7, 8, 99)
        );
    }

    #[test]
    fn modes_and_extended_attributes_are_kept() {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("SCHILY.xattr.security.capability", &b"\x01\x02"[..])])
            .expect("pax");
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o4755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(1);
        builder
            .append_data(&mut header, "usr/bin/ping", &b"p"[..])
            .expect("append");
        let bytes = builder.into_inner().expect("finish");
        let mut tree = Tree::new();
        apply(&mut tree, &bytes[..]).expect("apply");
        let ping = tree.get("usr/bin/ping").expect("ping");
        assert_eq!(ping.mode, 0o4755);
        assert_eq!(
            ping.xattrs.get("security.capability").map(Vec::as_slice),
            Some(&b"\x01\x02"[..])
        );
    }

    #[test]
    fn a_whiteout_of_the_whole_root_and_bad_entries() {
        let mut tree = Tree::new();
        apply(&mut tree, &layer(&[("a", EntryType::Regular, "a")])[..]).expect("layer");
        apply(
            &mut tree,
            &layer(&[(".wh..wh..opq", EntryType::Regular, "")])[..],
        )
        .expect("opq");
        assert!(tree.is_empty());
        let dangling = layer(&[("b", EntryType::Link, "nothing")]);
        let err = apply(&mut tree, &dangling[..]).expect_err("dangling link");
        assert!(err.contains("b: hard link to `nothing`"), "{err}");
        let escape = layer(&[("c", EntryType::Link, "../../etc/shadow")]);
        let err = apply(&mut tree, &escape[..]).expect_err("escape");
        assert!(err.contains("leaves its tree"), "{err}");
        let err = apply(&mut tree, &b"not a tar at all, just some bytes"[..]).expect_err("junk");
        assert!(err.contains("cannot read the layer"), "{err}");
    }
}
