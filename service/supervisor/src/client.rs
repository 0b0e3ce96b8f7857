//! The operator's side of the control socket: `service list`, `status`, `start`, `stop`,
//! `restart`, `kill`, `logs`, `exec` and `shutdown` send one request each and print the answer as
//! a table or text (or, with `--json`, the answer lines as they came); `exec` is in
//! `exec_client`.
//! Runs in: the image, as root, from a shell (getty, ssh) or a script; plain blocking I/O.
//! Mirrors `systemctl list-units|status|start|stop|restart|kill` and `journalctl -u -n -f`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use crate::protocol::{epoch_secs, Answer, LogLine, Request, ServiceInfo};

/// A connection to the supervisor.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the control socket at `path`; the error says what to check.
    pub fn connect(path: &Path) -> Result<Self, String> {
        let stream = connect(path)?;
        let writer = stream
            .try_clone()
            .map_err(|err| format!("control socket {}: {err}", path.display()))?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends a request and reads the (first) answer.
    pub fn ask(&mut self, request: &Request) -> Result<(Answer, String), String> {
        let mut line = serde_json::to_string(request).map_err(|err| err.to_string())?;
        line.push('\n');
        if let Err(err) = self.writer.write_all(line.as_bytes()) {
            if !hung_up(&err) {
                return Err(format!("send the request: {err}"));
            }
            return self
                .next()
                .ok()
                .flatten()
                .ok_or_else(|| format!("send the request: {err}"));
        }
        self.next()?
            .ok_or_else(|| "the supervisor closed the connection without answering".to_owned())
    }

    /// The next answer and its raw line; `None` at the end of the connection.
    pub fn next(&mut self) -> Result<Option<(Answer, String)>, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                let answer = serde_json::from_str(&line)
                    .map_err(|err| format!("read the answer `{}`: {err}", line.trim_end()))?;
                Ok(Some((answer, line)))
            }
            Err(err) => Err(format!("read the answer: {err}")),
        }
    }
}

/// Whether sending a request failed because the supervisor hung up: one that refuses this
/// client answers and closes without reading, so the request meets a closed socket and the
/// answer waiting to be read says why.
pub fn hung_up(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Connects to the control socket at `path`; the error says what to check.
pub fn connect(path: &Path) -> Result<UnixStream, String> {
    UnixStream::connect(path).map_err(|err| {
        let hint = match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                " (is `service system-init` running?)"
            }
            io::ErrorKind::PermissionDenied => " (the control socket is for root only)",
            _ => "",
        };
        format!(
            "connect to the supervisor at {}: {err}{hint}",
            path.display()
        )
    })
}

/// What one CLI command asks and how it prints the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    List,
    Status,
    /// start, stop, restart, kill: the service's state afterwards.
    State,
    Logs,
    Done,
}

/// Runs one request against the socket at `socket` and prints the answer.
pub fn run(socket: &Path, request: &Request, show: Show, json: bool) -> ExitCode {
    let mut client = match Client::connect(socket) {
        Ok(client) => client,
        Err(err) => return fail(&err),
    };
    let (answer, raw) = match client.ask(request) {
        Ok(answer) => answer,
        Err(err) => return fail(&err),
    };
    if json {
        // A closed stdout (`| head`) ends the output, not the command.
        let _ = io::stdout().write_all(raw.as_bytes());
    }
    if !answer.ok {
        if !json {
            eprintln!(
                "service: {}",
                answer.error.as_deref().unwrap_or("request failed")
            );
        }
        return ExitCode::FAILURE;
    }
    let mut out = io::stdout().lock();
    if !json {
        let _ = match show {
            Show::List => write!(out, "{}", table(answer.services.as_deref().unwrap_or(&[]))),
            Show::Status => write!(out, "{}", status(&answer)),
            Show::State => match &answer.service {
                Some(info) => writeln!(out, "{}", one_line(info)),
                None => Ok(()),
            },
            Show::Logs => print_lines(&mut out, answer.lines.as_deref().unwrap_or(&[])),
            Show::Done => writeln!(out, "all services stopped"),
        };
    }
    let _ = out.flush();
    if matches!(request, Request::Logs { follow: true, .. }) {
        return follow(&mut client, json);
    }
    ExitCode::SUCCESS
}

/// Prints each line that comes until the supervisor ends the connection.
fn follow(client: &mut Client, json: bool) -> ExitCode {
    loop {
        match client.next() {
            Ok(Some((answer, raw))) => {
                let mut out = io::stdout().lock();
                let written = if json {
                    out.write_all(raw.as_bytes())
                } else if let Some(line) = &answer.line {
                    print_lines(&mut out, std::slice::from_ref(line))
                } else if let Some(err) = &answer.error {
                    writeln!(io::stderr(), "service: {err}")
                } else {
                    Ok(())
                };
                // The reader went away (a closed pipe): done.
                if written.and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(err) => return fail(&err),
        }
    }
}

pub fn fail(message: &str) -> ExitCode {
    eprintln!("service: {message}");
    ExitCode::FAILURE
}

/// `service list`: one row per service.
pub fn table(services: &[ServiceInfo]) -> String {
    let header = [
        "NAME",
        "STATE",
        "HEALTH",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
    ]
    .map(str::to_owned);
    let mut rows = vec![header.to_vec()];
    for info in services {
        rows.push(vec![
            info.name.clone(),
            info.state.clone(),
            or_dash(info.health.as_ref()),
            or_dash(info.pid),
            or_dash(info.uptime.map(duration)),
            info.restarts.to_string(),
            or_dash(info.last_exit.as_ref()),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// A fact that may be missing, `-` then.
fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or("-".to_owned(), |value| value.to_string())
}

/// `web: running, pid 312, up 5s`.
fn one_line(info: &ServiceInfo) -> String {
    let mut line = format!("{}: {}", info.name, info.state);
    if let Some(pid) = info.pid {
        line.push_str(&format!(", pid {pid}"));
    }
    if let Some(exit) = &info.last_exit {
        line.push_str(&format!(", last exit {exit}"));
    }
    line
}

/// `service status NAME`: the service's facts, then its last lines.
fn status(answer: &Answer) -> String {
    let Some(info) = &answer.service else {
        return String::new();
    };
    let now = epoch_secs(SystemTime::now());
    let mut text = format!(
        "{} - {} for {}\n",
        info.name,
        info.state,
        duration(now - info.since)
    );
    let mut fact = |label: &str, value: String| {
        text.push_str(&format!("  {label:<11}{value}\n"));
    };
    fact("pid:", or_dash(info.pid));
    fact("uptime:", or_dash(info.uptime.map(duration)));
    fact("restarts:", info.restarts.to_string());
    fact("last exit:", or_dash(info.last_exit.as_ref()));
    if !info.depends_on.is_empty() {
        fact("depends on:", info.depends_on.join(", "));
    }
    if let Some(health) = &info.health {
        fact("health:", health.clone());
    }
    if let Some(probe) = &info.last_probe {
        fact(
            "probe:",
            format!(
                "{} ({} ago): {}",
                if probe.passed { "passed" } else { "failed" },
                duration(now - probe.at),
                probe.detail
            ),
        );
    }
    if let Some(text) = &info.status_text {
        fact("status:", text.clone());
    }
    if let Some(problem) = &info.problem {
        fact("problem:", problem.clone());
    }
    let lines = answer.lines.as_deref().unwrap_or(&[]);
    if !lines.is_empty() {
        text.push('\n');
        let mut buffer = Vec::new();
        let _ = print_lines(&mut buffer, lines);
        text.push_str(&String::from_utf8_lossy(&buffer));
    }
    text
}

fn print_lines(out: &mut impl Write, lines: &[LogLine]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "{}", line.to_ring_line())?;
    }
    Ok(())
}

/// `3d4h`, `5m3s`, `12s`: the two largest units.
pub fn duration(seconds: f64) -> String {
    // Whole seconds of a non-negative, finite float.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds as u64
    } else {
        0
    };
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::Exit;

    fn info(name: &str, state: &str, pid: Option<i32>) -> ServiceInfo {
        ServiceInfo {
            name: name.to_owned(),
            state: state.to_owned(),
            pid,
            since: 0.0,
            uptime: pid.map(|_| 75.2),
            restarts: 0,
            last_exit: None,
            depends_on: vec![],
            problem: None,
            status_text: None,
            health: None,
            last_probe: None,
        }
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let mut crashed = info("crasher", "backoff", None);
        crashed.restarts = 3;
        crashed.last_exit = Some(Exit::Code(3).into());
        let mut web = info("web", "running", Some(312));
        web.health = Some("healthy".into());
        let text = table(&[web, crashed]);
        assert_eq!(
            text,
            "NAME     STATE    HEALTH   PID  UPTIME  RESTARTS  LAST EXIT\n\
             web      running  healthy  312  1m15s   0         -\n\
             crasher  backoff  -        -    -       3         status 3\n"
        );
    }

    #[test]
    fn a_refusal_is_read_even_when_the_request_could_not_be_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .write_all(Answer::error("permission denied").to_line().as_bytes())
                .unwrap();
            // Hangs up without reading, as the supervisor does with a client it refuses.
        });
        let mut client = Client::connect(&path).unwrap();
        server.join().unwrap();
        let (answer, _) = client.ask(&Request::List).unwrap();
        assert_eq!(answer.error.as_deref(), Some("permission denied"));
    }

    #[test]
    fn durations_show_two_units() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(3723.0), "1h2m");
        assert_eq!(duration(2.0 * 86_400.0 + 7200.0), "2d2h");
        assert_eq!(duration(-3.0), "0s");
    }
}
