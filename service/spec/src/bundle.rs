//! The whole check of one bundle: config.json, runtime.json and the root filesystem, each
//! problem named by file and field, without running anything.
//! Runs in: `service check`, the supervisor before it creates a container, the builder's tests.

use std::path::{Path, PathBuf};

use crate::layout::Bundle;
use crate::problem::Problem;
use crate::runtime::Runtime;
use crate::{config, runtime};

/// Every problem with `bundle`; empty when it can be run. Fields are prefixed with the file
/// they are in (`config.json: process.args`).
pub fn check_bundle(bundle: &Bundle) -> Vec<Problem> {
    let mut problems = Vec::new();
    let in_file = |file: &str, problem: Problem| Problem {
        field: if problem.field == "." {
            file.to_owned()
        } else {
            format!("{file}: {}", problem.field)
        },
        message: problem.message,
    };

    if !bundle.dir.is_dir() {
        problems.push(Problem::new(
            bundle.dir.display().to_string(),
            "not a directory",
        ));
        return problems;
    }

    let root_path = match config::load(&bundle.dir) {
        Ok(spec) => {
            for problem in config::check(&spec) {
                problems.push(in_file(config::FILE_NAME, problem));
            }
            spec.root().as_ref().map(|root| root.path().clone())
        }
        Err(err) => {
            problems.push(in_file(config::FILE_NAME, err.problem()));
            None
        }
    };

    match Runtime::load(&bundle.dir) {
        Ok(runtime) => {
            for problem in runtime.check() {
                problems.push(in_file(runtime::FILE_NAME, problem));
            }
        }
        Err(err) => problems.push(in_file(runtime::FILE_NAME, err.problem())),
    }

    if let Some(problem) = check_rootfs(bundle, root_path) {
        problems.push(problem);
    }
    problems
}

/// The root filesystem (`root.path`, normally `rootfs/`) must be there; in a writable bundle it is
/// the mount point for the overlay of `lower/`.
fn check_rootfs(bundle: &Bundle, root_path: Option<PathBuf>) -> Option<Problem> {
    let root = root_dir(&bundle.dir, root_path.as_deref());
    if root.is_dir() {
        return None;
    }
    let what = if bundle.is_writable() {
        "the overlay mount point"
    } else {
        "the root filesystem"
    };
    Some(Problem::new(
        "rootfs",
        format!("{what} {} is missing", root.display()),
    ))
}

/// The root filesystem directory of a bundle: config.json's `root.path`, relative to the bundle
/// unless absolute; `rootfs` when not given.
pub fn root_dir(bundle_dir: &Path, root_path: Option<&Path>) -> PathBuf {
    match root_path {
        Some(path) if !path.as_os_str().is_empty() => bundle_dir.join(path),
        _ => bundle_dir.join("rootfs"),
    }
}
