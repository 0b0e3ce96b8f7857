//! `kiln validate` as users run it: LinuxKit's own manifests (valid ones pass, invalid ones are
//! rejected for their real reason), exit codes, `--json`, standard input and `--print`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn kiln(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("kiln exits")
}

/// The LinuxKit manifests in shared/linuxkit-yml (beside the repository, or $KILN_LINUXKIT_YML).
fn linuxkit_yml(kind: &str) -> Vec<PathBuf> {
    let dir = match std::env::var_os("KILN_LINUXKIT_YML") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/linuxkit-yml"),
    }
    .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("the LinuxKit corpus {}: {err}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_valid_linuxkit_manifest_validates() {
    let files = linuxkit_yml("valid");
    assert!(files.len() >= 40, "only {} manifests", files.len());
    // In process, one manifest at a time: the library is what the command runs.
    for file in &files {
        let input = kiln::Input {
            name: file.display().to_string(),
            text: std::fs::read_to_string(file).expect("read"),
        };
        let (manifest, report) = kiln::load(&[input]);
        let found: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(found, Vec::<String>::new());
        assert!(
            manifest.kernel.is_some() || !manifest.onboot.is_empty(),
            "{}: nothing decoded",
            file.display()
        );
    }
    // And all of them at once through the command, merged as one build would.
    let args: Vec<&str> = ["validate"]
        .into_iter()
        .chain(files.iter().filter_map(|f| f.to_str()))
        .collect();
    let out = kiln(&args, None);
    let stderr = text(&out.stderr);
    // Merged, the examples reuse service and volume names, which is all a merge rejects.
    assert!(
        stderr.lines().all(|line| {
            line.contains("is already the name of services[")
                || line.contains("is already the name of volumes[")
                || line.starts_with("kiln: ")
        }),
        "{stderr}"
    );
}

#[test]
fn every_invalid_linuxkit_manifest_is_rejected_for_its_reason() {
    let reasons = [
        (
            "examples_static-ip.yml",
            ":28: .: ",
            "did not find expected key",
        ),
        (
            "test_cases_000_build_070_volumes_002_rw_on_ro_test.yml",
            ":12: onboot[0].binds[1]: ",
            "volume `vola` is read-only",
        ),
        (
            "test_cases_000_build_091_validate_linuxkit_yaml_linuxkit.yml",
            ":1: unknownField: ",
            "unknown section `unknownField`",
        ),
    ];
    let files = linuxkit_yml("invalid");
    assert_eq!(files.len(), reasons.len(), "{files:?}");
    for (name, place, words) in reasons {
        let file = files
            .iter()
            .find(|f| f.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is in the corpus"));
        let out = kiln(&["validate", file.to_str().expect("utf-8")], None);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = text(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{}{place}", file.display())) && first.contains(words),
            "{name}: {stderr}"
        );
        assert!(
            stderr.ends_with("kiln: 1 problem found\n"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn json_lists_every_problem_and_stdin_is_read_for_dash() {
    let yaml = "services:\n  - name: a\n    image: x\n    binds: [/a]\n    uid: nobody\n";
    let out = kiln(&["validate", "--json", "-"], Some(yaml));
    assert_eq!(out.status.code(), Some(1));
    let problems: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        problems,
        serde_json::json!([
            {"file": "<stdin>", "line": 4, "path": "services[0].binds[0]",
             "message": "\"/a\" has 1 part, expected src:dst[:opts]"},
            {"file": "<stdin>", "line": 5, "path": "services[0].uid",
             "message": "no container is named `nobody`; a user or group name must be `root` or the name of an onboot, onshutdown or services entry"},
        ])
    );
    let out = kiln(&["validate", "--json", "-"], Some("services: []\n"));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "[]");
}

#[test]
fn print_shows_the_merged_manifest_with_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("base.yml");
    let extra = dir.path().join("extra.yml");
    std::fs::write(
        &base,
        "kernel:\n  image: linuxkit/kernel:6.6\n  cmdline: console=ttyS0\nvolumes:\n  - name: data\nservices:\n  - name: a\n    image: x\n",
    )
    .expect("write");
    std::fs::write(
        &extra,
        "kernel:\n  cmdline: console=hvc0\nfiles:\n  - path: etc/motd\n    contents: hi\nservices:\n  - name: b\n    image: y\n    binds.add: [data:/data]\n",
    )
    .expect("write");
    let out = kiln(
        &[
            "validate",
            "--print",
            base.to_str().expect("utf-8"),
            extra.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_yaml_ng::from_slice(&out.stdout).expect("yaml");
    assert_eq!(
        printed,
        serde_json::json!({
            "kernel": {"image": "linuxkit/kernel:6.6", "cmdline": "console=hvc0",
                       "binary": "kernel", "tar": "kernel.tar"},
            "volumes": [{"name": "data", "readonly": false, "format": "filesystem"}],
            "services": [{"name": "a", "image": "x"},
                         {"name": "b", "image": "y", "binds.add": ["data:/data"]}],
            "files": [{"path": "etc/motd", "contents": "hi", "mode": "0600", "uid": 0, "gid": 0}],
        })
    );
    // The printed manifest is itself valid.
    let again = kiln(&["validate", "-"], Some(&text(&out.stdout)));
    assert!(again.status.success(), "{}", text(&again.stderr));
}

#[test]
fn unreadable_files_are_reported_with_the_rest() {
    let out = kiln(
        &["validate", "/nonexistent/m.yml", "-"],
        Some("onbot: []\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/m.yml: cannot read: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("<stdin>:1: onbot: unknown section"),
        "{stderr}"
    );
    assert!(stderr.ends_with("kiln: 2 problems found\n"), "{stderr}");
}

#[test]
fn the_example_manifests_in_yml_validate() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../yml");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("yml/")
        .map(|entry| entry.expect("entry").path().display().to_string())
        .filter(|path| path.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in &files {
        let out = kiln(&["validate", file], None);
        assert!(out.status.success(), "{file}: {}", text(&out.stderr));
    }
}

#[test]
fn a_valid_manifest_is_said_to_be_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("web.yml");
    std::fs::write(&file, "services:\n  - name: web\n    image: x\n").expect("write");
    let file = file.to_str().expect("utf-8");
    let out = kiln(&["validate", file, "-"], Some("onboot: []\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{file}: valid\n<stdin>: valid\n")
    );
    assert_eq!(text(&out.stderr), "");
}

/// Runs kiln with a standard output whose reader is already gone.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("kiln runs")
}

#[test]
fn a_closed_stdout_ends_a_command_quietly_as_sigpipe_does() {
    use std::os::unix::process::ExitStatusExt;
    let corpus = linuxkit_yml("valid");
    let first = corpus[0].to_str().expect("utf-8");
    for args in [
        vec!["validate", "--json", first],
        vec!["validate", "--print", first],
        vec!["validate", first],
        vec!["completions", "bash"],
        vec!["--help"],
    ] {
        let out = with_closed_stdout(&args);
        assert_eq!(
            out.status.signal(),
            Some(13),
            "kiln {args:?}: {:?}",
            out.status
        );
        assert_eq!(text(&out.stderr), "", "kiln {args:?}");
    }
}

#[test]
fn run_given_a_directory_or_a_wrong_name_names_the_images_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let listed = |args: &[&str]| {
        let run = kiln(args, None);
        assert_eq!(run.status.code(), Some(1), "{args:?}");
        text(&run.stderr)
    };
    let outdir = out.to_str().expect("utf-8");
    let stderr = listed(&["run", outdir]);
    assert!(
        stderr.contains(&format!("{outdir} holds no image")),
        "{stderr}"
    );
    for (file, text) in [
        ("web-vmlinux", "elf"),
        ("web-initrd.img", "cpio"),
        ("db-kernel", "bz"),
        ("db-initrd.img", "cpio"),
        ("half-initrd.img", "no kernel beside it"),
        ("notes-kernel", "no initrd beside it"),
        ("web.iso", "iso"),
        ("disk-efi.img", "gpt"),
        ("disk-efi.iso", "iso"),
        ("disk-efi-initrd.iso", "iso"),
    ] {
        std::fs::write(out.join(file), text).expect("write");
    }
    let images = format!(
        "{outdir} holds {outdir}/db (kernel+initrd); {outdir}/disk (raw-efi, iso-efi, \
         iso-efi-initrd); {outdir}/web (kernel+initrd, iso-bios)"
    );
    let stderr = listed(&["run", outdir]);
    assert!(
        stderr.starts_with(&format!(
            "kiln run: {outdir}: {outdir} is a directory: give OUT/NAME; {images}"
        )),
        "{stderr}"
    );
    let stderr = listed(&["run", &format!("{outdir}/wbe")]);
    assert!(
        stderr.contains(&format!("no kernel at {outdir}/wbe-vmlinux")),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with(&images), "{stderr}");
}

#[test]
fn run_takes_user_data_from_one_place_and_names_a_file_it_cannot_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("out/web");
    let image = image.to_str().expect("utf-8");
    let both = kiln(
        &["run", "--data", "{}", "--data-file", "ud.json", image],
        None,
    );
    assert_eq!(both.status.code(), Some(2));
    let said = text(&both.stderr);
    assert!(
        said.contains("the argument '--data <STRING>' cannot be used with '--data-file <FILE>'"),
        "{said}"
    );
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().expect("utf-8");
    let unread = kiln(&["run", "--data-file", missing, image], None);
    assert_eq!(unread.status.code(), Some(1));
    let said = text(&unread.stderr);
    assert!(
        said.contains(&format!(
            "--data-file {missing}: cannot read it: No such file"
        )),
        "{said}"
    );
}

#[test]
fn completions_parse_and_manual_pages_render() {
    let bash = kiln(&["completions", "bash"], None);
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    assert!(
        script.contains("validate") && script.contains("--publish"),
        "{script}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("kiln.bash");
    std::fs::write(&file, &script).expect("write");
    clidoc::bash_parses(&file).unwrap_or_else(|err| panic!("{err}"));
    for shell in ["zsh", "fish"] {
        let out = kiln(&["completions", shell], None);
        assert!(
            out.status.success() && text(&out.stdout).contains("cache"),
            "{shell}"
        );
    }
    let pages = dir.path().join("man");
    let made = kiln(&["man", pages.to_str().expect("utf-8")], None);
    assert!(made.status.success(), "{}", text(&made.stderr));
    for page in [
        "kiln.1",
        "kiln-build.1",
        "kiln-run.1",
        "kiln-cache-ls.1",
        "kiln-pkg-show-tag.1",
    ] {
        let path = pages.join(page);
        assert!(path.is_file(), "{page}");
        let shown = clidoc::rendered(&path).unwrap_or_else(|err| panic!("{err}"));
        assert!(
            shown.contains("NAME") && shown.contains("SYNOPSIS"),
            "{page}: {shown}"
        );
    }
    let run_page = text(&std::fs::read(pages.join("kiln-run.1")).expect("page"));
    assert!(run_page.contains("publish"), "{run_page}");
}
