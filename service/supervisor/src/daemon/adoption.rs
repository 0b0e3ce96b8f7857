//! Records and adoption: each running service's record (pid and start time, state, restarts,
//! what was prepared, its output pipes) kept for a supervisor that may come after this one, and
//! the services an earlier supervisor left running taken over from their records.
//! Runs in: the supervisor, at start (adoption) and whenever a service comes up (records).

use std::time::{Duration, Instant, SystemTime};

use nix::unistd::Pid;

use super::service::Run;
use super::Daemon;
use crate::child::Child;
use crate::lifecycle::{Lifecycle, State};
use crate::notify;
use crate::protocol::{epoch_secs, from_epoch_secs};
use crate::record::{self, Record};
use crate::ring::Stream;

impl Daemon {
    /// Writes service `name`'s record, for a supervisor that may come after this one.
    pub(super) fn save_record(&mut self, name: &str) {
        let Some(service) = self.services.get(name) else {
            return;
        };
        let (Some(pid), Some(prepared)) = (service.pid, &service.prepared) else {
            return;
        };
        let Some(start_ticks) = record::start_ticks(pid) else {
            // Gone already: its exit is on the way.
            return;
        };
        let up_for = service
            .lifecycle
            .up_since()
            .map_or(Duration::ZERO, |since| since.elapsed());
        let record = Record {
            pid: pid.as_raw(),
            start_ticks,
            started_at: epoch_secs(SystemTime::now() - up_for),
            state: service.lifecycle.state().to_string(),
            restarts: service.lifecycle.restarts(),
            prepared: prepared.clone(),
            stdout: service.pipes[0].clone(),
            stderr: service.pipes[1].clone(),
        };
        if let Err(err) = self.records.write(name, &record) {
            self.events.line(&format!("{name}: keep its record: {err}"));
        }
    }

    /// Adopts every service an earlier supervisor left running (by its record); cleans up after
    /// those whose process is gone.
    pub(super) async fn adopt_all(&mut self) {
        let names = self.services.names();
        for name in names {
            match self.records.read(&name) {
                Ok(Some(record)) => self.adopt(&name, record).await,
                Ok(None) => {}
                Err(err) => {
                    self.events
                        .line(&format!("{name}: the earlier supervisor's record: {err}"));
                    self.records.remove(&name);
                }
            }
        }
    }

    /// Takes over service `name`, started by an earlier supervisor, if its process still runs:
    /// the same pid and start time in /proc, and the runtime's state says running with that pid.
    pub(super) async fn adopt(&mut self, name: &str, record: Record) {
        self.records.remove(name);
        let pid = Pid::from_raw(record.pid);
        let running_here =
            self.helper.runtime().state(name).is_ok_and(|state| {
                state.pid == record.pid && state.status == runtime::Status::Running
            });
        let same_process = record::start_ticks(pid) == Some(record.start_ticks);
        let adopted = record
            .lifecycle_state()
            .filter(|_| running_here && same_process)
            .and_then(|state| Some((state, Child::adopt(pid).ok()?)));
        let Some((state, child)) = adopted else {
            self.events.line(&format!(
                "{name}: the container an earlier supervisor started (pid {pid}) is gone: cleaning up"
            ));
            self.remove_container(name, Some(record.prepared)).await;
            return;
        };
        let now = SystemTime::now();
        let up_for = now
            .duration_since(from_epoch_secs(record.started_at))
            .unwrap_or_default();
        let up_since = Instant::now()
            .checked_sub(up_for)
            .unwrap_or_else(Instant::now);
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        service.generation += 1;
        let generation = service.generation;
        service.lifecycle =
            Lifecycle::adopted(service.lifecycle.policy, state, record.restarts, up_since);
        service.since = now;
        let ring = service.ring.clone();
        let runtime = service.runtime.clone();
        let ready_file = (state == State::Running)
            .then(|| service.runtime.ready.as_ref()?.file.clone())
            .flatten();
        let mut copies = Vec::new();
        for (fd, pipe, stream) in [
            (1, &record.stdout, Stream::Stdout),
            (2, &record.stderr, Stream::Stderr),
        ] {
            let reopened = pipe
                .as_deref()
                .and_then(|pipe| record::reopen_pipe(pid, fd, pipe));
            match reopened.map(|file| self.copy_output(name, &ring, stream, file.into())) {
                Some(Ok(copy)) => copies.push(copy),
                Some(Err(err)) => self.events.line(&format!("{name}: {err}")),
                None => self.events.line(&format!(
                    "{name}: its {} is no longer the pipe it was given: not logged",
                    stream.as_str()
                )),
            }
        }
        self.watch_exit(name, generation, child);
        // Its notify socket went with the supervisor that bound it: a new one at the same path
        // (the container sees the directory) keeps its watchdog watched.
        let notify = match runtime.watchdog {
            Some(_) => match notify::Socket::bind(&self.config.notify_dir.join(name)) {
                Ok(socket) => Some(socket),
                Err(err) => {
                    self.events.line(&format!(
                        "{name}: notify socket: {err}: its watchdog is not watched"
                    ));
                    None
                }
            },
            None => None,
        };
        let ready_watch = self.watch_notes(name, generation, &runtime, ready_file, notify);
        if let Some(service) = self.services.get_mut(name) {
            service.begin_run(Run {
                pid,
                prepared: record.prepared,
                ready_watch,
                run_from: ring.next_seq(),
                output: copies,
                pipes: [record.stdout, record.stderr],
            });
        }
        self.watch_health(name, generation);
        // The record first: a supervisor killed after the line below adopts it again.
        self.save_record(name);
        self.events.line(&format!(
            "{name}: adopted, pid {pid}, {state} for {}s",
            up_for.as_secs()
        ));
    }
}
