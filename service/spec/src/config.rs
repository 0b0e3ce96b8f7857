//! `config.json`, the OCI runtime spec of a bundle: read through the `oci-spec` crate with errors
//! that name the field, and checked for what needs no filesystem access, so that a bad bundle is
//! reported in our words before the runtime sees it.
//! Runs in: `service check`, the runtime before every create, and the builder after writing.
//! Mirrors the OCI runtime spec, config.md (process, root, mounts, linux.namespaces).

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::json::{self, LoadError};
use crate::problem::Problem;

/// The file name of the OCI config inside a bundle.
pub const FILE_NAME: &str = "config.json";

/// Mount options that make a mount a bind mount, which needs no filesystem type.
const BIND_OPTIONS: [&str; 2] = ["bind", "rbind"];

/// Reads and parses `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, LoadError> {
    json::load(&bundle.join(FILE_NAME)).map_err(|err| match err {
        LoadError::Parse { path, problem } => LoadError::Parse {
            path,
            problem: reword(problem),
        },
        other => other,
    })
}

/// Parses a config.json document.
pub fn from_json(bytes: &[u8]) -> Result<Spec, Problem> {
    json::parse(bytes).map_err(reword)
}

/// oci-spec reports an unknown capability as "no variant for CAP_X (converted to X)".
fn reword(problem: Problem) -> Problem {
    match problem.message.strip_prefix("no variant for ") {
        Some(rest) if problem.field.starts_with("process.capabilities.") => {
            let name = rest.split_whitespace().next().unwrap_or(rest);
            Problem::new(problem.field, format!("unknown capability `{name}`"))
        }
        _ => problem,
    }
}

/// Checks a parsed spec for what would make a create fail or misbehave; every problem names its
/// field. Capability names, namespace types and rlimit types are already checked by parsing.
pub fn check(spec: &Spec) -> Vec<Problem> {
    let mut problems = Vec::new();
    check_process(spec, &mut problems);
    match spec.root() {
        None => problems.push(Problem::new(
            "root",
            "missing: a bundle needs a root filesystem",
        )),
        Some(root) if root.path().as_os_str().is_empty() => {
            problems.push(Problem::new("root.path", "empty"))
        }
        Some(_) => {}
    }
    for (i, mount) in spec.mounts().iter().flatten().enumerate() {
        let destination = mount.destination();
        if !destination.is_absolute() {
            problems.push(Problem::new(
                format!("mounts[{i}].destination"),
                format!("`{}` is not an absolute path", destination.display()),
            ));
        }
        let is_bind = mount
            .options()
            .iter()
            .flatten()
            .any(|option| BIND_OPTIONS.contains(&option.as_str()));
        let has_type = mount.typ().as_deref().is_some_and(|kind| !kind.is_empty());
        if !has_type && !is_bind {
            problems.push(Problem::new(
                format!("mounts[{i}].type"),
                "missing: give a filesystem type, or a bind or rbind option",
            ));
        }
    }
    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        for (i, namespace) in linux.namespaces().iter().flatten().enumerate() {
            if !seen.insert(namespace.typ()) {
                problems.push(Problem::new(
                    format!("linux.namespaces[{i}].type"),
                    format!("namespace `{}` is listed twice", namespace.typ()),
                ));
            }
            if let Some(path) = namespace.path() {
                if !path.is_absolute() {
                    problems.push(Problem::new(
                        format!("linux.namespaces[{i}].path"),
                        format!("`{}` is not an absolute path", path.display()),
                    ));
                }
            }
        }
    }
    problems
}

fn check_process(spec: &Spec, problems: &mut Vec<Problem>) {
    let Some(process) = spec.process() else {
        problems.push(Problem::new("process", "missing: nothing to run"));
        return;
    };
    match process.args() {
        Some(args) if !args.is_empty() => {
            if args[0].is_empty() {
                problems.push(Problem::new("process.args[0]", "empty program name"));
            }
        }
        _ => problems.push(Problem::new(
            "process.args",
            "must not be empty: give the program to run",
        )),
    }
    if !process.cwd().is_absolute() {
        problems.push(Problem::new(
            "process.cwd",
            format!("`{}` is not an absolute path", process.cwd().display()),
        ));
    }
    for (i, entry) in process.env().iter().flatten().enumerate() {
        if !entry.contains('=') || entry.starts_with('=') {
            problems.push(Problem::new(
                format!("process.env[{i}]"),
                format!("`{entry}` is not NAME=value"),
            ));
        }
    }
}
