//! The supervisor's control socket (`/run/service.sock`): a Unix stream socket, mode 0600, whose
//! peers must be root (checked from their credentials, so a socket made readable by mistake still
//! serves no one else). Each connection is served by a task that reads [`Request`] lines, hands
//! them to the event loop and writes its [`Answer`]s back; a line that is not a request gets an
//! error answer and the connection goes on. `logs -f` turns the connection into a stream of new
//! lines until the client hangs up.
//! Runs in: the supervisor daemon, as tasks beside its event loop; requests are carried out by the
//! event loop (`daemon/`), never here.
//! LinuxKit's `service` talks to containerd instead and has no socket of its own; the protocol
//! follows systemd's one-request-per-line private bus in spirit only.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::os::fd::OwnedFd;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::exec::Session;
use crate::fdpass::Lines;
use crate::protocol::{Answer, LogLine, Request, MAX_REQUEST};
use crate::ring::Ring;

/// A request on its way to the event loop, with where its reply goes.
#[derive(Debug)]
pub struct Control {
    pub request: Request,
    /// The descriptors that came with the request (`exec`'s stdio).
    pub fds: Vec<OwnedFd>,
    pub reply: oneshot::Sender<Reply>,
}

/// What the event loop sends back.
#[derive(Debug)]
pub enum Reply {
    Answer(Answer),
    /// Write the answer, then every line the ring gets from `from` on, until the client goes.
    Follow {
        answer: Answer,
        ring: Ring,
        from: u64,
    },
    /// An `exec` started: the connection carries it until the process ends.
    Exec(Session),
    /// The last answer the supervisor gives (`shutdown`): `written` is told once it is out.
    Final {
        answer: Answer,
        written: oneshot::Sender<()>,
    },
}

/// Binds the socket at `path` (a stale one is replaced), mode 0600, and serves it on a task
/// until the runtime ends. A socket someone still answers on is another supervisor's: that is
/// an `AddrInUse` error, and nothing is touched.
pub fn listen(path: &Path, requests: UnboundedSender<Control>) -> io::Result<JoinHandle<()>> {
    let context = |what: &str, err: io::Error| {
        io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
    };
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another supervisor answers on {}: not starting a second one",
                path.display()
            ),
        ));
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|err| context("create the directory of", err))?;
    }
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            return Err(context("remove the old socket", err))
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(|err| context("bind", err))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|err| context("chmod 0600", err))?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, requests.clone()));
                }
                Err(err) => {
                    eprintln!("service system-init: control socket: accept: {err}");
                    // Out of fds, most likely: give the connections a moment to close.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

/// Serves one connection.
async fn serve(stream: UnixStream, requests: UnboundedSender<Control>) {
    let peer = stream.peer_cred();
    let (read, mut write) = stream.into_split();
    match peer {
        Ok(cred) if cred.uid() == 0 => {}
        Ok(cred) => {
            let refusal = format!(
                "permission denied: the control socket serves root only (this client runs as uid {})",
                cred.uid()
            );
            let _ = send(&mut write, &Answer::error(refusal)).await;
            return;
        }
        Err(err) => {
            let _ = send(
                &mut write,
                &Answer::error(format!("peer credentials: {err}")),
            )
            .await;
            return;
        }
    }
    let mut reader = Lines::new(read);
    loop {
        let (line, fds) = match reader.next(MAX_REQUEST).await {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(err) => {
                let _ = send(&mut write, &Answer::error(format!("request: {err}"))).await;
                return;
            }
        };
        if line.len() > MAX_REQUEST {
            let too_long = format!("request: longer than {MAX_REQUEST} bytes");
            let _ = send(&mut write, &Answer::error(too_long)).await;
            return;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let request = match serde_json::from_slice::<Request>(&line) {
            Ok(request) => request,
            Err(err) => {
                if send(&mut write, &Answer::error(format!("request: {err}")))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let (reply, replied) = oneshot::channel();
        let gone = || Answer::error("the supervisor is shutting down");
        if requests
            .send(Control {
                request,
                fds,
                reply,
            })
            .is_err()
        {
            let _ = send(&mut write, &gone()).await;
            return;
        }
        let written = match replied.await {
            Err(_) => {
                let _ = send(&mut write, &gone()).await;
                return;
            }
            Ok(Reply::Answer(answer)) => send(&mut write, &answer).await,
            Ok(Reply::Final { answer, written }) => {
                let _ = send(&mut write, &answer).await;
                let _ = written.send(());
                return;
            }
            Ok(Reply::Exec(session)) => {
                session.serve(&mut reader, &mut write).await;
                return;
            }
            Ok(Reply::Follow { answer, ring, from }) => {
                if send(&mut write, &answer).await.is_ok() {
                    follow(&mut reader, &mut write, &ring, from).await;
                }
                return;
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// Writes each line the ring gets from `next` on, until the client hangs up (or sends
/// anything: a follow ends the conversation).
async fn follow(client: &mut Lines, write: &mut OwnedWriteHalf, ring: &Ring, mut next: u64) {
    let mut pushed = ring.subscribe();
    loop {
        for line in ring.last(usize::MAX, next) {
            next = line.seq + 1;
            let answer = Answer {
                line: Some(LogLine::from(&line)),
                ..Answer::ok()
            };
            if send(write, &answer).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = pushed.changed() => if changed.is_err() { return },
            _ = client.next(MAX_REQUEST) => return,
        }
    }
}

pub async fn send(write: &mut OwnedWriteHalf, answer: &Answer) -> io::Result<()> {
    write.write_all(answer.to_line().as_bytes()).await?;
    write.flush().await
}
