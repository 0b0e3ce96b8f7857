//! runtime.json's keys that watch a running service and decide when it has failed for good:
//! `healthcheck` (a probe run every `interval`), `watchdog` (sd_notify's `WATCHDOG=1` keep-alive),
//! `restartLimit` (how many automatic restarts a time window allows) and `onFailure` (what the
//! machine does when a service fails for good). Times are whole seconds, as `stopTimeout`.
//! Runs in: the builder and `kiln validate` (checks), the supervisor (reads them at each start).
//! Pure data. Follows Docker's HEALTHCHECK (interval, timeout, retries, start period) and
//! systemd's WatchdogSec, StartLimitBurst/StartLimitIntervalSec and FailureAction.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::problem::Problem;

/// Docker's defaults, in seconds (`retries` a count).
pub const DEFAULT_INTERVAL: u64 = 10;
pub const DEFAULT_TIMEOUT: u64 = 5;
pub const DEFAULT_RETRIES: u32 = 3;

/// `healthcheck`: one probe (`exec`, `http` or `tcp`) and its timing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Healthcheck {
    /// A command run in the service's container (its namespaces and cgroup); exit 0 is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// `http://HOST[:PORT][/PATH]` fetched from the service's network namespace; a 2xx or 3xx
    /// answer is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// `HOST:PORT` connected to from the service's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Seconds between probes (default 10); the first comes one interval after the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Seconds a probe may take before it counts as failed (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Failed probes in a row that make the service unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Seconds after the start during which failed probes do not count (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
}

/// What a healthcheck does, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Exec(Vec<String>),
    Http(HttpTarget),
    Tcp { host: String, port: u16 },
}

/// Where an `http` probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// The whole URL, as given.
    pub url: String,
    pub host: String,
    pub port: u16,
}

impl Healthcheck {
    /// The probe it names; the error says what is wrong, for the field `healthcheck`.
    pub fn probe(&self) -> Result<Probe, Problem> {
        match (&self.exec, &self.http, &self.tcp) {
            (Some(args), None, None) => {
                if args.is_empty() || args[0].is_empty() {
                    Err(Problem::new(
                        "healthcheck.exec",
                        "empty command: give the program and its arguments",
                    ))
                } else {
                    Ok(Probe::Exec(args.clone()))
                }
            }
            (None, Some(url), None) => parse_http(url)
                .map(Probe::Http)
                .map_err(|message| Problem::new("healthcheck.http", message)),
            (None, None, Some(target)) => parse_host_port(target)
                .map(|(host, port)| Probe::Tcp { host, port })
                .map_err(|message| Problem::new("healthcheck.tcp", message)),
            _ => Err(Problem::new(
                "healthcheck",
                "give exactly one of `exec` (a command), `http` (a URL) or `tcp` (HOST:PORT)",
            )),
        }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval.unwrap_or(DEFAULT_INTERVAL))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(DEFAULT_TIMEOUT))
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(DEFAULT_RETRIES)
    }

    pub fn start_period(&self) -> Duration {
        Duration::from_secs(self.start_period.unwrap_or(0))
    }

    fn check(&self, problems: &mut Vec<Problem>) {
        if let Err(problem) = self.probe() {
            problems.push(problem);
        }
        for (key, value) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("retries", self.retries.map(u64::from)),
        ] {
            if value == Some(0) {
                problems.push(Problem::new(
                    format!("healthcheck.{key}"),
                    "must be at least 1",
                ));
            }
        }
    }
}

/// `restartLimit`: at most `burst` automatic restarts within any `interval` seconds; the
/// failure that would need one more leaves the service failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartLimit {
    pub burst: u32,
    pub interval: u64,
}

/// `onFailure`: what the machine does when a service fails for good (its restart policy or
/// `restartLimit` gives up on it), after saying why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Reboot,
    Poweroff,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reboot => "reboot",
            Self::Poweroff => "poweroff",
        }
    }
}

/// Checks the supervision keys that parsing lets through.
pub fn check(
    healthcheck: Option<&Healthcheck>,
    watchdog: Option<u64>,
    restart_limit: Option<RestartLimit>,
    problems: &mut Vec<Problem>,
) {
    if let Some(healthcheck) = healthcheck {
        healthcheck.check(problems);
    }
    if watchdog == Some(0) {
        problems.push(Problem::new("watchdog", "must be at least 1 (seconds)"));
    }
    if let Some(limit) = restart_limit {
        if limit.burst == 0 {
            problems.push(Problem::new(
                "restartLimit.burst",
                "must be at least 1 (use `restart: no` for none)",
            ));
        }
        if limit.interval == 0 {
            problems.push(Problem::new(
                "restartLimit.interval",
                "must be at least 1 (seconds)",
            ));
        }
    }
}

/// `http://HOST[:PORT][/PATH]`: only plain HTTP (the supervisor speaks no TLS).
fn parse_http(url: &str) -> Result<HttpTarget, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "`{url}` is not an http:// URL (https is not probed: probe its port with `tcp`)"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("`{url}`: user information is not supported"));
    }
    let (host, port) = if authority.ends_with(']') || !authority.contains(':') {
        (strip_brackets(authority).to_owned(), 80)
    } else {
        parse_host_port(authority)?
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(HttpTarget {
        url: url.to_owned(),
        host,
        port,
    })
}

/// `HOST:PORT`, with an IPv6 address in brackets (`[::1]:80`).
fn parse_host_port(target: &str) -> Result<(String, u16), String> {
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(format!("`{target}` is not HOST:PORT"));
    };
    let host = strip_brackets(host);
    if host.is_empty() {
        return Err(format!("`{target}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok((host.to_owned(), port)),
        _ => Err(format!("`{target}`: `{port}` is not a port (1-65535)")),
    }
}

fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(json: &str) -> Result<Probe, Problem> {
        serde_json::from_str::<Healthcheck>(json).unwrap().probe()
    }

    #[test]
    fn each_kind_of_probe_is_read() {
        assert_eq!(
            probe(r#"{"exec":["test","-f","/run/ok"]}"#),
            Ok(Probe::Exec(vec![
                "test".into(),
                "-f".into(),
                "/run/ok".into()
            ]))
        );
        assert_eq!(
            probe(r#"{"tcp":"127.0.0.1:6379"}"#),
            Ok(Probe::Tcp {
                host: "127.0.0.1".into(),
                port: 6379
            })
        );
        assert_eq!(
            probe(r#"{"tcp":"[::1]:22"}"#),
            Ok(Probe::Tcp {
                host: "::1".into(),
                port: 22
            })
        );
        let Ok(Probe::Http(target)) = probe(r#"{"http":"http://localhost:8080/health?x=1"}"#)
        else {
            panic!("an http probe");
        };
        assert_eq!((target.host.as_str(), target.port), ("localhost", 8080));
        let Ok(Probe::Http(target)) = probe(r#"{"http":"http://[fe80::1]/"}"#) else {
            panic!("an http probe");
        };
        assert_eq!((target.host.as_str(), target.port), ("fe80::1", 80));
    }

    #[test]
    fn bad_probes_name_their_field() {
        let field = |json: &str| probe(json).unwrap_err().field;
        assert_eq!(field(r#"{}"#), "healthcheck");
        assert_eq!(field(r#"{"exec":["x"],"tcp":"a:1"}"#), "healthcheck");
        assert_eq!(field(r#"{"exec":[]}"#), "healthcheck.exec");
        assert_eq!(field(r#"{"tcp":"localhost"}"#), "healthcheck.tcp");
        assert_eq!(field(r#"{"tcp":"localhost:0"}"#), "healthcheck.tcp");
        assert_eq!(field(r#"{"tcp":":80"}"#), "healthcheck.tcp");
        let https = probe(r#"{"http":"https://example.com/"}"#).unwrap_err();
        assert_eq!(https.field, "healthcheck.http");
        assert!(https.message.contains("https is not probed"), "{https}");
        assert_eq!(field(r#"{"http":"http:///x"}"#), "healthcheck.http");
        assert_eq!(field(r#"{"http":"http://h:99999/"}"#), "healthcheck.http");
    }

    #[test]
    fn zero_times_and_limits_are_refused() {
        let healthcheck: Healthcheck =
            serde_json::from_str(r#"{"tcp":"a:1","interval":0,"timeout":0,"retries":0}"#).unwrap();
        let mut problems = Vec::new();
        check(
            Some(&healthcheck),
            Some(0),
            Some(RestartLimit {
                burst: 0,
                interval: 0,
            }),
            &mut problems,
        );
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "healthcheck.interval",
                "healthcheck.timeout",
                "healthcheck.retries",
                "watchdog",
                "restartLimit.burst",
                "restartLimit.interval"
            ]
        );
        assert_eq!(healthcheck.start_period(), Duration::ZERO);
        let defaults = Healthcheck::default();
        assert_eq!(
            (defaults.interval(), defaults.timeout(), defaults.retries()),
            (Duration::from_secs(10), Duration::from_secs(5), 3)
        );
    }
}
