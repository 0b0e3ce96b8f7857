//! Service log files: a container's output, line by line, appended to `/var/log/NAME.log` (stderr)
//! or `NAME.out.log` (stdout) and rotated by size, keeping the last few as `NAME.log.0` (newest)
//! to `NAME.log.9`; and the copy task that reads a container's output pipe into one and into
//! the service's in-memory ring. The log file names, the onboot and onshutdown bundles' included,
//! are given here only.
//! Runs in: the supervisor daemon, one task per output stream; the names also in `service onboot`
//! and `service onshutdown`.
//! Mirrors LinuxKit's file logging names (pkg/init/cmd/service) and logwrite's rotation
//! (`-max-log-size` 1 MiB, `-max-log-files` 10).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;

use crate::ring::{Ring, Stream};

/// The size past which a log is rotated.
pub const DEFAULT_MAX_SIZE: u64 = 1024 * 1024;
/// How many rotated logs are kept.
pub const DEFAULT_KEEP: usize = 10;
/// Lines longer than this are cut into pieces of this size.
const MAX_LINE: usize = 64 * 1024;

/// The supervisor's event log in the log directory (start, exit, restart, ready, stop).
pub const EVENT_LOG: &str = "service.log";

/// The file, in a log directory, that a container's `stream` is written to when its logs are
/// named `base` (a service's name, or `onboot.NNN-name` for a bundle): LinuxKit's `BASE.out.log`
/// for stdout and `BASE.log` for stderr.
pub fn file_name(base: &str, stream: Stream) -> String {
    match stream {
        Stream::Stdout => format!("{base}.out.log"),
        Stream::Stderr => format!("{base}.log"),
    }
}

/// A log file that rotates itself.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens `path` for appending.
    pub fn open(path: &Path, max_size: u64, keep: usize) -> io::Result<Self> {
        let file = append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_size,
            keep,
            file,
            size,
        })
    }

    /// Appends one line (with its newline), rotating first if it would pass the size limit.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if self.size > 0 && self.size.saturating_add(len) > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    /// `NAME.log.8` -> `.9`, ..., `NAME.log` -> `.0`, and a new empty `NAME.log`.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file = File::create(&self.path)?;
        } else {
            for n in (0..self.keep - 1).rev() {
                match fs::rename(self.rotated(n), self.rotated(n + 1)) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            fs::rename(&self.path, self.rotated(0))?;
            self.file = append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Copies a container's output pipe into `log` and `ring` line by line until the writers close
/// it. A write problem is reported once on stderr; the pipe is still drained until EOF, so the
/// container never blocks on it.
pub async fn copy_pipe(read_end: OwnedFd, mut log: LogFile, ring: Ring, stream: Stream) {
    let receiver = match pipe::Receiver::from_owned_fd(read_end) {
        Ok(receiver) => receiver,
        Err(err) => {
            eprintln!("log {}: {err}", log.path.display());
            return;
        }
    };
    let mut reader = BufReader::with_capacity(MAX_LINE, receiver);
    let mut line = Vec::new();
    let mut failed = false;
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) => {
                eprintln!("log {}: read: {err}", log.path.display());
                return;
            }
        }
        ring.push(stream, &line);
        if !failed {
            if let Err(err) = log.write_line(&line) {
                eprintln!("log {}: write: {err}", log.path.display());
                failed = true;
            }
        }
    }
}

/// Reads up to a newline or [`MAX_LINE`] bytes, whichever comes first.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> io::Result<usize> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(line.len());
        }
        let room = MAX_LINE - line.len();
        let (take, done) = match available.iter().take(room).position(|b| *b == b'\n') {
            Some(newline) => (newline + 1, true),
            None => {
                let take = available.len().min(room);
                (take, line.len() + take == MAX_LINE)
            }
        };
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(line.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_files_have_linuxkits_names() {
        assert_eq!(file_name("web", Stream::Stdout), "web.out.log");
        assert_eq!(file_name("web", Stream::Stderr), "web.log");
        assert_eq!(
            file_name("onboot.000-net", Stream::Stdout),
            "onboot.000-net.out.log"
        );
        assert_eq!(
            file_name("shutdown.001-after", Stream::Stderr),
            "shutdown.001-after.log"
        );
        assert_eq!(EVENT_LOG, "service.log");
    }

    #[test]
    fn rotates_at_the_size_limit_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chatty.log");
        let mut log = LogFile::open(&path, 20, 3).unwrap();
        for n in 0..10 {
            log.write_line(format!("line {n:04}\n").as_bytes()).unwrap();
        }
        // 10 bytes a line, 2 lines a file: the last four files hold lines 2 to 9.
        assert_eq!(fs::read_to_string(&path).unwrap(), "line 0008\nline 0009\n");
        assert_eq!(
            fs::read_to_string(dir.path().join("chatty.log.0")).unwrap(),
            "line 0006\nline 0007\n"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("chatty.log.2")).unwrap(),
            "line 0002\nline 0003\n"
        );
        assert!(!dir.path().join("chatty.log.3").exists());
    }

    #[test]
    fn appends_to_an_existing_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        fs::write(&path, "before\n").unwrap();
        let mut log = LogFile::open(&path, 1024, 2).unwrap();
        log.write_line(b"after\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "before\nafter\n");
    }

    #[test]
    fn long_lines_are_cut_and_a_last_partial_line_is_kept() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut input: Vec<u8> = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nend");
        let mut reader = BufReader::new(&input[..]);
        let mut lines = Vec::new();
        runtime.block_on(async {
            loop {
                let mut line = Vec::new();
                if read_line(&mut reader, &mut line).await.unwrap() == 0 {
                    break;
                }
                lines.push(line);
            }
        });
        let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(lengths, [MAX_LINE, 11, 3]);
        assert_eq!(lines[2], b"end");
    }
}
