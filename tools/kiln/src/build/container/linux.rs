//! config.json's `linux` section: namespaces (pid new by default, the others shared with the
//! host unless asked, and always a new mount namespace), resources and the device rules and
//! nodes `devices` asks for, id mappings, sysctls, the cgroups path, rootfs propagation, and
//! masked and read-only paths.
//! Runs in: `kiln` on the build host. Pure.

use oci_spec::runtime::{
    Linux, LinuxBuilder, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespace,
    LinuxNamespaceType, LinuxResources,
};

use super::layers::Layers;
use super::{invalid, string_map};
use crate::manifest::entry::ImageConfig;
use crate::manifest::process;

/// The `linux` section of config.json.
pub fn linux_of(layers: &Layers<'_, ImageConfig>) -> Result<Linux, String> {
    let (resources, devices) = resources_of(layers)?;
    let non_empty = |paths: Vec<String>| Some(paths).filter(|p| !p.is_empty());
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces_of(layers))
        .resources(resources)
        .build()
        .map_err(invalid("linux"))?;
    linux
        .set_uid_mappings(layers.get(|c| &c.uid_mappings).filter(|m| !m.is_empty()))
        .set_gid_mappings(layers.get(|c| &c.gid_mappings).filter(|m| !m.is_empty()))
        .set_sysctl(string_map(layers.get(|c| &c.sysctl)))
        .set_cgroups_path(
            layers
                .get(|c| &c.cgroups_path)
                .filter(|p| !p.is_empty())
                .map(Into::into),
        )
        .set_devices(Some(devices).filter(|d| !d.is_empty()))
        .set_rootfs_propagation(
            layers
                .get(|c| &c.rootfs_propagation)
                .filter(|p| !p.is_empty()),
        )
        .set_masked_paths(non_empty(layers.list(|c| &c.masked_paths)))
        .set_readonly_paths(non_empty(layers.list(|c| &c.readonly_paths)))
        .set_seccomp(None)
        .set_mount_label(None);
    Ok(linux)
}

/// The resources as given, with a device rule (and a device node) added for each entry of
/// `devices`; `all` allows every device of its type.
fn resources_of(
    layers: &Layers<'_, ImageConfig>,
) -> Result<(LinuxResources, Vec<LinuxDevice>), String> {
    let mut resources = LinuxResources::default();
    if let Some(given) = layers.get_ref(|c| &c.resources) {
        resources
            .set_devices(given.devices.clone())
            .set_memory(given.memory)
            .set_cpu(given.cpu.clone())
            .set_pids(given.pids)
            .set_block_io(given.block_io.clone())
            .set_hugepage_limits(given.hugepage_limits.clone())
            .set_network(given.network.clone());
    }
    let mut device_rules = resources.devices().clone().unwrap_or_default();
    let mut devices = Vec::new();
    let given_devices = layers.get_ref(|c| &c.devices);
    for (i, device) in given_devices.into_iter().flatten().enumerate() {
        let kind: LinuxDeviceType = serde_json::from_value(device.kind.clone().into())
            .map_err(|_| format!("devices[{i}].type: `{}` is not a device type", device.kind))?;
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true)
            .set_typ(Some(kind))
            .set_access(Some("rwm".into()));
        if device.path == "all" {
            device_rules.push(rule);
            continue;
        }
        let mode = process::parse_mode(&device.mode).ok_or_else(|| {
            format!(
                "devices[{i}].mode: `{}` is not an octal mode such as \"0666\"",
                device.mode
            )
        })?;
        let mut node = LinuxDevice::default();
        node.set_path(device.path.clone().into())
            .set_typ(kind)
            .set_major(device.major)
            .set_minor(device.minor)
            .set_file_mode(Some(mode));
        rule.set_major(Some(device.major))
            .set_minor(Some(device.minor));
        device_rules.push(rule);
        devices.push(node);
    }
    resources.set_devices(Some(device_rules).filter(|rules| !rules.is_empty()));
    Ok((resources, devices))
}

/// net, ipc, uts, pid and user namespaces as asked (pid new by default, the others shared
/// with the host), then always a new mount namespace.
fn namespaces_of(layers: &Layers<'_, ImageConfig>) -> Vec<LinuxNamespace> {
    let choice = |field: fn(&ImageConfig) -> &Option<String>, default: &str| {
        layers
            .non_empty(field)
            .unwrap_or_else(|| default.to_owned())
    };
    let mut namespaces = Vec::new();
    for (kind, value) in [
        (LinuxNamespaceType::Network, choice(|c| &c.net, "root")),
        (LinuxNamespaceType::Ipc, choice(|c| &c.ipc, "root")),
        (LinuxNamespaceType::Uts, choice(|c| &c.uts, "root")),
        (LinuxNamespaceType::Pid, choice(|c| &c.pid, "new")),
        (LinuxNamespaceType::User, choice(|c| &c.userns, "root")),
    ] {
        if value == "host" || value == "root" {
            continue;
        }
        let mut namespace = LinuxNamespace::default();
        namespace.set_typ(kind);
        if !["new", "none"].contains(&value.as_str()) {
            namespace.set_path(Some(value.into()));
        }
        namespaces.push(namespace);
    }
    let mut mount = LinuxNamespace::default();
    mount.set_typ(LinuxNamespaceType::Mount);
    namespaces.push(mount);
    namespaces
}
