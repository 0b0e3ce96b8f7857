//! Applying a plan, and keeping the record of what was changed so that it can be undone: when a
//! step fails, everything this bundle mounted or created before it is taken back, newest first;
//! when a one-shot container has exited, the mounts inside its bundle are released.
//! Runs in: the supervisor, in the root mount and network namespaces, inside a tokio runtime (for
//! netlink). Mounts made here are seen by every later container.
//! Mirrors LinuxKit's `prepareFilesystem`, `prepareProcess` and `cleanup`, which undo nothing on
//! failure; here a failed bundle leaves nothing mounted.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::link::Netlink;
use crate::plan::{Action, Step};

/// Mode of every directory created for a bundle (LinuxKit has no way to set another).
const DIR_MODE: u32 = 0o755;

/// One change made to the system, as it is undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Change {
    Dir(PathBuf),
    File(PathBuf),
    Mount(PathBuf),
    /// A link in the root network namespace (deleting one end of a veth deletes both).
    RootLink(String),
}

/// What has been done for one bundle so far, oldest first. It serializes (to JSON, say) so that
/// a supervisor that adopts a running service can still undo what was done for it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Prepared {
    changes: Vec<Change>,
}

impl Prepared {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies the steps of a filesystem plan in order; stops at the first that fails.
    pub fn apply_filesystem(&mut self, steps: &[Step]) -> Result<(), Error> {
        for step in steps {
            self.apply_local(step, None)?;
        }
        Ok(())
    }

    /// Applies the steps of a process plan for the created container whose init is `pid`.
    pub async fn apply_process(&mut self, steps: &[Step], pid: Pid) -> Result<(), Error> {
        let mut netlink = None;
        for step in steps {
            let fail = |err| Error::new(step, err);
            match &step.action {
                Action::AddVeth { name, peer } => {
                    connected(&mut netlink)
                        .map_err(fail)?
                        .add_veth(name, peer)
                        .await
                        .map_err(fail)?;
                    self.changes.push(Change::RootLink(peer.clone()));
                }
                Action::AddLink {
                    name,
                    kind,
                    in_root,
                } => {
                    let netns_of = (!in_root).then_some(pid);
                    connected(&mut netlink)
                        .map_err(fail)?
                        .add_link(name, kind, netns_of)
                        .await
                        .map_err(fail)?;
                    if *in_root {
                        self.changes.push(Change::RootLink(name.clone()));
                    }
                }
                Action::MoveLink { name } => {
                    connected(&mut netlink)
                        .map_err(fail)?
                        .move_link(name, pid)
                        .await
                        .map_err(fail)?;
                    // No longer in the root namespace; it goes with the container's namespace.
                    self.changes
                        .retain(|change| *change != Change::RootLink(name.clone()));
                }
                _ => self.apply_local(step, Some(pid))?,
            }
        }
        Ok(())
    }

    /// Steps that only touch the filesystem and mount table.
    fn apply_local(&mut self, step: &Step, pid: Option<Pid>) -> Result<(), Error> {
        let fail = |err| Error::new(step, err);
        match &step.action {
            Action::MakeDir { path } | Action::MakeCgroup { path } => {
                self.make_dirs(path).map_err(fail)
            }
            Action::MakeMountPoint { path, bind_source } => {
                let is_file = bind_source
                    .as_deref()
                    .and_then(|source| fs::metadata(source).ok())
                    .is_some_and(|metadata| !metadata.is_dir());
                if is_file {
                    self.make_file(path).map_err(fail)
                } else {
                    self.make_dirs(path).map_err(fail)
                }
            }
            Action::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                mount(
                    non_empty(source),
                    target,
                    non_empty(fstype),
                    *flags,
                    non_empty(data),
                )
                .map_err(|errno| fail(errno.into()))?;
                if !flags.contains(MsFlags::MS_REMOUNT) {
                    self.changes.push(Change::Mount(target.clone()));
                }
                Ok(())
            }
            Action::RemountBind { target, flags } => {
                remount(target, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | *flags).map_err(fail)
            }
            Action::SetPropagation { target, flags } => remount(target, *flags).map_err(fail),
            Action::BindNamespace { ns, path } => {
                let pid =
                    pid.ok_or_else(|| fail(io::Error::other("the container has no process yet")))?;
                self.make_file(path).map_err(fail)?;
                let source = PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
                mount(
                    Some(&source),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| fail(errno.into()))?;
                self.changes.push(Change::Mount(path.clone()));
                Ok(())
            }
            Action::AddVeth { .. } | Action::AddLink { .. } | Action::MoveLink { .. } => Err(fail(
                io::Error::other("network steps run only after the container is created"),
            )),
        }
    }

    /// `mkdir -p`, recording each directory that did not exist.
    fn make_dirs(&mut self, path: &Path) -> io::Result<()> {
        let missing: Vec<&Path> = path
            .ancestors()
            .take_while(|dir| !dir.as_os_str().is_empty() && fs::symlink_metadata(dir).is_err())
            .collect();
        for dir in missing.into_iter().rev() {
            match DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => self.changes.push(Change::Dir(dir.to_path_buf())),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
        if !fs::metadata(path)?.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        Ok(())
    }

    /// Creates an empty file (and its parent directories) unless it exists.
    fn make_file(&mut self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.make_dirs(parent)?;
        }
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => {
                self.changes.push(Change::File(path.to_path_buf()));
                Ok(())
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Unmounts, newest first, what was mounted at or below `dir` (a one-shot bundle's rootfs
    /// and tmp), keeping the rest (host mounts, namespace binds). Returns what could not be
    /// unmounted.
    pub fn release_mounts_under(&mut self, dir: &Path) -> Vec<Error> {
        let mut problems = Vec::new();
        let mut kept = Vec::new();
        for change in std::mem::take(&mut self.changes).into_iter().rev() {
            match change {
                Change::Mount(target) if target.starts_with(dir) => {
                    if let Err(err) = unmount(&target) {
                        problems.push(Error::undo(format!("unmount {}", target.display()), err));
                    }
                }
                other => kept.push(other),
            }
        }
        kept.reverse();
        self.changes = kept;
        problems
    }

    /// Takes back every change, newest first. Returns what could not be undone; nothing stops
    /// the undo of the rest.
    pub async fn undo(mut self) -> Vec<Error> {
        let mut problems = Vec::new();
        let mut netlink: Option<io::Result<Netlink>> = None;
        while let Some(change) = self.changes.pop() {
            let (what, result) = match &change {
                Change::Mount(target) => (format!("unmount {}", target.display()), unmount(target)),
                Change::Dir(dir) => (
                    format!("remove directory {}", dir.display()),
                    ignore_gone(fs::remove_dir(dir)).or_else(|err| {
                        // Someone else put something in it: theirs now.
                        if err.raw_os_error() == Some(Errno::ENOTEMPTY as i32) {
                            Ok(())
                        } else {
                            Err(err)
                        }
                    }),
                ),
                Change::File(file) => (
                    format!("remove {}", file.display()),
                    ignore_gone(fs::remove_file(file)),
                ),
                Change::RootLink(name) => {
                    let netlink = netlink.get_or_insert_with(Netlink::connect);
                    let result = match netlink {
                        Ok(netlink) => netlink.delete_link(name).await.or_else(|err| {
                            if err.raw_os_error() == Some(Errno::ENODEV as i32) {
                                Ok(())
                            } else {
                                Err(err)
                            }
                        }),
                        Err(err) => Err(io::Error::new(err.kind(), err.to_string())),
                    };
                    (format!("delete link {name}"), result)
                }
            };
            if let Err(err) = result {
                problems.push(Error::undo(what, err));
            }
        }
        problems
    }

    /// Whether nothing has been changed (or everything has been undone or released).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The netlink connection, opened on first use.
fn connected(netlink: &mut Option<Netlink>) -> io::Result<&Netlink> {
    match netlink {
        Some(netlink) => Ok(netlink),
        empty => Ok(empty.insert(Netlink::connect()?)),
    }
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

fn remount(target: &Path, flags: MsFlags) -> io::Result<()> {
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
}

/// Unmounts; a mount still in use is detached so that it goes once it is free.
fn unmount(target: &Path) -> io::Result<()> {
    match umount2(target, MntFlags::empty()) {
        Err(Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH).map_err(io::Error::from),
        other => other.map_err(io::Error::from),
    }
}

fn ignore_gone(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
