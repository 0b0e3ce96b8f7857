//! A bind mount at a container's `/dev` (LinuxKit's getty, sshd, format and mount packages
//! bind the host's `/dev`). libcontainer always fills `/dev` after the mounts: it makes the
//! `fd`, `stdin`, `stdout`, `stderr` and `kcore` links (failing on any that exist), device
//! nodes, and replaces `ptmx` with a link. Over a bind of the host's `/dev` that would fail on
//! the second container and rewrite the host's `/dev` on the first. runc skips its own `/dev`
//! set-up when `/dev` is a bind; here the bind is put off instead: libcontainer gets a tmpfs at
//! `/dev` to fill, and a createContainer hook (this runtime's own `dev-bind` command, run by the
//! container's init in the container's mount namespace before pivot_root) detaches that tmpfs,
//! binds the source in its place with the bind's options, then repeats the mounts below `/dev`
//! that followed the bind (a new devpts instance at `/dev/pts`, say), as they would have been
//! on top.
//! Runs in: the runtime at create (the spec rewrite), and the hook process (the mounts).

use std::io;
use std::path::Path;

use libcontainer::oci_spec::runtime::{HookBuilder, Hooks, Mount, MountBuilder, Spec};
use nix::mount::{umount2, MntFlags};
use prepare::options::MountOptions;
use prepare::{plan, Prepared};
use spec::runtime::Mount as RuntimeMount;
use spec::Problem;

use crate::error::Error;

/// The hidden `service runtime` command the hook runs.
pub const COMMAND: &str = "dev-bind";

fn is_dev(path: &Path) -> bool {
    path.components().eq(Path::new("/dev").components())
}

fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || MountOptions::parse(mount.options().as_deref().unwrap_or_default()).is_bind()
}

/// If `spec` binds something at `/dev`, gives libcontainer a tmpfs there and adds the
/// createContainer hook that runs `exe runtime dev-bind` to do the bind. `rootfs` is the
/// container's root filesystem (absolute).
pub(crate) fn defer(spec: &mut Spec, rootfs: &Path, exe: &Path) -> Result<(), Problem> {
    let Some(mounts) = spec.mounts().clone() else {
        return Ok(());
    };
    let Some(index) = mounts
        .iter()
        .position(|mount| is_dev(mount.destination()) && is_bind(mount))
    else {
        return Ok(());
    };
    let bind = &mounts[index];
    let source = bind
        .source()
        .clone()
        .ok_or_else(|| Problem::new(format!("mounts[{index}].source"), "a bind needs a source"))?;
    let later: Vec<Mount> = mounts[index + 1..]
        .iter()
        .filter(|mount| mount.destination().starts_with("/dev") && !is_dev(mount.destination()))
        .cloned()
        .collect();
    let tmpfs = MountBuilder::default()
        .destination("/dev")
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec!["nosuid".into(), "mode=755".into(), "size=64k".into()])
        .build()
        .map_err(|err| Problem::new(format!("mounts[{index}]"), err.to_string()))?;
    let mut rewritten = mounts.clone();
    rewritten[index] = tmpfs;
    spec.set_mounts(Some(rewritten));

    let options = serde_json::to_string(&bind.options().clone().unwrap_or_default())
        .map_err(|err| Problem::new(format!("mounts[{index}].options"), err.to_string()))?;
    let later =
        serde_json::to_string(&later).map_err(|err| Problem::new("mounts", err.to_string()))?;
    let args = vec![
        exe.display().to_string(),
        "runtime".to_owned(),
        COMMAND.to_owned(),
        "--rootfs".to_owned(),
        rootfs.display().to_string(),
        "--source".to_owned(),
        source.display().to_string(),
        "--options".to_owned(),
        options,
        "--then".to_owned(),
        later,
    ];
    let hook = HookBuilder::default()
        .path(exe)
        .args(args)
        .build()
        .map_err(|err| Problem::new("hooks", err.to_string()))?;
    let mut hooks: Hooks = spec.hooks().clone().unwrap_or_default();
    let mut create = hooks.create_container().clone().unwrap_or_default();
    // First, so that the bundle's own createContainer hooks see `/dev` as it will be.
    create.insert(0, hook);
    hooks.set_create_container(Some(create));
    spec.set_hooks(Some(hooks));
    Ok(())
}

/// The hook's work: detaches libcontainer's tmpfs at `rootfs/dev`, binds `source` there
/// (always recursively, as the host's `/dev` holds pts, shm and mqueue) with `options`, then
/// makes `then` on top in order. The mounts are made as runtime.json's are (mount points,
/// remounts for a bind's flags, propagation), by the same planner.
pub fn bind(rootfs: &Path, source: &Path, options: &[String], then: &[Mount]) -> Result<(), Error> {
    let dev = rootfs.join("dev");
    // libcontainer's tmpfs and what it mounted below it go: only the bind is seen.
    umount2(&dev, MntFlags::MNT_DETACH)
        .map_err(|err| Error::io("detach libcontainer's /dev at", &dev, err.into()))?;
    let mut mounts = vec![RuntimeMount {
        destination: dev.display().to_string(),
        kind: String::new(),
        source: source.display().to_string(),
        options: std::iter::once("rbind".to_owned())
            .chain(options.iter().cloned())
            .collect(),
    }];
    for later in then {
        let destination = later.destination();
        let mut options = later.options().clone().unwrap_or_default();
        if is_bind(later) && !MountOptions::parse(&options).is_bind() {
            options.push("bind".to_owned());
        }
        mounts.push(RuntimeMount {
            destination: rootfs
                .join(destination.strip_prefix("/").unwrap_or(destination))
                .display()
                .to_string(),
            kind: later.typ().clone().unwrap_or_default(),
            source: later
                .source()
                .as_ref()
                .map(|source| source.display().to_string())
                .unwrap_or_default(),
            options,
        });
    }
    Prepared::new()
        .apply_filesystem(&plan::mounts(rootfs, &mounts))
        .map_err(|err| Error::io("mount at", &dev, io::Error::other(err)))
}
