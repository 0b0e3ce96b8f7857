//! `service exec` on the supervisor's side: a process run in a service's container for a
//! client of the control socket, so that the client needs nothing but the socket (no cgroupfs,
//! no runtime state). The event loop starts `service runtime exec` (the single-threaded helper,
//! a child of the supervisor) with the client's stdin, stdout and stderr, or with a console
//! socket for a pseudo-terminal; then the client's connection carries the session: the first
//! answer (with the terminal's master), the signals the client passes on, and the exit code.
//! Runs in: the supervisor, the start in its event loop, the session on the connection's task.
//! Mirrors `docker exec` / `runc exec` as seen from a client: stdio attached, signals
//! forwarded, the exit code returned, failures in one line.

use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runtime::helper::{self, ContainerStdio, Helper};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixListener;

use crate::child::{Child, Exit};
use crate::control;
use crate::fdpass::{self, Lines};
use crate::protocol::{Answer, ExecInput, MAX_REQUEST};

/// The pids of the exec helpers running: the orphan reaper leaves them to their sessions.
#[derive(Debug, Clone, Default)]
pub struct Helpers(Arc<Mutex<HashSet<Pid>>>);

impl Helpers {
    pub fn contains(&self, pid: Pid) -> bool {
        self.0.lock().is_ok_and(|pids| pids.contains(&pid))
    }

    fn insert(&self, pid: Pid) {
        if let Ok(mut pids) = self.0.lock() {
            pids.insert(pid);
        }
    }

    fn remove(&self, pid: Pid) {
        if let Ok(mut pids) = self.0.lock() {
            pids.remove(&pid);
        }
    }
}

/// A started exec, handed to the connection that asked for it.
#[derive(Debug)]
pub struct Session {
    name: String,
    helper: Watched,
    messages: Option<OwnedFd>,
    terminal: Option<Console>,
}

/// The listening socket to which the runtime sends a pseudo-terminal's master.
#[derive(Debug)]
struct Console {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        // Gone once no other exec has a terminal coming.
        if let Some(dir) = self.path.parent() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Tells console sockets apart.
static NEXT_CONSOLE: AtomicU64 = AtomicU64::new(0);

/// Starts `args` in running service `name`'s container: with `stdio` (the client's three
/// descriptors), or with `tty` a new pseudo-terminal. Called by the event loop; the error is
/// the line for the client.
pub fn start(
    runtime_helper: &Helper,
    helpers: &Helpers,
    name: &str,
    args: &[String],
    tty: bool,
    stdio: Vec<OwnedFd>,
) -> Result<Session, String> {
    let fail = |err: &dyn std::fmt::Display| format!("exec in {name}: {err}");
    if args.is_empty() {
        return Err(fail(&"no command given"));
    }
    let (stdio, terminal) = if tty {
        let null = || fs::File::open("/dev/null").map(OwnedFd::from);
        let stdio = ContainerStdio {
            stdin: null().map_err(|err| fail(&format!("open /dev/null: {err}")))?,
            stdout: null().map_err(|err| fail(&format!("open /dev/null: {err}")))?,
            stderr: null().map_err(|err| fail(&format!("open /dev/null: {err}")))?,
        };
        let dir = runtime_helper.runtime().root().join(".console");
        (stdio, Some(Console::bind(&dir).map_err(|err| fail(&err))?))
    } else {
        let [stdin, stdout, stderr]: [OwnedFd; 3] = stdio.try_into().map_err(|_| {
            fail(&"the request must carry stdin, stdout and stderr (SCM_RIGHTS), or ask for a tty")
        })?;
        let stdio = ContainerStdio {
            stdin,
            stdout,
            stderr,
        };
        (stdio, None)
    };
    let socket = terminal.as_ref().map(|console| console.path.as_path());
    let (pid, messages) = runtime_helper
        .spawn_exec(name, args, socket, stdio)
        .map_err(|err| fail(&err))?;
    let helper = Watched::new(helpers, pid).map_err(|err| fail(&err))?;
    Ok(Session {
        name: name.to_owned(),
        helper,
        messages: Some(messages),
        terminal,
    })
}

/// An exec helper the caller spawned, watched through its pidfd and on the list the orphan
/// reaper leaves alone for as long as this lives; dropped (its exit taken, or its task
/// aborted), it is off the list, and the reaper takes an exit not yet taken.
#[derive(Debug)]
pub struct Watched {
    child: Child,
    helpers: Helpers,
}

impl Watched {
    /// Watches helper `pid`, just spawned: listed before the event loop's next turn, so that
    /// its reaper never takes this exit. A helper that cannot be watched is killed and reaped.
    pub fn new(helpers: &Helpers, pid: Pid) -> Result<Self, String> {
        helpers.insert(pid);
        match Child::new(pid) {
            Ok(child) => Ok(Self {
                child,
                helpers: helpers.clone(),
            }),
            Err(err) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
                helpers.remove(pid);
                Err(format!("watch the exec helper {pid}: {err}"))
            }
        }
    }
}

impl std::ops::Deref for Watched {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.helpers.remove(self.child.pid());
    }
}

impl Console {
    fn bind(dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|err| format!("create {}: {err}", dir.display()))?;
        let number = NEXT_CONSOLE.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{number}.sock", std::process::id()));
        let _ = fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|err| format!("bind console socket {}: {err}", path.display()))?;
        Ok(Self { listener, path })
    }
}

impl Session {
    /// Carries the session on the client's connection until the process has ended: the first
    /// answer (with the terminal's master), signals from the client passed on, the last answer
    /// with the exit code or the one-line failure. A client that hangs up sends SIGHUP.
    pub async fn serve(mut self, client: &mut Lines, write: &mut OwnedWriteHalf) {
        let pid = self.helper.pid();
        let started = match self.terminal.take() {
            Some(console) => self.receive_master(console).await,
            None => Ok(None),
        };
        let answered = match started {
            Ok(Some(master)) => {
                fdpass::send_async(write, Answer::ok().to_line().as_bytes(), master.as_raw_fd())
                    .await
            }
            Ok(None) => control::send(write, &Answer::ok()).await,
            // The helper ended before the terminal came: its message says why.
            Err(exit) => {
                let answer = self.last_answer(exit);
                let _ = control::send(write, &answer).await;
                return;
            }
        };
        let mut listening = answered.is_ok();
        let exit = loop {
            tokio::select! {
                exit = self.helper.wait(None) => break exit,
                input = client.next(MAX_REQUEST), if listening => match input {
                    Ok(Some((line, _))) => self.pass_on(&line),
                    // Gone: as a terminal's hangup.
                    Ok(None) | Err(_) => {
                        let _ = kill(pid, Signal::SIGHUP);
                        listening = false;
                    }
                },
            }
        };
        let exit = match exit {
            Ok(Some(exit)) => exit,
            Ok(None) | Err(_) => Exit::Unknown,
        };
        let answer = self.last_answer(exit);
        let _ = control::send(write, &answer).await;
    }

    /// Waits for the runtime to send the terminal's master, or for the helper to end first.
    async fn receive_master(&mut self, console: Console) -> Result<Option<OwnedFd>, Exit> {
        let accepted = tokio::select! {
            accepted = console.listener.accept() => accepted,
            exit = self.helper.wait(None) => {
                return Err(exit.ok().flatten().unwrap_or(Exit::Unknown));
            }
        };
        let Ok((stream, _)) = accepted else {
            return Ok(None);
        };
        let mut lines = Lines::new(stream.into_split().0);
        // The runtime sends the master with a short name and closes the socket.
        match lines.next(4096).await {
            Ok(Some((_, fds))) => Ok(fds.into_iter().next()),
            _ => Ok(None),
        }
    }

    /// One line from the client: a signal for the process (through the helper, which passes
    /// it on).
    fn pass_on(&self, line: &[u8]) {
        let Ok(input) = serde_json::from_slice::<ExecInput>(line) else {
            return;
        };
        // The helper passes on the standard signals the client sends.
        if let Some(signal) = spec::signal::parse(&input.signal).and_then(|s| s.as_nix()) {
            let _ = kill(self.helper.pid(), signal);
        }
    }

    /// The answer for an ended helper: the process's exit code, or the helper's message.
    fn last_answer(&mut self, exit: Exit) -> Answer {
        let message = self
            .messages
            .take()
            .map(helper::read_message)
            .unwrap_or_default();
        if !message.is_empty() {
            return Answer::error(format!("exec in {}: {}", self.name, strip_id(&message)));
        }
        match exit {
            Exit::Code(code) => Answer {
                exit_code: Some(code),
                ..Answer::ok()
            },
            Exit::Signal(signal) => Answer {
                exit_code: Some(128 + signal.raw()),
                ..Answer::ok()
            },
            Exit::Unknown => Answer::error(format!(
                "exec in {}: the helper's end was not seen",
                self.name
            )),
        }
    }
}

/// The runtime says `exec in container `web`: ...`; the client's line already names it.
fn strip_id(message: &str) -> &str {
    message
        .split_once("`: ")
        .filter(|(head, _)| head.starts_with("exec in container `"))
        .map_or(message, |(_, rest)| rest)
}
