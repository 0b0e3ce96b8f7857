//! The root-test sandbox: runs a test body as PID 1 of new pid, mount, network, uts and ipc
//! namespaces, with `/` recursively private, a fresh /proc, a private tmpfs scratch directory and
//! a cgroup parent of its own on every mounted hierarchy, so that a privileged test can kill
//! everything, mount anything and create interfaces without touching the machine it runs on.
//! Runs in: the test process (outside), and a re-executed copy of the test binary that runs the one
//! test (inside). Inside, the body runs only after [`check_isolated`] has passed.
//!
//! ```no_run
//! #[test]
//! fn something_privileged_root() {
//!     sandbox::test(|| {
//!         // PID 1 here; the host is out of reach.
//!         Ok(())
//!     });
//! }
//! ```

mod cgroup;
mod inside;
mod skipped;
mod spawn;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use std::{env, fmt, thread};

pub use cgroup::{hierarchies, Hierarchy};
pub use inside::check_isolated;
pub use skipped::line as skipped_line;

/// The result of a test body: why, in one boxed error.
pub type BodyResult = Result<(), Box<dyn Error>>;

/// Environment variables that carry the sandbox's facts from outside to inside.
const ENV_TEST: &str = "KILN_SANDBOX_TEST";
const ENV_SCRATCH: &str = "KILN_SANDBOX_SCRATCH";
const ENV_CGROUP: &str = "KILN_SANDBOX_CGROUP";
const ENV_HOST_PIDNS: &str = "KILN_SANDBOX_HOST_PIDNS";
/// Seconds a sandboxed test may run before it is killed (default 300).
const ENV_TIMEOUT: &str = "KILN_SANDBOX_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What a sandboxed test body did, as seen from outside.
#[derive(Debug)]
pub struct Outcome {
    /// The exit status of the sandbox's PID 1 (0 when the body returned `Ok`).
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The cgroup directories the sandbox created (all removed by the time this is returned).
    pub cgroup_dirs: Vec<PathBuf>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.status.success()
    }

    /// Panics, showing the body's output, unless the body passed.
    pub fn assert_passed(&self) {
        assert!(self.passed(), "sandboxed test failed: {self}");
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `body` in the sandbox and panics unless it passed. See [`run`].
pub fn test<F: FnOnce() -> BodyResult>(body: F) {
    if let Some(outcome) = run(body) {
        outcome.assert_passed();
    }
}

/// Runs `body` inside the sandbox and returns what happened, or `None` when the test was skipped
/// because it is not running as root outside CI. With `CI=true` a non-root run fails instead.
///
/// Must be called from a libtest test thread: the test's name is taken from the thread name, and
/// the test binary is run again with `--exact NAME` inside the new namespaces.
pub fn run<F: FnOnce() -> BodyResult>(body: F) -> Option<Outcome> {
    let name = test_name();
    if env::var(ENV_TEST).as_deref() == Ok(name.as_str()) {
        inside::run_body(body);
    }
    if !nix::unistd::geteuid().is_root() {
        assert!(
            env::var("CI").as_deref() != Ok("true"),
            "{name} needs root: CI=true, so this fails instead of skipping"
        );
        eprintln!("SKIPPED {name}: needs root (runs in CI)");
        skipped::count();
        return None;
    }
    let timeout = env::var(ENV_TIMEOUT)
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    match spawn::run_outside(&name, timeout) {
        Ok(outcome) => Some(outcome),
        Err(err) => panic!("sandbox for {name}: {err}"),
    }
}

/// The private tmpfs scratch directory of the running sandbox (inside only).
pub fn scratch() -> PathBuf {
    PathBuf::from(inside_env(ENV_SCRATCH))
}

/// The sandbox's cgroup parent as a path relative to each hierarchy's root, such as
/// `/kiln-sandbox-1234-0` (inside only); give containers paths below it.
pub fn cgroup_parent() -> String {
    inside_env(ENV_CGROUP)
}

fn inside_env(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| panic!("{name} is set only inside the sandbox"))
}

fn test_name() -> String {
    match thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => panic!("sandbox::run must be called from a test thread named after the test"),
    }
}
