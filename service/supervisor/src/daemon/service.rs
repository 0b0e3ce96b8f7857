//! One supervised service as plain data: its bundle, runtime.json, lifecycle, current run and
//! output, with the one way a run begins (started or adopted) and ends, whether it is up as a
//! dependency, and what `list` and `status` show of it.
//! Runs in: the supervisor's event loop. Pure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;
use prepare::Prepared;
use spec::Runtime;
use tokio::task::JoinHandle;

use crate::health::{self, Health};
use crate::lifecycle::{Lifecycle, Policy, State};
use crate::protocol::{epoch_secs, LastProbe, ServiceInfo};
use crate::ring::Ring;

/// One supervised service.
#[derive(Debug)]
pub struct Service {
    pub bundle: spec::Bundle,
    pub runtime: Runtime,
    pub lifecycle: Lifecycle,
    /// Which start of the service this is: messages about an earlier run are ignored.
    pub generation: u64,
    pub pid: Option<Pid>,
    pub prepared: Option<Prepared>,
    /// The task watching the current run's ready file and notify socket.
    pub ready_watch: Option<JoinHandle<()>>,
    /// Its recent output, across restarts.
    pub ring: Ring,
    /// The first ring line of the current run.
    pub run_from: u64,
    /// The tasks copying the current run's stdout and stderr.
    pub output: Vec<JoinHandle<()>>,
    /// The run failed: its last lines go to the event log once its output is read.
    pub report_output: bool,
    /// When it entered its current state.
    pub since: SystemTime,
    /// Why it could not be started, until it is.
    pub problem: Option<String>,
    /// The pipes of the current run's stdout and stderr (`pipe:[INODE]`).
    pub pipes: [Option<String>; 2],
    /// The last `STATUS=` text the current run sent on its notify socket.
    pub status: Arc<Mutex<Option<String>>>,
    /// The current run's health, with a healthcheck.
    pub health: health::Shared,
    /// The task probing the current run's health.
    pub health_watch: Option<JoinHandle<()>>,
}

/// What a run of a service has once its container init is going: started here or adopted from
/// an earlier supervisor.
#[derive(Debug)]
pub struct Run {
    pub pid: Pid,
    pub prepared: Prepared,
    pub ready_watch: Option<JoinHandle<()>>,
    /// The first ring line of this run.
    pub run_from: u64,
    pub output: Vec<JoinHandle<()>>,
    pub pipes: [Option<String>; 2],
}

impl Service {
    /// A service read from its bundle, waiting to be started.
    pub fn new(bundle: spec::Bundle, runtime: Runtime) -> Self {
        let policy = policy(&runtime);
        Self {
            bundle,
            runtime,
            lifecycle: Lifecycle::new(policy),
            generation: 0,
            pid: None,
            prepared: None,
            ready_watch: None,
            ring: Ring::default(),
            run_from: 0,
            output: Vec::new(),
            report_output: false,
            since: SystemTime::now(),
            problem: None,
            pipes: [None, None],
            status: Arc::default(),
            health: Arc::default(),
            health_watch: None,
        }
    }

    /// Takes on `run` as the current run: the one way a run begins, whether this supervisor
    /// started it or adopted it. Whatever kept the service from starting is over.
    pub fn begin_run(&mut self, run: Run) {
        let Run {
            pid,
            prepared,
            ready_watch,
            run_from,
            output,
            pipes,
        } = run;
        self.pid = Some(pid);
        self.prepared = Some(prepared);
        self.ready_watch = ready_watch;
        self.run_from = run_from;
        self.output = output;
        self.pipes = pipes;
        self.problem = None;
    }

    /// Ends the current run once its processes are gone: no pid, no watching tasks; returns
    /// what was prepared for it, to undo. Its output tasks and first line stay, for the report.
    pub fn end_run(&mut self) -> Option<Prepared> {
        for watch in [self.ready_watch.take(), self.health_watch.take()]
            .into_iter()
            .flatten()
        {
            watch.abort();
        }
        self.pid = None;
        self.prepared.take()
    }

    /// Whether it is up as a dependency: running, or ready if it declares readiness; and
    /// healthy if it has a healthcheck.
    pub fn is_up(&self) -> bool {
        let started = match self.lifecycle.state() {
            State::Ready => true,
            State::Running => self.runtime.ready.is_none(),
            _ => false,
        };
        started && (self.runtime.healthcheck.is_none() || self.health() == Some(Health::Healthy))
    }

    /// Its health while it runs, with a healthcheck.
    pub fn health(&self) -> Option<Health> {
        self.runtime.healthcheck.as_ref()?;
        if !self.lifecycle.state().runs() {
            return None;
        }
        self.health.lock().ok().map(|report| report.health)
    }

    /// The current run's last probe and when it ended, with a healthcheck.
    pub fn last_probe(&self) -> Option<(health::Outcome, SystemTime)> {
        self.runtime.healthcheck.as_ref()?;
        self.health.lock().ok()?.last.clone()
    }

    /// What `list` and `status` show of it.
    pub fn info(&self, name: &str) -> ServiceInfo {
        ServiceInfo {
            name: name.to_owned(),
            state: self.lifecycle.state().to_string(),
            pid: self.pid.map(Pid::as_raw),
            since: epoch_secs(self.since),
            uptime: self
                .lifecycle
                .up_since()
                .map(|since| since.elapsed().as_secs_f64()),
            restarts: self.lifecycle.restarts(),
            last_exit: self.lifecycle.last_exit().map(Into::into),
            depends_on: self.runtime.depends_on.clone(),
            problem: self.problem.clone().or_else(|| {
                (self.lifecycle.state() == State::Failed)
                    .then(|| self.lifecycle.last_fault().map(|fault| fault.to_string()))
                    .flatten()
            }),
            status_text: self.status.lock().ok().and_then(|status| status.clone()),
            health: self.health().map(|health| health.to_string()),
            last_probe: self.last_probe().map(|(outcome, at)| LastProbe {
                passed: outcome.passed,
                detail: outcome.detail,
                at: epoch_secs(at),
            }),
        }
    }
}

/// The runtime.json keys that shape a service's life.
fn policy(runtime: &Runtime) -> Policy {
    let defaults = Policy::default();
    Policy {
        restart: runtime.restart.unwrap_or(defaults.restart),
        stop_signal: runtime
            .stop_signal
            .as_deref()
            .and_then(spec::signal::parse)
            .unwrap_or(defaults.stop_signal),
        stop_timeout: runtime
            .stop_timeout
            .map_or(defaults.stop_timeout, Duration::from_secs),
        restart_limit: runtime
            .restart_limit
            .map(|limit| (limit.burst, Duration::from_secs(limit.interval))),
        on_failure: runtime.on_failure,
    }
}
