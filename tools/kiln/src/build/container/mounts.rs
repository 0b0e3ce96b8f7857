//! config.json's mounts: the five default mounts, then `tmpfs`, `binds` and `mounts`, each
//! replacing what an earlier one put on the same destination, sorted by destination. Volume
//! names in binds and bind mounts become the volume's `merged/` directory.
//! Runs in: `kiln` on the build host. Pure.

use std::collections::BTreeMap;

use oci_spec::runtime::Mount as OciMount;
use spec::runtime::Mount;

use super::layers::Layers;
use super::{volume_merged, Context};
use crate::manifest::entry::ImageConfig;
use crate::manifest::mounts::{self, Bind};

/// The default mounts, then tmpfs, binds and mounts by destination, sorted by destination.
pub fn mounts_of(
    layers: &Layers<'_, ImageConfig>,
    readonly: bool,
    context: &Context,
) -> Result<Vec<OciMount>, String> {
    let options = |list: &[&str], ro: bool| -> Vec<String> {
        let mut options: Vec<String> = list.iter().map(|o| (*o).to_owned()).collect();
        if ro {
            options.push("ro".into());
        }
        options
    };
    let mut by_destination: BTreeMap<String, Mount> = BTreeMap::new();
    for (destination, kind, opts, ro) in [
        (
            "/proc",
            "proc",
            &["nosuid", "nodev", "noexec", "relatime"][..],
            false,
        ),
        (
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"][..],
            readonly,
        ),
        (
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ][..],
            false,
        ),
        (
            "/sys",
            "sysfs",
            &["nosuid", "noexec", "nodev"][..],
            readonly,
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"][..],
            false,
        ),
    ] {
        by_destination.insert(
            destination.into(),
            Mount {
                destination: destination.into(),
                kind: kind.into(),
                source: kind.into(),
                options: options(opts, ro),
            },
        );
    }
    let tmpfs = layers.get_ref(|c| &c.tmpfs);
    for (i, text) in tmpfs.into_iter().flatten().enumerate() {
        let mount = mounts::parse_tmpfs(text).map_err(|err| format!("tmpfs[{i}]: {err}"))?;
        by_destination.insert(mount.destination.clone(), mount);
    }
    let binds = layers.with_added("binds", |c| &c.binds, |c| &c.binds_add);
    for (field, text) in binds {
        let bind = Bind::parse(text).map_err(|err| format!("{field}: {err}"))?;
        let mut mount = bind.to_mount();
        if let Some(volume) = bind.volume() {
            mount.source = volume_source(&field, volume, context)?;
        }
        by_destination.insert(mount.destination.clone(), mount);
    }
    let given = layers.get_ref(|c| &c.mounts);
    for (i, mount) in given.into_iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        let mut mount = mounts::infer(mount).map_err(|err| format!("{field}: {err}"))?;
        if let Some(volume) = mounts::mount_volume(&mount) {
            mount.source = volume_source(&field, volume, context)?;
        }
        by_destination.insert(mount.destination.clone(), mount);
    }
    Ok(by_destination
        .into_values()
        .map(|mount| {
            let mut oci = OciMount::default();
            oci.set_destination(mount.destination.into())
                .set_typ(Some(mount.kind))
                .set_source(Some(mount.source.into()))
                .set_options(Some(mount.options).filter(|o| !o.is_empty()));
            oci
        })
        .collect())
}

fn volume_source(field: &str, volume: &str, context: &Context) -> Result<String, String> {
    if context.volumes.contains(volume) {
        Ok(volume_merged(volume))
    } else {
        Err(format!("{field}: no volume is named `{volume}`"))
    }
}
