//! An onboot, onshutdown or service entry turned into its bundle's config.json (OCI runtime
//! spec) and runtime.json, with LinuxKit's rules: each field comes from the manifest, else the
//! image's `org.mobyproject.config` label, else the image config (command, env, cwd), else the
//! built-in default: five default mounts (overridden by tmpfs < binds < mounts on the same
//! destination, sorted by destination), new pid and mount namespaces, no capabilities.
//! `capabilities.add` and `binds.add` add to the label's list. Volume names in binds and bind
//! mounts become `/containers/volumes/NAME/merged`. Kiln's runtime keys pass into runtime.json.
//! Runs in: `kiln` on the build host. Pure.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::image::Config;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxNamespace, LinuxNamespaceType, LinuxResources, Mount as OciMount,
    PosixRlimitBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};
use spec::runtime::Mount;

use crate::image::{Id, Image, ImageConfig, RuntimeConfig};
use crate::mounts::{self, Bind};
use crate::process::{self, ALL_CAPABILITIES};

/// The label an image carries its default container settings in.
pub const LABEL: &str = "org.mobyproject.config";

/// Where a volume is mounted at boot, for binds that name it.
pub fn volume_merged(name: &str) -> String {
    format!("/containers/volumes/{name}/merged")
}

/// What the build knows beyond the entry itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Container names and the ids allocated to them (from 100, onboot, onshutdown, services).
    pub ids: BTreeMap<String, u32>,
    /// The names of the manifest's volumes.
    pub volumes: BTreeSet<String>,
}

/// A bundle's two configuration files.
#[derive(Debug, Clone)]
pub struct Configs {
    pub spec: Spec,
    pub runtime: spec::Runtime,
}

impl Configs {
    /// config.json: pretty JSON with sorted keys and sorted capability lists, so the same
    /// entry always gives the same bytes.
    pub fn spec_json(&self) -> Result<Vec<u8>, String> {
        let mut value = serde_json::to_value(&self.spec)
            .map_err(|err| format!("cannot write config.json: {err}"))?;
        if let Some(caps) = value
            .pointer_mut("/process/capabilities")
            .and_then(serde_json::Value::as_object_mut)
        {
            for list in caps.values_mut() {
                if let Some(items) = list.as_array_mut() {
                    items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
            }
        }
        let mut bytes = serde_json::to_vec_pretty(&value)
            .map_err(|err| format!("cannot write config.json: {err}"))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// runtime.json, pretty.
    pub fn runtime_json(&self) -> Result<Vec<u8>, String> {
        let mut bytes = serde_json::to_vec_pretty(&self.runtime)
            .map_err(|err| format!("cannot write runtime.json: {err}"))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// Converts `entry`, whose image has `image` as its config and `label` decoded from its
/// `org.mobyproject.config` label (empty when it has none). The error names the field.
pub fn convert(
    entry: &Image,
    label: &ImageConfig,
    image: &Config,
    context: &Context,
) -> Result<Configs, String> {
    let yaml = &entry.config;
    let pick = |yaml: &Option<Vec<String>>, label: &Option<Vec<String>>| {
        yaml.clone().or_else(|| label.clone()).unwrap_or_default()
    };
    let first_set = |values: &[Option<&String>]| {
        values
            .iter()
            .flatten()
            .find(|value| !value.is_empty())
            .map(|value| (*value).clone())
    };

    let image_command: Vec<String> = image
        .entrypoint()
        .iter()
        .chain(image.cmd())
        .flatten()
        .cloned()
        .collect();
    let args = yaml
        .command
        .clone()
        .or_else(|| label.command.clone())
        .unwrap_or(image_command);
    if args.is_empty() {
        return Err("command: the image has no entrypoint or cmd and no `command` is set".into());
    }
    let env = yaml
        .env
        .clone()
        .or_else(|| label.env.clone())
        .or_else(|| image.env().clone())
        .unwrap_or_default();
    let cwd = first_set(&[
        yaml.cwd.as_ref(),
        label.cwd.as_ref(),
        image.working_dir().as_ref(),
    ])
    .unwrap_or_else(|| "/".into());
    let readonly = yaml.readonly.or(label.readonly).unwrap_or(false);

    let mounts = mounts_of(yaml, label, readonly, context)?;
    let namespaces = namespaces_of(yaml, label);

    let caps = match &yaml.capabilities {
        Some(caps) => caps.clone(),
        None => label
            .capabilities
            .iter()
            .chain(&yaml.capabilities_add)
            .flatten()
            .cloned()
            .collect(),
    };
    let caps = expand_capabilities("capabilities", caps)?;
    let ambient = expand_capabilities("ambient", pick(&yaml.ambient, &label.ambient))?;
    let bounding: Vec<Capability> = caps.iter().chain(&ambient).copied().collect();

    let mut rlimits = Vec::new();
    for (i, text) in pick(&yaml.rlimits, &label.rlimits).iter().enumerate() {
        let rlimit = process::parse_rlimit(text).map_err(|err| format!("rlimits[{i}]: {err}"))?;
        let limit = PosixRlimitBuilder::default()
            .typ(rlimit.kind)
            .soft(rlimit.soft)
            .hard(rlimit.hard)
            .build()
            .map_err(|err| format!("rlimits[{i}]: {err}"))?;
        rlimits.push(limit);
    }

    let id = |field: &str, id: Option<&Id>| numeric_id(field, id, &context.ids);
    let uid = id("uid", yaml.uid.as_ref().or(label.uid.as_ref()))?;
    let gid = id("gid", yaml.gid.as_ref().or(label.gid.as_ref()))?;
    let mut additional_gids = Vec::new();
    let groups = yaml
        .additional_gids
        .as_ref()
        .or(label.additional_gids.as_ref());
    for (i, group) in groups.into_iter().flatten().enumerate() {
        additional_gids.push(id(&format!("additionalGids[{i}]"), Some(group))?);
    }

    let invalid = |what: &str, err: oci_spec::OciSpecError| format!("{what}: {err}");
    let mut user = UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .build()
        .map_err(|err| invalid("uid", err))?;
    user.set_additional_gids(Some(additional_gids).filter(|gids| !gids.is_empty()));
    let set = |caps: &[Capability]| {
        caps.iter()
            .copied()
            .collect::<oci_spec::runtime::Capabilities>()
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(set(&bounding))
        .effective(set(&caps))
        .inheritable(set(&bounding))
        .permitted(set(&bounding))
        .ambient(set(&ambient))
        .build()
        .map_err(|err| invalid("capabilities", err))?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(
            yaml.no_new_privileges
                .or(label.no_new_privileges)
                .unwrap_or(false),
        )
        .build()
        .map_err(|err| invalid("process", err))?;
    process.set_oom_score_adj(yaml.oom_score_adj.or(label.oom_score_adj));

    let mut resources = LinuxResources::default();
    if let Some(given) = yaml.resources.as_ref().or(label.resources.as_ref()) {
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
    let given_devices = yaml.devices.as_ref().or(label.devices.as_ref());
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

    let map = |yaml: &Option<BTreeMap<String, String>>,
               label: &Option<BTreeMap<String, String>>| {
        yaml.clone()
            .or_else(|| label.clone())
            .filter(|map| !map.is_empty())
            .map(|map| map.into_iter().collect())
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .build()
        .map_err(|err| invalid("linux", err))?;
    linux
        .set_uid_mappings(
            yaml.uid_mappings
                .clone()
                .or_else(|| label.uid_mappings.clone())
                .filter(|m| !m.is_empty()),
        )
        .set_gid_mappings(
            yaml.gid_mappings
                .clone()
                .or_else(|| label.gid_mappings.clone())
                .filter(|m| !m.is_empty()),
        )
        .set_sysctl(map(&yaml.sysctl, &label.sysctl))
        .set_cgroups_path(
            yaml.cgroups_path
                .clone()
                .or_else(|| label.cgroups_path.clone())
                .filter(|p| !p.is_empty())
                .map(Into::into),
        )
        .set_devices(Some(devices).filter(|d| !d.is_empty()))
        .set_rootfs_propagation(
            yaml.rootfs_propagation
                .clone()
                .or_else(|| label.rootfs_propagation.clone())
                .filter(|p| !p.is_empty()),
        )
        .set_masked_paths(
            Some(pick(&yaml.masked_paths, &label.masked_paths)).filter(|p| !p.is_empty()),
        )
        .set_readonly_paths(
            Some(pick(&yaml.readonly_paths, &label.readonly_paths)).filter(|p| !p.is_empty()),
        )
        .set_seccomp(None)
        .set_mount_label(None);

    let root = RootBuilder::default()
        .path("rootfs")
        .readonly(readonly)
        .build()
        .map_err(|err| invalid("root", err))?;
    let mut spec = Spec::default();
    spec.set_process(Some(process))
        .set_root(Some(root))
        .set_hostname(first_set(&[
            yaml.hostname.as_ref(),
            label.hostname.as_ref(),
        ]))
        .set_mounts(Some(mounts))
        .set_annotations(map(&yaml.annotations, &label.annotations))
        .set_linux(Some(linux));

    Ok(Configs {
        spec,
        runtime: runtime_of(yaml.runtime.as_ref(), label.runtime.as_ref(), context),
    })
}

/// The default mounts, then tmpfs, binds and mounts by destination, sorted by destination.
fn mounts_of(
    yaml: &ImageConfig,
    label: &ImageConfig,
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
    let tmpfs = yaml.tmpfs.as_ref().or(label.tmpfs.as_ref());
    for (i, text) in tmpfs.into_iter().flatten().enumerate() {
        let mount = mounts::parse_tmpfs(text).map_err(|err| format!("tmpfs[{i}]: {err}"))?;
        by_destination.insert(mount.destination.clone(), mount);
    }
    let binds: Vec<(String, &String)> = match &yaml.binds {
        Some(binds) => binds
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("binds[{i}]"), b))
            .collect(),
        None => {
            let from_label = label.binds.iter().flatten().enumerate();
            let added = yaml.binds_add.iter().flatten().enumerate();
            from_label
                .map(|(i, b)| (format!("label binds[{i}]"), b))
                .chain(added.map(|(i, b)| (format!("binds.add[{i}]"), b)))
                .collect()
        }
    };
    for (field, text) in binds {
        let bind = Bind::parse(text).map_err(|err| format!("{field}: {err}"))?;
        let mut mount = bind.to_mount();
        if let Some(volume) = bind.volume() {
            mount.source = volume_source(&field, volume, context)?;
        }
        by_destination.insert(mount.destination.clone(), mount);
    }
    let given = yaml.mounts.as_ref().or(label.mounts.as_ref());
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

/// net, ipc, uts, pid and user namespaces as asked (pid new by default, the others shared
/// with the host), then always a new mount namespace.
fn namespaces_of(yaml: &ImageConfig, label: &ImageConfig) -> Vec<LinuxNamespace> {
    let choice = |yaml: &Option<String>, label: &Option<String>, default: &str| {
        [yaml, label]
            .into_iter()
            .flatten()
            .find(|value| !value.is_empty())
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let mut namespaces = Vec::new();
    for (kind, value) in [
        (
            LinuxNamespaceType::Network,
            choice(&yaml.net, &label.net, "root"),
        ),
        (
            LinuxNamespaceType::Ipc,
            choice(&yaml.ipc, &label.ipc, "root"),
        ),
        (
            LinuxNamespaceType::Uts,
            choice(&yaml.uts, &label.uts, "root"),
        ),
        (
            LinuxNamespaceType::Pid,
            choice(&yaml.pid, &label.pid, "new"),
        ),
        (
            LinuxNamespaceType::User,
            choice(&yaml.userns, &label.userns, "root"),
        ),
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

/// A capability list with `all` and `none` (standing alone, any case) expanded.
fn expand_capabilities(field: &str, list: Vec<String>) -> Result<Vec<Capability>, String> {
    let names: Vec<String> = match list.as_slice() {
        [only] if only.eq_ignore_ascii_case("none") => Vec::new(),
        [only] if only.eq_ignore_ascii_case("all") => {
            ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
        }
        _ => list,
    };
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::from_value(name.clone().into())
                .ok()
                .filter(|_| process::is_capability(name))
                .ok_or_else(|| format!("{field}[{i}]: unknown capability `{name}`"))
        })
        .collect()
}

/// A uid or gid: a number, `root` or empty for 0, or a container's allocated id.
pub fn numeric_id(
    field: &str,
    id: Option<&Id>,
    ids: &BTreeMap<String, u32>,
) -> Result<u32, String> {
    match id {
        None => Ok(0),
        Some(Id::Number(number)) => Ok(*number),
        Some(Id::Name(name)) if name.is_empty() || name == "root" => Ok(0),
        Some(Id::Name(name)) => ids
            .get(name)
            .copied()
            .ok_or_else(|| format!("{field}: no container is named `{name}`")),
    }
}

/// runtime.json: each key from the manifest, else the label; bindNS per namespace; volume
/// names in bind mounts rewritten like the container's own.
fn runtime_of(
    yaml: Option<&RuntimeConfig>,
    label: Option<&RuntimeConfig>,
    context: &Context,
) -> spec::Runtime {
    let empty = RuntimeConfig::default();
    let (yaml, label) = (yaml.unwrap_or(&empty), label.unwrap_or(&empty));
    let either = |y: &Option<Vec<String>>, l: &Option<Vec<String>>| {
        y.clone().or_else(|| l.clone()).unwrap_or_default()
    };
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
    let mut mounts = yaml
        .mounts
        .clone()
        .or_else(|| label.mounts.clone())
        .unwrap_or_default();
    for mount in &mut mounts {
        if let Some(volume) = mounts::mount_volume(mount) {
            if context.volumes.contains(volume) {
                mount.source = volume_merged(volume);
            }
        }
    }
    spec::Runtime {
        cgroups: either(&yaml.cgroups, &label.cgroups),
        mounts,
        mkdir: either(&yaml.mkdir, &label.mkdir),
        interfaces: yaml
            .interfaces
            .clone()
            .or_else(|| label.interfaces.clone())
            .unwrap_or_default(),
        bind_ns,
        namespace: yaml
            .namespace
            .clone()
            .or_else(|| label.namespace.clone())
            .unwrap_or_default(),
        restart: yaml.restart.or(label.restart),
        depends_on: either(&yaml.depends_on, &label.depends_on),
        ready: yaml.ready.clone().or_else(|| label.ready.clone()),
        stop_signal: yaml
            .stop_signal
            .clone()
            .or_else(|| label.stop_signal.clone()),
        stop_timeout: yaml.stop_timeout.or(label.stop_timeout),
        timeout: yaml.timeout.or(label.timeout),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::diagnostic::Report;
    use crate::manifest;

    /// The first service of a manifest written as YAML.
    fn entry(yaml: &str) -> Image {
        let mut report = Report::default();
        let manifest = manifest::parse(&mut report, "t.yml", yaml);
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        manifest.services.into_iter().next().expect("a service")
    }

    fn image_config() -> Config {
        serde_json::from_value(json!({
            "Entrypoint": ["/bin/sh"],
            "Cmd": ["-c", "echo hi"],
            "Env": ["PATH=/usr/bin:/bin"],
            "WorkingDir": ""
        }))
        .expect("image config")
    }

    fn context() -> Context {
        Context {
            ids: [("getty".to_owned(), 100), ("sshd".to_owned(), 101)].into(),
            volumes: ["data".to_owned()].into(),
        }
    }

    /// config.json as a JSON value, for field-by-field comparison.
    fn convert_json(yaml: &str, label: Value) -> Value {
        let label: ImageConfig = serde_json::from_value(label).expect("label");
        let configs = convert(&entry(yaml), &label, &image_config(), &context()).expect("convert");
        serde_json::from_slice(&configs.spec_json().expect("json")).expect("parse back")
    }

    fn convert_err(yaml: &str, label: Value) -> String {
        let label: ImageConfig = serde_json::from_value(label).expect("label");
        convert(&entry(yaml), &label, &image_config(), &context()).expect_err("an error")
    }

    const PLAIN: &str = "services:\n  - name: s\n    image: alpine\n";

    #[test]
    fn defaults_follow_linuxkit() {
        let spec = convert_json(PLAIN, json!({}));
        assert_eq!(spec["process"]["args"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(spec["process"]["env"], json!(["PATH=/usr/bin:/bin"]));
        assert_eq!(spec["process"]["cwd"], json!("/"));
        assert_eq!(spec["process"]["terminal"], json!(false));
        assert_eq!(spec["process"]["noNewPrivileges"], json!(false));
        assert_eq!(spec["process"]["user"], json!({"uid": 0, "gid": 0}));
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(spec["process"]["capabilities"][set], json!([]), "{set}");
        }
        assert_eq!(spec["root"], json!({"path": "rootfs", "readonly": false}));
        assert_eq!(spec.get("hostname"), None);
        assert_eq!(
            spec["mounts"],
            json!([
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/proc", "type": "proc", "source": "proc",
                 "options": ["nosuid", "nodev", "noexec", "relatime"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            ])
        );
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "mount"}])
        );
        assert_eq!(spec["process"].get("rlimits"), Some(&json!([])));
        assert_eq!(spec["linux"].get("devices"), None);
        assert_eq!(spec["linux"].get("maskedPaths"), None);
        assert_eq!(spec["linux"].get("seccomp"), None);
    }

    #[test]
    fn the_manifest_wins_over_the_label_which_wins_over_the_image() {
        let label = json!({
            "command": ["/usr/sbin/getty"],
            "env": ["TERM=linux"],
            "cwd": "/root",
            "pid": "host",
            "net": "new",
            "hostname": "from-label",
            "binds": ["/etc/resolv.conf:/etc/resolv.conf", "/var:/var:rshared"],
            "capabilities": ["CAP_NET_ADMIN"],
            "readonly": true,
            "oomScoreAdj": -800,
            "sysctl": {"net.ipv4.ip_forward": "1"},
        });
        let spec = convert_json(PLAIN, label.clone());
        assert_eq!(spec["process"]["args"], json!(["/usr/sbin/getty"]));
        assert_eq!(spec["process"]["env"], json!(["TERM=linux"]));
        assert_eq!(spec["process"]["cwd"], json!("/root"));
        assert_eq!(spec["process"]["oomScoreAdj"], json!(-800));
        assert_eq!(spec["hostname"], json!("from-label"));
        assert_eq!(spec["root"]["readonly"], json!(true));
        assert_eq!(spec["linux"]["sysctl"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "network"}, {"type": "mount"}])
        );
        // readonly adds `ro` to /dev and /sys.
        let mount = |dest: &str| {
            spec["mounts"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["destination"] == json!(dest)))
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(mount("/dev")["options"][4], json!("ro"));
        assert_eq!(mount("/sys")["options"][3], json!("ro"));
        assert_eq!(
            mount("/var"),
            json!({"destination": "/var", "type": "bind", "source": "/var",
                   "options": ["rshared", "rbind"]})
        );
        assert_eq!(
            mount("/etc/resolv.conf")["options"],
            json!(["rw", "rbind", "rshared"])
        );

        // The manifest's fields replace the label's; `.add` adds to the label's lists.
        let yaml = "services:\n  - name: s\n    image: alpine\n    command: [/bin/true]\n    \
                    env: []\n    pid: new\n    readonly: false\n    \
                    capabilities.add: [CAP_SYS_ADMIN]\n    binds.add: [/run:/run:ro]\n";
        let spec = convert_json(yaml, label.clone());
        assert_eq!(spec["process"]["args"], json!(["/bin/true"]));
        assert_eq!(spec["process"]["env"], json!([]));
        assert_eq!(spec["root"]["readonly"], json!(false));
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "network"}, {"type": "pid"}, {"type": "mount"}])
        );
        assert_eq!(
            spec["process"]["capabilities"]["effective"],
            json!(["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
        );
        let dests: Vec<&Value> = spec["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| &m["destination"])
            .collect();
        assert_eq!(
            dests,
            [
                "/dev",
                "/dev/pts",
                "/etc/resolv.conf",
                "/proc",
                "/run",
                "/sys",
                "/sys/fs/cgroup",
                "/var"
            ]
        );
        // A plain list replaces the label's, even an empty one; `.add` is then ignored.
        let yaml = "services:\n  - name: s\n    image: alpine\n    binds: []\n    \
                    binds.add: [/run:/run]\n    capabilities: [CAP_KILL]\n    \
                    capabilities.add: [CAP_SYS_ADMIN]\n";
        let spec = convert_json(yaml, label);
        assert_eq!(spec["mounts"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            spec["process"]["capabilities"]["effective"],
            json!(["CAP_KILL"])
        );
    }

    #[test]
    fn capabilities_all_none_and_ambient() {
        let spec = convert_json(PLAIN, json!({"capabilities": ["all"]}));
        let all = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .map(Vec::len);
        assert_eq!(all, Some(ALL_CAPABILITIES.len()));
        let yaml = "services:\n  - name: s\n    image: alpine\n    capabilities: [none]\n    \
                    ambient: [CAP_NET_RAW]\n";
        let spec = convert_json(yaml, json!({"capabilities": ["all"]}));
        let caps = &spec["process"]["capabilities"];
        assert_eq!(caps["effective"], json!([]));
        assert_eq!(caps["ambient"], json!(["CAP_NET_RAW"]));
        for set in ["bounding", "inheritable", "permitted"] {
            assert_eq!(caps[set], json!(["CAP_NET_RAW"]), "{set}");
        }
        // LinuxKit's rule: `all` in the label plus `.add` is not a list of capabilities.
        let yaml = "services:\n  - name: s\n    image: alpine\n    capabilities.add: [CAP_KILL]\n";
        let err = convert_err(yaml, json!({"capabilities": ["all"]}));
        assert_eq!(err, "capabilities[0]: unknown capability `all`");
    }

    #[test]
    fn ids_volumes_devices_and_limits() {
        let yaml = "services:\n  - name: s\n    image: alpine\n    uid: getty\n    gid: 7\n    \
                    additionalGids: [sshd, root, 3]\n    binds: [data:/data:ro]\n    \
                    mounts:\n      - {type: bind, source: data, destination: /m, options: [rbind]}\n      \
                    - {source: proc, options: [nosuid]}\n    tmpfs: [/dev:size=1m]\n    \
                    devices:\n      - {path: /dev/console, type: c, major: 5, minor: 1, mode: \"0620\"}\n      \
                    - {path: all, type: b}\n    rlimits: [\"nofile,1024,unlimited\"]\n    \
                    resources: {memory: {limit: 1048576}, pids: {limit: 10}}\n";
        let spec = convert_json(yaml, json!({}));
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 100, "gid": 7, "additionalGids": [101, 0, 3]})
        );
        let mounts = spec["mounts"].as_array().expect("mounts");
        let find = |dest: &str| mounts.iter().find(|m| m["destination"] == json!(dest));
        assert_eq!(
            find("/data"),
            Some(&json!({"destination": "/data", "type": "bind",
                         "source": "/containers/volumes/data/merged", "options": ["ro", "rbind"]}))
        );
        assert_eq!(
            find("/m").map(|m| &m["source"]),
            Some(&json!("/containers/volumes/data/merged"))
        );
        assert_eq!(
            find("/proc"),
            Some(
                &json!({"destination": "/proc", "type": "proc", "source": "proc",
                         "options": ["nosuid"]})
            )
        );
        assert_eq!(
            find("/dev"),
            Some(
                &json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                         "options": ["size=1m"]})
            )
        );
        assert_eq!(
            spec["linux"]["devices"],
            json!([{"path": "/dev/console", "type": "c", "major": 5, "minor": 1,
                    "fileMode": 0o620}])
        );
        assert_eq!(
            spec["linux"]["resources"]["devices"],
            json!([
                {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
                {"allow": true, "type": "b", "access": "rwm"},
            ])
        );
        assert_eq!(
            spec["linux"]["resources"]["memory"],
            json!({"limit": 1048576})
        );
        assert_eq!(spec["linux"]["resources"]["pids"], json!({"limit": 10}));
        assert_eq!(
            spec["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": u64::MAX}])
        );

        let unknown_uid = "services:\n  - name: s\n    image: alpine\n    uid: nobody\n";
        assert_eq!(
            convert_err(unknown_uid, json!({})),
            "uid: no container is named `nobody`"
        );
        let unknown_volume =
            "services:\n  - name: s\n    image: alpine\n    binds.add: [cache:/c]\n";
        assert_eq!(
            convert_err(unknown_volume, json!({})),
            "binds.add[0]: no volume is named `cache`"
        );
        let no_command: ImageConfig = ImageConfig::default();
        let err = convert(&entry(PLAIN), &no_command, &Config::default(), &context())
            .expect_err("no command");
        assert!(err.starts_with("command: "), "{err}");
    }

    #[test]
    fn runtime_json_merges_per_key() {
        let yaml = "services:\n  - name: s\n    image: alpine\n    runtime:\n      \
                    cgroups: [kiln/s]\n      bindNS: {net: /run/netns/s}\n      \
                    mounts: [{type: bind, source: data, destination: /var/data}]\n      \
                    restart: always\n";
        let label = json!({"runtime": {
            "cgroups": ["label"], "mkdir": ["/var/lib/s"],
            "bindNS": {"net": "/run/netns/label", "uts": "/run/uts/s"},
            "stopTimeout": 3,
        }});
        let label: ImageConfig = serde_json::from_value(label).expect("label");
        let configs = convert(&entry(yaml), &label, &image_config(), &context()).expect("convert");
        let runtime: Value =
            serde_json::from_slice(&configs.runtime_json().expect("json")).expect("parse");
        assert_eq!(runtime["cgroups"], json!(["kiln/s"]));
        assert_eq!(runtime["mkdir"], json!(["/var/lib/s"]));
        assert_eq!(
            runtime["bindNS"],
            json!({"net": "/run/netns/s", "uts": "/run/uts/s"})
        );
        assert_eq!(
            runtime["mounts"][0]["source"],
            json!("/containers/volumes/data/merged")
        );
        assert_eq!(runtime["restart"], json!("always"));
        assert_eq!(runtime["stopTimeout"], json!(3));
    }

    #[test]
    fn config_json_is_the_same_bytes_every_time() {
        let label: ImageConfig = serde_json::from_value(json!({
            "capabilities": ["all"],
            "annotations": {"b": "2", "a": "1"},
            "sysctl": {"z": "1", "y": "2"},
        }))
        .expect("label");
        let bytes = |_: usize| {
            convert(&entry(PLAIN), &label, &image_config(), &context())
                .expect("convert")
                .spec_json()
                .expect("json")
        };
        let first = bytes(0);
        for run in 1..20 {
            assert_eq!(bytes(run), first);
        }
    }
}
