//! Writing a [`Tree`] as a tar stream, byte for byte the same for the same tree: entries in
//! path order, parents first, only the tree's own owners, modes and times, no user or group
//! names, and the second and later names of a hard-linked file written as links to the first.
//! Extended attributes go into PAX `SCHILY.xattr.*` records.
//! Runs in: `kiln` on the build host. Writes only to the stream it is given.

use std::collections::HashMap;
use std::io::{self, Write};

use tar::{EntryType, Header};

use crate::tree::{Kind, Tree};

/// Writes `tree` as a tar archive to `out` and returns it.
pub fn write_tar<W: Write>(tree: &Tree, out: W) -> io::Result<W> {
    let mut builder = tar::Builder::new(out);
    let mut first_name: HashMap<u64, &str> = HashMap::new();
    for (key, node) in tree.iter() {
        if !node.xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = node
                .xattrs
                .iter()
                .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value.as_slice()))
                .collect();
            builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        let mut header = Header::new_gnu();
        header.set_mode(node.mode);
        header.set_uid(u64::from(node.uid));
        header.set_gid(u64::from(node.gid));
        header.set_mtime(node.mtime);
        header.set_size(0);
        match &node.kind {
            Kind::Dir => {
                header.set_entry_type(EntryType::Directory);
                builder.append_data(&mut header, format!("{key}/"), io::empty())?;
            }
            Kind::File { data, inode } => {
                if let Some(first) = first_name.get(inode) {
                    header.set_entry_type(EntryType::Link);
                    builder.append_link(&mut header, key, first)?;
                } else {
                    first_name.insert(*inode, key);
                    header.set_entry_type(EntryType::Regular);
                    header.set_size(data.len());
                    builder.append_data(&mut header, key, data.reader())?;
                }
            }
            Kind::Symlink(target) => {
                header.set_entry_type(EntryType::Symlink);
                builder.append_link(&mut header, key, target)?;
            }
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                header.set_entry_type(if matches!(node.kind, Kind::Char { .. }) {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                header.set_device_major(*major)?;
                header.set_device_minor(*minor)?;
                builder.append_data(&mut header, key, io::empty())?;
            }
            Kind::Fifo => {
                header.set_entry_type(EntryType::Fifo);
                builder.append_data(&mut header, key, io::empty())?;
            }
        }
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::layer;
    use crate::tree::Node;

    fn sample() -> Tree {
        let mut tree = Tree::new();
        let long = "d/".repeat(80);
        tree.put(
            &format!("{long}file"),
            Node::file(&b"deep"[..], 0o640).owned(3, 4),
        );
        tree.put("bin/busybox", Node::file(&b"elf"[..], 0o755));
        assert!(tree.link("bin/sh", "bin/busybox"));
        tree.put("bin/ls", Node::symlink(format!("/{long}target")));
        let mut ping = Node::file(&b"p"[..], 0o4755);
        ping.xattrs
            .insert("security.capability".into(), b"\x01\x00".to_vec());
        tree.put("bin/ping", ping);
        tree.put(
            "dev/console",
            Node::new(Kind::Char { major: 5, minor: 1 }, 0o600),
        );
        tree.put("run/initctl", Node::new(Kind::Fifo, 0o600));
        tree
    }

    #[test]
    fn a_tree_round_trips_and_writes_the_same_bytes_twice() {
        let tree = sample();
        let bytes = write_tar(&tree, Vec::new()).expect("write");
        assert_eq!(bytes, write_tar(&tree, Vec::new()).expect("write again"));
        let mut read = Tree::new();
        layer::apply(&mut read, &bytes[..]).expect("read back");
        // Inode numbers are the reader's own; compare everything else.
        let strip = |tree: &Tree| -> Vec<(String, Node)> {
            tree.iter()
                .map(|(key, node)| {
                    let mut node = node.clone();
                    if let Kind::File { inode, .. } = &mut node.kind {
                        *inode = 0;
                    }
                    (key.to_owned(), node)
                })
                .collect()
        };
        assert_eq!(strip(&read), strip(&tree));
        let link = |tree: &Tree, key: &str| match tree.get(key).map(|n| &n.kind) {
            Some(Kind::File { inode, .. }) => *inode,
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(link(&read, "bin/sh"), link(&read, "bin/busybox"));
    }
}
