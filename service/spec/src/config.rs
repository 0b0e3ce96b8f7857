//! `config.json`, the OCI runtime spec of a bundle: read through the `oci-spec` crate with errors
//! that name the field, and checked for what needs no filesystem access, so that a bad bundle is
//! reported in our words before the runtime sees it.
//! Runs in: `service check`, the runtime before every create, and the builder after writing.
//! Mirrors the OCI runtime spec, config.md (process, root, mounts, linux.namespaces).

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{PosixRlimitType, Process, Spec};

use crate::json::{self, LoadError};
use crate::problem::Problem;

/// The file name of the OCI config inside a bundle.
pub const FILE_NAME: &str = "config.json";

/// Mount options that make a mount a bind mount, which needs no filesystem type.
const BIND_OPTIONS: [&str; 2] = ["bind", "rbind"];

/// The most bytes one argument or environment string may take in execve, its NUL included:
/// the kernel's MAX_ARG_STRLEN (32 pages). A longer one fails the exec with E2BIG.
pub const MAX_ARG_STRLEN: usize = 32 * 4096;

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
            let shown: String = entry.chars().take(64).collect();
            problems.push(Problem::new(
                format!("process.env[{i}]"),
                format!("`{shown}` is not NAME=value"),
            ));
        }
    }
    let lists = [
        ("args", "an argument", process.args()),
        ("env", "the environment", process.env()),
    ];
    for (field, what, list) in lists {
        for (i, text) in list.iter().flatten().enumerate() {
            if text.len() >= MAX_ARG_STRLEN {
                problems.push(Problem::new(
                    format!("process.{field}[{i}]"),
                    format!(
                        "{} bytes; execve takes at most {} in one string (E2BIG: {what} is too large)",
                        text.len(),
                        MAX_ARG_STRLEN - 1
                    ),
                ));
            }
        }
    }
}

/// Whether execve can take the process's arguments and environment together, under the stack
/// limit the process runs with: its own RLIMIT_STACK when config.json sets one, else
/// `inherited_stack` (the runtime's soft limit, which the container inherits). The kernel takes
/// at most a quarter of the stack limit, never more than 6 MiB nor less than 128 KiB, for the
/// strings and their pointers together.
pub fn check_exec_size(process: &Process, inherited_stack: u64) -> Option<Problem> {
    let stack = process
        .rlimits()
        .iter()
        .flatten()
        .find(|rlimit| rlimit.typ() == PosixRlimitType::RlimitStack)
        .map_or(inherited_stack, |rlimit| rlimit.soft());
    const STK_LIM: u64 = 8 << 20;
    const ARG_MAX: u64 = 32 * 4096;
    let limit = (STK_LIM / 4 * 3).min(stack / 4).max(ARG_MAX);
    let args = process.args().as_deref().unwrap_or_default();
    let env = process.env().as_deref().unwrap_or_default();
    let strings: u64 = args.iter().chain(env).map(|s| s.len() as u64 + 1).sum();
    let pointers = (args.len().max(1) + env.len()) as u64 * 8;
    let size = strings + pointers;
    (size > limit).then(|| {
        Problem::new(
            "process",
            format!(
                "args and env take {size} bytes; with a stack limit of {stack} bytes execve takes \
                 at most {limit} (E2BIG: the environment and arguments are too large)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(args: &[&str], env: &[String], stack: Option<u64>) -> Spec {
        let mut config = serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {"args": args, "env": env, "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"}
        });
        if let Some(stack) = stack {
            config["process"]["rlimits"] =
                serde_json::json!([{"type": "RLIMIT_STACK", "soft": stack, "hard": stack}]);
        }
        from_json(config.to_string().as_bytes()).expect("a valid config")
    }

    #[test]
    fn a_string_execve_refuses_is_named_by_field() {
        let huge = format!("HUGE={}", "x".repeat(MAX_ARG_STRLEN));
        let spec = process(&["sh"], &["PATH=/bin".into(), huge], None);
        let problems = check(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "process.env[1]");
        assert!(problems[0]
            .message
            .contains("E2BIG: the environment is too large"));
        // The longest string the kernel takes passes.
        let most = format!("A={}", "x".repeat(MAX_ARG_STRLEN - 3));
        assert!(check(&process(&["sh"], &[most], None)).is_empty());
    }

    #[test]
    fn args_and_env_together_are_held_to_a_quarter_of_the_stack_limit() {
        // 40 strings of 64 KiB: 2.5 MiB, past the 2 MiB of an 8 MiB stack.
        let env: Vec<String> = (0..40)
            .map(|i| format!("V{i}={}", "x".repeat(64 << 10)))
            .collect();
        let spec = process(&["sh"], &env, None);
        let process = spec.process().as_ref().unwrap();
        let problem = check_exec_size(process, 8 << 20).expect("too large for 8 MiB");
        assert_eq!(problem.field, "process");
        assert!(
            problem.message.contains("at most 2097152"),
            "{}",
            problem.message
        );
        // An unlimited inherited stack allows 6 MiB; so does a stack rlimit in the config.
        assert!(check_exec_size(process, u64::MAX).is_none());
        let spec = self::process(&["sh"], &env, Some(64 << 20));
        assert!(check_exec_size(spec.process().as_ref().unwrap(), 8 << 20).is_none());
        let spec = self::process(&["sh"], &env, Some(1 << 20));
        let problem = check_exec_size(spec.process().as_ref().unwrap(), u64::MAX).unwrap();
        assert!(
            problem.message.contains("at most 262144"),
            "{}",
            problem.message
        );
    }
}
