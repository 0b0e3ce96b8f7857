//! runtime.json as LinuxKit writes it and as Kiln extends it: every shape parses, every bad one
//! is named by its field.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::PathBuf;

use spec::runtime::{InterfaceAction, Restart};
use spec::{Problem, Runtime};

fn parse(json: &str) -> Runtime {
    Runtime::from_json(json.as_bytes()).unwrap_or_else(|p| panic!("{json}: {p}"))
}

fn parse_error(json: &str) -> Problem {
    match Runtime::from_json(json.as_bytes()) {
        Ok(runtime) => panic!("{json} parsed: {runtime:?}"),
        Err(problem) => problem,
    }
}

fn check_fields(json: &str) -> Vec<String> {
    parse(json).check().into_iter().map(|p| p.field).collect()
}

#[test]
fn reference_schema_parses_with_every_field() {
    let runtime = parse(
        r#"{
          "cgroups": ["name"],
          "mounts": [{"destination": "/dst", "type": "bind", "source": "/src", "options": ["rbind", "ro"]}],
          "mkdir": ["/abs", "relative"],
          "interfaces": [{"name": "wg0", "add": "wireguard", "peer": "", "createInRoot": true}],
          "bindNS": {"cgroup": "", "ipc": "", "mnt": "", "net": "/run/netns/wg0", "pid": "", "user": "", "uts": ""},
          "namespace": ""
        }"#,
    );
    assert_eq!(runtime.cgroups, ["name"]);
    assert_eq!(runtime.mounts[0].kind, "bind");
    assert_eq!(runtime.mounts[0].options, ["rbind", "ro"]);
    assert_eq!(runtime.mkdir, ["/abs", "relative"]);
    assert_eq!(
        runtime.interfaces[0].action(),
        InterfaceAction::Create {
            name: "wg0",
            kind: "wireguard",
            in_root: true
        }
    );
    assert_eq!(
        runtime.bind_ns.entries().collect::<Vec<_>>(),
        [("net", "/run/netns/wg0")]
    );
    assert!(runtime.check().is_empty());
}

#[test]
fn shapes_linuxkit_writes_parse() {
    // Go's encoder: omitempty drops empty lists, bindNS is always written, nil slices may be null.
    assert_eq!(parse("{}"), Runtime::default());
    assert_eq!(parse(r#"{"bindNS":{}}"#), Runtime::default());
    assert_eq!(
        parse(r#"{"cgroups":null,"mounts":null,"mkdir":null,"interfaces":null,"bindNS":{}}"#),
        Runtime::default()
    );
    let overlay = parse(
        r#"{"mounts":[{"destination":"writeable-host-etc","type":"overlay","source":"overlay",
            "options":["rw","lowerdir=/etc","upperdir=/run/hostetc/upper","workdir=/run/hostetc/work"]}],"bindNS":{}}"#,
    );
    assert_eq!(overlay.mounts[0].destination, "writeable-host-etc");
    let cgroups = parse(r#"{"cgroups":["newcgroup","podruntime/kubelet"],"bindNS":{}}"#);
    assert_eq!(cgroups.cgroups.len(), 2);
    assert!(cgroups.check().is_empty());
    let namespace = parse(r#"{"namespace":"services.other","bindNS":{}}"#);
    assert_eq!(namespace.namespace, "services.other");
}

#[test]
fn interface_actions_follow_linuxkit_defaults() {
    let runtime = parse(
        r#"{"interfaces":[
            {"name":"eth1","peer":"veth-host"},
            {"name":"eth2","add":"veth","peer":"veth2"},
            {"name":"dummy0","add":"dummy"},
            {"name":"eth0"}
        ]}"#,
    );
    let actions: Vec<_> = runtime.interfaces.iter().map(|i| i.action()).collect();
    assert_eq!(
        actions,
        [
            InterfaceAction::Veth {
                name: "eth1",
                peer: "veth-host"
            },
            InterfaceAction::Veth {
                name: "eth2",
                peer: "veth2"
            },
            InterfaceAction::Create {
                name: "dummy0",
                kind: "dummy",
                in_root: false
            },
            InterfaceAction::Move { name: "eth0" },
        ]
    );
    assert!(runtime.check().is_empty());
}

#[test]
fn kiln_supervision_keys_parse() {
    let runtime = parse(
        r#"{"restart":"on-failure","dependsOn":["dhcpcd","ntpd"],"ready":{"file":"/run/sshd.ready"},
            "stopSignal":"SIGINT","stopTimeout":20,"timeout":60}"#,
    );
    assert_eq!(runtime.restart, Some(Restart::OnFailure));
    assert_eq!(runtime.depends_on, ["dhcpcd", "ntpd"]);
    assert_eq!(
        runtime.ready.as_ref().unwrap().file.as_deref(),
        Some("/run/sshd.ready")
    );
    assert_eq!(runtime.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(
        (runtime.stop_timeout, runtime.timeout),
        (Some(20), Some(60))
    );
    assert!(runtime.check().is_empty());
    assert_eq!(
        parse(r#"{"restart":"always"}"#).restart,
        Some(Restart::Always)
    );
    assert_eq!(parse(r#"{"restart":"no"}"#).restart, Some(Restart::No));
    assert!(parse(r#"{"ready":{"notify":true}}"#).ready.unwrap().notify);
}

#[test]
fn runtime_round_trips_through_json() {
    let runtime = parse(
        r#"{"cgroups":["a"],"interfaces":[{"name":"eth1","peer":"p1","createInRoot":false}],
            "bindNS":{"net":"/run/netns/x"},"restart":"no","dependsOn":["b"]}"#,
    );
    let written = serde_json::to_vec(&runtime).unwrap();
    assert_eq!(Runtime::from_json(&written).unwrap(), runtime);
}

#[test]
fn wrong_types_name_the_field_path() {
    let problem = parse_error(r#"{"interfaces":[{"name":"a","peer":"b"},{"name":"c","peer":1}]}"#);
    assert_eq!(problem.field, "interfaces[1].peer");
    assert!(problem.message.contains("expected a string"), "{problem}");
    assert!(problem.message.contains("line 1"), "{problem}");

    assert_eq!(parse_error(r#"{"cgroups":"one"}"#).field, "cgroups");
    assert_eq!(
        parse_error(r#"{"mounts":[{"destination":"/x","options":"ro"}]}"#).field,
        "mounts[0].options"
    );
    assert_eq!(
        parse_error(r#"{"interfaces":[{"name":"x","createInRoot":"yes"}]}"#).field,
        "interfaces[0].createInRoot"
    );
    assert_eq!(parse_error(r#"{"stopTimeout":-1}"#).field, "stopTimeout");
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let problem = parse_error(r#"{"cgroup":["a"]}"#);
    assert!(
        problem.message.contains("unknown field `cgroup`"),
        "{problem}"
    );
    let problem = parse_error(r#"{"bindNS":{"network":"/run/netns/x"}}"#);
    assert!(problem.field.starts_with("bindNS"), "{problem}");
    assert!(
        problem.message.contains("unknown field `network`"),
        "{problem}"
    );
    let problem = parse_error(r#"{"interfaces":[{"name":"a","type":"veth"}]}"#);
    assert!(problem.field.starts_with("interfaces[0]"), "{problem}");
    assert!(
        problem.message.contains("unknown field `type`"),
        "{problem}"
    );
}

#[test]
fn malformed_json_is_an_error() {
    let problem = parse_error(r#"{"cgroups":["a"]"#);
    assert!(problem.message.contains("EOF"), "{problem}");
    let problem = parse_error(r#"{} {}"#);
    assert!(problem.message.contains("trailing"), "{problem}");
}

#[test]
fn unknown_restart_policy_is_an_error() {
    let problem = parse_error(r#"{"restart":"sometimes"}"#);
    assert_eq!(problem.field, "restart");
    assert!(problem.message.contains("on-failure"), "{problem}");
}

#[test]
fn interface_values_are_checked() {
    assert_eq!(
        check_fields(r#"{"interfaces":[{"add":"dummy"}]}"#),
        ["interfaces[0].name"]
    );
    assert_eq!(
        check_fields(r#"{"interfaces":[{"name":"eth1","add":"veth"}]}"#),
        ["interfaces[0].peer"]
    );
    assert_eq!(
        check_fields(r#"{"interfaces":[{"name":"ok"},{"name":"a-name-far-too-long"}]}"#),
        ["interfaces[1].name"]
    );
    assert_eq!(
        check_fields(r#"{"interfaces":[{"name":"eth1","peer":"eth1"}]}"#),
        ["interfaces[0].peer"]
    );
    assert_eq!(
        check_fields(r#"{"interfaces":[{"name":"a/b"}]}"#),
        ["interfaces[0].name"]
    );
}

#[test]
fn cgroup_names_must_stay_below_the_root() {
    assert_eq!(
        check_fields(r#"{"cgroups":["ok/nested","/abs","../escape","a/../../b",""]}"#),
        ["cgroups[1]", "cgroups[2]", "cgroups[3]", "cgroups[4]"]
    );
}

#[test]
fn bind_ns_paths_must_be_absolute() {
    assert_eq!(
        check_fields(r#"{"bindNS":{"net":"run/netns/x","uts":"/run/uts","ipc":"ipc"}}"#),
        ["bindNS.ipc", "bindNS.net"]
    );
}

#[test]
fn supervision_values_are_checked() {
    assert_eq!(check_fields(r#"{"stopSignal":"SIGNOPE"}"#), ["stopSignal"]);
    assert!(check_fields(r#"{"stopSignal":"HUP"}"#).is_empty());
    assert!(check_fields(r#"{"stopSignal":"9"}"#).is_empty());
    assert_eq!(check_fields(r#"{"ready":{}}"#), ["ready"]);
    assert_eq!(
        check_fields(r#"{"ready":{"file":"/x","notify":true}}"#),
        ["ready"]
    );
    assert_eq!(
        check_fields(r#"{"ready":{"file":"relative"}}"#),
        ["ready.file"]
    );
    assert_eq!(
        check_fields(r#"{"dependsOn":["a","","a"]}"#),
        ["dependsOn[1]", "dependsOn[2]"]
    );
    assert_eq!(
        check_fields(r#"{"mounts":[{"type":"tmpfs"}],"mkdir":[""]}"#),
        ["mounts[0].destination", "mkdir[0]"]
    );
}

#[test]
fn missing_file_is_the_empty_config_and_bad_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Runtime::load(dir.path()).unwrap(), Runtime::default());
    std::fs::write(dir.path().join("runtime.json"), r#"{"mkdir":[1]}"#).unwrap();
    let err = Runtime::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("runtime.json") && err.contains("mkdir[0]"),
        "{err}"
    );
}

/// The LinuxKit manifests in shared/linuxkit-yml (beside the repository, or $KILN_LINUXKIT_YML).
fn linuxkit_yml_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_LINUXKIT_YML") {
        return dir.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/linuxkit-yml")
}

#[test]
fn runtime_sections_of_linuxkit_examples_parse_and_check_clean() {
    let dir = linuxkit_yml_dir().join("valid");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("the LinuxKit corpus {}: {err}", dir.display()));
    let mut sections = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        for section in ["onboot", "services", "onshutdown"] {
            let Some(list) = manifest.get(section).and_then(|v| v.as_sequence()) else {
                continue;
            };
            for (i, image) in list.iter().enumerate() {
                let Some(runtime) = image.get("runtime") else {
                    continue;
                };
                let json = serde_json::to_vec(runtime).unwrap();
                let where_ = format!("{} {section}[{i}].runtime", path.display());
                let parsed = Runtime::from_json(&json).unwrap_or_else(|p| panic!("{where_}: {p}"));
                assert_eq!(parsed.check(), [], "{where_}");
                sections += 1;
            }
        }
    }
    assert!(
        sections >= 8,
        "only {sections} runtime sections found in {}",
        dir.display()
    );
}

#[test]
fn a_one_shot_runs_300_seconds_at_most_unless_told_otherwise() {
    assert_eq!(
        parse("{}").run_limit(),
        Some(spec::runtime::DEFAULT_TIMEOUT)
    );
    assert_eq!(spec::runtime::DEFAULT_TIMEOUT, 300);
    assert_eq!(parse(r#"{"timeout": 10}"#).run_limit(), Some(10));
    assert_eq!(parse(r#"{"timeout": 0}"#).run_limit(), None);
    assert!(check_fields(r#"{"timeout": 0}"#).is_empty());
}
