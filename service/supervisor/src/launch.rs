//! Launching one bundle's container, the same way for one-shot bundles and services: its
//! runtime.json read and checked, then filesystem steps -> create (through the single-threaded
//! helper) -> network and namespace steps -> start. A failure at any step removes the container and undoes what the
//! bundle had done, so nothing half-made is left; the message names the step.
//! Runs in: the supervisor (`service onboot`, `service onshutdown`, `service system-init`).
//! Mirrors LinuxKit's create / prepareProcess / start sequence (runc.go, start.go).

use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use prepare::{plan, Prepared};
use runtime::helper::{ContainerStdio, Helper, HelperOptions};
use spec::{Bundle, Runtime};

use crate::child::Child;

/// A started container: its init (a child of this process) and what was prepared for it.
#[derive(Debug)]
pub struct Launched {
    pub child: Child,
    pub prepared: Prepared,
}

/// Reads and checks a bundle's runtime.json; the message names the file and the fields.
pub fn load_runtime(bundle: &Bundle) -> Result<Runtime, String> {
    let config = Runtime::load(&bundle.dir).map_err(|err| err.to_string())?;
    let problems = config.check();
    if problems.is_empty() {
        return Ok(config);
    }
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(format!("runtime.json: {}", problems.join("; ")))
}

/// Prepares, creates and starts `bundle`'s container with `config` (its runtime.json); `stdio`
/// is opened once the filesystem steps are done.
pub async fn launch(
    helper: &Helper,
    bundle: &Bundle,
    config: &Runtime,
    options: &HelperOptions,
    stdio: impl FnOnce() -> Result<ContainerStdio, String>,
) -> Result<Launched, String> {
    let id = bundle.id();
    let hierarchies = if config.cgroups.is_empty() {
        Vec::new()
    } else {
        prepare::cgroup::hierarchies().map_err(|err| format!("runtime.json cgroups: {err}"))?
    };
    let mut prepared = Prepared::new();
    if let Err(err) =
        prepared.apply_filesystem(&plan::filesystem(&bundle.dir, config, &hierarchies))
    {
        return Err(undo(prepared, err.to_string()).await);
    }
    let stdio = match stdio() {
        Ok(stdio) => stdio,
        Err(err) => return Err(undo(prepared, err).await),
    };
    // Blocks the daemon's only thread until the helper (`service runtime create`) has exited,
    // on purpose: while it runs no SIGCHLD is handled, so the orphan reaper cannot take the
    // helper's exit status before `create` waits for it, and nothing else the daemon does can
    // see the container half made. libcontainer itself never runs in this multithreaded process.
    let pid = match helper.create(&id, &bundle.dir, stdio, options) {
        Ok(pid) => pid,
        Err(err) => return Err(undo(prepared, err.to_string()).await),
    };
    let child = match Child::new(pid) {
        Ok(child) => child,
        Err(err) => {
            let _ = helper.runtime().kill(&id, Signal::SIGKILL.into(), true);
            let _ = waitpid(pid, None);
            let mut message = format!("watch container init {pid}: {err}");
            for problem in remove(helper.runtime(), &id, None).await {
                message.push_str(&format!("; {problem}"));
            }
            return Err(undo(prepared, message).await);
        }
    };
    let started = async {
        prepared
            .apply_process(&plan::process(config), pid)
            .await
            .map_err(|err| err.to_string())?;
        helper.runtime().start(&id).map_err(|err| err.to_string())
    }
    .await;
    if let Err(mut message) = started {
        for problem in remove(helper.runtime(), &id, Some(&child)).await {
            message.push_str(&format!("; {problem}"));
        }
        return Err(undo(prepared, message).await);
    }
    Ok(Launched { child, prepared })
}

/// Kills every process left in container `id`, reaps its init when `child` is given (a running
/// one), and deletes it. Returns what went wrong.
pub async fn remove(runtime: &runtime::Runtime, id: &str, child: Option<&Child>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(child) = child {
        if let Err(err) = runtime.kill(id, Signal::SIGKILL.into(), true) {
            problems.push(format!("kill: {err}"));
        }
        if let Err(err) = child.wait(None).await {
            problems.push(format!("wait for container init {}: {err}", child.pid()));
        }
    }
    match runtime.delete(id, true) {
        Ok(()) | Err(runtime::Error::NotFound { .. }) => {}
        Err(err) => problems.push(err.to_string()),
    }
    problems
}

/// Undoes what the bundle did and returns the failure message, with any undo problems added.
pub async fn undo(prepared: Prepared, message: String) -> String {
    let problems = prepared.undo().await;
    if problems.is_empty() {
        return message;
    }
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!("{message} (and could not undo: {})", problems.join("; "))
}
