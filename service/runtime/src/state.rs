//! The OCI state of a container (runtime spec, runtime.md "State"), as `state` prints it and
//! `list` tabulates it.
//! Runs in: wherever the runtime runs; reads libcontainer's state directory.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

/// The OCI version this runtime reports.
const OCI_VERSION: &str = "1.2.0";

/// Where a container is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        })
    }
}

impl From<ContainerStatus> for Status {
    fn from(status: ContainerStatus) -> Self {
        match status {
            ContainerStatus::Creating => Status::Creating,
            ContainerStatus::Created => Status::Created,
            ContainerStatus::Running => Status::Running,
            ContainerStatus::Stopped => Status::Stopped,
            ContainerStatus::Paused => Status::Paused,
        }
    }
}

/// The state of one container, in the OCI format plus runc's `rootfs`, `created` and `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// The container init's pid on the host; 0 once it has stopped.
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl State {
    pub(crate) fn of(container: &Container) -> Self {
        let status = Status::from(container.status());
        let pid = match status {
            Status::Stopped => 0,
            _ => container.pid().map_or(0, |pid| pid.as_raw()),
        };
        let bundle = container.bundle().clone();
        let rootfs = spec::config::load(&bundle)
            .map(|config| {
                let root_path = config.root().as_ref().map(|root| root.path().as_path());
                spec::bundle::root_dir(&bundle, root_path)
            })
            .unwrap_or_default();
        State {
            oci_version: OCI_VERSION.to_owned(),
            id: container.id().to_owned(),
            status,
            pid,
            bundle,
            rootfs,
            created: container.created().map(|time| time.to_rfc3339()),
            owner: container
                .creator()
                .map(|owner| owner.to_string_lossy().into_owned())
                .unwrap_or_default(),
            annotations: container.state.annotations.clone().unwrap_or_default(),
        }
    }
}
