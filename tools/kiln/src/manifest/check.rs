//! The rules a decoded (and merged) manifest must follow beyond its types: names, image
//! references, volumes and the binds that use them, mounts, capabilities, rlimits, devices,
//! namespaces, uid/gid names, files, runtime.json (by the spec crate's rules), and Kiln's
//! `dependsOn` graph. Every problem is reported at its file, line and path.
//! Runs in: `kiln` on the build host. Pure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path};

use crate::manifest::diagnostic::{Origin, Report};
use crate::manifest::document::FieldPath;
use crate::manifest::entry::{Id, Image, ImageConfig};
use crate::manifest::mounts::{self, Bind};
use crate::manifest::process;
use crate::manifest::reference::ImageSource;
use crate::manifest::{File, Manifest, Volume};
use crate::tree;

/// The propagation modes a root filesystem can have.
const PROPAGATIONS: [&str; 8] = [
    "shared",
    "slave",
    "private",
    "unbindable",
    "rshared",
    "rslave",
    "rprivate",
    "runbindable",
];

/// The system's mounts that init makes private: no container's mount reaches them.
const SYSTEM_MOUNTS: [&str; 3] = ["/sys", "/proc", "/dev"];

/// Checks `manifest`, adding every problem to `report`.
pub fn check(manifest: &Manifest, report: &mut Report) {
    let mut checker = Checker {
        report,
        volumes: HashMap::new(),
        names: manifest
            .onboot
            .iter()
            .chain(&manifest.onshutdown)
            .chain(&manifest.services)
            .map(|image| image.name.as_str())
            .collect(),
    };
    if let Some(kernel) = &manifest.kernel {
        if !kernel.image.is_empty() {
            checker.reference(
                &kernel.origin,
                &FieldPath::root().key("image"),
                &kernel.image,
            );
        }
        // The files a build takes from the kernel's image: paths inside it.
        let tar = kernel
            .tar
            .as_deref()
            .filter(|tar| !matches!(*tar, "" | "none"));
        let ucode = kernel.ucode.as_deref().filter(|ucode| !ucode.is_empty());
        let binary = (!kernel.binary.is_empty()).then_some(kernel.binary.as_str());
        for (key, path) in [("binary", binary), ("tar", tar), ("ucode", ucode)] {
            let problem = match path.map(tree::key) {
                None | Some(Ok(Some(_))) => continue,
                Some(Ok(None)) => format!(
                    "`{}` is the image's root, not a file",
                    path.unwrap_or_default()
                ),
                Some(Err(err)) => err,
            };
            checker
                .report
                .at(&kernel.origin, &FieldPath::root().key(key), problem);
        }
        for (index, pattern) in kernel.modules.iter().enumerate() {
            if let Some(problem) = spec::modules::pattern_problem(pattern) {
                let path = FieldPath::root().key("modules").index(index);
                checker.report.at(&kernel.origin, &path, problem);
            }
        }
    }
    for (reference, origin) in manifest.init.iter().zip(&manifest.init_origins) {
        checker.reference(origin, &FieldPath::root(), reference);
    }
    for volume in &manifest.volumes {
        checker.volume(volume);
    }
    for (section, images) in [
        ("onboot", &manifest.onboot),
        ("onshutdown", &manifest.onshutdown),
        ("services", &manifest.services),
    ] {
        for image in images {
            checker.image(section, image);
        }
    }
    checker.unique_services(&manifest.services);
    checker.dependencies(manifest);
    for file in &manifest.files {
        checker.file(file);
    }
}

struct Checker<'m, 'r> {
    report: &'r mut Report,
    volumes: HashMap<&'m str, &'m Volume>,
    /// Every container name, usable as a uid or gid.
    names: HashSet<&'m str>,
}

fn field(key: &str) -> FieldPath {
    FieldPath::root().key(key)
}

impl<'m> Checker<'m, '_> {
    fn reference(&mut self, origin: &Origin, at: &FieldPath, reference: &str) {
        if let Err(message) = ImageSource::parse(reference) {
            self.report.at(origin, at, message);
        }
    }

    fn volume(&mut self, volume: &'m Volume) {
        let origin = &volume.origin;
        let name = &volume.name;
        if name.is_empty() {
            self.report.at(origin, &FieldPath::root(), "missing `name`");
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            self.report.at(
                origin,
                &field("name"),
                format!("`{name}` may only hold a-z, 0-9, `_` and `-`"),
            );
        } else if let Some(first) = self.volumes.insert(name, volume) {
            let first = first.origin.clone();
            self.report.at(
                origin,
                &field("name"),
                format!(
                    "`{name}` is already the name of {}",
                    self.report.describe(&first)
                ),
            );
        }
        if !volume.image.is_empty() {
            self.reference(origin, &field("image"), &volume.image);
        }
        if let Some(format) = &volume.format {
            if format != "filesystem" && format != "oci" {
                self.report.at(
                    origin,
                    &field("format"),
                    format!("`{format}` is neither `filesystem` nor `oci`"),
                );
            }
        }
        for (i, platform) in volume.platforms.iter().enumerate() {
            let parts: Vec<&str> = platform.split('/').collect();
            if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
                self.report.at(
                    origin,
                    &field("platforms").index(i),
                    format!("`{platform}` is not os/arch[/variant], such as linux/amd64"),
                );
            }
        }
    }

    fn image(&mut self, section: &str, image: &'m Image) {
        let origin = &image.origin;
        if image.name.chars().count() > spec::layout::MAX_NAME_LEN {
            let start: String = image.name.chars().take(16).collect();
            self.report.at(
                origin,
                &field("name"),
                format!(
                    "`{start}...` is {} characters; a name has at most {} (it names the \
                     entry's directory, logs, cgroup and notify socket on the image)",
                    image.name.chars().count(),
                    spec::layout::MAX_NAME_LEN
                ),
            );
        } else if !image.name.is_empty() && !spec::layout::is_valid_id(&image.name) {
            self.report.at(
                origin,
                &field("name"),
                format!(
                    "`{}` cannot name a container: use letters, digits, `.`, `_`, `-` and `+`, \
                     not starting with `.`",
                    image.name
                ),
            );
        }
        if !image.image.is_empty() {
            self.reference(origin, &field("image"), &image.image);
        }
        self.config(section, origin, &image.config);
    }

    /// The container settings of an entry or a label, in field order.
    fn config(&mut self, section: &str, origin: &Origin, config: &ImageConfig) {
        if config.command.as_ref().is_some_and(Vec::is_empty) {
            self.report.at(
                origin,
                &field("command"),
                "is empty: nothing would run (leave `command` out to run the image's entrypoint and cmd)",
            );
        }
        self.config_capabilities(origin, config);
        self.config_mounts(origin, config);
        self.config_process(origin, config);
        self.config_paths(origin, config);
        self.config_runtime(section, origin, config);
    }

    /// Capability lists: `capabilities`, `capabilities.add` and `ambient`.
    fn config_capabilities(&mut self, origin: &Origin, config: &ImageConfig) {
        for (key, list, is_add) in [
            ("capabilities", &config.capabilities, false),
            ("capabilities.add", &config.capabilities_add, true),
            ("ambient", &config.ambient, false),
        ] {
            for (i, message) in
                process::capability_problems(list.as_deref().unwrap_or_default(), is_add)
            {
                self.report.at(origin, &field(key).index(i), message);
            }
        }
    }

    /// binds, tmpfs and mounts (and the volumes they use), and devices.
    fn config_mounts(&mut self, origin: &Origin, config: &ImageConfig) {
        let shared_root = config
            .rootfs_propagation
            .as_deref()
            .is_some_and(|p| matches!(p, "shared" | "rshared"));
        for (key, list) in [("binds", &config.binds), ("binds.add", &config.binds_add)] {
            for (i, text) in list.iter().flatten().enumerate() {
                let at = field(key).index(i);
                match Bind::parse(text) {
                    Err(message) => self.report.at(origin, &at, message),
                    Ok(bind) => {
                        if let Some(name) = bind.volume() {
                            let read_only = bind.written_options.as_deref() == Some("ro");
                            self.volume_use(origin, &at, name, read_only, "give the bind `:ro`");
                        }
                        let shared = match bind.written_options.as_deref() {
                            Some(written) => mounts::is_shared(written.split(',')),
                            None => shared_root,
                        };
                        self.system_mount_shared(origin, &at, &bind.source, shared);
                    }
                }
            }
        }
        for (i, text) in config.tmpfs.iter().flatten().enumerate() {
            if let Err(message) = mounts::parse_tmpfs(text) {
                self.report.at(origin, &field("tmpfs").index(i), message);
            }
        }
        for (i, mount) in config.mounts.iter().flatten().enumerate() {
            let at = field("mounts").index(i);
            if let Err(message) = mounts::infer(mount) {
                self.report.at(origin, &at, message);
            }
            if let Some(name) = mounts::mount_volume(mount) {
                let read_only = mounts::is_read_only(&mount.options);
                self.volume_use(origin, &at, name, read_only, "add `ro` to its options");
            }
            let options = || mount.options.iter().map(String::as_str);
            let is_bind = mount.kind == "bind" || options().any(|o| o.ends_with("bind"));
            if is_bind {
                let shared = mounts::is_shared(options()) || shared_root;
                self.system_mount_shared(origin, &at, &mount.source, shared);
            }
        }
        for (i, device) in config.devices.iter().flatten().enumerate() {
            for (key, message) in process::device_problems(device) {
                self.report
                    .at(origin, &field("devices").index(i).key(key), message);
            }
        }
    }

    /// Warns where a bind of /sys, /proc or /dev (or below) asks for shared propagation: the
    /// system makes those mounts private, so that a container's read-only cgroup or masked
    /// paths cannot cover the system's own, and mounts made below them stay in the container.
    fn system_mount_shared(&mut self, origin: &Origin, at: &FieldPath, source: &str, shared: bool) {
        let system = SYSTEM_MOUNTS
            .iter()
            .find(|mount| Path::new(source).starts_with(mount));
        if let (Some(system), true) = (system, shared) {
            self.report.warn(
                origin,
                at,
                format!(
                    "binds {source} with shared propagation, which the system's {system} does \
                     not take: it is private, so mounts made below it stay in this container \
                     (and none can cover the system's own, as a read-only /sys/fs/cgroup would)"
                ),
            );
        }
    }

    /// namespaces, the hostname, uid, gid and groups, rlimits and the OOM score.
    fn config_process(&mut self, origin: &Origin, config: &ImageConfig) {
        for (key, value) in [
            ("net", &config.net),
            ("ipc", &config.ipc),
            ("uts", &config.uts),
            ("pid", &config.pid),
            ("userns", &config.userns),
        ] {
            if let Some(message) = value
                .as_deref()
                .and_then(|v| process::namespace_problem(key, v))
            {
                self.report.at(origin, &field(key), message);
            }
        }
        if config.hostname.as_deref().is_some_and(|h| !h.is_empty())
            && config.uts.as_deref() != Some("new")
        {
            self.report.at(
                origin,
                &field("hostname"),
                "needs `uts: new`: a container sharing the host's UTS namespace cannot set a hostname",
            );
        }
        for (key, id) in [("uid", &config.uid), ("gid", &config.gid)] {
            if let Some(id) = id {
                self.id(origin, &field(key), id);
            }
        }
        for (i, id) in config.additional_gids.iter().flatten().enumerate() {
            self.id(origin, &field("additionalGids").index(i), id);
        }
        for (i, text) in config.rlimits.iter().flatten().enumerate() {
            if let Err(message) = process::parse_rlimit(text) {
                self.report.at(origin, &field("rlimits").index(i), message);
            }
        }
        if let Some(score) = config.oom_score_adj {
            if !(-1000..=1000).contains(&score) {
                self.report.at(
                    origin,
                    &field("oomScoreAdj"),
                    format!("{score} is outside -1000..1000"),
                );
            }
        }
    }

    /// rootfs propagation, the cgroups path, cwd, masked and read-only paths, sysctl names.
    fn config_paths(&mut self, origin: &Origin, config: &ImageConfig) {
        if let Some(propagation) = &config.rootfs_propagation {
            if !PROPAGATIONS.contains(&propagation.as_str()) {
                self.report.at(
                    origin,
                    &field("rootfsPropagation"),
                    format!("`{propagation}` is not one of {}", PROPAGATIONS.join(", ")),
                );
            }
        }
        if let Some(path) = &config.cgroups_path {
            if let Some(message) = cgroups_path_problem(path) {
                self.report.at(origin, &field("cgroupsPath"), message);
            }
        }
        if let Some(cwd) = config.cwd.as_deref().filter(|cwd| !cwd.is_empty()) {
            if !cwd.starts_with('/') {
                self.report.at(
                    origin,
                    &field("cwd"),
                    format!("`{cwd}` is not an absolute path"),
                );
            }
        }
        for (key, list) in [
            ("maskedPaths", &config.masked_paths),
            ("readonlyPaths", &config.readonly_paths),
        ] {
            for (i, path) in list.iter().flatten().enumerate() {
                if !path.starts_with('/') {
                    self.report.at(
                        origin,
                        &field(key).index(i),
                        format!("`{path}` is not an absolute path"),
                    );
                }
            }
        }
        for key in config.sysctl.iter().flat_map(BTreeMap::keys) {
            if key.is_empty() || key.contains(char::is_whitespace) {
                self.report.at(
                    origin,
                    &field("sysctl"),
                    format!("`{key}` is not a sysctl name"),
                );
            }
        }
    }

    /// runtime.json's keys (by the spec crate's rules), and the keys only services or only one-shot containers have.
    fn config_runtime(&mut self, section: &str, origin: &Origin, config: &ImageConfig) {
        if let Some(runtime) = &config.runtime {
            let at = field("runtime");
            for problem in runtime.to_runtime().check() {
                self.report.at(
                    origin,
                    &at.join(&FieldPath::parse(&problem.field)),
                    problem.message,
                );
            }
            if section != "services" {
                for key in runtime.service_keys() {
                    self.report.at(
                        origin,
                        &at.key(key),
                        format!("only services have `{key}`; {section} containers run once"),
                    );
                }
            } else if runtime.timeout.is_some() {
                self.report.at(
                    origin,
                    &at.key("timeout"),
                    "only onboot and onshutdown containers have a `timeout`; use `stopTimeout` for a service",
                );
            }
        }
    }

    fn volume_use(
        &mut self,
        origin: &Origin,
        at: &FieldPath,
        name: &str,
        read_only: bool,
        fix: &str,
    ) {
        match self.volumes.get(name) {
            None => self.report.at(
                origin,
                at,
                format!(
                    "no volume is named `{name}` (a source without a leading `/` names a volume)"
                ),
            ),
            Some(volume) if volume.readonly && !read_only => self.report.at(
                origin,
                at,
                format!("volume `{name}` is read-only, but this mounts it read-write; {fix}"),
            ),
            Some(_) => {}
        }
    }

    fn id(&mut self, origin: &Origin, at: &FieldPath, id: &Id) {
        if let Id::Name(name) = id {
            if !name.is_empty() && name != "root" && !self.names.contains(name.as_str()) {
                self.report.at(
                    origin,
                    at,
                    format!(
                        "no container is named `{name}`; a user or group name must be `root` or \
                         the name of an onboot, onshutdown or services entry"
                    ),
                );
            }
        }
    }

    fn unique_services(&mut self, services: &[Image]) {
        let mut seen: HashMap<&str, &Origin> = HashMap::new();
        for service in services.iter().filter(|s| !s.name.is_empty()) {
            if let Some(first) = seen.insert(&service.name, &service.origin) {
                let first = self.report.describe(first);
                self.report.at(
                    &service.origin,
                    &field("name"),
                    format!("`{}` is already the name of {first}", service.name),
                );
            }
        }
    }

    /// Kiln's `runtime.dependsOn`: every name is a service, and no service waits on itself.
    fn dependencies(&mut self, manifest: &Manifest) {
        let services: HashMap<&str, &Image> = manifest
            .services
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let others: HashSet<&str> = manifest
            .onboot
            .iter()
            .chain(&manifest.onshutdown)
            .map(|image| image.name.as_str())
            .collect();
        let depends_on = |image: &Image| -> Vec<String> {
            image
                .config
                .runtime
                .as_ref()
                .and_then(|r| r.depends_on.clone())
                .unwrap_or_default()
        };
        for service in &manifest.services {
            for (i, name) in depends_on(service).iter().enumerate() {
                let at = field("runtime").key("dependsOn").index(i);
                if services.contains_key(name.as_str()) {
                    continue;
                }
                let message = if others.contains(name.as_str()) {
                    format!("`{name}` is not a service; onboot containers have all run before any service starts")
                } else {
                    format!("no service is named `{name}`")
                };
                self.report.at(&service.origin, &at, message);
            }
        }
        // Depth-first search; a cycle is reported once, at the service where it is first seen.
        let mut done: HashSet<&str> = HashSet::new();
        for start in &manifest.services {
            if done.contains(start.name.as_str()) {
                continue;
            }
            // (service, its dependencies, the next one to visit)
            let mut stack: Vec<(&str, Vec<String>, usize)> =
                vec![(start.name.as_str(), depends_on(start), 0)];
            let mut on_path: Vec<&str> = vec![start.name.as_str()];
            while let Some(top) = stack.last_mut() {
                let next = top.1.get(top.2).cloned();
                top.2 += 1;
                let name = top.0;
                let Some(dep) = next else {
                    done.insert(name);
                    stack.pop();
                    on_path.pop();
                    continue;
                };
                let Some((dep_name, dep_service)) = services.get_key_value(dep.as_str()) else {
                    continue;
                };
                if let Some(at) = on_path.iter().position(|n| n == dep_name) {
                    let mut cycle: Vec<&str> = on_path[at..].to_vec();
                    cycle.push(dep_name);
                    let first = services[on_path[at]];
                    self.report.at(
                        &first.origin,
                        &field("runtime").key("dependsOn"),
                        format!(
                            "services depend on each other in a cycle: {}",
                            cycle.join(" -> ")
                        ),
                    );
                    for name in &cycle {
                        done.insert(name);
                    }
                    continue;
                }
                if !done.contains(dep_name) {
                    on_path.push(dep_name);
                    stack.push((dep_name, depends_on(dep_service), 0));
                }
            }
        }
    }

    fn file(&mut self, file: &File) {
        let origin = &file.origin;
        match tree::key(&file.path) {
            _ if file.path.is_empty() => {
                self.report.at(origin, &FieldPath::root(), "missing `path`")
            }
            _ if file.path.contains('\0') => {
                self.report
                    .at(origin, &field("path"), "contains a NUL byte")
            }
            Ok(Some(_)) => {}
            Ok(None) => self.report.at(
                origin,
                &field("path"),
                format!("`{}` is the root; name a file below it", file.path),
            ),
            Err(err) => self.report.at(origin, &field("path"), err),
        }
        let given: Vec<&str> = [
            ("contents", file.contents.is_some()),
            ("source", !file.source.is_empty()),
            ("metadata", !file.metadata.is_empty()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        let kind = if file.directory {
            Some("a directory")
        } else if !file.symlink.is_empty() {
            Some("a symlink")
        } else {
            None
        };
        match (kind, given.as_slice()) {
            (Some(kind), [first, ..]) => {
                self.report.at(origin, &field(first), format!("{kind} cannot have `{first}`"))
            }
            (None, []) => self.report.at(
                origin,
                &FieldPath::root(),
                "give the file's `contents`, `source` or `metadata` (or make it a `directory` or `symlink`)",
            ),
            (None, [_, second, ..]) => self.report.at(
                origin,
                &field(second),
                format!("give only one of {}", given.join(", ")),
            ),
            _ => {}
        }
        if file.symlink.contains('\0') {
            self.report
                .at(origin, &field("symlink"), "contains a NUL byte");
        }
        if !file.metadata.is_empty() && file.metadata != "yaml" && file.metadata != "json" {
            self.report.at(
                origin,
                &field("metadata"),
                format!("`{}` is neither `yaml` nor `json`", file.metadata),
            );
        }
        if !file.mode.is_empty() && process::parse_mode(&file.mode).is_none() {
            self.report.at(
                origin,
                &field("mode"),
                format!("`{}` is not an octal mode such as \"0644\"", file.mode),
            );
        }
        for (key, id) in [("uid", &file.uid), ("gid", &file.gid)] {
            if let Some(id) = id {
                self.id(origin, &field(key), id);
            }
        }
    }
}

/// A cgroups path must stay below the cgroup root and name a group of its own.
fn cgroups_path_problem(path: &str) -> Option<String> {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        return Some(format!(
            "`{path}` is the cgroup root; give the container a group of its own"
        ));
    }
    Path::new(relative)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        .then(|| format!("`{path}` may not contain `.` or `..`"))
}
