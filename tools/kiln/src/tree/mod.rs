//! A file tree: what an image's layers unpack to, and what a build assembles before writing
//! it out as a tar or an initrd. Entries are kept sorted by path, so every walk over a tree is
//! in the same order and output built from it is reproducible. Owners, modes, device numbers
//! and extended attributes are plain values, so no root is needed; the bytes of large files
//! are on disk ([`content`]).
//! Runs in: `kiln` on the build host.

pub mod archive;
pub mod compression;
pub mod content;
pub mod hostdir;
pub mod initrd;
pub mod layer;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;

use sha2::{Digest as _, Sha256};

pub use content::Content;

/// The modification time given to entries a build makes up (LinuxKit's fixed time,
/// 2017-04-18T16:30:00Z), so generated content is reproducible.
pub const FIXED_MTIME: u64 = 1_492_533_000;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file. Hard links are entries sharing one `inode`.
    File {
        data: Content,
        inode: u64,
    },
    Symlink(String),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// One entry: its kind and the metadata an archive keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits, with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Node {
    /// A root-owned directory with the fixed time.
    pub fn dir(mode: u32) -> Self {
        Self::new(Kind::Dir, mode)
    }

    /// A root-owned regular file with the fixed time; `inode` 0 is replaced when it is put
    /// into a tree.
    pub fn file(data: impl Into<Content>, mode: u32) -> Self {
        Self::new(
            Kind::File {
                data: data.into(),
                inode: 0,
            },
            mode,
        )
    }

    /// A root-owned symbolic link with the fixed time.
    pub fn symlink(target: impl Into<String>) -> Self {
        Self::new(Kind::Symlink(target.into()), 0o777)
    }

    /// A root-owned entry of any kind with the fixed time.
    pub fn new(kind: Kind, mode: u32) -> Self {
        Self {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: FIXED_MTIME,
            xattrs: BTreeMap::new(),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }

    /// With this owner.
    pub fn owned(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// Turns an archive path into a tree key: no leading `/` or `./`, no trailing `/`, no empty
/// or `.` components. `None` for the root itself; an error for a `..` component, which no
/// image may use to reach outside its tree.
pub fn key(path: &str) -> Result<Option<String>, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path `{path}` leaves its tree with `..`")),
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The parent key of `key` (`None` at the top).
pub fn parent(key: &str) -> Option<&str> {
    key.rsplit_once('/').map(|(parent, _)| parent)
}

/// Where [`Tree::resolve`] got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The deepest existing entry (the root's own key when nothing below it exists).
    pub key: String,
    /// What is missing below it, in order; empty when the whole path exists.
    pub missing: Vec<String>,
}

/// Files and directories by path (a [`key`]), sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
    next_inode: u64,
}

impl Tree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries.get_mut(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, parents before their children.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(key, node)| (key.as_str(), node))
    }

    /// Puts `node` at `key`, making missing parent directories (0755, root) and replacing
    /// any parent that is not a directory. A directory put over a directory keeps its
    /// children and takes the new metadata; anything else replaces what was there, with
    /// all of it below. A file with inode 0 gets a fresh inode.
    pub fn put(&mut self, key: &str, mut node: Node) {
        self.make_parents(key);
        if let Kind::File { inode, .. } = &mut node.kind {
            if *inode == 0 {
                *inode = self.fresh_inode();
            }
        }
        let keep_children = node.is_dir() && self.entries.get(key).is_some_and(Node::is_dir);
        if !keep_children {
            self.remove_below(key);
        }
        self.entries.insert(key.to_owned(), node);
    }

    /// Puts a hard link at `key` to the entry at `target`; `false` if there is none or it is
    /// a directory.
    pub fn link(&mut self, key: &str, target: &str) -> bool {
        match self.entries.get(target) {
            Some(node) if !node.is_dir() => {
                let node = node.clone();
                self.put(key, node);
                true
            }
            _ => false,
        }
    }

    /// Removes the entry at `key` and everything below it.
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.remove_below(key);
    }

    /// Removes everything below `key`, keeping `key` itself.
    pub fn remove_below(&mut self, key: &str) {
        let below: Vec<String> = self.below(key).map(|(key, _)| key.to_owned()).collect();
        for key in below {
            self.entries.remove(&key);
        }
    }

    /// The entries strictly below `key`, in order.
    pub fn below<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        // Keys below `key` start with `key/`; `0` is the character after `/`.
        let (start, end) = (format!("{key}/"), format!("{key}0"));
        self.entries
            .range(start..end)
            .map(|(key, node)| (key.as_str(), node))
    }

    /// Copies every entry of `other` below `prefix` (a key, or "" for the top). Files hard
    /// linked in `other` stay linked to each other, and to nothing already in this tree.
    pub fn graft(&mut self, prefix: &str, other: &Tree) {
        let mut inodes = HashMap::new();
        for (key, node) in other.iter() {
            let mut node = node.clone();
            if let Kind::File { inode, .. } = &mut node.kind {
                *inode = *inodes.entry(*inode).or_insert_with(|| self.fresh_inode());
            }
            let key = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}/{key}")
            };
            self.put(&key, node);
        }
    }

    /// Follows `path` inside the subtree at `root` (a key, or "" for the top) the way a
    /// container sees it with `root` as `/`: symlinks are followed (absolute targets from
    /// `root`), `..` stops at `root`. Returns the key of the deepest entry reached and the
    /// components below it that do not exist; `None` for a symlink loop, a `..` among the
    /// missing components, or a path that goes on through a file.
    pub fn resolve(&self, root: &str, path: &str) -> Option<Resolved> {
        const MAX_LINKS: usize = 40;
        let mut pending: VecDeque<String> = path.split('/').map(str::to_owned).collect();
        let mut reached: Vec<String> = Vec::new();
        let mut links = 0;
        let join = |parts: &[String]| {
            let mut key = root.to_owned();
            for part in parts {
                if !key.is_empty() {
                    key.push('/');
                }
                key.push_str(part);
            }
            key
        };
        while let Some(part) = pending.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    reached.pop();
                    continue;
                }
                _ => {}
            }
            let parent = join(&reached);
            if !parent.is_empty() && !self.entries.get(&parent).is_some_and(Node::is_dir) {
                return None;
            }
            reached.push(part);
            match self.entries.get(&join(&reached)).map(|node| &node.kind) {
                None => {
                    let last = reached.pop().unwrap_or_default();
                    let mut missing = vec![last];
                    for part in pending {
                        match part.as_str() {
                            "" | "." => {}
                            ".." => return None,
                            _ => missing.push(part),
                        }
                    }
                    return Some(Resolved {
                        key: join(&reached),
                        missing,
                    });
                }
                Some(Kind::Symlink(target)) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return None;
                    }
                    reached.pop();
                    if target.starts_with('/') {
                        reached.clear();
                    }
                    for part in target.split('/').rev() {
                        pending.push_front(part.to_owned());
                    }
                }
                Some(_) => {}
            }
        }
        Some(Resolved {
            key: join(&reached),
            missing: Vec::new(),
        })
    }

    /// A digest of each entry but those `skip` names, by key: its kind and mode with a file's
    /// bytes, a link's target or a device's numbers. Together they say everything about the
    /// tree's content, and which entry changed.
    pub fn digests(&self, skip: impl Fn(&str) -> bool) -> io::Result<BTreeMap<String, String>> {
        let mut digests = BTreeMap::new();
        for (key, node) in self.iter().filter(|(key, _)| !skip(key)) {
            let mut hash = Sha256::new();
            hash.update(format!("{:o}\0", node.mode));
            match &node.kind {
                Kind::File { data, .. } => {
                    hash.update(b"file\0");
                    io::copy(&mut data.reader(), &mut hash)?;
                }
                Kind::Symlink(target) => {
                    hash.update(b"symlink\0");
                    hash.update(target.as_bytes());
                }
                Kind::Char { major, minor } => hash.update(format!("char\0{major}:{minor}")),
                Kind::Block { major, minor } => hash.update(format!("block\0{major}:{minor}")),
                Kind::Dir => hash.update(b"directory\0"),
                Kind::Fifo => hash.update(b"fifo\0"),
            }
            digests.insert(key.to_owned(), crate::oci::digest::text(hash));
        }
        Ok(digests)
    }

    fn make_parents(&mut self, key: &str) {
        let mut end = 0;
        while let Some(offset) = key[end..].find('/') {
            end += offset;
            let parent = &key[..end];
            if !self.entries.get(parent).is_some_and(Node::is_dir) {
                self.remove_below(parent);
                self.entries.insert(parent.to_owned(), Node::dir(0o755));
            }
            end += 1;
        }
    }

    fn fresh_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised_and_never_leave_the_tree() {
        assert_eq!(key("./a/b/").expect("valid"), Some("a/b".into()));
        assert_eq!(key("/a//./b").expect("valid"), Some("a/b".into()));
        assert_eq!(key("./").expect("valid"), None);
        assert!(key("a/../../etc").is_err());
        assert_eq!(parent("a/b/c"), Some("a/b"));
        assert_eq!(parent("a"), None);
    }

    #[test]
    fn put_makes_parents_and_replaces_what_was_there() {
        let mut tree = Tree::new();
        tree.put("a/b/c", Node::file(&b"x"[..], 0o644));
        assert!(tree.get("a").is_some_and(Node::is_dir));
        assert!(tree.get("a/b").is_some_and(Node::is_dir));
        // A directory over a directory keeps the children and takes the metadata.
        tree.put("a", Node::dir(0o700).owned(5, 6));
        assert_eq!(tree.get("a").map(|n| (n.mode, n.uid)), Some((0o700, 5)));
        assert!(tree.contains("a/b/c"));
        // A file over a directory removes the subtree.
        tree.put("a/b", Node::symlink("/x"));
        assert!(!tree.contains("a/b/c"));
        // A file under a non-directory turns it into a directory.
        tree.put("a/b/d", Node::file(&b""[..], 0o600));
        assert!(tree.get("a/b").is_some_and(Node::is_dir));
        // `a-b` sorts between `a` and `a/...` but is not below `a`.
        tree.put("a-b", Node::dir(0o755));
        let below: Vec<_> = tree.below("a").map(|(key, _)| key).collect();
        assert_eq!(below, ["a/b", "a/b/d"]);
        let order: Vec<_> = tree.iter().map(|(key, _)| key).collect();
        assert_eq!(order, ["a", "a-b", "a/b", "a/b/d"]);
    }

    #[test]
    fn graft_keeps_links_within_the_copy_only() {
        let mut image = Tree::new();
        image.put("bin/busybox", Node::file(&b"elf"[..], 0o755));
        assert!(image.link("bin/sh", "bin/busybox"));
        assert!(!image.link("bin/ls", "bin/missing"));
        assert!(!image.link("x", "bin"));
        let mut root = Tree::new();
        root.graft("", &image);
        root.graft("c/rootfs", &image);
        let inode = |tree: &Tree, key: &str| match tree.get(key).map(|n| &n.kind) {
            Some(Kind::File { inode, .. }) => *inode,
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(inode(&root, "bin/sh"), inode(&root, "bin/busybox"));
        assert_eq!(
            inode(&root, "c/rootfs/bin/sh"),
            inode(&root, "c/rootfs/bin/busybox")
        );
        assert_ne!(inode(&root, "bin/sh"), inode(&root, "c/rootfs/bin/sh"));
    }

    #[test]
    fn resolve_follows_links_inside_the_root_and_names_what_is_missing() {
        let mut tree = Tree::new();
        tree.put("r/run", Node::dir(0o755));
        tree.put("r/var/run", Node::symlink("/run"));
        tree.put("r/var/tmp", Node::symlink("../run/../tmp"));
        tree.put("r/etc/passwd", Node::file(&b""[..], 0o644));
        tree.put("r/loop", Node::symlink("loop"));
        tree.put("run/host", Node::dir(0o755));
        let resolved = |path: &str| {
            tree.resolve("r", path)
                .map(|r| (r.key, r.missing.join("/")))
        };
        assert_eq!(resolved("/run"), Some(("r/run".into(), String::new())));
        assert_eq!(resolved("/"), Some(("r".into(), String::new())));
        assert_eq!(
            resolved("/var/run/x/y"),
            Some(("r/run".into(), "x/y".into()))
        );
        // `..` stops at the root; the link never reaches `run/host` outside it.
        assert_eq!(
            resolved("/../../run/host"),
            Some(("r/run".into(), "host".into()))
        );
        assert_eq!(resolved("/var/tmp"), Some(("r".into(), "tmp".into())));
        assert_eq!(
            resolved("/etc/passwd"),
            Some(("r/etc/passwd".into(), String::new()))
        );
        assert_eq!(resolved("/etc/passwd/x"), None);
        assert_eq!(resolved("/loop/x"), None);
        assert_eq!(resolved("/new/../x"), None);
        assert_eq!(
            tree.resolve("", "/r/var/run").map(|r| r.key),
            Some("run".into())
        );
    }
}
