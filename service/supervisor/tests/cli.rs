//! `service`'s command line as an operator meets it, without a supervisor: a closed stdout ends
//! a command quietly, and the shell completions and manual pages are generated from the
//! command definitions and parse.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::process::{Command, Output, Stdio};

fn service(args: &[&str], stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_service"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("service runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A bundle with a problem: `service check` prints a line about it, then exits 1.
    let bundle = dir.path().join("web");
    fs::create_dir(&bundle).expect("bundle");
    fs::write(bundle.join("config.json"), "{").expect("config");
    let root = dir.path().join("state");
    let bundle = bundle.to_str().expect("utf-8");
    let root = root.to_str().expect("utf-8");
    for (args, code) in [
        (vec!["check", bundle], 1),
        (vec!["completions", "bash"], 0),
        (vec!["runtime", "--root", root, "list"], 0),
        (
            vec!["runtime", "--root", root, "list", "--format", "json"],
            0,
        ),
        (vec!["--help"], 0),
    ] {
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        drop(reader);
        let out = service(&args, Stdio::from(writer));
        assert_eq!(
            out.status.code(),
            Some(code),
            "service {args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "service {args:?}");
    }
}

#[test]
fn completions_parse_and_manual_pages_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = service(&["completions", "bash"], Stdio::piped());
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let script = text(&bash.stdout);
    assert!(
        script.contains("exec") && script.contains("--follow"),
        "{script}"
    );
    let file = dir.path().join("service.bash");
    fs::write(&file, &script).expect("write");
    clidoc::bash_parses(&file).unwrap_or_else(|err| panic!("{err}"));
    // The script completes subcommands when bash sources it.
    let completed = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(service lo); COMP_CWORD=1; _service service lo service; echo \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .expect("bash");
    assert_eq!(
        text(&completed.stdout).trim(),
        "logs",
        "{}",
        text(&completed.stderr)
    );
    let pages = dir.path().join("man");
    let made = service(&["man", pages.to_str().expect("utf-8")], Stdio::piped());
    assert!(made.status.success(), "{}", text(&made.stderr));
    for page in [
        "service.1",
        "service-exec.1",
        "service-logs.1",
        "service-runtime-create.1",
    ] {
        let shown = clidoc::rendered(&pages.join(page)).unwrap_or_else(|err| panic!("{err}"));
        assert!(shown.contains("SYNOPSIS"), "{page}: {shown}");
    }
    assert!(
        !pages.join("service-runtime-dev-bind.1").exists(),
        "hidden commands have no page"
    );
}

#[test]
fn the_init_package_carries_the_current_bash_completion() {
    let packaged = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../pkg/init/files/usr/share/bash-completion/completions/service"
    );
    let generated = service(&["completions", "bash"], Stdio::piped());
    assert!(
        fs::read(packaged).expect("pkg/init has the completion") == generated.stdout,
        "{packaged} is out of date: write it again with `service completions bash > {packaged}`"
    );
}
