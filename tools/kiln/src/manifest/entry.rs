//! The image object of a manifest (an entry of `onboot`, `onshutdown` or `services`) and the
//! settings it shares with an image's `org.mobyproject.config` label: every field of LinuxKit's
//! schema with its real type, plus Kiln's supervision keys under `runtime`. A field that is
//! absent is `None`, because a present one (even empty) replaces the label's value.
//! Runs in: `kiln` on the build host. Pure data.

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxIdMapping, LinuxMemory,
    LinuxNetwork, LinuxPids,
};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use spec::runtime::{BindNs, Interface, Mount, Ready, Restart};
use spec::supervision::{Healthcheck, OnFailure, RestartLimit};

use crate::manifest::diagnostic::Origin;

/// One entry of `onboot`, `onshutdown` or `services`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Image {
    pub name: String,
    /// The image reference: `name[:tag][@digest]`, `oci:PATH`, `oci-archive:PATH`,
    /// `docker-archive:PATH` or `@pkg:PATH`.
    pub image: String,
    #[serde(flatten)]
    pub config: ImageConfig,
    #[serde(skip)]
    pub origin: Origin,
}

/// The settings of a container, as written in a manifest entry or in an image label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(rename = "capabilities.add", skip_serializing_if = "Option::is_none")]
    pub capabilities_add: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambient: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binds: Option<Vec<String>>,
    #[serde(rename = "binds.add", skip_serializing_if = "Option::is_none")]
    pub binds_add: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Device>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_gids: Option<Vec<Id>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs_propagation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimits: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeConfig>,
}

/// A user or group: a number, or the name of a container (`root` and `""` are 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Number(u32),
    Name(String),
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(id) => serializer.serialize_u32(*id),
            Id::Name(name) => serializer.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number from 0 to 4294967295 or a container name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                u32::try_from(v)
                    .map(Id::Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                u32::try_from(v)
                    .map(Id::Number)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::Name(v.to_owned()))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

/// A device node to create in the container (with its cgroup allow rule), or with
/// `path: all` only a wildcard allow rule for a device type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    /// The node's mode as an octal string (`"0666"`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

/// `resources`, as LinuxKit's schema names it (`blockio` for the OCI `blockIO`), each part an
/// OCI runtime-spec type so that what a build writes is what was checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<LinuxDeviceCgroup>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<LinuxMemory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<LinuxCpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<LinuxPids>,
    #[serde(rename = "blockio", skip_serializing_if = "Option::is_none")]
    pub block_io: Option<LinuxBlockIo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hugepage_limits: Option<Vec<LinuxHugepageLimit>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<LinuxNetwork>,
}

/// `runtime`: what LinuxKit writes into runtime.json, plus Kiln's supervision keys. Each
/// sub-field merges with the label on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mkdir: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    #[serde(rename = "bindNS", skip_serializing_if = "Option::is_none")]
    pub bind_ns: Option<BindNs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_limit: Option<RestartLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
}

impl RuntimeConfig {
    /// The supervision keys this section sets that only mean something for services.
    pub fn service_keys(&self) -> Vec<&'static str> {
        [
            ("restart", self.restart.is_some()),
            ("dependsOn", self.depends_on.is_some()),
            ("ready", self.ready.is_some()),
            ("stopSignal", self.stop_signal.is_some()),
            ("stopTimeout", self.stop_timeout.is_some()),
            ("healthcheck", self.healthcheck.is_some()),
            ("watchdog", self.watchdog.is_some()),
            ("restartLimit", self.restart_limit.is_some()),
            ("onFailure", self.on_failure.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// The runtime.json this section describes on its own (before any label merge).
    pub fn to_runtime(&self) -> spec::Runtime {
        spec::Runtime {
            cgroups: self.cgroups.clone().unwrap_or_default(),
            mounts: self.mounts.clone().unwrap_or_default(),
            mkdir: self.mkdir.clone().unwrap_or_default(),
            interfaces: self.interfaces.clone().unwrap_or_default(),
            bind_ns: self.bind_ns.clone().unwrap_or_default(),
            namespace: self.namespace.clone().unwrap_or_default(),
            restart: self.restart,
            depends_on: self.depends_on.clone().unwrap_or_default(),
            ready: self.ready.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            timeout: self.timeout,
            init: self.init.unwrap_or(false),
            healthcheck: self.healthcheck.clone(),
            watchdog: self.watchdog,
            restart_limit: self.restart_limit,
            on_failure: self.on_failure,
        }
    }
}
