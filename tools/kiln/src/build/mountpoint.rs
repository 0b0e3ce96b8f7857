//! Mount points for read-only bundles. The image's root is read-only at run time and a
//! read-only bundle's `rootfs/` is a bind of it, so the runtime cannot create a missing mount
//! destination there (`mkdir: read-only file system`, which LinuxKit users meet as a runc
//! error and work around in their Dockerfiles). The build creates each missing destination
//! instead: a directory, or an empty file when the bind's source is a file.
//! Runs in: `kiln build`, after the whole root filesystem is assembled, so bind sources put
//! there by `init` images, volumes or `files` are known.
//!
//! A source that is not in the image is created at run time (under `/run`, `/dev`, `/var`),
//! so its kind is guessed: device nodes under `/dev` and `*.sock` sockets are files, the rest
//! directories.

use oci_spec::runtime::Mount;

use crate::tree::{Kind, Node, Tree};

/// Directories that `/dev` holds at run time; any other `/dev` path is taken as a node.
const DEV_DIRECTORIES: [&str; 19] = [
    "block",
    "bus",
    "by-id",
    "by-label",
    "by-partuuid",
    "by-path",
    "by-uuid",
    "char",
    "cpu",
    "disk",
    "dri",
    "hugepages",
    "input",
    "mapper",
    "mqueue",
    "net",
    "pts",
    "shm",
    "snd",
];

/// Creates in the subtree at `root` (the bundle's root filesystem, as a key of `tree`) every
/// mount destination of `mounts` that does not exist, with missing parents. Destinations
/// below another mount's destination are left alone: they live in that mount, not in the
/// image. So are those reached through a file, which the runtime reports.
pub fn create(tree: &mut Tree, root: &str, mounts: &[Mount]) {
    for mount in mounts {
        let destination = mount.destination().to_string_lossy();
        let covered = mounts.iter().any(|other| {
            let other = other.destination().to_string_lossy();
            let other = other.trim_end_matches('/');
            destination
                .strip_prefix(other)
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
        });
        if !covered {
            let file = source_is_file(tree, mount);
            make(tree, root, &destination, file);
        }
    }
}

/// Creates the file `destination` in the subtree at `root` when it is missing, with missing
/// parents: the mount point of a file bound there at run time.
pub fn create_file(tree: &mut Tree, root: &str, destination: &str) {
    make(tree, root, destination, true);
}

/// Creates `destination` (an empty file, else a directory) and its missing parents in the
/// subtree at `root`, unless it exists or is reached through a file.
fn make(tree: &mut Tree, root: &str, destination: &str, file: bool) {
    let Some(resolved) = tree.resolve(root, destination) else {
        return;
    };
    let Some((last, parents)) = resolved.missing.split_last() else {
        return;
    };
    let mut key = resolved.key;
    for part in parents {
        key = format!("{key}/{part}");
        tree.put(&key, Node::dir(0o755));
    }
    let node = if file {
        Node::file(&b""[..], 0o644)
    } else {
        Node::dir(0o755)
    };
    tree.put(&format!("{key}/{last}"), node);
}

/// Whether `mount` binds a file (or device, socket) rather than a directory.
fn source_is_file(tree: &Tree, mount: &Mount) -> bool {
    let bind = mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .iter()
            .flatten()
            .any(|option| option == "bind" || option == "rbind");
    let Some(source) = mount.source().as_ref().filter(|_| bind) else {
        return false;
    };
    let source = source.to_string_lossy();
    if let Some(resolved) = tree.resolve("", &source) {
        if resolved.missing.is_empty() {
            return tree
                .get(&resolved.key)
                .is_some_and(|node| !matches!(node.kind, Kind::Dir));
        }
    }
    let name = source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    if name.ends_with(".sock") || name.ends_with(".socket") {
        return true;
    }
    source.starts_with("/dev/") && !DEV_DIRECTORIES.contains(&name)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::MountBuilder;

    use super::*;

    fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(destination)
            .typ(kind)
            .source(source)
            .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
            .build()
            .expect("mount")
    }

    fn kind(tree: &Tree, key: &str) -> &'static str {
        match tree.get(key).map(|node| &node.kind) {
            Some(Kind::Dir) => "dir",
            Some(Kind::File { .. }) => "file",
            Some(Kind::Symlink(_)) => "symlink",
            Some(_) => "other",
            None => "missing",
        }
    }

    #[test]
    fn missing_destinations_are_made_with_the_kind_of_their_source() {
        let mut tree = Tree::new();
        let root = "containers/services/s/rootfs";
        tree.put(&format!("{root}/proc"), Node::dir(0o755));
        tree.put(&format!("{root}/run"), Node::dir(0o755));
        tree.put(&format!("{root}/var/run"), Node::symlink("../run"));
        tree.put(&format!("{root}/etc/hosts"), Node::file(&b"h"[..], 0o644));
        tree.put("etc/motd", Node::file(&b"hi"[..], 0o644));
        tree.put("containers/volumes/v/merged", Node::dir(0o755));
        let mounts = [
            mount("/proc", "proc", "proc", &[]),
            mount("/dev", "tmpfs", "tmpfs", &["ro"]),
            mount("/dev/pts", "devpts", "devpts", &[]),
            mount("/probe/deep", "bind", "/run/probe", &["rbind"]),
            mount("/motd", "bind", "/etc/motd", &["rbind", "ro"]),
            mount("/kmsg", "bind", "/dev/kmsg", &["rbind"]),
            mount("/net", "bind", "/dev/net", &["rbind"]),
            mount("/var/run/docker.sock", "", "/run/docker.sock", &["bind"]),
            mount("/data", "", "/containers/volumes/v/merged", &["rbind"]),
            mount("/etc/hosts", "bind", "/etc/hosts", &["rbind"]),
            mount("/scratch", "tmpfs", "tmpfs", &[]),
        ];
        let before = tree.clone();
        create(&mut tree, root, &mounts);
        let at = |path: &str| kind(&tree, &format!("{root}/{path}"));
        assert_eq!(at("dev"), "dir");
        // Inside the /dev tmpfs, not the image.
        assert_eq!(at("dev/pts"), "missing");
        assert_eq!(at("probe"), "dir");
        assert_eq!(at("probe/deep"), "dir");
        assert_eq!(at("motd"), "file");
        assert_eq!(at("kmsg"), "file");
        assert_eq!(at("net"), "dir");
        // Through the image's own symlink, not over it.
        assert_eq!(at("var/run"), "symlink");
        assert_eq!(at("run/docker.sock"), "file");
        assert_eq!(at("data"), "dir");
        assert_eq!(at("scratch"), "dir");
        assert_eq!(
            tree.get(&format!("{root}/etc/hosts")),
            before.get(&format!("{root}/etc/hosts"))
        );
        // Nothing outside the bundle's root changed.
        let outside = |tree: &Tree| {
            tree.iter()
                .filter(|(key, _)| !key.starts_with(root))
                .map(|(key, node)| (key.to_owned(), node.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(outside(&tree), outside(&before));
    }

    #[test]
    fn destinations_through_a_file_are_left_to_the_runtime() {
        let mut tree = Tree::new();
        tree.put("r/etc/passwd", Node::file(&b""[..], 0o644));
        let before = tree.clone();
        create(
            &mut tree,
            "r",
            &[mount("/etc/passwd/x", "tmpfs", "tmpfs", &[])],
        );
        assert_eq!(tree, before);
    }
}
