//! Planning: a bundle's runtime.json turned into the list of steps that will be taken, each
//! tagged with the runtime.json field it comes from. Plans can be printed and compared in tests
//! before anything touches the system.
//! Runs in: the supervisor, before each container is created (filesystem plan) and after it is
//! created (process plan). Pure: nothing here reads or changes the system.
//! Mirrors LinuxKit's `prepareFilesystem` and `prepareProcess` (pkg/init/cmd/service/prepare.go),
//! in the same order.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use spec::runtime::{InterfaceAction, Mount, Runtime};

use crate::options::{self, MountOptions};

/// Where relative `mounts[].destination` and `mkdir` paths point: the bundle's root filesystem.
const ROOTFS: &str = "rootfs";

/// One thing to do, and the runtime.json field that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The runtime.json field, e.g. `mounts[2]` or `interfaces[0]`.
    pub field: String,
    pub action: Action,
}

/// A single change to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `mkdir -p` with mode 0755.
    MakeDir { path: PathBuf },
    /// Make sure a mount target exists: a directory, or an empty file when `bind_source` is a file.
    MakeMountPoint {
        path: PathBuf,
        bind_source: Option<PathBuf>,
    },
    /// mount(2).
    Mount {
        source: String,
        target: PathBuf,
        fstype: String,
        flags: MsFlags,
        data: String,
    },
    /// Remount a bind mount so that `ro`, `nosuid` and the like take effect.
    RemountBind { target: PathBuf, flags: MsFlags },
    /// Change a mount's propagation (`private`, `shared`, `slave`, `unbindable`).
    SetPropagation { target: PathBuf, flags: MsFlags },
    /// Create a cgroup directory on one hierarchy.
    MakeCgroup { path: PathBuf },
    /// Create a veth pair in the root network namespace.
    AddVeth { name: String, peer: String },
    /// Create a link of another type, in the container's network namespace or in the root one.
    AddLink {
        name: String,
        kind: String,
        in_root: bool,
    },
    /// Move a link from the root network namespace into the container's.
    MoveLink { name: String },
    /// Create an empty file and bind the container's namespace `ns` (as in /proc/PID/ns) on it.
    BindNamespace { ns: &'static str, path: PathBuf },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.action)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MakeDir { path } => write!(f, "create directory {}", path.display()),
            Self::MakeMountPoint { path, .. } => {
                write!(f, "create mount point {}", path.display())
            }
            Self::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let source = if source.is_empty() { "none" } else { source };
                write!(f, "mount {source} on {}", target.display())?;
                if !fstype.is_empty() {
                    write!(f, " type {fstype}")?;
                }
                if !flags.is_empty() {
                    write!(f, " options {}", options::names(*flags))?;
                }
                if !data.is_empty() {
                    write!(f, " data {data}")?;
                }
                Ok(())
            }
            Self::RemountBind { target, flags } => {
                write!(
                    f,
                    "remount bind mount {} {}",
                    target.display(),
                    options::names(*flags)
                )
            }
            Self::SetPropagation { target, flags } => {
                write!(
                    f,
                    "set propagation of {} to {}",
                    target.display(),
                    options::names(*flags)
                )
            }
            Self::MakeCgroup { path } => write!(f, "create cgroup {}", path.display()),
            Self::AddVeth { name, peer } => {
                write!(
                    f,
                    "create veth {name} with peer {peer} in the root namespace"
                )
            }
            Self::AddLink {
                name,
                kind,
                in_root: true,
            } => write!(f, "create link {name} of type {kind} in the root namespace"),
            Self::AddLink { name, kind, .. } => write!(
                f,
                "create link {name} of type {kind} in the container's network namespace"
            ),
            Self::MoveLink { name } => {
                write!(f, "move link {name} into the container's network namespace")
            }
            Self::BindNamespace { ns, path } => {
                write!(f, "bind the {ns} namespace on {}", path.display())
            }
        }
    }
}

/// The steps taken before the container is created: `mounts`, then `mkdir`, then `cgroups`.
///
/// `hierarchies` are the mount points of the mounted cgroup hierarchies (see
/// [`crate::cgroup::hierarchies`]); each cgroup is created on every one.
pub fn filesystem(bundle_dir: &Path, runtime: &Runtime, hierarchies: &[PathBuf]) -> Vec<Step> {
    let rootfs = bundle_dir.join(ROOTFS);
    let mut steps = mounts(&rootfs, &runtime.mounts);
    for (i, dir) in runtime.mkdir.iter().enumerate() {
        steps.push(step(
            &format!("mkdir[{i}]"),
            Action::MakeDir {
                path: rootfs.join(dir),
            },
        ));
    }
    for (i, name) in runtime.cgroups.iter().enumerate() {
        for hierarchy in hierarchies {
            steps.push(step(
                &format!("cgroups[{i}]"),
                Action::MakeCgroup {
                    path: hierarchy.join(name),
                },
            ));
        }
    }
    steps
}

/// The steps that make `mounts` (runtime.json's, or any in its form): for each, its mount point
/// (a directory, or an empty file for a bind of a file), overlay directories, the mount, a
/// remount for a bind's flags and the propagation. A relative destination is taken from
/// `rootfs`; an absolute one is used as it is.
pub fn mounts(rootfs: &Path, mounts: &[Mount]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let target = rootfs.join(&mount.destination);
        let options = MountOptions::parse(&mount.options);
        let bind_source = options.is_bind().then(|| PathBuf::from(&mount.source));
        // `remount,private` and the like only change propagation: no mount call of their own.
        let propagation_only = !options.propagation.is_empty()
            && options.flags.difference(MsFlags::MS_REMOUNT).is_empty()
            && options.data.is_empty()
            && mount.kind.is_empty()
            && mount.source.is_empty();
        if !options.flags.contains(MsFlags::MS_REMOUNT) {
            steps.push(step(
                &field,
                Action::MakeMountPoint {
                    path: target.clone(),
                    bind_source,
                },
            ));
        }
        for dir in options.overlay_dirs() {
            steps.push(step(
                &format!("{field}.options"),
                Action::MakeDir {
                    path: PathBuf::from(dir),
                },
            ));
        }
        if !propagation_only {
            steps.push(step(
                &field,
                Action::Mount {
                    source: mount.source.clone(),
                    target: target.clone(),
                    fstype: mount.kind.clone(),
                    flags: options.flags,
                    data: options.data.clone(),
                },
            ));
        }
        let remount = options.bind_remount_flags();
        if options.is_bind() && !remount.is_empty() {
            steps.push(step(
                &field,
                Action::RemountBind {
                    target: target.clone(),
                    flags: remount,
                },
            ));
        }
        if !options.propagation.is_empty() {
            steps.push(step(
                &field,
                Action::SetPropagation {
                    target,
                    flags: options.propagation,
                },
            ));
        }
    }
    steps
}

/// The steps taken after the container is created and before it starts: `interfaces` in order,
/// then `bindNS` in the order cgroup, ipc, mnt, net, pid, user, uts.
pub fn process(runtime: &Runtime) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, interface) in runtime.interfaces.iter().enumerate() {
        let field = format!("interfaces[{i}]");
        match interface.action() {
            InterfaceAction::Veth { name, peer } => {
                steps.push(step(
                    &field,
                    Action::AddVeth {
                        name: name.into(),
                        peer: peer.into(),
                    },
                ));
                steps.push(step(&field, Action::MoveLink { name: name.into() }));
            }
            InterfaceAction::Create {
                name,
                kind,
                in_root,
            } => {
                steps.push(step(
                    &field,
                    Action::AddLink {
                        name: name.into(),
                        kind: kind.into(),
                        in_root,
                    },
                ));
                if in_root {
                    steps.push(step(&field, Action::MoveLink { name: name.into() }));
                }
            }
            InterfaceAction::Move { name } => {
                steps.push(step(&field, Action::MoveLink { name: name.into() }));
            }
        }
    }
    for (ns, path) in runtime.bind_ns.entries() {
        let field = format!("bindNS.{ns}");
        let path = PathBuf::from(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            steps.push(step(
                &field,
                Action::MakeDir {
                    path: parent.to_path_buf(),
                },
            ));
        }
        steps.push(step(&field, Action::BindNamespace { ns, path }));
    }
    steps
}

fn step(field: &str, action: Action) -> Step {
    Step {
        field: field.to_owned(),
        action,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(json: &str) -> Runtime {
        Runtime::from_json(json.as_bytes()).expect("valid runtime.json")
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn writable_bundle_mounts_in_linuxkit_order() {
        let runtime = runtime(
            r#"{"mounts":[
              {"type":"tmpfs","source":"tmpfs","destination":"/c/b/tmp"},
              {"destination":"/c/b/tmp","options":["remount","private"]},
              {"type":"overlay","source":"overlay","destination":"/c/b/rootfs",
               "options":["rw","lowerdir=/c/b/lower","upperdir=/c/b/tmp/upper","workdir=/c/b/tmp/work"]},
              {"type":"bind","source":"/var/data","destination":"data","options":["rbind","ro","rshared"]}
            ],
            "mkdir":["/var/log/x","cache"],
            "cgroups":["podruntime/x"]}"#,
        );
        let hierarchies = [
            PathBuf::from("/sys/fs/cgroup/memory"),
            PathBuf::from("/sys/fs/cgroup/unified"),
        ];
        let steps = filesystem(Path::new("/c/b"), &runtime, &hierarchies);
        assert_eq!(
            lines(&steps),
            [
                "mounts[0]: create mount point /c/b/tmp",
                "mounts[0]: mount tmpfs on /c/b/tmp type tmpfs",
                "mounts[1]: set propagation of /c/b/tmp to private",
                "mounts[2]: create mount point /c/b/rootfs",
                "mounts[2].options: create directory /c/b/tmp/upper",
                "mounts[2].options: create directory /c/b/tmp/work",
                "mounts[2]: mount overlay on /c/b/rootfs type overlay \
                 data lowerdir=/c/b/lower,upperdir=/c/b/tmp/upper,workdir=/c/b/tmp/work",
                "mounts[3]: create mount point /c/b/rootfs/data",
                "mounts[3]: mount /var/data on /c/b/rootfs/data type bind \
                 options rbind,ro data rshared",
                "mounts[3]: remount bind mount /c/b/rootfs/data ro",
                "mkdir[0]: create directory /var/log/x",
                "mkdir[1]: create directory /c/b/rootfs/cache",
                "cgroups[0]: create cgroup /sys/fs/cgroup/memory/podruntime/x",
                "cgroups[0]: create cgroup /sys/fs/cgroup/unified/podruntime/x",
            ]
        );
        assert_eq!(
            steps[7].action,
            Action::MakeMountPoint {
                path: PathBuf::from("/c/b/rootfs/data"),
                bind_source: Some(PathBuf::from("/var/data")),
            }
        );
    }

    #[test]
    fn interfaces_and_namespace_binds() {
        let runtime = runtime(
            r#"{"interfaces":[
                {"name":"eth1","peer":"host1"},
                {"name":"d0","add":"dummy"},
                {"name":"wg0","add":"wireguard","createInRoot":true},
                {"name":"eth0"}
              ],
              "bindNS":{"uts":"/run/uts/x","net":"/run/netns/x","cgroup":"/run/cg"}}"#,
        );
        assert_eq!(
            lines(&process(&runtime)),
            [
                "interfaces[0]: create veth eth1 with peer host1 in the root namespace",
                "interfaces[0]: move link eth1 into the container's network namespace",
                "interfaces[1]: create link d0 of type dummy in the container's network namespace",
                "interfaces[2]: create link wg0 of type wireguard in the root namespace",
                "interfaces[2]: move link wg0 into the container's network namespace",
                "interfaces[3]: move link eth0 into the container's network namespace",
                "bindNS.cgroup: create directory /run",
                "bindNS.cgroup: bind the cgroup namespace on /run/cg",
                "bindNS.net: create directory /run/netns",
                "bindNS.net: bind the net namespace on /run/netns/x",
                "bindNS.uts: create directory /run/uts",
                "bindNS.uts: bind the uts namespace on /run/uts/x",
            ]
        );
    }

    #[test]
    fn empty_runtime_plans_nothing() {
        let runtime = Runtime::default();
        assert!(filesystem(
            Path::new("/c/b"),
            &runtime,
            &[PathBuf::from("/sys/fs/cgroup")]
        )
        .is_empty());
        assert!(process(&runtime).is_empty());
    }
}
