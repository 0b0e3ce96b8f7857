//! The process settings a manifest writes as text: capability lists (with `all` and `none`),
//! rlimits (`name,soft,hard`), device entries and namespace choices, each parsed the way
//! LinuxKit reads them and rejected with the reason when it would not work.
//! Runs in: `kiln` on the build host (validate and build). Pure.

use std::str::FromStr;

use oci_spec::runtime::{Capability, PosixRlimitType};

use crate::manifest::entry::Device;

/// The value LinuxKit gives `unlimited`.
pub const UNLIMITED: u64 = u64::MAX;

/// Every capability the kernel knows, in the kernel's order: what `all` stands for.
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The problems in a capability list, by index. `all` and `none` (any case) stand alone; in a
/// `.add` list they are not allowed at all.
pub fn capability_problems(list: &[String], is_add: bool) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if lower == "all" || lower == "none" {
            if is_add {
                problems.push((
                    i,
                    format!("`{name}` cannot be added; use it in `capabilities`"),
                ));
            } else if list.len() > 1 {
                problems.push((i, format!("`{name}` must be the only entry of the list")));
            }
        } else if !is_capability(name) {
            problems.push((
                i,
                format!("unknown capability `{name}`; names look like CAP_NET_ADMIN"),
            ));
        }
    }
    problems
}

/// A capability name as the kernel knows it, in upper case with its `CAP_` prefix.
pub fn is_capability(name: &str) -> bool {
    name.starts_with("CAP_")
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && serde_json::from_value::<Capability>(name.into()).is_ok()
}

/// A parsed rlimit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    pub kind: PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

/// Parses `name,soft,hard`: the name in any case with or without `RLIMIT_`, the values numbers
/// or `unlimited`, soft no higher than hard.
pub fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    let parts: Vec<&str> = text.splitn(3, ',').map(str::trim).collect();
    let [name, soft, hard] = parts[..] else {
        return Err(format!("\"{text}\" is not name,soft,hard"));
    };
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    let kind = PosixRlimitType::from_str(&full)
        .ok()
        .filter(|_| RLIMITS.contains(&full.as_str()))
        .ok_or_else(|| {
            format!(
                "unknown rlimit `{name}`; known are {}",
                RLIMITS.map(|r| &r[7..]).join(", ")
            )
        })?;
    let value = |v: &str| -> Result<u64, String> {
        if v.eq_ignore_ascii_case("unlimited") {
            Ok(UNLIMITED)
        } else {
            v.parse()
                .map_err(|_| format!("\"{text}\": `{v}` is neither a number nor `unlimited`"))
        }
    };
    let (soft, hard) = (value(soft)?, value(hard)?);
    if soft > hard {
        return Err(format!(
            "\"{text}\": the soft limit is above the hard limit"
        ));
    }
    Ok(Rlimit { kind, soft, hard })
}

/// The limits LinuxKit accepts.
const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// The problems of a device entry, by field name.
pub fn device_problems(device: &Device) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if device.path == "all" {
        if !["a", "b", "c"].contains(&device.kind.as_str()) {
            problems.push((
                "type",
                format!("`path: all` needs type a, b or c, not `{}`", device.kind),
            ));
        }
        return problems;
    }
    if device.path.is_empty() {
        problems.push((
            "path",
            "missing: give the device's path or `all`".to_owned(),
        ));
    } else if !device.path.starts_with('/') {
        problems.push(("path", format!("`{}` is not an absolute path", device.path)));
    }
    if !["b", "c", "u", "p"].contains(&device.kind.as_str()) {
        problems.push((
            "type",
            format!("`{}` is not a device type: b, c, u or p", device.kind),
        ));
    }
    if device.major < 0 {
        problems.push(("major", "may not be negative".to_owned()));
    }
    if device.minor < 0 {
        problems.push(("minor", "may not be negative".to_owned()));
    }
    if device.mode.is_empty() {
        problems.push((
            "mode",
            "missing: give the node's mode as an octal string such as \"0666\"".to_owned(),
        ));
    } else if parse_mode(&device.mode).is_none() {
        problems.push((
            "mode",
            format!("`{}` is not an octal mode such as \"0666\"", device.mode),
        ));
    }
    problems
}

/// An octal permission string (`0644`, `644`, `0o644`), at most 07777.
pub fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
}

/// Checks a namespace choice (`net`, `ipc`, `uts`, `pid`, `userns`): `host`, `root`, `new`
/// (and `none` for net), or the absolute path of a namespace file to join.
pub fn namespace_problem(field: &str, value: &str) -> Option<String> {
    let keywords: &[&str] = if field == "net" {
        &["", "host", "root", "new", "none"]
    } else {
        &["", "host", "root", "new"]
    };
    if keywords.contains(&value) || value.starts_with('/') {
        None
    } else {
        Some(format!(
            "`{value}` is neither {} nor the absolute path of a namespace to join",
            keywords[1..]
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_need_kernel_names_and_all_alone() {
        let list = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert!(capability_problems(&list(&["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]), false).is_empty());
        assert!(capability_problems(&list(&["all"]), false).is_empty());
        assert!(capability_problems(&list(&["None"]), false).is_empty());
        let problems = capability_problems(&list(&["CAP_CHOWN", "all"]), false);
        assert_eq!(
            problems,
            vec![(1, "`all` must be the only entry of the list".to_owned())]
        );
        let problems = capability_problems(&list(&["net_admin", "CAP_NOPE"]), false);
        assert_eq!(problems.len(), 2);
        assert!(problems[1].1.contains("unknown capability `CAP_NOPE`"));
        assert!(!capability_problems(&list(&["all"]), true).is_empty());
    }

    #[test]
    fn rlimits_parse_like_linuxkit() {
        let limit = parse_rlimit("nofile, 1024 ,unlimited").expect("valid");
        assert_eq!(
            limit,
            Rlimit {
                kind: PosixRlimitType::RlimitNofile,
                soft: 1024,
                hard: UNLIMITED
            }
        );
        assert_eq!(
            parse_rlimit("RLIMIT_CORE,0,0").expect("valid").kind,
            PosixRlimitType::RlimitCore
        );
        assert!(parse_rlimit("nofiles,1,2")
            .expect_err("name")
            .contains("unknown rlimit `nofiles`"));
        assert!(parse_rlimit("nofile,1")
            .expect_err("parts")
            .contains("not name,soft,hard"));
        assert!(parse_rlimit("nofile,x,2")
            .expect_err("value")
            .contains("`x` is neither"));
        assert!(parse_rlimit("nofile,3,2")
            .expect_err("order")
            .contains("above the hard"));
    }

    #[test]
    fn devices_need_type_and_octal_mode() {
        let device = |path: &str, kind: &str, mode: &str| Device {
            path: path.into(),
            kind: kind.into(),
            major: 1,
            minor: 3,
            mode: mode.into(),
        };
        assert!(device_problems(&device("/dev/null", "c", "0666")).is_empty());
        assert!(device_problems(&device("all", "b", "")).is_empty());
        assert_eq!(device_problems(&device("all", "x", ""))[0].0, "type");
        assert_eq!(device_problems(&device("/dev/null", "c", ""))[0].0, "mode");
        assert_eq!(
            device_problems(&device("/dev/null", "c", "0999"))[0].0,
            "mode"
        );
        assert_eq!(device_problems(&device("dev/null", "q", "0666")).len(), 2);
        assert_eq!(parse_mode("0666"), Some(0o666));
    }

    #[test]
    fn namespaces_are_keywords_or_paths() {
        assert_eq!(namespace_problem("net", "none"), None);
        assert_eq!(namespace_problem("net", "/run/netns/a"), None);
        assert!(namespace_problem("pid", "none").is_some());
        assert!(namespace_problem("uts", "bridge").is_some());
    }
}
