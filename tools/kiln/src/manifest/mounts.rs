//! The three ways a manifest asks for mounts, with LinuxKit's exact reading of each: `binds`
//! (`src:dst[:opts]`), `tmpfs` (`dst[:opts]`) and full OCI `mounts` with type, source and
//! destination inferred from each other. A bind source without a leading `/` names a volume.
//! Runs in: `kiln` on the build host (validate and build). Pure.

use spec::runtime::Mount;

/// The options a bind gets when it gives none.
const DEFAULT_BIND_OPTIONS: [&str; 3] = ["rw", "rbind", "rshared"];

/// A parsed `binds` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
    /// The third part as written, if any (`ro`, `rw,rshared`).
    pub written_options: Option<String>,
}

impl Bind {
    /// Splits `src:dst[:opts]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!(
                "\"{text}\" has {} part{}, expected src:dst[:opts]",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" }
            ));
        }
        if parts[0].is_empty() {
            return Err(format!("\"{text}\" has an empty source"));
        }
        check_destination(text, parts[1])?;
        Ok(Self {
            source: parts[0].to_owned(),
            destination: parts[1].to_owned(),
            written_options: parts.get(2).map(|opts| (*opts).to_owned()),
        })
    }

    /// The volume this bind names, if its source is not a path.
    pub fn volume(&self) -> Option<&str> {
        (!self.source.starts_with('/')).then_some(self.source.as_str())
    }

    /// The OCI mount: options as written plus `rbind`, or `rw,rbind,rshared`.
    pub fn to_mount(&self) -> Mount {
        let options = match &self.written_options {
            Some(opts) => opts
                .split(',')
                .map(str::to_owned)
                .chain(["rbind".to_owned()])
                .collect(),
            None => DEFAULT_BIND_OPTIONS.map(str::to_owned).to_vec(),
        };
        Mount {
            destination: self.destination.clone(),
            kind: "bind".into(),
            source: self.source.clone(),
            options,
        }
    }
}

/// Whether mount options ask for shared propagation.
pub fn is_shared<'a>(mut options: impl Iterator<Item = &'a str>) -> bool {
    options.any(|o| matches!(o, "shared" | "rshared"))
}

/// Parses a `tmpfs` entry `dst[:opts]` into its mount; options are only those given.
pub fn parse_tmpfs(text: &str) -> Result<Mount, String> {
    let (destination, options) = match text.split_once(':') {
        Some((_, rest)) if rest.contains(':') => {
            return Err(format!(
                "\"{text}\" has more than one `:`, expected dst[:opts]"
            ))
        }
        Some((destination, opts)) => (destination, opts.split(',').map(str::to_owned).collect()),
        None => (text, Vec::new()),
    };
    check_destination(text, destination)?;
    Ok(Mount {
        destination: destination.to_owned(),
        kind: "tmpfs".into(),
        source: "tmpfs".into(),
        options,
    })
}

/// A `mounts` entry with LinuxKit's inference: a missing type comes from a well-known source
/// (or is `tmpfs` on `/dev`), a missing source is the type, a missing destination is the type's
/// usual place.
pub fn infer(mount: &Mount) -> Result<Mount, String> {
    let mut kind = mount.kind.clone();
    if kind.is_empty()
        && ["mqueue", "devpts", "proc", "sysfs", "cgroup"].contains(&mount.source.as_str())
    {
        kind = mount.source.clone();
    }
    if kind.is_empty() && mount.destination == "/dev" {
        kind = "tmpfs".into();
    }
    if kind.is_empty() {
        return Err(format!(
            "the mount on `{}` has no type, and none can be inferred from its source",
            mount.destination
        ));
    }
    if kind == "bind" && mount.source.is_empty() {
        return Err(format!(
            "the bind mount on `{}` has no source: give a host path or a volume's name",
            mount.destination
        ));
    }
    let source = if mount.source.is_empty() {
        kind.clone()
    } else {
        mount.source.clone()
    };
    let destination = if mount.destination.is_empty() {
        default_destination(&kind).to_owned()
    } else {
        mount.destination.clone()
    };
    if destination.is_empty() {
        return Err(format!("the `{kind}` mount has no destination"));
    }
    Ok(Mount {
        destination,
        kind,
        source,
        options: mount.options.clone(),
    })
}

/// The volume a `mounts` entry names: type `bind` as written, source not a path.
pub fn mount_volume(mount: &Mount) -> Option<&str> {
    (mount.kind == "bind" && !mount.source.is_empty() && !mount.source.starts_with('/'))
        .then_some(mount.source.as_str())
}

/// Whether mount options make it read-only: `ro` before any `rw`, as LinuxKit reads them.
pub fn is_read_only(options: &[String]) -> bool {
    options
        .iter()
        .find(|opt| *opt == "ro" || *opt == "rw")
        .is_some_and(|opt| opt == "ro")
}

fn default_destination(kind: &str) -> &'static str {
    match kind {
        "proc" => "/proc",
        "devpts" => "/dev/pts",
        "sysfs" => "/sys",
        "cgroup" | "cgroup2" => "/sys/fs/cgroup",
        "mqueue" => "/dev/mqueue",
        _ => "",
    }
}

/// A destination may be relative (the runtime takes it from the container's root, as runc
/// does), but not empty.
fn check_destination(text: &str, destination: &str) -> Result<(), String> {
    if destination.is_empty() {
        Err(format!("\"{text}\" has an empty destination"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_follow_linuxkit() {
        let bind = Bind::parse("/var:/var").expect("two parts");
        assert_eq!(bind.to_mount().options, ["rw", "rbind", "rshared"]);
        assert_eq!(bind.volume(), None);
        let bind = Bind::parse("vola:/vola:ro,nosuid").expect("three parts");
        assert_eq!(bind.volume(), Some("vola"));
        assert_eq!(bind.to_mount().options, ["ro", "nosuid", "rbind"]);
        assert_eq!(
            Bind::parse("a:b:c:d").expect_err("four parts"),
            "\"a:b:c:d\" has 4 parts, expected src:dst[:opts]"
        );
        assert!(Bind::parse("/a")
            .expect_err("one part")
            .contains("has 1 part,"));
        assert!(Bind::parse("/a:")
            .expect_err("no destination")
            .contains("empty destination"));
    }

    #[test]
    fn tmpfs_takes_only_given_options() {
        let mount = parse_tmpfs("/tmp:size=10m,mode=1777").expect("valid");
        assert_eq!(mount.options, ["size=10m", "mode=1777"]);
        assert!(parse_tmpfs("/run").expect("valid").options.is_empty());
        assert!(parse_tmpfs("/a:b:c")
            .expect_err("two colons")
            .contains("more than one"));
    }

    #[test]
    fn mounts_infer_type_source_and_destination() {
        let m = |kind: &str, source: &str, destination: &str| Mount {
            kind: kind.into(),
            source: source.into(),
            destination: destination.into(),
            options: vec![],
        };
        let cgroup = infer(&m("", "cgroup", "")).expect("inferred");
        assert_eq!(
            (cgroup.kind.as_str(), cgroup.destination.as_str()),
            ("cgroup", "/sys/fs/cgroup")
        );
        assert_eq!(infer(&m("", "", "/dev")).expect("dev").kind, "tmpfs");
        assert_eq!(infer(&m("proc", "", "")).expect("proc").source, "proc");
        assert!(infer(&m("", "/x", "/y"))
            .expect_err("no type")
            .contains("no type"));
        assert!(infer(&m("ext4", "/dev/sda", ""))
            .expect_err("no dest")
            .contains("no destination"));
        assert!(is_read_only(&["nosuid".into(), "ro".into(), "rw".into()]));
        assert!(!is_read_only(&["rw".into(), "ro".into()]));
        assert!(!is_read_only(&[]));
    }
}
