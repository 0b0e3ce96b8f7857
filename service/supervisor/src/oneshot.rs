//! `service onboot` and `service onshutdown`: run every bundle of a one-shot section in name
//! order, each to completion: runtime.json -> filesystem steps -> create -> network and namespace
//! steps -> start -> wait (killed past its `timeout`) -> clean up (delete the container, unmount
//! the bundle's own mounts). A bundle that fails is reported by name, what it had done is undone,
//! and the next one runs; the exit status is 1 if any failed.
//! Runs in: the image, as root, started by init (onboot at boot, onshutdown at shutdown); one
//! tokio thread, and container creation in the `service runtime create` helper.
//! Mirrors LinuxKit's `runcInit` (pkg/init/cmd/service/runc.go) and its log names; unlike it, a
//! container's exit status counts, a runtime.json error fails one bundle rather than the run, and
//! `timeout` bounds a bundle.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use prepare::plan;
use runtime::helper::{ContainerStdio, Helper, HelperOptions};
use spec::layout::{bundles_in, Bundle, Section};

use crate::child::Exit;
use crate::launch::{self, Launched};
use crate::logfile;
use crate::ring::Stream;

/// Where a one-shot section's bundles, logs and log link are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The bundles, one directory each (`/containers/onboot`).
    pub bundles: PathBuf,
    /// Where the logs are written (`/run/log/onboot`).
    pub log_dir: PathBuf,
    /// A symlink made to `log_dir` at the end (`/var/log/onboot`).
    pub log_link: PathBuf,
}

impl Paths {
    /// A section's places: its bundles under a `/containers` tree, its logs in a directory of
    /// `log_root` and the link to them in `link_dir`.
    pub fn new(section: Section, containers: &Path, log_root: &Path, link_dir: &Path) -> Self {
        let logs = log_prefix(section);
        Self {
            bundles: containers.join(section.dir_name()),
            log_dir: log_root.join(logs),
            log_link: link_dir.join(logs),
        }
    }

    /// LinuxKit's places for a section.
    pub fn default_for(section: Section) -> Self {
        Self::new(
            section,
            Path::new(spec::layout::CONTAINERS_DIR),
            Path::new("/run/log"),
            Path::new("/var/log"),
        )
    }
}

/// The word LinuxKit uses in log names: `onboot`, or `shutdown` for onshutdown.
fn log_prefix(section: Section) -> &'static str {
    match section {
        Section::Onshutdown => "shutdown",
        _ => "onboot",
    }
}

/// Runs the section; prints one line per bundle outcome on stderr and the bundles' output on
/// stdout (the console).
pub async fn run_section(section: Section, paths: &Paths, helper: &Helper) -> ExitCode {
    let Some(bundles) = read_bundles(section, paths) else {
        return ExitCode::FAILURE;
    };
    if bundles.is_empty() {
        return ExitCode::SUCCESS;
    }
    if let Err(err) = fs::create_dir_all(&paths.log_dir) {
        eprintln!(
            "service {section}: create log directory {}: {err}",
            paths.log_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let mut failed = Vec::new();
    for bundle in &bundles {
        let log = LogFiles::new(section, bundle, &paths.log_dir);
        match run_bundle(bundle, &log, helper).await {
            Ok(exit) if exit.success() => eprintln!("{section} {}: {exit}", bundle.id()),
            Ok(exit) => {
                eprintln!("{section} {}: failed: {exit}", bundle.id());
                failed.push(bundle.id());
            }
            Err(message) => {
                eprintln!("{section} {}: failed: {message}", bundle.id());
                failed.push(bundle.id());
            }
        }
        log.copy_to_console();
    }
    link_logs(section, paths);
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "service {section}: {} of {} bundles failed: {}",
            failed.len(),
            bundles.len(),
            failed.join(", ")
        );
        ExitCode::FAILURE
    }
}

/// The section's bundles in run order; `None` (reported) if the directory cannot be read.
fn read_bundles(section: Section, paths: &Paths) -> Option<Vec<Bundle>> {
    bundles_in(section, &paths.bundles)
        .map_err(|err| eprintln!("service {section}: read {}: {err}", paths.bundles.display()))
        .ok()
}

/// Prints, for every bundle, the steps a run would take, without taking any; exits 1 if a
/// bundle's runtime.json cannot be read or is invalid.
pub fn print_plans(section: Section, paths: &Paths) -> ExitCode {
    let Some(bundles) = read_bundles(section, paths) else {
        return ExitCode::FAILURE;
    };
    let hierarchies = match prepare::cgroup::hierarchies() {
        Ok(hierarchies) => hierarchies,
        Err(err) => {
            eprintln!("service {section}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut status = ExitCode::SUCCESS;
    for bundle in &bundles {
        let id = bundle.id();
        let config = match launch::load_runtime(bundle) {
            Ok(config) => config,
            Err(message) => {
                eprintln!("{section} {id}: {message}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let mut plan = format!("{section} {id}:\n");
        for step in plan::filesystem(&bundle.dir, &config, &hierarchies) {
            plan.push_str(&format!("  {step}\n"));
        }
        plan.push_str(&format!(
            "  create container {id} from {}\n",
            bundle.dir.display()
        ));
        for step in plan::process(&config) {
            plan.push_str(&format!("  {step}\n"));
        }
        match config.run_limit() {
            Some(secs) => plan.push_str(&format!("  start and wait, killing it after {secs}s\n")),
            None => plan.push_str("  start and wait\n"),
        }
        // A closed stdout (`| head`) ends the listing quietly.
        if io::stdout().write_all(plan.as_bytes()).is_err() {
            return status;
        }
    }
    status
}

/// One bundle from runtime.json to clean-up. `Err` carries the message naming what failed.
async fn run_bundle(bundle: &Bundle, log: &LogFiles, helper: &Helper) -> Result<Exit, String> {
    let id = bundle.id();
    let config = launch::load_runtime(bundle)?;
    let options = HelperOptions {
        init: config.init,
        ..HelperOptions::default()
    };
    let Launched {
        child,
        mut prepared,
    } = launch::launch(helper, bundle, &config, &options, || log.open()).await?;
    let runtime = helper.runtime();
    let limit = config.run_limit();
    let outcome = match child.wait(limit.map(Duration::from_secs)).await {
        Ok(Some(exit)) => Ok(exit),
        Ok(None) => {
            let mut message = format!(
                "still running after its timeout of {}s: killed",
                limit.unwrap_or_default()
            );
            for problem in launch::remove(runtime, &id, Some(&child)).await {
                message.push_str(&format!("; {problem}"));
            }
            Err(message)
        }
        Err(err) => Err(format!("wait for container init {}: {err}", child.pid())),
    };
    let mut problems = launch::remove(runtime, &id, None).await;
    problems.extend(
        prepared
            .release_mounts_under(&bundle.dir)
            .iter()
            .map(ToString::to_string),
    );
    for problem in problems {
        eprintln!("{} {id}: clean-up: {problem}", bundle.section);
    }
    outcome
}

/// `/var/log/onboot` -> `/run/log/onboot`, unless something is there already.
fn link_logs(section: Section, paths: &Paths) {
    if let Some(parent) = paths.log_link.parent() {
        let _ = fs::create_dir_all(parent);
    }
    match symlink(&paths.log_dir, &paths.log_link) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => eprintln!(
            "service {section}: link {} to {}: {err}",
            paths.log_link.display(),
            paths.log_dir.display()
        ),
    }
}

/// A bundle's two log files: `onboot.NNN-name.log` (stderr) and `onboot.NNN-name.out.log` (stdout).
#[derive(Debug)]
struct LogFiles {
    stderr: PathBuf,
    stdout: PathBuf,
}

impl LogFiles {
    fn new(section: Section, bundle: &Bundle, dir: &Path) -> Self {
        let base = format!("{}.{}", log_prefix(section), bundle.id());
        Self {
            stderr: dir.join(logfile::file_name(&base, Stream::Stderr)),
            stdout: dir.join(logfile::file_name(&base, Stream::Stdout)),
        }
    }

    /// Truncates both and opens them as the container's stdout and stderr; stdin is /dev/null.
    fn open(&self) -> Result<ContainerStdio, String> {
        let create = |path: &Path| -> Result<OwnedFd, String> {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map(OwnedFd::from)
                .map_err(|err| format!("open log {}: {err}", path.display()))
        };
        let stdin = File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|err| format!("open /dev/null: {err}"))?;
        Ok(ContainerStdio {
            stdin,
            stdout: create(&self.stdout)?,
            stderr: create(&self.stderr)?,
        })
    }

    /// Writes both logs to stdout (the console), stderr's first, as LinuxKit does.
    fn copy_to_console(&self) {
        let mut console = io::stdout().lock();
        for path in [&self.stderr, &self.stdout] {
            if let Ok(bytes) = fs::read(path) {
                let _ = console.write_all(&bytes);
            }
        }
        let _ = console.flush();
    }
}
