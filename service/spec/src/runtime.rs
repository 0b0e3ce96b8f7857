//! `runtime.json`: what a bundle needs done around its container that OCI cannot say
//! (cgroups, host mounts, directories, network interfaces, namespace binds), exactly as LinuxKit
//! writes it, plus Kiln's supervision keys (restart, ordering, readiness, stop signal, timeouts).
//! Runs in: the builder (writes it) and the supervisor (reads it before each create). Pure data.
//! Mirrors LinuxKit `Runtime` in src/moby/config.go and pkg/init/cmd/service/prepare.go.

use std::collections::HashSet;
use std::path::{Component, Path};

use serde::{Deserialize, Deserializer, Serialize};

use crate::json::{self, LoadError};
use crate::problem::Problem;
use crate::signal;
use crate::supervision::{self, Healthcheck, OnFailure, RestartLimit};

/// The file name of the runtime config inside a bundle.
pub const FILE_NAME: &str = "runtime.json";

/// The longest network interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_INTERFACE_NAME: usize = 15;

/// The runtime config of one bundle. A missing file is the empty (default) config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Runtime {
    /// Cgroups created (on every hierarchy) before the container, e.g. `podruntime/kubelet`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cgroups: Vec<String>,
    /// Mounts made in the root mount namespace before the container is created.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mounts: Vec<Mount>,
    /// Directories created before the container; relative paths are under the rootfs.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mkdir: Vec<String>,
    /// Network interfaces created in or moved into the container's network namespace.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub interfaces: Vec<Interface>,
    /// Files on which the container's namespaces are bind-mounted, so that they outlive it.
    #[serde(rename = "bindNS", default, deserialize_with = "null_as_default")]
    pub bind_ns: BindNs,
    /// containerd namespace override in LinuxKit; kept for compatibility, unused by Kiln.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// When a service is started again after it exits (services only; default `always`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Services that must be running (or ready, when they declare readiness) before this one starts.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub depends_on: Vec<String>,
    /// How the service says it is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    /// The signal that asks the service to stop (default SIGTERM), by name (`SIGTERM`, `TERM`) or number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Seconds an onboot or onshutdown container may run before it is killed: by default
    /// [`DEFAULT_TIMEOUT`], so no entry can hang a boot forever; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Run the process under Kiln's container init (`/sbin/kiln-init`, the `service` binary
    /// bound read-only into the container, as `docker run --init`): it passes signals on, reaps
    /// zombies and exits with the process's status.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// A probe run while the service runs: unhealthy, it is stopped and its restart policy
    /// decides; dependents wait for it to be healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Seconds within which the service must send `WATCHDOG=1` on `$NOTIFY_SOCKET` (it gets
    /// `WATCHDOG_USEC`), again and again; a silent one is killed with SIGABRT and restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<u64>,
    /// How many automatic restarts a time window allows before the service is failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_limit: Option<RestartLimit>,
    /// What the machine does when the service fails for good: `reboot` or `poweroff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
}

/// Where [`Runtime::init`] binds the container init inside the container: a read-only root
/// needs the file there already, and `kiln build` makes it.
pub const CONTAINER_INIT: &str = "/sbin/kiln-init";

/// Seconds an onboot or onshutdown container may run when its runtime.json gives no `timeout`.
pub const DEFAULT_TIMEOUT: u64 = 300;

/// A mount made on the host before the container is created (an OCI `specs.Mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Where: absolute, or relative to the bundle's rootfs.
    #[serde(default)]
    pub destination: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// fstab-style options; those that are not flags form the data string.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub options: Vec<String>,
}

/// A network interface for the container's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Interface {
    /// The interface's name inside the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The netlink link type to create (`veth`, `wireguard`, `dummy`, ...); empty moves an existing link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub add: String,
    /// The other end of a veth pair, left in the root namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Create the link in the root namespace and then move it (keeps e.g. wireguard's socket there).
    #[serde(default)]
    pub create_in_root: bool,
}

/// What an [`Interface`] entry asks for, with LinuxKit's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceAction<'a> {
    /// A veth pair: `name` goes into the container, `peer` stays in the root namespace.
    Veth { name: &'a str, peer: &'a str },
    /// A link of another type, created in the container's namespace or in root and then moved.
    Create {
        name: &'a str,
        kind: &'a str,
        in_root: bool,
    },
    /// An existing host link moved into the container.
    Move { name: &'a str },
}

impl Interface {
    /// The action LinuxKit takes for this entry: a peer with no `add` means veth.
    pub fn action(&self) -> InterfaceAction<'_> {
        match (self.add.as_str(), self.peer.is_empty()) {
            ("veth", _) | ("", false) => InterfaceAction::Veth {
                name: &self.name,
                peer: &self.peer,
            },
            ("", true) => InterfaceAction::Move { name: &self.name },
            (kind, _) => InterfaceAction::Create {
                name: &self.name,
                kind,
                in_root: self.create_in_root,
            },
        }
    }
}

/// Paths to bind the container's namespaces on; empty means not bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindNs {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipc: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mnt: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub net: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uts: String,
}

impl BindNs {
    /// The namespaces to bind, in LinuxKit's order (cgroup, ipc, mnt, net, pid, user, uts), as
    /// (name in /proc/PID/ns, path); entries with no path are left out.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("cgroup", self.cgroup.as_str()),
            ("ipc", self.ipc.as_str()),
            ("mnt", self.mnt.as_str()),
            ("net", self.net.as_str()),
            ("pid", self.pid.as_str()),
            ("user", self.user.as_str()),
            ("uts", self.uts.as_str()),
        ]
        .into_iter()
        .filter(|(_, path)| !path.is_empty())
    }
}

/// When a service is started again after its container exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever the exit status.
    Always,
    /// Only after a non-zero exit or a death by signal.
    OnFailure,
    /// Never.
    No,
}

/// How a service reports readiness: exactly one of `file` or `notify: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Ready once this file exists (a path in the root filesystem, absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Ready once the service sends `READY=1` on `$NOTIFY_SOCKET` (sd_notify).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub notify: bool,
}

impl Runtime {
    /// Reads `<bundle>/runtime.json`; a missing file is the empty config.
    pub fn load(bundle: &Path) -> Result<Self, LoadError> {
        Ok(json::load_optional(&bundle.join(FILE_NAME))?.unwrap_or_default())
    }

    /// Parses a runtime.json document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Problem> {
        json::parse(bytes)
    }

    /// Checks the values that parsing alone lets through; every problem names its field.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, name) in self.cgroups.iter().enumerate() {
            if let Err(message) = check_cgroup_name(name) {
                problems.push(Problem::new(format!("cgroups[{i}]"), message));
            }
        }
        for (i, mount) in self.mounts.iter().enumerate() {
            if mount.destination.is_empty() {
                problems.push(Problem::new(format!("mounts[{i}].destination"), "missing"));
            }
        }
        for (i, dir) in self.mkdir.iter().enumerate() {
            if dir.is_empty() {
                problems.push(Problem::new(format!("mkdir[{i}]"), "empty path"));
            }
        }
        for (i, interface) in self.interfaces.iter().enumerate() {
            check_interface(i, interface, &mut problems);
        }
        for (ns, path) in self.bind_ns.entries() {
            if !Path::new(path).is_absolute() {
                problems.push(Problem::new(
                    format!("bindNS.{ns}"),
                    format!("`{path}` is not an absolute path"),
                ));
            }
        }
        self.check_supervision(&mut problems);
        problems
    }

    fn check_supervision(&self, problems: &mut Vec<Problem>) {
        let mut seen = HashSet::new();
        for (i, name) in self.depends_on.iter().enumerate() {
            if name.is_empty() {
                problems.push(Problem::new(
                    format!("dependsOn[{i}]"),
                    "empty service name",
                ));
            } else if !seen.insert(name) {
                problems.push(Problem::new(
                    format!("dependsOn[{i}]"),
                    format!("`{name}` is listed twice"),
                ));
            }
        }
        if let Some(ready) = &self.ready {
            match (&ready.file, ready.notify) {
                (Some(_), true) => problems.push(Problem::new(
                    "ready",
                    "give either `file` or `notify: true`, not both",
                )),
                (None, false) => problems.push(Problem::new(
                    "ready",
                    "give `file` (a path) or `notify: true`",
                )),
                (Some(file), false) if !Path::new(file).is_absolute() => problems.push(
                    Problem::new("ready.file", format!("`{file}` is not an absolute path")),
                ),
                _ => {}
            }
        }
        if let Some(name) = &self.stop_signal {
            if signal::parse(name).is_none() {
                problems.push(Problem::new(
                    "stopSignal",
                    format!("unknown signal `{name}`: {}", signal::HINT),
                ));
            }
        }
        supervision::check(
            self.healthcheck.as_ref(),
            self.watchdog,
            self.restart_limit,
            problems,
        );
    }

    /// How long an onboot or onshutdown container may run: `timeout`, [`DEFAULT_TIMEOUT`]
    /// when none is given, no limit for 0.
    pub fn run_limit(&self) -> Option<u64> {
        match self.timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(0) => None,
            Some(secs) => Some(secs),
        }
    }
}

/// A cgroup name is a relative path below the cgroup root, with no `..` and no empty parts.
fn check_cgroup_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty cgroup name".into());
    }
    let path = Path::new(name);
    if path.is_absolute() {
        return Err(format!(
            "`{name}` is absolute; give a name relative to the cgroup root"
        ));
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!("`{name}` may not contain `..` or `.`"));
    }
    Ok(())
}

fn check_interface(i: usize, interface: &Interface, problems: &mut Vec<Problem>) {
    let field = |name: &str| format!("interfaces[{i}].{name}");
    if interface.name.is_empty() {
        problems.push(Problem::new(
            field("name"),
            "missing: every interface needs a name",
        ));
    } else if let Err(message) = check_interface_name(&interface.name) {
        problems.push(Problem::new(field("name"), message));
    }
    if let InterfaceAction::Veth { peer, .. } = interface.action() {
        if peer.is_empty() {
            problems.push(Problem::new(
                field("peer"),
                "missing: a veth needs a peer name",
            ));
        } else if let Err(message) = check_interface_name(peer) {
            problems.push(Problem::new(field("peer"), message));
        } else if peer == interface.name {
            problems.push(Problem::new(field("peer"), "must differ from name"));
        }
    }
}

fn check_interface_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_INTERFACE_NAME {
        return Err(format!(
            "`{name}` is longer than {MAX_INTERFACE_NAME} bytes"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(format!("`{name}` is not a valid interface name"));
    }
    Ok(())
}

/// Go writes `null` for a nil slice; treat it as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
