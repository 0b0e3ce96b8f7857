//! `linux.resources.memory.disableOOMKiller`, which libcontainer reads but never applies (it
//! always writes 0 to memory.oom_control): written here once the container's cgroups exist.
//! Only cgroup v1 has the switch; on a cgroup v2 memory controller it is a warning, as runc
//! treats it.
//! Runs in: the runtime, at create, after libcontainer made the cgroups and before the
//! container is reported created.

use std::fs;

use libcgroups::common::{get_cgroup_setup, CgroupSetup};
use libcgroups::v1::util::get_subsystem_mount_point;
use libcgroups::v1::ControllerType;
use libcontainer::oci_spec::runtime::Spec;

use crate::diagnostics;
use crate::error::Error;

/// Disables the OOM killer in the memory cgroup of container `id` when `spec` asks for it.
pub(crate) fn apply(spec: &Spec, id: &str) -> Result<(), Error> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let disable = linux
        .resources()
        .as_ref()
        .and_then(|resources| resources.memory().as_ref())
        .and_then(|memory| memory.disable_oom_killer());
    if disable != Some(true) {
        return Ok(());
    }
    let Some(cgroup) = linux.cgroups_path() else {
        return Ok(());
    };
    let on_v1 = matches!(
        get_cgroup_setup(),
        Ok(CgroupSetup::Legacy | CgroupSetup::Hybrid)
    );
    let mount = on_v1
        .then(|| get_subsystem_mount_point(&ControllerType::Memory).ok())
        .flatten();
    let Some(mount) = mount else {
        diagnostics::warn(&format!(
            "container `{id}`: linux.resources.memory.disableOOMKiller: cgroup v2 has no such switch; ignored"
        ));
        return Ok(());
    };
    let file = mount
        .join(cgroup.strip_prefix("/").unwrap_or(cgroup))
        .join("memory.oom_control");
    fs::write(&file, "1").map_err(|err| {
        Error::io(
            "linux.resources.memory.disableOOMKiller: write 1 to",
            &file,
            err,
        )
    })
}
