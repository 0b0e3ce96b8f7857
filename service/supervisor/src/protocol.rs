//! The control socket's protocol: one JSON request per line from the client, one JSON answer
//! per line from the supervisor (`service logs -f` gets one answer per new line until it hangs
//! up). Both sides of the socket use these types.
//! Runs in: the supervisor daemon (control) and the `service` CLI (client). Pure.
//!
//! ```text
//! > {"command":"list"}
//! < {"ok":true,"services":[{"name":"web","state":"running","pid":312,...}]}
//! > {"command":"kill","name":"web","signal":"HUP"}
//! < {"ok":true,"service":{...}}
//! > {"command":"stats"}
//! < {"ok":false,"error":"request: unknown variant `stats`, expected one of ..."}
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::child::Exit;
use crate::ring::{self, Stream};

/// Where the supervisor listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/service.sock";

/// A request longer than this is refused (a line of JSON naming one service is far shorter).
pub const MAX_REQUEST: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    /// Every service.
    List,
    /// One service, with its last log lines.
    Status { name: String },
    /// Start a service whatever it is doing; answered once it runs (or failed).
    Start { name: String },
    /// Stop a service; answered once it has stopped.
    Stop { name: String },
    /// Stop a running service and start it again, or start one that is not running.
    Restart { name: String },
    /// Send a signal (a name like `HUP` or `SIGHUP`, or a number) to the service's init.
    Kill { name: String, signal: String },
    /// The service's recent output: the last `lines` (all kept when absent), then with
    /// `follow` each new line as it comes.
    Logs {
        name: String,
        #[serde(default)]
        lines: Option<usize>,
        #[serde(default)]
        follow: bool,
    },
    /// Run `args` in the service's container. Without `tty` the request carries the client's
    /// stdin, stdout and stderr (SCM_RIGHTS) and the process gets them; with `tty` it gets a new
    /// pseudo-terminal whose master comes back with the first answer. The first answer says it
    /// started; then the client may send [`ExecInput`] lines (signals for the process), and the
    /// last answer gives `exit_code`.
    Exec {
        name: String,
        args: Vec<String>,
        #[serde(default)]
        tty: bool,
    },
    /// Run onshutdown, stop every service and end the supervisor; answered when done.
    Shutdown,
}

/// One answer; the fields present depend on the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<ServiceInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
    /// Log lines (`status`, `logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LogLine>>,
    /// One line that came while following.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LogLine>,
    /// How an `exec`'s process ended: its exit code, 128+N when signal N ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl Answer {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// The answer as one line of JSON, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|err| {
            format!("{{\"ok\":false,\"error\":\"encode the answer: {err}\"}}")
        });
        line.push('\n');
        line
    }
}

/// What `list` and `status` show of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    /// waiting, starting, running, ready, stopping, stopped, exited, failed or backoff.
    pub state: String,
    /// Its container's init, while it has one.
    pub pid: Option<i32>,
    /// When it entered this state (seconds since the epoch).
    pub since: f64,
    /// How long the current process has run (seconds).
    pub uptime: Option<f64>,
    /// Automatic restarts so far.
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    pub depends_on: Vec<String>,
    /// Why it is not running, when it could not be started or failed for a fault
    /// (`unhealthy`, `watchdog timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// With a healthcheck: starting, healthy or unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// With a healthcheck: the last probe's result (`exit 0`, `HTTP 503`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<LastProbe>,
    /// The last `STATUS=` text it sent on its notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
}

/// A health probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastProbe {
    pub passed: bool,
    /// What it saw: `exit 1: not ready`, `HTTP 200`, `connect 127.0.0.1:80: Connection refused`.
    pub detail: String,
    /// When it ended (seconds since the epoch).
    pub at: f64,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastExit {
    Code(i32),
    Signal(String),
    /// An adopted run: its status went to PID 1.
    Unknown,
}

impl From<Exit> for LastExit {
    fn from(exit: Exit) -> Self {
        match exit {
            Exit::Code(code) => Self::Code(code),
            Exit::Signal(signal) => Self::Signal(signal.to_string()),
            Exit::Unknown => Self::Unknown,
        }
    }
}

impl std::fmt::Display for LastExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(code) => write!(f, "status {code}"),
            Self::Signal(signal) => f.write_str(signal),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// One line of a service's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    /// Seconds since the epoch.
    pub time: f64,
    /// stdout or stderr.
    pub stream: String,
    pub text: String,
}

impl From<&ring::Line> for LogLine {
    fn from(line: &ring::Line) -> Self {
        Self {
            seq: line.seq,
            time: epoch_secs(line.time),
            stream: line.stream.as_str().to_owned(),
            text: line.text.clone(),
        }
    }
}

impl LogLine {
    /// Back to the ring's line, for printing the way the event log does.
    pub fn to_ring_line(&self) -> ring::Line {
        ring::Line {
            seq: self.seq,
            time: from_epoch_secs(self.time),
            stream: if self.stream == "stderr" {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            text: self.text.clone(),
        }
    }
}

/// What an `exec` client sends while its process runs: a signal it got (Ctrl-C), for the
/// process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecInput {
    /// A name (`INT`, `SIGINT`) or number.
    pub signal: String,
}

/// Seconds since the epoch.
pub fn epoch_secs(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The time `seconds` after the epoch (before it counts as the epoch).
pub fn from_epoch_secs(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_command() {
        let request: Request =
            serde_json::from_str(r#"{"command":"logs","name":"web","lines":5}"#).unwrap();
        assert_eq!(
            request,
            Request::Logs {
                name: "web".to_owned(),
                lines: Some(5),
                follow: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::List).unwrap(),
            r#"{"command":"list"}"#
        );
        let err = serde_json::from_str::<Request>(r#"{"command":"stats"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `stats`"), "{err}");
        let err = serde_json::from_str::<Request>(r#"{"command":"stop"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `name`"), "{err}");
    }

    #[test]
    fn answers_carry_only_what_they_have() {
        assert_eq!(
            Answer::error("no service `x`").to_line(),
            "{\"ok\":false,\"error\":\"no service `x`\"}\n"
        );
        let info = ServiceInfo {
            name: "web".to_owned(),
            state: "failed".to_owned(),
            pid: None,
            since: 1.5,
            uptime: None,
            restarts: 2,
            last_exit: Some(Exit::Code(3).into()),
            depends_on: vec![],
            problem: None,
            status_text: None,
            health: Some("unhealthy".to_owned()),
            last_probe: Some(LastProbe {
                passed: false,
                detail: "HTTP 503".to_owned(),
                at: 2.5,
            }),
        };
        let line = Answer {
            service: Some(info.clone()),
            ..Answer::ok()
        }
        .to_line();
        assert!(line.contains(r#""last_exit":{"code":3}"#), "{line}");
        assert!(!line.contains("status_text"), "{line}");
        assert!(
            line.contains(r#""last_probe":{"passed":false,"detail":"HTTP 503","at":2.5}"#),
            "{line}"
        );
        let back: Answer = serde_json::from_str(&line).unwrap();
        assert_eq!(back.service, Some(info));
        assert_eq!(LastExit::from(Exit::Unknown).to_string(), "unknown");
    }
}
