//! Files of the build host taken into an image tree: a directory read recursively (regular
//! files, directories and symlinks), or one file. Modes are normalised the way git records
//! them (directories 0755, files 0755 when any execute bit is set, else 0644), owners are
//! root and times fixed, so the image does not depend on who checked the files out, with
//! which umask, or when.
//! Runs in: `kiln` on the build host. Reads only.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::tree::{Content, Node, Tree};

/// Puts the file, symlink or directory at `path` into `tree` at `key` (a directory with
/// everything below it). Sockets, fifos and devices are refused, naming the path.
pub fn read_into(tree: &mut Tree, key: &str, path: &Path) -> Result<()> {
    let mut pending = vec![(path.to_owned(), key.to_owned())];
    while let Some((path, key)) = pending.pop() {
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        let kind = meta.file_type();
        if kind.is_dir() {
            if !key.is_empty() {
                tree.put(&key, Node::dir(0o755));
            }
            let mut entries: Vec<_> = fs::read_dir(&path)
                .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("cannot read the directory {}", path.display()))?;
            entries.sort_by_key(fs::DirEntry::file_name);
            for entry in entries.iter().rev() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}/{name}")
                };
                pending.push((entry.path(), child));
            }
        } else if kind.is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read the link {}", path.display()))?;
            tree.put(&key, Node::symlink(target.to_string_lossy()));
        } else if kind.is_file() {
            let bytes = Content::read_file(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            tree.put(
                &key,
                Node::file(bytes, if executable { 0o755 } else { 0o644 }),
            );
        } else {
            bail!(
                "{} is neither a file, a directory nor a symlink",
                path.display()
            );
        }
    }
    Ok(())
}

/// The directory at `path` as a tree of its own.
pub fn read(path: &Path) -> Result<Tree> {
    let mut tree = Tree::new();
    read_into(&mut tree, "", path)?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::tree::Kind;

    #[test]
    fn a_directory_keeps_modes_links_and_nesting() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("etc/init.d")).expect("mkdir");
        fs::write(dir.path().join("etc/init.d/start"), "#!/bin/sh\n").expect("write");
        fs::set_permissions(
            dir.path().join("etc/init.d/start"),
            fs::Permissions::from_mode(0o750),
        )
        .expect("chmod");
        symlink("init.d/start", dir.path().join("etc/start")).expect("symlink");
        let tree = read(dir.path()).expect("read");
        let keys: Vec<_> = tree.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["etc", "etc/init.d", "etc/init.d/start", "etc/start"]);
        let start = tree.get("etc/init.d/start").expect("file");
        assert_eq!((start.mode, start.uid), (0o755, 0));
        assert!(
            matches!(&start.kind, Kind::File { data, .. } if data.to_vec().unwrap() == b"#!/bin/sh\n")
        );
        assert!(matches!(&tree.get("etc/start").expect("link").kind,
            Kind::Symlink(target) if target == "init.d/start"));
        let mut one = Tree::new();
        read_into(
            &mut one,
            "usr/bin/start",
            &dir.path().join("etc/init.d/start"),
        )
        .expect("file");
        assert!(one.get("usr").is_some_and(Node::is_dir));
        assert!(read(&dir.path().join("missing"))
            .expect_err("missing")
            .to_string()
            .contains("missing"));
    }
}
