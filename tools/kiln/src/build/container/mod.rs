//! An onboot, onshutdown or service entry turned into its bundle's config.json (OCI runtime
//! spec) and runtime.json, with LinuxKit's rules: each field comes from the manifest, else the
//! image's `org.mobyproject.config` label, else the image config (command, env, cwd), else the
//! built-in default: five default mounts (overridden by tmpfs < binds < mounts on the same
//! destination, sorted by destination), new pid and mount namespaces, no capabilities.
//! `capabilities.add` and `binds.add` add to the label's list. Volume names in binds and bind
//! mounts become `/containers/volumes/NAME/merged`. Kiln's runtime keys pass into runtime.json.
//! Runs in: `kiln` on the build host. Pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oci_spec::image::Config;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, PosixRlimit, PosixRlimitBuilder,
    Process, ProcessBuilder, RootBuilder, Spec, User, UserBuilder,
};
use spec::layout::Layout as Containers;

use crate::manifest::entry::{Id, Image, ImageConfig, RuntimeConfig};
use crate::manifest::process::{self, ALL_CAPABILITIES};
use layers::Layers;

mod layers;
mod linux;
mod mounts;
mod runtime;

/// Where a volume is mounted at boot, for binds that name it.
pub fn volume_merged(name: &str) -> String {
    Containers::default()
        .volume(name)
        .merged()
        .display()
        .to_string()
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
    let layers = Layers {
        manifest: &entry.config,
        label,
    };
    let args = command_of(&layers, image)?;
    let readonly = layers.get(|c| &c.readonly).unwrap_or(false);
    let mounts = mounts::mounts_of(&layers, readonly, context)?;
    let process = process_of(&layers, args, image, context)?;
    let linux = linux::linux_of(&layers)?;
    let root = RootBuilder::default()
        .path(spec::layout::ROOTFS)
        .readonly(readonly)
        .build()
        .map_err(invalid("root"))?;
    let mut spec = Spec::default();
    spec.set_process(Some(process))
        .set_root(Some(root))
        .set_hostname(layers.non_empty(|c| &c.hostname))
        .set_mounts(Some(mounts))
        .set_annotations(string_map(layers.get(|c| &c.annotations)))
        .set_linux(Some(linux));
    let empty = RuntimeConfig::default();
    let runtime = Layers {
        manifest: entry.config.runtime.as_ref().unwrap_or(&empty),
        label: label.runtime.as_ref().unwrap_or(&empty),
    };
    Ok(Configs {
        spec,
        runtime: runtime::runtime_of(&runtime, context),
    })
}

/// A string map as config.json writes it: left out when absent or empty.
fn string_map(map: Option<BTreeMap<String, String>>) -> Option<HashMap<String, String>> {
    map.filter(|map| !map.is_empty())
        .map(|map| map.into_iter().collect())
}

/// An error of oci-spec's builders, named by the part of config.json being built.
fn invalid(what: &str) -> impl Fn(oci_spec::OciSpecError) -> String + '_ {
    move |err| format!("{what}: {err}")
}

/// The command: the manifest's, else the label's, else the image's entrypoint and cmd.
fn command_of(layers: &Layers<'_, ImageConfig>, image: &Config) -> Result<Vec<String>, String> {
    let image_command: Vec<String> = image
        .entrypoint()
        .iter()
        .chain(image.cmd())
        .flatten()
        .cloned()
        .collect();
    let args = layers.get(|c| &c.command).unwrap_or(image_command);
    if args.is_empty() {
        return Err("command: the image has no entrypoint or cmd and no `command` is set".into());
    }
    Ok(args)
}

/// config.json's process: the command, env and working directory (else the image's), the
/// user and groups, capabilities, rlimits, no_new_privileges and the OOM score.
fn process_of(
    layers: &Layers<'_, ImageConfig>,
    args: Vec<String>,
    image: &Config,
    context: &Context,
) -> Result<Process, String> {
    let env = layers
        .get(|c| &c.env)
        .or_else(|| image.env().clone())
        .unwrap_or_default();
    let cwd = layers
        .non_empty(|c| &c.cwd)
        .or_else(|| image.working_dir().clone().filter(|dir| !dir.is_empty()))
        .unwrap_or_else(|| "/".into());
    let capabilities = capabilities_of(layers)?;
    let rlimits = rlimits_of(layers)?;
    let user = user_of(layers, context)?;
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(layers.get(|c| &c.no_new_privileges).unwrap_or(false))
        .build()
        .map_err(invalid("process"))?;
    process.set_oom_score_adj(layers.get(|c| &c.oom_score_adj));
    Ok(process)
}

/// The capability sets: `capabilities` (or the label's plus `capabilities.add`) effective,
/// and with `ambient` also bounding, inheritable and permitted.
fn capabilities_of(layers: &Layers<'_, ImageConfig>) -> Result<LinuxCapabilities, String> {
    let caps = layers
        .with_added("capabilities", |c| &c.capabilities, |c| &c.capabilities_add)
        .into_iter()
        .map(|(_, cap)| cap.clone())
        .collect();
    let caps = expand_capabilities("capabilities", caps)?;
    let ambient = expand_capabilities("ambient", layers.list(|c| &c.ambient))?;
    let bounding: Vec<Capability> = caps.iter().chain(&ambient).copied().collect();
    let set = |caps: &[Capability]| {
        caps.iter()
            .copied()
            .collect::<oci_spec::runtime::Capabilities>()
    };
    LinuxCapabilitiesBuilder::default()
        .bounding(set(&bounding))
        .effective(set(&caps))
        .inheritable(set(&bounding))
        .permitted(set(&bounding))
        .ambient(set(&ambient))
        .build()
        .map_err(invalid("capabilities"))
}

/// `rlimits` entries (`name,soft,hard`) as POSIX rlimits.
fn rlimits_of(layers: &Layers<'_, ImageConfig>) -> Result<Vec<PosixRlimit>, String> {
    let mut rlimits = Vec::new();
    for (i, text) in layers.list(|c| &c.rlimits).iter().enumerate() {
        let rlimit = process::parse_rlimit(text).map_err(|err| format!("rlimits[{i}]: {err}"))?;
        let limit = PosixRlimitBuilder::default()
            .typ(rlimit.kind)
            .soft(rlimit.soft)
            .hard(rlimit.hard)
            .build()
            .map_err(|err| format!("rlimits[{i}]: {err}"))?;
        rlimits.push(limit);
    }
    Ok(rlimits)
}

/// The user: uid, gid and additional gids, names resolved to the containers' allocated ids.
fn user_of(layers: &Layers<'_, ImageConfig>, context: &Context) -> Result<User, String> {
    let id = |field: &str, id: Option<&Id>| numeric_id(field, id, &context.ids);
    let uid = id("uid", layers.get_ref(|c| &c.uid))?;
    let gid = id("gid", layers.get_ref(|c| &c.gid))?;
    let mut additional_gids = Vec::new();
    let groups = layers.get_ref(|c| &c.additional_gids);
    for (i, group) in groups.into_iter().flatten().enumerate() {
        additional_gids.push(id(&format!("additionalGids[{i}]"), Some(group))?);
    }
    let mut user = UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .build()
        .map_err(invalid("uid"))?;
    user.set_additional_gids(Some(additional_gids).filter(|gids| !gids.is_empty()));
    Ok(user)
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::manifest;
    use crate::manifest::diagnostic::Report;

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
                    restart: always\n      watchdog: 9\n      \
                    healthcheck: {tcp: \"127.0.0.1:80\", retries: 5}\n";
        let label = json!({"runtime": {
            "cgroups": ["label"], "mkdir": ["/var/lib/s"],
            "bindNS": {"net": "/run/netns/label", "uts": "/run/uts/s"},
            "stopTimeout": 3, "init": true, "watchdog": 30,
            "healthcheck": {"exec": ["true"]},
            "restartLimit": {"burst": 3, "interval": 10}, "onFailure": "poweroff",
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
        assert_eq!(runtime["init"], json!(true));
        assert_eq!(runtime["watchdog"], json!(9));
        assert_eq!(
            runtime["healthcheck"],
            json!({"tcp": "127.0.0.1:80", "retries": 5}),
            "the manifest's healthcheck replaces the label's whole"
        );
        assert_eq!(runtime["restartLimit"], json!({"burst": 3, "interval": 10}));
        assert_eq!(runtime["onFailure"], json!("poweroff"));
        let off = "services:\n  - name: s\n    image: alpine\n    runtime:\n      init: false\n";
        let configs = convert(&entry(off), &label, &image_config(), &context()).expect("convert");
        let runtime: Value =
            serde_json::from_slice(&configs.runtime_json().expect("json")).expect("parse");
        assert_eq!(
            runtime.get("init"),
            None,
            "the manifest's false wins: {runtime}"
        );
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
