//! The README's commands, run: every block of commands in it is tagged for the test that runs
//! it, so none can rot. Here: the set-up commands are the ones CI and the main job run, the
//! first image's manifest is `yml/first.yml`, the `kiln validate` transcript prints what it
//! shows, and the completion and manual-page commands work. The first image's boot, curl and
//! console commands run in the VM suite (`tests/vm/tests/cases.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::path::{Path, PathBuf};
use std::process::Command;

use clidoc::readme::{self, Block};

/// Every tag a block of commands may carry, and the test that runs it.
const TAGS: [(&str, &str); 8] = [
    (
        "setup",
        "readme: the_setup_commands_are_what_ci_and_the_main_job_run",
    ),
    ("first-image", "readme: the_first_image_is_yml_first"),
    (
        "first-image-run",
        "vm: the_readmes_first_image_builds_boots_serves_and_answers",
    ),
    (
        "first-image-curl",
        "vm: the_readmes_first_image_builds_boots_serves_and_answers",
    ),
    (
        "first-image-console",
        "vm: the_readmes_first_image_builds_boots_serves_and_answers",
    ),
    (
        "validate-file",
        "readme: the_validate_transcript_is_what_kiln_prints",
    ),
    (
        "validate",
        "readme: the_validate_transcript_is_what_kiln_prints",
    ),
    (
        "completions",
        "readme: the_completion_and_manual_page_commands_work",
    ),
];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A directory that looks like the repository root to relative paths (`yml/`, `pkg/`).
fn root_like() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["yml", "pkg"] {
        std::os::unix::fs::symlink(workspace().join(name), dir.path().join(name)).expect("link");
    }
    dir
}

/// Runs `command` with sh in `dir`, this build's kiln first on PATH, stderr merged.
fn sh(dir: &Path, command: &str, home: &Path) -> (bool, String) {
    let kiln_dir = Path::new(env!("CARGO_BIN_EXE_kiln"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        kiln_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} 2>&1"))
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", home)
        .output()
        .expect("sh runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn every_block_of_commands_is_tagged_for_a_test() {
    let (path, text) = readme::readme();
    let blocks = readme::blocks(&text);
    for block in &blocks {
        if block.lang == "sh" || block.lang == "console" || !block.tag.is_empty() {
            assert!(
                TAGS.iter().any(|(tag, _)| *tag == block.tag),
                "{}:{}: a `{}` block tagged `{}`: give it a `<!-- check: TAG -->` line that a test runs ({:?})",
                path.display(),
                block.line,
                block.lang,
                block.tag,
                TAGS.map(|(tag, _)| tag)
            );
        }
    }
    for (tag, _) in TAGS {
        readme::tagged(tag);
    }
}

#[test]
fn the_setup_commands_are_what_ci_and_the_main_job_run() {
    let block = readme::tagged("setup");
    assert_eq!(block.commands(), ["tools/dev main", "tools/dev test"]);
    let ci = std::fs::read_to_string(workspace().join(".ci/run")).expect(".ci/run");
    assert!(ci.lines().any(|line| line == "exec tools/dev test"), "{ci}");
    let dev = std::fs::read_to_string(workspace().join("tools/dev")).expect("tools/dev");
    for case in ["    main)", "    test)"] {
        assert!(
            dev.lines().any(|line| line.starts_with(case)),
            "tools/dev has no {case}"
        );
    }
}

#[test]
fn the_first_image_is_yml_first() {
    let block = readme::tagged("first-image");
    let file = std::fs::read_to_string(workspace().join("yml/first.yml")).expect("yml/first.yml");
    assert_eq!(
        block.text, file,
        "README's first image and yml/first.yml differ"
    );
    assert!(
        block.text.lines().count() <= 25,
        "the first image stays short"
    );
}

#[test]
fn the_validate_transcript_is_what_kiln_prints() {
    let dir = root_like();
    let file: Block = readme::tagged("validate-file");
    std::fs::write(dir.path().join("web.yml"), &file.text).expect("web.yml");
    let transcript = readme::tagged("validate").transcript();
    assert!(transcript.len() >= 2, "{transcript:?}");
    for (command, shown) in transcript {
        let (_, printed) = sh(dir.path(), &command, dir.path());
        assert_eq!(
            printed, shown,
            "`{command}` prints something else than the README shows"
        );
    }
}

#[test]
fn the_completion_and_manual_page_commands_work() {
    let dir = root_like();
    let home = tempfile::tempdir().expect("home");
    for command in readme::tagged("completions").commands() {
        let (ok, printed) = sh(dir.path(), &command, home.path());
        assert!(ok, "`{command}`: {printed}");
    }
    let share = home.path().join(".local/share");
    clidoc::bash_parses(&share.join("bash-completion/completions/kiln"))
        .unwrap_or_else(|err| panic!("{err}"));
    let page = clidoc::rendered(&share.join("man/man1/kiln-build.1"))
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(page.contains("--format"), "{page}");
}
