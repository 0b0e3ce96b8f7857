//! What the supervisor keeps on /run about each running service, so that a supervisor started
//! after it died (init starts a new one) can adopt the service instead of starting a second copy:
//! the container init's pid and its start time (a reused pid is told apart by it), when it
//! started, its state and restart count, what was prepared for it (to undo when it ends), and the
//! pipes its output goes into (to read them again through /proc/PID/fd).
//! Runs in: the supervisor daemon. One JSON file per service, `<state-dir>/NAME.json`, replaced
//! atomically (written beside, then renamed).
//! LinuxKit keeps this in containerd; s6 keeps its supervise/ directories for the same reason.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::unistd::Pid;
use prepare::Prepared;
use serde::{Deserialize, Serialize};

use crate::lifecycle::State;

/// A running service as the supervisor that started it left it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
    pub start_ticks: u64,
    /// When it started, seconds since the epoch.
    pub started_at: f64,
    /// `running` or `ready`.
    pub state: String,
    pub restarts: u32,
    pub prepared: Prepared,
    /// The pipes its stdout and stderr were given (`pipe:[INODE]`, as /proc/PID/fd shows them).
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl Record {
    /// The state it names, if it is one a service can be adopted in.
    pub fn lifecycle_state(&self) -> Option<State> {
        [State::Running, State::Ready]
            .into_iter()
            .find(|state| state.as_str() == self.state)
    }
}

/// The records of one supervisor.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Writes (replaces) service `name`'s record.
    pub fn write(&self, name: &str, record: &Record) -> io::Result<()> {
        let path = self.path(name);
        let context =
            |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", path.display()));
        fs::create_dir_all(&self.dir).map_err(context)?;
        let json = serde_json::to_vec(record).map_err(io::Error::other)?;
        let partial = self.dir.join(format!(".{name}.json.new"));
        fs::write(&partial, json).map_err(context)?;
        fs::rename(&partial, &path).map_err(context)
    }

    /// Service `name`'s record, if there is one; a record that cannot be read is an error.
    pub fn read(&self, name: &str) -> io::Result<Option<Record>> {
        let path = self.path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|err| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {err}", path.display()),
                )
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io::Error::new(
                err.kind(),
                format!("{}: {err}", path.display()),
            )),
        }
    }

    pub fn remove(&self, name: &str) {
        let _ = fs::remove_file(self.path(name));
    }
}

/// When process `pid` started (field 22 of /proc/PID/stat), if it exists.
pub fn start_ticks(pid: Pid) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// What /proc shows for an open file: `pipe:[INODE]` for a pipe.
pub fn pipe_id(fd: impl AsFd) -> Option<String> {
    let stat = nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).ok()?;
    Some(format!("pipe:[{}]", stat.st_ino))
}

/// Opens, for reading, the pipe that fd `fd` of process `pid` is, if it still is `expected`.
pub fn reopen_pipe(pid: Pid, fd: i32, expected: &str) -> Option<fs::File> {
    let link = Path::new("/proc")
        .join(pid.to_string())
        .join("fd")
        .join(fd.to_string());
    if fs::read_link(&link).ok()?.as_os_str() != expected {
        return None;
    }
    fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(&link)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_reads_past_a_name_with_spaces() {
        let me = Pid::this();
        let ticks = start_ticks(me).unwrap();
        assert!(ticks > 0);
        assert_eq!(
            start_ticks(me),
            Some(ticks),
            "the same process, the same time"
        );
        assert_eq!(start_ticks(Pid::from_raw(i32::MAX)), None);
    }

    #[test]
    fn records_round_trip_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(dir.path().join("services"));
        assert!(records.read("web").unwrap().is_none());
        let record = Record {
            pid: 42,
            start_ticks: 7,
            started_at: 1.5,
            state: "ready".to_owned(),
            restarts: 2,
            prepared: Prepared::new(),
            stdout: Some("pipe:[9]".to_owned()),
            stderr: None,
        };
        records.write("web", &record).unwrap();
        let back = records.read("web").unwrap().unwrap();
        assert_eq!(back.pid, 42);
        assert_eq!(back.lifecycle_state(), Some(State::Ready));
        assert_eq!(back.stdout.as_deref(), Some("pipe:[9]"));
        records.remove("web");
        assert!(records.read("web").unwrap().is_none());
        fs::write(dir.path().join("services/bad.json"), "{").unwrap();
        let err = records.read("bad").unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
    }

    #[test]
    fn a_pipe_is_found_again_through_proc() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let id = pipe_id(&write).unwrap();
        assert_eq!(pipe_id(&read).unwrap(), id, "both ends are one pipe");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&write);
        let again = reopen_pipe(Pid::this(), fd, &id).unwrap();
        assert_eq!(pipe_id(&again).unwrap(), id);
        assert!(reopen_pipe(Pid::this(), fd, "pipe:[1]").is_none());
        drop(read);
    }
}
