//! runtime.json: Kiln's and LinuxKit's runtime keys, each from the manifest entry, else the
//! image label; `bindNS` merged per namespace; volume names in bind mounts rewritten like the
//! container's own.
//! Runs in: `kiln` on the build host. Pure.

use super::layers::Layers;
use super::{volume_merged, Context};
use crate::manifest::entry::RuntimeConfig;
use crate::manifest::mounts;

/// runtime.json: each key from the manifest, else the label; bindNS per namespace; volume
/// names in bind mounts rewritten like the container's own.
pub fn runtime_of(layers: &Layers<'_, RuntimeConfig>, context: &Context) -> spec::Runtime {
    let (yaml, label) = (layers.manifest, layers.label);
    let mut bind_ns = label.bind_ns.clone().unwrap_or_default();
    if let Some(given) = &yaml.bind_ns {
        for (slot, value) in [
            (&mut bind_ns.cgroup, &given.cgroup),
            (&mut bind_ns.ipc, &given.ipc),
            (&mut bind_ns.mnt, &given.mnt),
            (&mut bind_ns.net, &given.net),
            (&mut bind_ns.pid, &given.pid),
            (&mut bind_ns.user, &given.user),
            (&mut bind_ns.uts, &given.uts),
        ] {
            if !value.is_empty() {
                slot.clone_from(value);
            }
        }
    }
    let mut mounts = layers.list(|c| &c.mounts);
    for mount in &mut mounts {
        if let Some(volume) = mounts::mount_volume(mount) {
            if context.volumes.contains(volume) {
                mount.source = volume_merged(volume);
            }
        }
    }
    spec::Runtime {
        cgroups: layers.list(|c| &c.cgroups),
        mounts,
        mkdir: layers.list(|c| &c.mkdir),
        interfaces: layers.list(|c| &c.interfaces),
        bind_ns,
        namespace: layers.get(|c| &c.namespace).unwrap_or_default(),
        restart: layers.get(|c| &c.restart),
        depends_on: layers.list(|c| &c.depends_on),
        ready: layers.get(|c| &c.ready),
        stop_signal: layers.get(|c| &c.stop_signal),
        stop_timeout: layers.get(|c| &c.stop_timeout),
        timeout: layers.get(|c| &c.timeout),
        init: layers.get(|c| &c.init).unwrap_or(false),
        healthcheck: layers.get(|c| &c.healthcheck),
        watchdog: layers.get(|c| &c.watchdog),
        restart_limit: layers.get(|c| &c.restart_limit),
        on_failure: layers.get(|c| &c.on_failure),
    }
}
