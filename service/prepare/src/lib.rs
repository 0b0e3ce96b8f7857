//! What a bundle's runtime.json asks for around its container: before the container is created,
//! `mounts`, `mkdir` and `cgroups`; after it is created and before it starts, `interfaces` and
//! `bindNS`. Each phase is planned first ([`plan`]: a printable list of steps, each naming its
//! runtime.json field), then applied ([`Prepared`]), which records every change so that a failure
//! undoes what the bundle had done.
//! Runs in: the supervisor (`service onboot`, `service onshutdown`, `service system-init`), as
//! root in the root mount and network namespaces; the network steps need a tokio runtime.
//! Mirrors LinuxKit's pkg/init/cmd/service/prepare.go.

mod apply;
pub mod cgroup;
mod error;
mod link;
pub mod options;
pub mod plan;

pub use apply::Prepared;
pub use error::Error;
pub use plan::{Action, Step};
