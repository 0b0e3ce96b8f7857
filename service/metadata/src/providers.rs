//! Which provider configures this machine. The command line names providers (LinuxKit's
//! names; none given: all, in LinuxKit's order); the clouds come first, then the cidata
//! volumes and CD drives (`cdrom`), then files (`file=PATH`), each group in the order named.
//! All are asked at once, and the first in that order that answers wins, as soon as every one
//! before it has said no: the wait is the slowest refusal (one [`crate::http::TIMEOUT`]), not
//! their sum, and never longer than [`DEADLINE`].
//! Runs in: the metadata program.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cdrom::{self, Cdrom};
use crate::http::{self, Server, CLOUDS};

/// How long the providers have to answer, all together.
pub const DEADLINE: Duration = Duration::from_secs(4);

/// LinuxKit's providers this package does not have: named in the error a command line naming
/// them gets.
const ELSEWHERE: [&str; 3] = ["scaleway", "equinixmetal", "vmware"];

/// A place configuration may come from.
#[derive(Debug, Clone)]
pub enum Provider {
    Cloud(Server),
    Cdrom(Cdrom),
    /// A file of the image or of a bound directory.
    File(PathBuf),
}

/// A provider's answer to being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A cloud's server is there: what it has is fetched next.
    Cloud,
    /// The user data itself.
    Data(Vec<u8>),
}

impl Provider {
    /// Its name as /run/config/provider and the log say it (`AWS`, `CDROM /dev/vdb`,
    /// `file /etc/userdata`).
    pub fn name(&self) -> String {
        match self {
            Self::Cloud(server) => server.cloud.name.to_owned(),
            Self::Cdrom(cdrom) => cdrom.name(),
            Self::File(path) => format!("file {}", path.display()),
        }
    }

    /// Asks it: `Err` says why it does not answer.
    pub fn ask(&self) -> Result<Answer> {
        match self {
            Self::Cloud(server) => server.get(server.cloud.probe).map(|_| Answer::Cloud),
            Self::Cdrom(cdrom) => match cdrom.read()? {
                Some(data) => Ok(Answer::Data(data)),
                None => bail!("holds no user-data or config file"),
            },
            Self::File(path) => match std::fs::read(path) {
                Ok(data) => Ok(Answer::Data(data)),
                Err(err) => bail!("cannot read {}: {err}", path.display()),
            },
        }
    }

    fn group(&self) -> u8 {
        match self {
            Self::Cloud(_) => 0,
            Self::Cdrom(_) => 1,
            Self::File(_) => 2,
        }
    }
}

/// The providers `args` name (every one, in LinuxKit's order, when empty), CD drives and
/// cidata volumes found under `sys` and `dev`.
pub fn named(args: &[String], sys: &Path, dev: &Path) -> Result<Vec<Provider>> {
    let defaults: Vec<String>;
    let args = if args.is_empty() {
        defaults = CLOUDS
            .iter()
            .map(|cloud| cloud.arg.to_owned())
            .chain(["cdrom".to_owned()])
            .collect();
        &defaults
    } else {
        args
    };
    let mut providers = Vec::new();
    for arg in args {
        if let Some(cloud) = http::cloud(arg) {
            providers.push(Provider::Cloud(Server::of(cloud)));
        } else if arg == "cdrom" {
            providers.extend(cdrom::candidates(sys, dev).into_iter().map(Provider::Cdrom));
        } else if let Some(path) = arg.strip_prefix("file=") {
            providers.push(Provider::File(PathBuf::from(path)));
        } else {
            let known: Vec<&str> = CLOUDS.iter().map(|cloud| cloud.arg).collect();
            let elsewhere = if ELSEWHERE.contains(&arg.as_str()) {
                " (LinuxKit's, not Kiln's)"
            } else {
                ""
            };
            bail!(
                "unknown provider `{arg}`{elsewhere}: the providers are {}, cdrom and file=PATH",
                known.join(", ")
            );
        }
    }
    providers.sort_by_key(Provider::group);
    Ok(providers)
}

/// The outcome of asking every provider.
#[derive(Debug)]
pub struct Asked {
    /// The first that answered, by index into the providers, and its answer.
    pub answer: Option<(usize, Answer)>,
    /// Those before it (or all, when none answered): why they did not, by index.
    pub refusals: Vec<(usize, String)>,
}

/// Asks all `providers` at once and waits for the first in order that answers (at most
/// `deadline`: one that has not answered by then counts as not answering).
pub fn ask(providers: &[Provider], deadline: Duration) -> Asked {
    let (send, receive) = mpsc::channel();
    for (index, provider) in providers.iter().enumerate() {
        let provider = provider.clone();
        let send = send.clone();
        // A thread that outlives the decision is left to end with the program.
        std::thread::spawn(move || {
            let _ = send.send((index, provider.ask().map_err(|err| format!("{err:#}"))));
        });
    }
    drop(send);
    let until = Instant::now() + deadline;
    let mut results: Vec<Option<Result<Answer, String>>> = vec![None; providers.len()];
    let mut refusals = Vec::new();
    for index in 0..providers.len() {
        while results[index].is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match receive.recv_timeout(left) {
                Ok((at, result)) => results[at] = Some(result),
                Err(_) => results[index] = Some(Err(format!("no answer within {deadline:?}"))),
            }
        }
        match results[index].take() {
            Some(Ok(answer)) => {
                return Asked {
                    answer: Some((index, answer)),
                    refusals,
                }
            }
            Some(Err(why)) => refusals.push((index, why)),
            None => {}
        }
    }
    Asked {
        answer: None,
        refusals,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::net::TcpListener;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    fn names(providers: &[Provider]) -> Vec<String> {
        providers.iter().map(Provider::name).collect()
    }

    #[test]
    fn linuxkits_names_in_its_order_clouds_then_cds_then_files() {
        let none = Path::new("/nonexistent");
        let all = named(&[], none, none).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            names(&all),
            [
                "AWS",
                "GCP",
                "Hetzner",
                "openstack",
                "Vultr",
                "DigitalOcean",
                "metaldata"
            ]
        );
        let some = named(
            &args(&["file=/etc/ud", "cdrom", "openstack", "aws"]),
            none,
            none,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(names(&some), ["openstack", "AWS", "file /etc/ud"]);
        let err = named(&args(&["aws", "scaleway"]), none, none)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "unknown provider `scaleway` (LinuxKit's, not Kiln's): the providers are aws, gcp, \
             hetzner, openstack, vultr, digitalocean, metaldata, cdrom and file=PATH"
        );
        let err = named(&args(&["-x"]), none, none)
            .err()
            .map(|e| e.to_string());
        assert!(err
            .unwrap_or_default()
            .starts_with("unknown provider `-x`: "));
    }

    #[test]
    fn the_first_in_order_that_answers_wins_and_those_before_it_are_said() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        fs::write(&second, "second").unwrap_or_else(|e| panic!("{e}"));
        // A refused cloud (a port nothing listens on), a missing file, then two files.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let origin = format!(
            "http://{}",
            closed.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        drop(closed);
        let aws = http::cloud("aws").unwrap_or_else(|| panic!("aws"));
        let third = dir.path().join("third");
        fs::write(&third, "third").unwrap_or_else(|e| panic!("{e}"));
        let providers = vec![
            Provider::Cloud(Server::at(aws, &origin)),
            Provider::File(first.clone()),
            Provider::File(second),
            Provider::File(third),
        ];
        let asked = ask(&providers, DEADLINE);
        assert_eq!(asked.answer, Some((2, Answer::Data(b"second".to_vec()))));
        let refused: Vec<usize> = asked.refusals.iter().map(|(index, _)| *index).collect();
        assert_eq!(refused, [0, 1]);
        assert!(asked.refusals[1]
            .1
            .starts_with(&format!("cannot read {}: ", first.display())));
        let none = ask(&providers[..2], DEADLINE);
        assert_eq!(none.answer, None);
        assert_eq!(none.refusals.len(), 2);
    }

    #[test]
    fn a_provider_that_never_answers_counts_as_refusing_at_the_deadline() {
        // A listener that accepts and says nothing: the client waits for its timeout, longer
        // than the deadline given here.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let origin = format!(
            "http://{}",
            silent.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("data");
        fs::write(&file, "data").unwrap_or_else(|e| panic!("{e}"));
        let aws = http::cloud("aws").unwrap_or_else(|| panic!("aws"));
        let providers = vec![
            Provider::Cloud(Server::at(aws, &origin)),
            Provider::File(file),
        ];
        let asked = ask(&providers, Duration::from_millis(300));
        assert_eq!(asked.answer, Some((1, Answer::Data(b"data".to_vec()))));
        assert_eq!(asked.refusals, [(0, "no answer within 300ms".to_owned())]);
        drop(silent);
    }
}
