//! config.json through oci-spec: malformed documents name the field, and the checks that need
//! no filesystem catch what would make a create fail.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use serde_json::{json, Value};
use spec::config;

fn valid() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", "true"],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_NET_ADMIN"], "effective": ["CAP_NET_ADMIN"]}
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc/resolv.conf", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": "/run/netns/x"}]}
    })
}

fn problems(spec: &Value) -> Vec<String> {
    let bytes = serde_json::to_vec(spec).unwrap();
    let parsed = config::from_json(&bytes).unwrap_or_else(|p| panic!("{p}"));
    config::check(&parsed)
        .into_iter()
        .map(|p| p.to_string())
        .collect()
}

fn parse_error(spec: &Value) -> spec::Problem {
    config::from_json(&serde_json::to_vec(spec).unwrap()).unwrap_err()
}

#[test]
fn valid_config_has_no_problems() {
    assert_eq!(problems(&valid()), Vec::<String>::new());
}

#[test]
fn empty_or_missing_args_are_named() {
    let mut spec = valid();
    spec["process"]["args"] = json!([]);
    assert_eq!(
        problems(&spec),
        ["process.args: must not be empty: give the program to run"]
    );
    spec["process"].as_object_mut().unwrap().remove("args");
    assert_eq!(problems(&spec).len(), 1);
    spec["process"]["args"] = json!([""]);
    assert_eq!(problems(&spec), ["process.args[0]: empty program name"]);
}

#[test]
fn relative_cwd_is_named() {
    let mut spec = valid();
    spec["process"]["cwd"] = json!("work");
    assert_eq!(
        problems(&spec),
        ["process.cwd: `work` is not an absolute path"]
    );
}

#[test]
fn missing_process_and_root_are_named() {
    let mut spec = valid();
    spec.as_object_mut().unwrap().remove("process");
    spec.as_object_mut().unwrap().remove("root");
    let found = problems(&spec);
    assert!(found[0].starts_with("process: missing"), "{found:?}");
    assert!(found[1].starts_with("root: missing"), "{found:?}");
}

#[test]
fn unknown_capability_is_a_parse_error_naming_the_field() {
    let mut spec = valid();
    spec["process"]["capabilities"]["bounding"] = json!(["CAP_NET_ADMIN", "CAP_MAKE_COFFEE"]);
    let problem = parse_error(&spec);
    assert!(
        problem.field.starts_with("process.capabilities.bounding"),
        "{problem}"
    );
    assert!(
        problem.message.contains("CAP_MAKE_COFFEE") || problem.message.contains("MAKE_COFFEE"),
        "{problem}"
    );
}

#[test]
fn unknown_namespace_type_is_a_parse_error_naming_the_field() {
    let mut spec = valid();
    spec["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "teleport"}]);
    let problem = parse_error(&spec);
    assert_eq!(problem.field, "linux.namespaces[1].type", "{problem}");
}

#[test]
fn wrong_type_names_the_field() {
    let mut spec = valid();
    spec["process"]["env"] = json!("PATH=/bin");
    assert_eq!(parse_error(&spec).field, "process.env");
}

#[test]
fn duplicate_namespaces_and_relative_paths_are_named() {
    let mut spec = valid();
    spec["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "network", "path": "netns/x"}, {"type": "pid"}]);
    assert_eq!(
        problems(&spec),
        [
            "linux.namespaces[1].path: `netns/x` is not an absolute path",
            "linux.namespaces[2].type: namespace `pid` is listed twice"
        ]
    );
}

#[test]
fn mounts_need_absolute_destination_and_a_type_or_bind() {
    let mut spec = valid();
    spec["mounts"] = json!([
        {"destination": "proc", "type": "proc", "source": "proc"},
        {"destination": "/data", "source": "/srv"},
        {"destination": "/bound", "source": "/srv", "options": ["bind"]}
    ]);
    assert_eq!(
        problems(&spec),
        [
            "mounts[0].destination: `proc` is not an absolute path",
            "mounts[1].type: missing: give a filesystem type, or a bind or rbind option"
        ]
    );
}

#[test]
fn env_entries_must_be_name_equals_value() {
    let mut spec = valid();
    spec["process"]["env"] = json!(["PATH=/bin", "JUSTANAME", "=value"]);
    assert_eq!(
        problems(&spec),
        [
            "process.env[1]: `JUSTANAME` is not NAME=value",
            "process.env[2]: `=value` is not NAME=value"
        ]
    );
}

#[test]
fn missing_config_json_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = config::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(&dir.path().join("config.json").display().to_string()),
        "{err}"
    );
}
