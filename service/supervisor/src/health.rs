//! Health checks: a running service's `healthcheck` probe, run every `interval` from one
//! interval after its start; `retries` failures in a row (those inside `startPeriod` not
//! counted) make it unhealthy, one success healthy. An `exec` probe runs in the service's
//! container through the runtime's exec (the path `service exec` takes), with its output kept
//! for `service status`; `tcp` and `http` probes connect from a thread that has joined the
//! service's network namespace, so `127.0.0.1` is the service's own loopback.
//! Runs in: the supervisor, a task per running service that has a healthcheck; connections in
//! short-lived threads of their own (a thread's network namespace is its own).
//! Follows Docker's HEALTHCHECK: the same states, defaults and counting.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runtime::helper::{ContainerStdio, Helper};
use spec::supervision::{Healthcheck, HttpTarget, Probe};
use tokio::io::AsyncReadExt;

use crate::child::Exit;
use crate::exec;

/// How much of an exec probe's output, or of an HTTP answer's first line, is kept.
const MAX_OUTPUT: usize = 200;
/// How long an exec probe gets after SIGTERM (its timeout ran out) before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Where a service's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No probe has passed yet (and not enough have failed).
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `service status` shows of a run's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub health: Health,
    /// Failed probes in a row that counted.
    pub failures: u32,
    /// The last probe's result, and when it ended.
    pub last: Option<(Outcome, SystemTime)>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            health: Health::Starting,
            failures: 0,
            last: None,
        }
    }
}

/// One probe's result: passed or not, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub detail: String,
}

impl Outcome {
    fn passed(detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            detail: detail.into(),
        }
    }

    fn failed(detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            detail: detail.into(),
        }
    }
}

/// What a probe's result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    BecameHealthy,
    BecameUnhealthy,
}

/// The counting: `outcome` at `elapsed` after the start, with `retries` and `start_period`.
/// An unhealthy run stays unhealthy (the supervisor stops it).
pub fn record(
    report: &mut Report,
    outcome: Outcome,
    elapsed: Duration,
    check: &Healthcheck,
    now: SystemTime,
) -> Change {
    let before = report.health;
    if before == Health::Unhealthy {
        return Change::None;
    }
    if outcome.passed {
        report.failures = 0;
        report.health = Health::Healthy;
    } else if elapsed >= check.start_period() || before == Health::Healthy {
        report.failures += 1;
        if report.failures >= check.retries() {
            report.health = Health::Unhealthy;
        }
    }
    report.last = Some((outcome, now));
    match (before, report.health) {
        (Health::Starting, Health::Healthy) => Change::BecameHealthy,
        (_, Health::Unhealthy) => Change::BecameUnhealthy,
        _ => Change::None,
    }
}

/// What a probe of one run needs.
#[derive(Debug, Clone)]
pub struct Prober {
    pub name: String,
    /// The container's init, whose network namespace `tcp` and `http` probes join.
    pub pid: Pid,
    pub probe: Probe,
    pub timeout: Duration,
    pub helper: Helper,
    pub exec_helpers: exec::Helpers,
}

impl Prober {
    /// Runs the probe once, within its timeout.
    pub async fn run(&self) -> Outcome {
        match &self.probe {
            Probe::Exec(args) => self.exec(args).await,
            Probe::Tcp { host, port } => {
                let target = format!("{host}:{port}");
                let (host, port, timeout) = (host.clone(), *port, self.timeout);
                self.in_netns(move || {
                    connect(&host, port, timeout).map(|_| Outcome::passed("connected"))
                })
                .await
                .unwrap_or_else(|err| Outcome::failed(format!("connect {target}: {err}")))
            }
            Probe::Http(target) => {
                let (target, timeout) = (target.clone(), self.timeout);
                let url = target.url.clone();
                self.in_netns(move || http_get(&target, timeout))
                    .await
                    .unwrap_or_else(|err| Outcome::failed(format!("GET {url}: {err}")))
            }
        }
    }

    /// Runs `work` on a new thread that has joined the service's network namespace.
    async fn in_netns<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let path = format!("/proc/{}/ns/net", self.pid);
        let namespace = File::open(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("open {path}: {err}")))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("healthcheck".into())
            .spawn(move || {
                let result = setns(&namespace, CloneFlags::CLONE_NEWNET)
                    .map_err(|err| io::Error::other(format!("join {path}: {err}")))
                    .and_then(|()| work());
                let _ = sender.send(result);
            })?;
        receiver.await.unwrap_or_else(|_| {
            Err(io::Error::other(
                "the probe's thread ended without an answer",
            ))
        })
    }

    /// `args` in the container, its output kept; it gets SIGTERM once the timeout runs out
    /// and SIGKILL (through its helper) a second later.
    async fn exec(&self, args: &[String]) -> Outcome {
        match self.exec_started(args).await {
            Ok(outcome) => outcome,
            Err(err) => Outcome::failed(format!("exec {}: {err}", args.join(" "))),
        }
    }

    async fn exec_started(&self, args: &[String]) -> io::Result<Outcome> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let stdio = ContainerStdio {
            stdin: OwnedFd::from(File::open("/dev/null")?),
            stdout: write.try_clone()?,
            stderr: write,
        };
        let (pid, messages) = self
            .helper
            .spawn_exec(&self.name, args, None, stdio)
            .map_err(io::Error::other)?;
        // Off the reaper's list however this ends, a task aborted mid-probe included.
        let child = exec::Watched::new(&self.exec_helpers, pid).map_err(io::Error::other)?;
        let mut output = tokio::net::unix::pipe::Receiver::from_owned_fd(read)?;
        let read_output = async {
            let mut kept = Vec::new();
            let mut buffer = [0; 4096];
            while let Ok(len) = output.read(&mut buffer).await {
                if len == 0 {
                    break;
                }
                let room = (MAX_OUTPUT * 4).saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..len.min(room)]);
            }
            kept
        };
        let waited = async {
            if let Some(exit) = child.wait(Some(self.timeout)).await? {
                return Ok::<_, io::Error>(Ok(exit));
            }
            let _ = kill(pid, Signal::SIGTERM);
            if child.wait(Some(KILL_GRACE)).await?.is_none() {
                let _ = kill(pid, Signal::SIGKILL);
                child.wait(None).await?;
            }
            Ok(Err(()))
        };
        let (kept, exit) = tokio::join!(read_output, waited);
        let text = last_line(&kept);
        Ok(match exit? {
            Err(()) => {
                Outcome::failed(format!("timed out after {}s{text}", self.timeout.as_secs()))
            }
            Ok(exit) => {
                let message = runtime::helper::read_message(messages);
                match exit {
                    Exit::Code(0) => Outcome::passed(format!("exit 0{text}")),
                    Exit::Code(code) if !message.is_empty() && kept.is_empty() => {
                        Outcome::failed(format!("exit {code}: {message}"))
                    }
                    Exit::Code(code) => Outcome::failed(format!("exit {code}{text}")),
                    other => Outcome::failed(format!("{other}{text}")),
                }
            }
        })
    }
}

/// `: LINE`, the last line of a probe's output, cut short; empty when there is none.
fn last_line(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    match text.lines().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => format!(
            ": {}",
            line.trim().chars().take(MAX_OUTPUT).collect::<String>()
        ),
        None => String::new(),
    }
}

/// A connection to `host:port` (each address it resolves to tried in turn) within `timeout`.
fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("`{host}` has no address"));
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// A plain HTTP/1.0 GET whose answer's status line is all that is read: 2xx and 3xx pass.
/// Written here rather than taken from an HTTP client crate: a status line is all a probe
/// needs, and the `service` binary stays small.
fn http_get(target: &HttpTarget, timeout: Duration) -> io::Result<Outcome> {
    let mut stream = connect(&target.host, target.port, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let after_scheme = target.url.trim_start_matches("http://");
    let rest = after_scheme
        .find(['/', '?', '#'])
        .map_or("", |at| &after_scheme[at..]);
    let rest = rest.split('#').next().unwrap_or_default();
    let path = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: kiln-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while head.len() < MAX_OUTPUT && !head.ends_with(b"\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&head).trim().to_owned();
    let status = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    Ok(match status {
        Some(code) if (200..400).contains(&code) => Outcome::passed(format!("HTTP {code}")),
        Some(code) => Outcome::failed(format!("HTTP {code}")),
        None if line.is_empty() => Outcome::failed("no answer"),
        None => Outcome::failed(format!("not an HTTP answer: `{line}`")),
    })
}

/// The shared report of a run, read by `list` and `status`.
pub type Shared = Arc<Mutex<Report>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check(json: &str) -> Healthcheck {
        serde_json::from_str(json).unwrap()
    }

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy_and_one_pass_healthy() {
        let check = check(r#"{"tcp":"a:1","retries":2,"startPeriod":10}"#);
        let now = SystemTime::now();
        let mut report = Report::default();
        let failed = || Outcome::failed("exit 1");
        for elapsed in [1, 5, 9] {
            assert_eq!(
                record(&mut report, failed(), at(elapsed), &check, now),
                Change::None
            );
        }
        assert_eq!(report.failures, 0, "the start period does not count");
        assert_eq!(report.health, Health::Starting);
        assert_eq!(
            record(&mut report, Outcome::passed("exit 0"), at(9), &check, now),
            Change::BecameHealthy
        );
        assert_eq!(
            record(&mut report, failed(), at(20), &check, now),
            Change::None
        );
        assert_eq!(report.health, Health::Healthy);
        assert_eq!(
            record(&mut report, Outcome::passed("exit 0"), at(21), &check, now),
            Change::None
        );
        assert_eq!(report.failures, 0, "a pass starts the count again");
        record(&mut report, failed(), at(22), &check, now);
        assert_eq!(
            record(&mut report, failed(), at(23), &check, now),
            Change::BecameUnhealthy
        );
        assert_eq!(
            record(&mut report, Outcome::passed("exit 0"), at(24), &check, now),
            Change::None,
            "unhealthy stays unhealthy"
        );
        assert_eq!(
            report.last.as_ref().map(|(o, _)| o.detail.as_str()),
            Some("exit 1")
        );
    }

    #[test]
    fn an_http_probe_reads_the_status_line() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in [
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 503 Busy\r\n\r\n",
                "hello\n",
            ] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    request.push(byte[0]);
                }
                requests.push(String::from_utf8_lossy(&request).into_owned());
                stream.write_all(answer.as_bytes()).unwrap();
            }
            requests
        });
        let target = |path: &str| HttpTarget {
            url: format!("http://127.0.0.1:{port}{path}"),
            host: "127.0.0.1".into(),
            port,
        };
        let get = |path| http_get(&target(path), at(5)).unwrap();
        assert_eq!(get("/health?deep=1"), Outcome::passed("HTTP 204"));
        assert_eq!(get(""), Outcome::failed("HTTP 503"));
        assert_eq!(get("/"), Outcome::failed("not an HTTP answer: `hello`"));
        let requests = server.join().unwrap();
        assert!(
            requests[0].starts_with(&format!(
                "GET /health?deep=1 HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
            )),
            "{requests:?}"
        );
        assert!(
            requests[1].starts_with("GET / HTTP/1.0\r\n"),
            "{requests:?}"
        );
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(connect("127.0.0.1", closed_port, at(5)).is_err());
    }

    #[test]
    fn the_last_line_of_output_is_kept_short() {
        assert_eq!(last_line(b""), "");
        assert_eq!(last_line(b"starting\nnot ready yet\n\n"), ": not ready yet");
        assert_eq!(last_line("x".repeat(500).as_bytes()).len(), 2 + MAX_OUTPUT);
    }
}
