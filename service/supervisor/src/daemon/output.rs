//! A service's output: pipes for its stdout and stderr copied into its log files and its ring
//! (read again through /proc after adoption), the last lines of a failed run reported, and the
//! supervisor's own event log (the console and `service.log`).
//! Runs in: the supervisor's event loop; the copies are tasks on its thread.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use runtime::helper::ContainerStdio;
use tokio::task::JoinHandle;

use super::Daemon;
use crate::console::{self, Weight};
use crate::logfile::{self, LogFile};
use crate::record;
use crate::ring::{Ring, Stream};

/// How long the output of a run that ended is awaited before it is reported.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// How many lines of a failed run's output go to the event log.
const REPORTED_LINES: usize = 3;

impl Daemon {
    /// Once the run's output has been read (its processes are gone, so the pipes end; a process
    /// that escaped the container gets [`OUTPUT_GRACE`]), puts the last lines of a failed run in
    /// the event log: the console shows why a service failed without opening its log files (a
    /// crash loop's first round).
    pub(super) async fn report_output(&mut self, name: &str) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        // Copy tasks not awaited go on by themselves until their pipes end.
        let copies = std::mem::take(&mut service.output);
        if !std::mem::take(&mut service.report_output) {
            return;
        }
        let (ring, from) = (service.ring.clone(), service.run_from);
        let weight = Weight::of_round(service.lifecycle.restarts());
        let read_all = async {
            for copy in copies {
                let _ = copy.await;
            }
        };
        let _ = tokio::time::timeout(OUTPUT_GRACE, read_all).await;
        for line in ring.last(REPORTED_LINES, from) {
            self.events
                .weighed(&format!("{name}: output: {line}"), weight);
        }
    }

    /// A task copying `read` (a service's stdout or stderr pipe) into its log file and `ring`.
    pub(super) fn copy_output(
        &self,
        name: &str,
        ring: &Ring,
        stream: Stream,
        read: OwnedFd,
    ) -> Result<JoinHandle<()>, String> {
        let path = self.config.log_dir.join(logfile::file_name(name, stream));
        let log = LogFile::open(&path, self.config.log_max_size, self.config.log_keep)
            .map_err(|err| format!("open log {}: {err}", path.display()))?;
        Ok(tokio::spawn(logfile::copy_pipe(
            read,
            log,
            ring.clone(),
            stream,
        )))
    }

    /// Pipes for a service's stdout and stderr, with tasks copying them into its log files and
    /// `ring`; the tasks are added to `copies`, the pipes' ids to `pipes`.
    ///
    /// The container gets each pipe opened again read-write (through /proc/self/fd): as a
    /// reader of its own pipe, it never meets EPIPE or SIGPIPE while no supervisor reads (one
    /// died, the next is not up yet); its lines wait in the pipe for the next supervisor, which
    /// opens the same pipe through /proc/PID/fd. The copy still ends when the container's
    /// processes are gone, as they hold the only write ends.
    pub(super) fn output_pipes(
        &self,
        name: &str,
        ring: &Ring,
        copies: &mut Vec<JoinHandle<()>>,
        pipes: &mut [Option<String>; 2],
    ) -> Result<ContainerStdio, String> {
        let mut ends = Vec::new();
        for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let (read, write) = pipe2(OFlag::O_CLOEXEC)
                .map_err(|err| format!("create pipe for {name}'s output: {err}"))?;
            let shared = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(OFlag::O_CLOEXEC.bits())
                .open(format!("/proc/self/fd/{}", write.as_raw_fd()))
                .map_err(|err| format!("open {name}'s output pipe read-write: {err}"))?;
            drop(write);
            pipes[index] = record::pipe_id(&read);
            copies.push(self.copy_output(name, ring, stream, read)?);
            ends.push(OwnedFd::from(shared));
        }
        let stdin = fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|err| format!("open /dev/null: {err}"))?;
        let stderr = ends.pop().ok_or("no pipe")?;
        let stdout = ends.pop().ok_or("no pipe")?;
        Ok(ContainerStdio {
            stdin,
            stdout,
            stderr,
        })
    }
}

/// Supervisor events, one line each, in `service.log` and, as the console level says, on the
/// console (stdout).
#[derive(Debug)]
pub(super) struct EventLog {
    file: fs::File,
    console: console::Level,
}

impl EventLog {
    pub(super) fn open(path: &Path, console: console::Level) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|err| io::Error::new(err.kind(), format!("open {}: {err}", path.display())))?;
        Ok(Self { file, console })
    }

    /// A line an operator must see.
    pub(super) fn line(&mut self, line: &str) {
        self.weighed(line, Weight::Notice);
    }

    /// A line of detail: on the console at level `all` only.
    pub(super) fn detail(&mut self, line: &str) {
        self.weighed(line, Weight::Detail);
    }

    pub(super) fn weighed(&mut self, line: &str, weight: Weight) {
        let line = format!("service: {line}\n");
        if self.console.shows(weight) {
            let mut console = io::stdout().lock();
            let _ = console.write_all(line.as_bytes());
            let _ = console.flush();
        }
        let _ = self.file.write_all(line.as_bytes());
    }
}
