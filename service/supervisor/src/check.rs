//! `service check`: validates bundles without running anything, one line per problem.
//! Runs in: the image or a build host; reads files only.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use spec::{check_bundle, Bundle, Layout, Section};

/// Checks the bundles under `tree` (a /containers directory) and the bundle directories given.
/// Returns failure if any bundle has a problem, or if nothing was given to check.
pub fn run(tree: Option<&Path>, dirs: &[PathBuf]) -> ExitCode {
    let mut bundles = Vec::new();
    let mut failed = false;
    let stdout = io::stdout();
    let mut out = stdout.lock();

    if let Some(tree) = tree {
        if !tree.is_dir() {
            let _ = writeln!(out, "{}: not a directory", tree.display());
            return ExitCode::FAILURE;
        }
        let layout = Layout::new(tree);
        for section in Section::ALL {
            match layout.bundles(section) {
                Ok(found) => bundles.extend(found),
                Err(err) => {
                    let dir = layout.section_dir(section);
                    let _ = writeln!(out, "{}: cannot list: {err}", dir.display());
                    failed = true;
                }
            }
        }
    }
    bundles.extend(dirs.iter().map(|dir| Bundle::new(section_of(dir), dir)));

    if bundles.is_empty() && !failed {
        let _ = writeln!(
            out,
            "no bundles to check: give --path or bundle directories"
        );
        return ExitCode::FAILURE;
    }

    let mut invalid = 0;
    for bundle in &bundles {
        let problems = check_bundle(bundle);
        if !problems.is_empty() {
            invalid += 1;
        }
        for problem in problems {
            let _ = writeln!(out, "{}: {problem}", bundle.dir.display());
        }
    }
    let _ = writeln!(
        out,
        "{} bundles checked, {} invalid",
        bundles.len(),
        invalid
    );
    if failed || invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The section a bundle given by path belongs to, from its parent directory's name; a bundle
/// outside a /containers tree is treated as a service.
fn section_of(dir: &Path) -> Section {
    let parent = dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str());
    Section::ALL
        .into_iter()
        .find(|section| Some(section.dir_name()) == parent)
        .unwrap_or(Section::Services)
}
