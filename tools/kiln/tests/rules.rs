//! Each rule of `kiln validate`, with a manifest that breaks it: the problem is reported at the
//! right line and path, in words that say what is wrong; and a good manifest reports nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use kiln::{load, Input};

/// The problems of one manifest, as "LINE: PATH: MESSAGE".
fn problems(yaml: &str) -> Vec<String> {
    reported(yaml).0
}

/// The warnings of one manifest, as "LINE: PATH: MESSAGE".
fn warnings(yaml: &str) -> Vec<String> {
    reported(yaml).1
}

/// The problems and the warnings of one manifest.
fn reported(yaml: &str) -> (Vec<String>, Vec<String>) {
    let (_, report) = load(&[Input {
        name: "m.yml".into(),
        text: yaml.into(),
    }]);
    let lines = |list: &[kiln::Diagnostic]| -> Vec<String> {
        list.iter()
            .map(|d| {
                assert_eq!(d.file, "m.yml");
                format!("{}: {}: {}", d.line, d.path, d.message)
            })
            .collect()
    };
    (lines(&report.diagnostics), lines(&report.warnings))
}

/// Asserts that `yaml` has exactly one problem, at `line` and `path`, whose message holds `words`.
#[track_caller]
fn one_problem(yaml: &str, line: usize, path: &str, words: &str) {
    let found = problems(yaml);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let prefix = format!("{line}: {path}: ");
    assert!(
        found[0].starts_with(&prefix) && found[0].contains(words),
        "expected `{prefix}...{words}...`, got `{}`",
        found[0]
    );
}

/// A service entry with `extra` lines (indented by four spaces) added.
fn service(extra: &str) -> String {
    format!("services:\n  - name: web\n    image: nginx:1.27\n{extra}")
}

#[test]
fn a_good_manifest_has_no_problems() {
    let yaml = r#"
kernel:
  image: linuxkit/kernel:6.6.71
  cmdline: "console=ttyS0"
init:
  - linuxkit/init:v1.0
  - "@pkg:./pkg/init"
volumes:
  - name: data
  - name: ro-data
    readonly: true
    image: oci:/tmp/layout
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v1.0
    pid: host
    capabilities: [CAP_SYS_ADMIN, CAP_NET_ADMIN]
    readonly: true
    runtime:
      timeout: 30
services:
  - name: web
    image: nginx:1.27
    net: /run/netns/web
    uts: new
    hostname: web
    uid: sysctl
    gid: root
    additionalGids: [web, 100]
    capabilities: [all]
    binds:
      - /etc/resolv.conf:/etc/resolv.conf
      - data:/data
      - ro-data:/ro:ro
    binds.add: ["/var/log:/var/log:rw,rshared"]
    tmpfs: ["/tmp:size=10m"]
    mounts:
      - type: cgroup
        options: [rw]
      - type: bind
        source: ro-data
        destination: /ro2
        options: [rbind, ro]
    devices:
      - path: all
        type: b
      - path: /dev/console
        type: c
        major: 5
        minor: 1
        mode: "0666"
    rlimits: ["nofile,1024,unlimited"]
    oomScoreAdj: -500
    rootfsPropagation: shared
    cgroupsPath: kiln/web
    sysctl:
      net.ipv4.ip_forward: "1"
    resources:
      memory:
        limit: 1000000
      blockio:
        weight: 10
    runtime:
      mkdir: [/var/lib/web]
      interfaces:
        - name: eth1
          add: veth
          peer: veth-web
      bindNS:
        net: /run/netns/web
      restart: on-failure
      dependsOn: [db]
      ready:
        notify: true
      stopSignal: SIGINT
      stopTimeout: 5
      healthcheck:
        http: http://127.0.0.1:8080/health
        interval: 5
        timeout: 2
        retries: 4
        startPeriod: 30
      watchdog: 20
      restartLimit:
        burst: 5
        interval: 60
      onFailure: reboot
  - name: db
    image: docker-archive:/tmp/db.tar
files:
  - path: etc/motd
    contents: "hello\n"
    mode: "0644"
    uid: web
  - path: etc/web
    directory: true
  - path: etc/link
    symlink: /etc/motd
  - path: etc/config.yml
    metadata: yaml
trust:
  org: [linuxkit]
"#;
    assert_eq!(problems(yaml), Vec::<String>::new());
}

#[test]
fn unknown_keys_and_sections_are_named_with_a_suggestion() {
    one_problem(
        "kernel:\n  cmdlin: x\n",
        2,
        "kernel.cmdlin",
        "did you mean `cmdline`?",
    );
    one_problem("onbot: []\n", 1, "onbot", "unknown section `onbot`");
    one_problem(
        &service("    comand: [a]\n"),
        4,
        "services[0].comand",
        "did you mean `command`?",
    );
    one_problem(
        &service("    runtime:\n      interfaces:\n        - name: a\n          peeer: b\n"),
        7,
        "services[0].runtime.interfaces[0].peeer",
        "unknown field `peeer`",
    );
    one_problem(
        &service("    resources:\n      memory:\n        limt: 10\n"),
        6,
        "services[0].resources.memory.limt",
        "unknown field `limt`",
    );
}

#[test]
fn wrong_types_are_reported_for_every_field_not_just_the_first() {
    let found = problems(&service(
        "    command: [sleep, 10]\n    readonly: \"yes\"\n    oomScoreAdj: lots\n",
    ));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("4: services[0].command[1]: ") && found[0].contains("quote the value")
    );
    assert!(
        found[1].starts_with("5: services[0].readonly: ")
            && found[1].contains("expected a boolean")
    );
    assert!(found[2].starts_with("6: services[0].oomScoreAdj: "));
    one_problem("services: {a: 1}\n", 1, "services", "expected a list");
    one_problem(
        "services:\n  - web\n",
        2,
        "services[0]",
        "expected a mapping",
    );
}

#[test]
fn name_and_image_are_required_and_checked() {
    one_problem(
        "services:\n  - image: nginx\n",
        2,
        "services[0]",
        "missing `name`",
    );
    one_problem(
        "services:\n  - name: a\n",
        2,
        "services[0]",
        "missing `image`",
    );
    one_problem(
        "onboot:\n  - name: ../x\n    image: alpine\n",
        2,
        "onboot[0].name",
        "cannot name a container",
    );
    // A name too long for the paths it becomes on the image.
    let long = "n".repeat(300);
    one_problem(
        &format!("services:\n  - name: {long}\n    image: alpine\n"),
        2,
        "services[0].name",
        "is 300 characters; a name has at most 64",
    );
    assert!(problems(&format!(
        "onboot:\n  - name: {}\n    image: alpine\n",
        &long[..64]
    ))
    .is_empty());
    one_problem(
        "onboot:\n  - name: a\n    image: Alpine:3\n",
        3,
        "onboot[0].image",
        "is not an image reference",
    );
    one_problem("init:\n  - \"oci:\"\n", 2, "init[0]", "names no path");
}

#[test]
fn duplicate_service_names_point_at_the_first() {
    let yaml = "services:\n  - name: a\n    image: x\n  - name: a\n    image: y\n";
    one_problem(
        yaml,
        4,
        "services[1].name",
        "already the name of services[0] (m.yml:2)",
    );
    // LinuxKit allows the same name in onboot and services.
    let yaml = "onboot:\n  - name: a\n    image: x\nservices:\n  - name: a\n    image: y\n";
    assert_eq!(problems(yaml), Vec::<String>::new());
}

#[test]
fn volumes_have_unique_names_and_read_only_ones_are_bound_ro() {
    one_problem(
        "volumes:\n  - name: Data\n",
        2,
        "volumes[0].name",
        "may only hold a-z",
    );
    one_problem(
        "volumes:\n  - name: a\n  - name: a\n",
        3,
        "volumes[1].name",
        "already the name of volumes[0]",
    );
    one_problem(
        "volumes:\n  - format: oci\n",
        2,
        "volumes[0]",
        "missing `name`",
    );
    one_problem(
        "volumes:\n  - name: a\n    format: tar\n",
        3,
        "volumes[0].format",
        "neither",
    );
    let volumes = "volumes:\n  - name: v\n    readonly: true\n";
    one_problem(
        &format!("{volumes}{}", service("    binds:\n      - v:/v\n")),
        8,
        "services[0].binds[0]",
        "volume `v` is read-only, but this mounts it read-write",
    );
    one_problem(
        &format!(
            "{volumes}{}",
            service("    binds.add:\n      - v:/v:ro,rshared\n")
        ),
        8,
        "services[0].binds.add[0]",
        "give the bind `:ro`",
    );
    one_problem(
        &format!(
            "{volumes}{}",
            service("    mounts:\n      - {type: bind, source: v, destination: /v, options: [rw, ro]}\n")
        ),
        8,
        "services[0].mounts[0]",
        "add `ro` to its options",
    );
    one_problem(
        &service("    binds:\n      - nope:/v\n"),
        5,
        "services[0].binds[0]",
        "no volume is named `nope`",
    );
}

#[test]
fn binds_tmpfs_and_mounts_follow_linuxkit_syntax() {
    one_problem(
        &service("    binds:\n      - /a:/b\n      - \"a:b:c:d\"\n"),
        6,
        "services[0].binds[1]",
        "\"a:b:c:d\" has 4 parts, expected src:dst[:opts]",
    );
    one_problem(
        &service("    binds: [/a]\n"),
        4,
        "services[0].binds[0]",
        "has 1 part,",
    );
    one_problem(
        &service("    tmpfs: [\"/t:a:b\"]\n"),
        4,
        "services[0].tmpfs[0]",
        "more than one `:`",
    );
    one_problem(
        &service("    mounts:\n      - source: /x\n        destination: /y\n"),
        5,
        "services[0].mounts[0]",
        "has no type",
    );
    one_problem(
        &service("    mounts:\n      - type: ext4\n        source: /dev/sda\n"),
        5,
        "services[0].mounts[0]",
        "has no destination",
    );
}

#[test]
fn capabilities_rlimits_and_devices_are_checked() {
    one_problem(
        &service("    capabilities: [CAP_CHOWN, all]\n"),
        4,
        "services[0].capabilities[1]",
        "`all` must be the only entry",
    );
    one_problem(
        &service("    capabilities: [CAP_CHOWN, CAP_FLY]\n"),
        4,
        "services[0].capabilities[1]",
        "unknown capability `CAP_FLY`",
    );
    one_problem(
        &service("    capabilities.add: [all]\n"),
        4,
        "services[0].capabilities.add[0]",
        "cannot be added",
    );
    one_problem(
        &service("    ambient: [net_raw]\n"),
        4,
        "services[0].ambient[0]",
        "unknown capability",
    );
    one_problem(
        &service("    rlimits:\n      - nofile,1,2\n      - nofiles,1,2\n"),
        6,
        "services[0].rlimits[1]",
        "unknown rlimit `nofiles`",
    );
    one_problem(
        &service("    rlimits: [\"core,9,1\"]\n"),
        4,
        "services[0].rlimits[0]",
        "above the hard",
    );
    one_problem(
        &service("    devices:\n      - path: /dev/null\n        type: c\n        major: 1\n        minor: 3\n"),
        5,
        "services[0].devices[0].mode",
        "missing",
    );
    one_problem(
        &service(
            "    devices:\n      - {path: /dev/null, type: c, major: 1, minor: 3, mode: 0666}\n",
        ),
        5,
        "services[0].devices[0].mode",
        "quote the value",
    );
    one_problem(
        &service("    devices:\n      - {path: all, type: x}\n"),
        5,
        "services[0].devices[0].type",
        "needs type a, b or c",
    );
}

#[test]
fn namespaces_hostname_and_ids() {
    one_problem(
        &service("    net: bridge\n"),
        4,
        "services[0].net",
        "`bridge` is neither",
    );
    one_problem(
        &service("    hostname: web\n"),
        4,
        "services[0].hostname",
        "needs `uts: new`",
    );
    one_problem(
        &service("    uid: nobody\n"),
        4,
        "services[0].uid",
        "no container is named `nobody`",
    );
    one_problem(
        &service("    additionalGids: [1, nobody]\n"),
        4,
        "services[0].additionalGids[1]",
        "no container is named `nobody`",
    );
    one_problem(
        &service("    uid: -1\n"),
        4,
        "services[0].uid",
        "a number from 0 to 4294967295",
    );
    one_problem(
        &service("    oomScoreAdj: 2000\n"),
        4,
        "services[0].oomScoreAdj",
        "outside -1000..1000",
    );
    one_problem(
        &service("    rootfsPropagation: sharde\n"),
        4,
        "services[0].rootfsPropagation",
        "not one of",
    );
    one_problem(
        &service("    cgroupsPath: /\n"),
        4,
        "services[0].cgroupsPath",
        "the cgroup root",
    );
    one_problem(
        &service("    cgroupsPath: a/../..\n"),
        4,
        "services[0].cgroupsPath",
        "`..`",
    );
    one_problem(
        &service("    cwd: app\n"),
        4,
        "services[0].cwd",
        "not an absolute path",
    );
}

#[test]
fn runtime_sections_follow_the_spec_crate_and_supervision_rules() {
    one_problem(
        &service("    runtime:\n      interfaces:\n        - name: eth0\n          peer: eth0\n"),
        7,
        "services[0].runtime.interfaces[0].peer",
        "must differ from name",
    );
    one_problem(
        &service("    runtime:\n      bindNS:\n        net: netns/web\n"),
        6,
        "services[0].runtime.bindNS.net",
        "not an absolute path",
    );
    one_problem(
        &service("    runtime:\n      stopSignal: SIGFOO\n"),
        5,
        "services[0].runtime.stopSignal",
        "unknown signal",
    );
    // Real-time signals by name or number, as runc takes them; systemd stops on SIGRTMIN+3.
    for signal in ["SIGRTMIN+3", "RTMAX-2", "37", "64"] {
        let yaml = service(&format!("    runtime:\n      stopSignal: \"{signal}\"\n"));
        assert!(
            problems(&yaml).is_empty(),
            "{signal}: {:?}",
            problems(&yaml)
        );
    }
    one_problem(
        &service("    runtime:\n      stopSignal: SIGRTMIN+31\n"),
        5,
        "services[0].runtime.stopSignal",
        "or a number from 1 to 64",
    );
    one_problem(
        &service("    runtime:\n      restart: sometimes\n"),
        5,
        "services[0].runtime.restart",
        "unknown variant `sometimes`",
    );
    one_problem(
        &service("    runtime:\n      timeout: 5\n"),
        5,
        "services[0].runtime.timeout",
        "use `stopTimeout`",
    );
    one_problem(
        "onboot:\n  - name: a\n    image: x\n    runtime:\n      restart: always\n",
        5,
        "onboot[0].runtime.restart",
        "only services have `restart`",
    );
}

#[test]
fn health_watchdog_and_restart_limits_are_checked() {
    one_problem(
        &service(
            "    runtime:\n      healthcheck:\n        exec: [pgrep, web]\n        tcp: a:1\n",
        ),
        6,
        "services[0].runtime.healthcheck",
        "give exactly one of `exec` (a command), `http` (a URL) or `tcp` (HOST:PORT)",
    );
    one_problem(
        &service("    runtime:\n      healthcheck:\n        tcp: localhost\n"),
        6,
        "services[0].runtime.healthcheck.tcp",
        "`localhost` is not HOST:PORT",
    );
    one_problem(
        &service("    runtime:\n      healthcheck:\n        http: https://x/\n"),
        6,
        "services[0].runtime.healthcheck.http",
        "https is not probed",
    );
    one_problem(
        &service(
            "    runtime:\n      healthcheck:\n        exec: [pgrep, web]\n        interval: 0\n",
        ),
        7,
        "services[0].runtime.healthcheck.interval",
        "must be at least 1",
    );
    one_problem(
        &service(
            "    runtime:\n      healthcheck:\n        exec: [pgrep, web]\n        retires: 2\n",
        ),
        7,
        "services[0].runtime.healthcheck.retires",
        "did you mean `retries`?",
    );
    one_problem(
        &service("    runtime:\n      watchdog: 0\n"),
        5,
        "services[0].runtime.watchdog",
        "must be at least 1",
    );
    one_problem(
        &service("    runtime:\n      restartLimit:\n        burst: 0\n        interval: 10\n"),
        6,
        "services[0].runtime.restartLimit.burst",
        "use `restart: no` for none",
    );
    one_problem(
        &service("    runtime:\n      onFailure: halt\n"),
        5,
        "services[0].runtime.onFailure",
        "unknown variant `halt`",
    );
    one_problem(
        "onboot:\n  - name: a\n    image: x\n    runtime:\n      watchdog: 5\n",
        5,
        "onboot[0].runtime.watchdog",
        "only services have `watchdog`",
    );
}

#[test]
fn depends_on_names_services_and_has_no_cycles() {
    let yaml = "onboot:\n  - name: init\n    image: x\nservices:\n  - name: a\n    image: x\n    runtime:\n      dependsOn: [b, init, ghost]\n  - name: b\n    image: x\n";
    let found = problems(yaml);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("8: services[0].runtime.dependsOn[1]: ")
            && found[0].contains("not a service")
    );
    assert!(
        found[1].starts_with("8: services[0].runtime.dependsOn[2]: ")
            && found[1].contains("no service is named `ghost`")
    );
    let yaml = "services:\n  - name: a\n    image: x\n    runtime: {dependsOn: [b]}\n  - name: b\n    image: x\n    runtime: {dependsOn: [c]}\n  - name: c\n    image: x\n    runtime: {dependsOn: [a]}\n";
    one_problem(
        yaml,
        4,
        "services[0].runtime.dependsOn",
        "in a cycle: a -> b -> c -> a",
    );
    let yaml = "services:\n  - name: a\n    image: x\n    runtime: {dependsOn: [a]}\n";
    one_problem(
        yaml,
        4,
        "services[0].runtime.dependsOn",
        "in a cycle: a -> a",
    );
    // A diamond is not a cycle.
    let yaml = "services:\n  - {name: a, image: x, runtime: {dependsOn: [b, c]}}\n  - {name: b, image: x, runtime: {dependsOn: [d]}}\n  - {name: c, image: x, runtime: {dependsOn: [d]}}\n  - {name: d, image: x}\n";
    assert_eq!(problems(yaml), Vec::<String>::new());
}

#[test]
fn files_need_one_source_of_contents() {
    one_problem("files:\n  - contents: x\n", 2, "files[0]", "missing `path`");
    one_problem(
        "files:\n  - path: a\n",
        2,
        "files[0]",
        "give the file's `contents`, `source` or `metadata`",
    );
    one_problem(
        "files:\n  - path: a\n    contents: x\n    source: /etc/hosts\n",
        4,
        "files[0].source",
        "give only one of contents, source",
    );
    one_problem(
        "files:\n  - path: a\n    directory: true\n    contents: x\n",
        4,
        "files[0].contents",
        "a directory cannot have `contents`",
    );
    one_problem(
        "files:\n  - path: a\n    metadata: toml\n",
        3,
        "files[0].metadata",
        "neither `yaml` nor `json`",
    );
    one_problem(
        "files:\n  - path: a\n    contents: x\n    mode: \"0999\"\n",
        4,
        "files[0].mode",
        "not an octal mode",
    );
    one_problem(
        "files:\n  - path: ../../etc/x\n    contents: x\n",
        2,
        "files[0].path",
        "path `../../etc/x` leaves its tree with `..`",
    );
    one_problem(
        "files:\n  - path: /.\n    directory: true\n",
        2,
        "files[0].path",
        "`/.` is the root",
    );
    one_problem(
        "files:\n  - path: a\n    contents: x\n    uid: www\n",
        4,
        "files[0].uid",
        "no container is named `www`",
    );
}

#[test]
fn syntax_errors_and_duplicate_keys_name_their_line() {
    one_problem(
        "services:\n  - name: a\n    name: b\n    image: x\n",
        3,
        ".",
        "`name` appears twice",
    );
    let found = problems("a: [1,\nb: 2\n");
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn a_nested_error_reports_its_own_line() {
    let yaml = "\
kernel:
  image: linuxkit/kernel:6.6.71
services:
  - name: first
    image: alpine
  - name: second
    image: alpine
    runtime:
      mkdir: [/a]
      interfaces:
        - name: eth0
          add: veth
          peer: this-name-is-far-too-long
";
    one_problem(
        yaml,
        13,
        "services[1].runtime.interfaces[0].peer",
        "longer than 15 bytes",
    );
}

#[test]
fn several_files_merge_and_problems_name_their_file() {
    let base = Input {
        name: "base.yml".into(),
        text: "kernel:\n  image: linuxkit/kernel:6.6\n  cmdline: console=ttyS0\nservices:\n  - name: a\n    image: x\n".into(),
    };
    let extra = Input {
        name: "extra.yml".into(),
        text: "kernel:\n  cmdline: console=hvc0\nservices:\n  - name: b\n    image: x\n    runtime: {dependsOn: [a]}\n  - name: a\n    image: y\n".into(),
    };
    let (manifest, report) = load(&[base, extra]);
    let kernel = manifest.kernel.expect("kernel");
    assert_eq!(kernel.image, "linuxkit/kernel:6.6");
    assert_eq!(kernel.cmdline, "console=hvc0");
    let names: Vec<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "a"]);
    let found: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(
        found,
        ["extra.yml:7: services[1].name: `a` is already the name of services[0] (base.yml:5)"]
    );
}

#[test]
fn a_shared_bind_of_a_system_mount_is_valid_with_a_warning() {
    // LinuxKit's mount package: /var shared on purpose, /dev bound with the default options.
    let yaml = "onboot:
  - name: mount
    image: linuxkit/mount:v1.0
    binds: [/dev:/dev:ro, /sys:/sys]
    binds.add: ['/var:/var:rshared,rbind', '/proc/sys:/proc/sys:rshared']
    rootfsPropagation: shared
    mounts:
      - {type: bind, source: /sys/fs/cgroup, destination: /cg, options: [rbind]}
      - {type: bind, source: /srv, destination: /srv, options: [rbind]}
services:
  - name: plain
    image: alpine:3
    binds: [/sys:/sys, /dev:/dev:rslave]
";
    assert!(problems(yaml).is_empty(), "{:?}", problems(yaml));
    let found = warnings(yaml);
    let paths: Vec<&str> = found
        .iter()
        .map(|w| w.split(": ").nth(1).unwrap())
        .collect();
    // /dev:/dev:ro gives its own options (not shared); /var is not a system mount; the
    // service has no shared root and asks for no shared bind.
    assert_eq!(
        paths,
        [
            "onboot[0].binds[1]",
            "onboot[0].binds.add[1]",
            "onboot[0].mounts[0]"
        ],
        "{found:#?}"
    );
    assert!(found[0].starts_with("4: "), "{found:?}");
    assert!(
        found[0].contains("binds /sys with shared propagation") && found[0].contains("private"),
        "{found:?}"
    );
}

#[test]
fn what_a_build_would_refuse_validate_refuses_first() {
    one_problem(
        &service("    command: []\n"),
        4,
        "services[0].command",
        "is empty: nothing would run",
    );
    one_problem(
        &service("    mounts:\n      - {type: bind, destination: /x}\n"),
        5,
        "services[0].mounts[0]",
        "the bind mount on `/x` has no source",
    );
    for (key, value, words) in [
        ("binary", "../vmlinuz", "leaves its tree"),
        ("tar", "/", "is the image's root"),
        ("ucode", "a/../../u.cpio", "leaves its tree"),
    ] {
        one_problem(
            &format!("kernel:\n  image: linuxkit/kernel:6.6\n  {key}: \"{value}\"\n"),
            3,
            &format!("kernel.{key}"),
            words,
        );
    }
    assert!(problems("kernel:\n  image: k:1\n  tar: none\n").is_empty());
    assert!(problems("kernel:\n  image: k:1\n  modules: [nft_*, veth, fs-nfs4]\n").is_empty());
    one_problem(
        "kernel:\n  image: k:1\n  modules:\n    - veth\n    - \"nft_[a\"\n",
        5,
        "kernel.modules[1]",
        "is not a glob",
    );
    one_problem(
        "kernel:\n  image: k:1\n  modules: [kernel/net/veth.ko]\n",
        3,
        "kernel.modules[0]",
        "a module name or glob has none",
    );
    one_problem(
        "files:\n  - path: \"etc/a\\0b\"\n    contents: x\n",
        2,
        "files[0].path",
        "contains a NUL byte",
    );
    one_problem(
        "files:\n  - path: etc/link\n    symlink: \"/x\\0y\"\n",
        3,
        "files[0].symlink",
        "contains a NUL byte",
    );
}
