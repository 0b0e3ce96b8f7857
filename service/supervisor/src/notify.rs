//! The sd_notify protocol: a service tells the supervisor it is ready by sending a datagram
//! holding the line `READY=1` to the unix socket named by `$NOTIFY_SOCKET`, that it is alive
//! with `WATCHDOG=1` (when it has a `watchdog`), and what it is doing with `STATUS=`. The daemon binds one
//! socket per service (so a service can speak only for itself) and the runtime binds its
//! directory into the container; `service notify` is the sender for scripts, like
//! `systemd-notify`.
//! Runs in: the supervisor daemon (a receiving task per service that declares `ready.notify`
//! or `watchdog`)
//! and, for `service notify`, inside a container.
//! Mirrors systemd's sd_notify(3) message format: newline-separated `KEY=VALUE` assignments;
//! a name starting with `@` is an abstract socket.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::net::UnixDatagram;

/// The socket file in a service's notify directory.
pub const SOCKET_NAME: &str = "notify.sock";

/// The largest message read; sd_notify messages are a few short lines.
const MAX_MESSAGE: usize = 4096;

/// What one message says that the supervisor acts on; other assignments are ignored, as
/// systemd ignores the ones it does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// `READY=1`.
    pub ready: bool,
    /// `STATUS=...`: free text for `service status`.
    pub status: Option<String>,
    /// `WATCHDOG=1` or `WATCHDOG=trigger`.
    pub watchdog: Option<Watchdog>,
}

/// A watchdog message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watchdog {
    /// `WATCHDOG=1`: alive; the watchdog time starts again.
    Alive,
    /// `WATCHDOG=trigger`: the service asks to be handled as if its watchdog ran out.
    Trigger,
}

/// The longest `STATUS=` text kept.
const MAX_STATUS: usize = 200;

impl Note {
    /// Reads a message: newline-separated `KEY=VALUE` assignments, the last of a key winning.
    pub fn parse(message: &[u8]) -> Self {
        let mut note = Self::default();
        for line in message.split(|byte| *byte == b'\n') {
            match line {
                b"READY=1" => note.ready = true,
                b"WATCHDOG=1" => note.watchdog = Some(Watchdog::Alive),
                b"WATCHDOG=trigger" => note.watchdog = Some(Watchdog::Trigger),
                _ => {
                    if let Some(text) = line.strip_prefix(b"STATUS=") {
                        let text = String::from_utf8_lossy(text);
                        note.status = Some(text.chars().take(MAX_STATUS).collect());
                    }
                }
            }
        }
        note
    }
}

/// A service's notify socket, bound by the daemon before the container is created.
#[derive(Debug)]
pub struct Socket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl Socket {
    /// Binds `<dir>/notify.sock`, replacing a stale one, writable by any user the service runs
    /// as (only this service's container sees the directory).
    pub fn bind(dir: &Path) -> io::Result<Self> {
        let context = |action: &str, path: &Path, err: io::Error| {
            io::Error::new(err.kind(), format!("{action} {}: {err}", path.display()))
        };
        fs::create_dir_all(dir).map_err(|err| context("create", dir, err))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|err| context("set the mode of", dir, err))?;
        let path = dir.join(SOCKET_NAME);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(context("remove", &path, err))
            }
            _ => {}
        }
        let socket = UnixDatagram::bind(&path).map_err(|err| context("bind", &path, err))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .map_err(|err| context("set the mode of", &path, err))?;
        Ok(Self { path, socket })
    }

    /// The socket's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message.
    pub async fn recv(&self) -> io::Result<Note> {
        let mut buffer = vec![0; MAX_MESSAGE];
        let len = self.socket.recv(&mut buffer).await?;
        Ok(Note::parse(&buffer[..len]))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `service notify`: sends `READY=1` (with `ready`) and the given assignments as one message to
/// `$NOTIFY_SOCKET`.
pub fn send(ready: bool, assignments: &[String]) -> ExitCode {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET").filter(|value| !value.is_empty()) else {
        eprintln!("service notify: NOTIFY_SOCKET is not set: the supervisor sets it for services with `ready: {{notify: true}}` or `watchdog` in runtime.json");
        return ExitCode::FAILURE;
    };
    let mut lines: Vec<String> = Vec::new();
    if ready {
        lines.push("READY=1".to_owned());
    }
    for assignment in assignments {
        if !assignment.contains('=') || assignment.contains('\n') {
            eprintln!("service notify: `{assignment}` is not a KEY=VALUE assignment");
            return ExitCode::FAILURE;
        }
        lines.push(assignment.clone());
    }
    if lines.is_empty() {
        eprintln!("service notify: nothing to send: give --ready or KEY=VALUE");
        return ExitCode::FAILURE;
    }
    let target = PathBuf::from(target);
    match send_to(&target, lines.join("\n").as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("service notify: send to {}: {err}", target.display());
            ExitCode::FAILURE
        }
    }
}

fn send_to(target: &Path, message: &[u8]) -> io::Result<()> {
    let socket = StdDatagram::unbound()?;
    let bytes = target.as_os_str().as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message, &address)?;
    } else {
        socket.send_to(message, target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_whole_lines() {
        let note = Note::parse(b"STATUS=warming up\nMAINPID=7\nREADY=1\n");
        assert!(note.ready);
        assert_eq!(note.status.as_deref(), Some("warming up"));
        assert_eq!(note.watchdog, None);
        assert!(Note::parse(b"READY=1").ready);
        for not_ready in [&b"READY=0"[..], b"NOTREADY=1\nREADY=10", b""] {
            assert_eq!(Note::parse(not_ready), Note::default());
        }
        assert_eq!(Note::parse(b"WATCHDOG=1").watchdog, Some(Watchdog::Alive));
        assert_eq!(
            Note::parse(b"WATCHDOG=1\nWATCHDOG=trigger").watchdog,
            Some(Watchdog::Trigger)
        );
        assert_eq!(Note::parse(b"WATCHDOG=0").watchdog, None);
        let long = format!("STATUS={}", "x".repeat(1000));
        assert_eq!(
            Note::parse(long.as_bytes()).status.map(|s| s.len()),
            Some(200)
        );
    }

    #[test]
    fn a_sent_message_arrives_on_the_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let socket = Socket::bind(&dir.path().join("svc")).unwrap();
            let mode = fs::metadata(socket.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o666);
            send_to(socket.path(), b"STATUS=starting").unwrap();
            send_to(socket.path(), b"STATUS=up\nREADY=1").unwrap();
            let recv = || tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv());
            let first = recv().await.expect("a message arrives").unwrap();
            assert_eq!(first.status.as_deref(), Some("starting"));
            let second = recv().await.expect("a message arrives").unwrap();
            assert!(second.ready);
            let path = socket.path().to_owned();
            drop(socket);
            assert!(!path.exists(), "the socket file goes with the socket");
        });
    }
}
