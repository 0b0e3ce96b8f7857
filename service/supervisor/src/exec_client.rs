//! `service exec [-t] NAME -- CMD...` on the operator's side: the request goes to the
//! supervisor with this process's stdin, stdout and stderr attached (SCM_RIGHTS), so the
//! command writes straight to them; this process passes on the signals it gets (Ctrl-C on its
//! terminal) and exits with the command's status. With `-t` the command gets a new
//! pseudo-terminal instead, whose master comes back with the first answer: this terminal is put
//! in raw mode (restored at the end), keys and output are relayed and the window size follows.
//! Failures are one line on stderr. Nothing but the control socket is needed: no cgroupfs, no
//! runtime state, no write access anywhere.
//! Runs in: the image, as root, from a shell (getty, ssh) or a script; single-threaded,
//! blocking I/O driven by poll(2).
//! Mirrors `docker exec [-t]` and `kubectl exec [-t]` as a user sees them.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use rustix::termios::{self, OptionalActions, Termios};

use crate::client;
use crate::fdpass::{self, BlockingLines};
use crate::protocol::{Answer, ExecInput, Request};

/// Signals passed on to the command (without a terminal; with one, Ctrl-C is a key).
const PASSED_ON: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs the command and exits with its status; with `json` the last answer is printed.
pub fn run(socket: &Path, name: &str, args: Vec<String>, tty: bool, json: bool) -> ExitCode {
    let request = Request::Exec {
        name: name.to_owned(),
        args,
        tty,
    };
    match session(socket, &request, tty) {
        Ok(code) => {
            if json {
                let line = format!("{{\"ok\":true,\"exit_code\":{code}}}\n");
                let _ = io::stdout().write_all(line.as_bytes());
            }
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
        Err(err) => client::fail(&err),
    }
}

fn session(socket: &Path, request: &Request, tty: bool) -> Result<i32, String> {
    let stream = client::connect(socket)?;
    let signals = Signals::block(tty)?;
    let mut line = serde_json::to_string(request).map_err(|err| err.to_string())?;
    line.push('\n');
    let stdio = [
        io::stdin().as_raw_fd(),
        io::stdout().as_raw_fd(),
        io::stderr().as_raw_fd(),
    ];
    let attached = if tty { &[][..] } else { &stdio[..] };
    if let Err(err) = fdpass::send(&stream, line.as_bytes(), attached) {
        if !client::hung_up(&err) {
            return Err(format!("send the request: {err}"));
        }
    }
    let mut lines = BlockingLines::new();
    let (first, fds) = lines
        .next(&stream)
        .map_err(|err| format!("read the answer: {err}"))?
        .ok_or("the supervisor closed the connection without answering")?;
    let answer = parse(&first)?;
    if !answer.ok {
        return Err(answer.error.unwrap_or_else(|| "exec failed".to_owned()));
    }
    let mut session = Session {
        stream,
        lines,
        signals,
        terminal: None,
    };
    if tty {
        let master = fds
            .into_iter()
            .next()
            .ok_or("the supervisor sent no terminal with its answer")?;
        session.terminal = Some(Terminal::attach(master)?);
    }
    session.wait()
}

fn parse(line: &[u8]) -> Result<Answer, String> {
    serde_json::from_slice(line).map_err(|err| {
        format!(
            "read the answer `{}`: {err}",
            String::from_utf8_lossy(line).trim_end()
        )
    })
}

/// The signals this process passes on, blocked and read from a signalfd.
struct Signals {
    fd: SignalFd,
}

impl Signals {
    fn block(tty: bool) -> Result<Self, String> {
        let mut set = SigSet::empty();
        for signal in PASSED_ON {
            set.add(signal);
        }
        if tty {
            set.add(Signal::SIGWINCH);
        }
        set.thread_block()
            .map_err(|err| format!("block signals: {err}"))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|err| format!("open a signalfd: {err}"))?;
        Ok(Self { fd })
    }

    fn next(&mut self) -> Option<Signal> {
        let info = self.fd.read_signal().ok().flatten()?;
        Signal::try_from(i32::try_from(info.ssi_signo).ok()?).ok()
    }
}

/// This process's terminal relayed to the command's pseudo-terminal.
struct Terminal {
    master: std::fs::File,
    /// The terminal's settings before raw mode, put back at the end; `None` when stdin is no
    /// terminal (keys then come from a pipe or file).
    saved: Option<Termios>,
    /// Whether stdin and the master are still open for reading.
    stdin_open: bool,
    master_open: bool,
}

impl Terminal {
    fn attach(master: OwnedFd) -> Result<Self, String> {
        let stdin = io::stdin();
        let saved = if termios::isatty(&stdin) {
            let saved =
                termios::tcgetattr(&stdin).map_err(|err| format!("read the terminal: {err}"))?;
            let mut raw = saved.clone();
            raw.make_raw();
            termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
                .map_err(|err| format!("set the terminal to raw mode: {err}"))?;
            Some(saved)
        } else {
            None
        };
        let terminal = Self {
            master: std::fs::File::from(master),
            saved,
            stdin_open: true,
            master_open: true,
        };
        terminal.resize();
        Ok(terminal)
    }

    /// The command's terminal gets this one's window size.
    fn resize(&self) {
        if let Ok(size) = termios::tcgetwinsize(io::stdin()) {
            let _ = termios::tcsetwinsize(&self.master, size);
        }
    }

    /// Keys from stdin to the command.
    fn keys(&mut self) {
        let mut buf = [0_u8; 4096];
        match io::stdin().lock().read(&mut buf) {
            Ok(0) | Err(_) => self.stdin_open = false,
            Ok(count) => {
                if self.master.write_all(&buf[..count]).is_err() {
                    self.master_open = false;
                }
            }
        }
    }

    /// The command's output to stdout; the master reads EIO once the command's side is closed.
    fn output(&mut self) {
        let mut buf = [0_u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) | Err(_) => self.master_open = false,
            Ok(count) => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&buf[..count]).and_then(|()| out.flush());
            }
        }
    }

    /// What the command wrote before it ended and is still buffered.
    fn drain(&mut self) {
        while self.master_open && readable(self.master.as_fd(), PollTimeout::ZERO) {
            self.output();
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, saved);
        }
    }
}

fn readable(fd: BorrowedFd<'_>, timeout: PollTimeout) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, timeout).is_ok_and(|ready| ready > 0)
}

/// A started exec: answers from the supervisor, signals and the terminal until the last answer.
struct Session {
    stream: UnixStream,
    lines: BlockingLines,
    signals: Signals,
    terminal: Option<Terminal>,
}

impl Session {
    /// Waits for the last answer; its exit code, or its error.
    fn wait(&mut self) -> Result<i32, String> {
        loop {
            while let Some((line, _)) = self.lines.line() {
                let answer = parse(&line)?;
                if !answer.ok {
                    return Err(answer.error.unwrap_or_else(|| "exec failed".to_owned()));
                }
                if let Some(code) = answer.exit_code {
                    if let Some(terminal) = &mut self.terminal {
                        terminal.drain();
                    }
                    return Ok(code);
                }
            }
            if self.lines.ended() {
                return Err("the supervisor closed the connection before the command ended".into());
            }
            self.turn()?;
        }
    }

    /// Waits for something to do and does it.
    fn turn(&mut self) -> Result<(), String> {
        let stdin = io::stdin();
        let (stdin_open, master_open) = self
            .terminal
            .as_ref()
            .map_or((false, false), |t| (t.stdin_open, t.master_open));
        let events = |open: bool| {
            if open {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            }
        };
        let mut fds = vec![
            PollFd::new(self.stream.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.fd.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(terminal) = &self.terminal {
            fds.push(PollFd::new(stdin.as_fd(), events(stdin_open)));
            fds.push(PollFd::new(terminal.master.as_fd(), events(master_open)));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(format!("wait for the command: {err}")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
            .collect();
        drop(fds);
        if ready[1] {
            while let Some(signal) = self.signals.next() {
                self.signal(signal)?;
            }
        }
        if let Some(terminal) = &mut self.terminal {
            if ready[2] {
                terminal.keys();
            }
            if ready[3] {
                terminal.output();
            }
        }
        if ready[0] {
            self.lines
                .receive(&self.stream)
                .map_err(|err| format!("read the answer: {err}"))?;
        }
        Ok(())
    }

    fn signal(&mut self, signal: Signal) -> Result<(), String> {
        if signal == Signal::SIGWINCH {
            if let Some(terminal) = &self.terminal {
                terminal.resize();
            }
            return Ok(());
        }
        let input = ExecInput {
            signal: signal.as_str().to_owned(),
        };
        let mut line = serde_json::to_string(&input).map_err(|err| err.to_string())?;
        line.push('\n');
        // The command may have ended already; its last answer then says so.
        let _ = (&self.stream).write_all(line.as_bytes());
        Ok(())
    }
}
