//! The checks the probe knows, parsed from one command-line argument each (`KIND ARGS`), and
//! tried again until they hold or the deadline passes.
//! Runs in: the probe, inside a test image's container.

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use spec::mountinfo;

/// A check: what must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The path exists (symlinks followed).
    Exists(PathBuf),
    /// The path does not exist.
    Absent(PathBuf),
    /// The file contains the text.
    Contains(PathBuf, String),
    /// The file holds exactly the text, a final newline aside.
    Equals(PathBuf, String),
    /// Init's mount table (/proc/1/mountinfo) has a mount at the path whose file system type or
    /// options include each word.
    Mounted(PathBuf, Vec<String>),
    /// A TCP connection to the address succeeds.
    Connect(String),
    /// No TCP socket listens and no UDP socket is bound in this network namespace.
    NoListeners,
    /// `/bin/sh -c COMMAND` exits 0.
    Run(String),
    /// `/bin/sh -c COMMAND` exits 0; what it printed is shown on the console.
    Show(String),
}

impl Check {
    /// Parses `KIND ARGS`; `\n` and `\t` in a text stand for a newline and a tab.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (kind, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        let rest = rest.trim_start();
        let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let path = || {
            if first.starts_with('/') {
                Ok(PathBuf::from(first))
            } else {
                Err(format!("`{kind}` needs an absolute path, not `{first}`"))
            }
        };
        let text_arg = || unescape(after.trim_start());
        let check = match kind {
            "exists" => Self::Exists(path()?),
            "absent" => Self::Absent(path()?),
            "contains" => Self::Contains(path()?, text_arg()),
            "equals" => Self::Equals(path()?, text_arg()),
            "mounted" => Self::Mounted(
                path()?,
                after.split_whitespace().map(str::to_owned).collect(),
            ),
            "connect" if !rest.is_empty() => Self::Connect(rest.to_owned()),
            "no-listeners" => Self::NoListeners,
            "run" if !rest.is_empty() => Self::Run(rest.to_owned()),
            "show" if !rest.is_empty() => Self::Show(rest.to_owned()),
            _ => {
                return Err(format!(
                    "unknown check `{kind}` (exists, absent, contains, equals, mounted, connect, \
                     no-listeners, run, show)"
                ))
            }
        };
        if matches!(&check, Self::Contains(_, t) if t.is_empty()) {
            return Err("`contains` needs a text after the path".to_owned());
        }
        Ok(check)
    }

    /// Tries the check until it holds or `deadline` passes: what it has to show (`show`'s
    /// output, else nothing), or the last reason it did not hold.
    pub fn until(&self, deadline: Instant, retry: Duration) -> Result<String, String> {
        loop {
            let why = match self.holds() {
                Ok(shown) => return Ok(shown),
                Err(why) => why,
            };
            if Instant::now() + retry > deadline {
                return Err(why);
            }
            std::thread::sleep(retry);
        }
    }

    /// Whether the check holds now (with what it has to show), and why not.
    pub fn holds(&self) -> Result<String, String> {
        if let Self::Run(command) | Self::Show(command) = self {
            let output = Command::new("/bin/sh")
                .args(["-c", command])
                .output()
                .map_err(|err| format!("cannot run /bin/sh: {err}"))?;
            let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
            if !output.status.success() {
                said.push_str(&String::from_utf8_lossy(&output.stderr));
                return Err(format!("{} ({})", output.status, said.trim()));
            }
            return Ok(if matches!(self, Self::Show(_)) {
                said
            } else {
                String::new()
            });
        }
        self.holds_now().map(|()| String::new())
    }

    fn holds_now(&self) -> Result<(), String> {
        match self {
            Self::Exists(path) => fs::metadata(path)
                .map(drop)
                .map_err(|err| format!("{}: {err}", path.display())),
            Self::Absent(path) => match fs::symlink_metadata(path) {
                Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
                Err(err) => Err(format!("{}: {err}", path.display())),
                Ok(_) => Err(format!("{} exists", path.display())),
            },
            Self::Contains(path, text) => {
                let content = read(path)?;
                if content.contains(text.as_str()) {
                    Ok(())
                } else {
                    Err(format!("{} holds {content:?}", path.display()))
                }
            }
            Self::Equals(path, text) => {
                let content = read(path)?;
                if content.strip_suffix('\n').unwrap_or(&content) == text {
                    Ok(())
                } else {
                    Err(format!("{} holds {content:?}", path.display()))
                }
            }
            Self::Mounted(path, words) => mounted(path, words),
            Self::Connect(address) => {
                let addresses = address
                    .to_socket_addrs()
                    .map_err(|err| format!("{address}: {err}"))?;
                let mut last = format!("{address}: no address");
                for socket in addresses {
                    match TcpStream::connect_timeout(&socket, Duration::from_secs(2)) {
                        Ok(_) => return Ok(()),
                        Err(err) => last = format!("{socket}: {err}"),
                    }
                }
                Err(last)
            }
            Self::NoListeners => no_listeners(),
            Self::Run(_) | Self::Show(_) => Ok(()),
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))
}

fn unescape(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\t", "\t")
}

/// Looks for `path` in init's mount table: the last mount there (the one seen) must have each
/// of `words` as its file system type or among its options.
fn mounted(path: &Path, words: &[String]) -> Result<(), String> {
    let table = fs::read_to_string("/proc/1/mountinfo")
        .map_err(|err| format!("/proc/1/mountinfo (the probe needs pid: host): {err}"))?;
    mounted_in(&table, path, words)
}

/// [`mounted`] on the text of a mountinfo table.
fn mounted_in(table: &str, path: &Path, words: &[String]) -> Result<(), String> {
    let wanted = path.to_string_lossy();
    let found = mountinfo::parse(table)
        .rev()
        .find(|mount| mount.mount_point.as_os_str() == path.as_os_str())
        .map(|mount| {
            let mut have: Vec<String> = vec![mount.fs_type];
            have.extend(mount.mount_options.split(',').map(str::to_owned));
            have.extend(mount.super_options.split(',').map(str::to_owned));
            have
        });
    let have = found.ok_or_else(|| format!("nothing is mounted at {wanted}"))?;
    match words.iter().find(|word| !have.contains(word)) {
        None => Ok(()),
        Some(word) => Err(format!(
            "{wanted} is mounted without `{word}`: {}",
            have.join(",")
        )),
    }
}

/// Reads /proc/net's socket tables: TCP sockets in state LISTEN (0A) and UDP sockets with a
/// local port, IPv4 and IPv6.
fn no_listeners() -> Result<(), String> {
    let mut found = Vec::new();
    for (table, listening) in [
        ("tcp", Some("0A")),
        ("tcp6", Some("0A")),
        ("udp", None),
        ("udp6", None),
    ] {
        let path = format!("/proc/net/{table}");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            // No IPv6 in the kernel: no IPv6 sockets either.
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(format!("{path}: {err}")),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            if listening.is_none_or(|wanted| *state == wanted) {
                found.push(format!("{table} {local}"));
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("listening: {}", found.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_parse_with_their_arguments() {
        assert_eq!(
            Check::parse("equals /run/x 1\\n2 3"),
            Ok(Check::Equals("/run/x".into(), "1\n2 3".into()))
        );
        assert_eq!(
            Check::parse("mounted /run/m tmpfs ro"),
            Ok(Check::Mounted(
                "/run/m".into(),
                vec!["tmpfs".into(), "ro".into()]
            ))
        );
        assert_eq!(
            Check::parse("run ping -c 1 10.0.0.1"),
            Ok(Check::Run("ping -c 1 10.0.0.1".into()))
        );
        assert_eq!(Check::parse("no-listeners"), Ok(Check::NoListeners));
        assert!(Check::parse("exists run").is_err_and(|e| e.contains("absolute")));
        assert!(Check::parse("contains /x").is_err());
        assert!(Check::parse("frobnicate /x").is_err_and(|e| e.contains("unknown check")));
    }

    #[test]
    fn show_gives_the_output_and_run_keeps_it() {
        assert_eq!(
            Check::parse("show echo a; echo b").unwrap().holds(),
            Ok("a\nb\n".to_owned())
        );
        assert_eq!(Check::Run("echo a".into()).holds(), Ok(String::new()));
        let err = Check::Show("echo said; exit 3".into()).holds().unwrap_err();
        assert!(err.contains("said"), "{err}");
    }

    #[test]
    fn file_checks_tell_what_they_found() {
        let dir = std::env::temp_dir().join(format!("probe-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("f");
        fs::write(&file, "one\ntwo\n").expect("write");
        assert_eq!(
            Check::Equals(file.clone(), "one\ntwo".into()).holds(),
            Ok(String::new())
        );
        let err = Check::Equals(file.clone(), "one".into())
            .holds()
            .expect_err("differs");
        assert!(err.contains("\"one\\ntwo\\n\""), "{err}");
        assert_eq!(
            Check::Contains(file.clone(), "two".into()).holds(),
            Ok(String::new())
        );
        assert_eq!(Check::Exists(file.clone()).holds(), Ok(String::new()));
        assert!(Check::Absent(file.clone()).holds().is_err());
        fs::remove_dir_all(&dir).expect("clean");
        assert_eq!(Check::Absent(file).holds(), Ok(String::new()));
    }

    #[test]
    fn mounted_looks_at_the_last_mount_at_the_path() {
        let table = "22 1 0:21 / /run rw,nosuid - tmpfs tmpfs rw,mode=755\n\
                     30 22 0:30 / /run/my\\040dir rw - ext4 /dev/vda rw\n\
                     31 22 0:31 / /run ro,nosuid shared:2 - tmpfs tmpfs ro,size=1024k\n";
        let words = |words: &[&str]| {
            words
                .iter()
                .map(|word| word.to_string())
                .collect::<Vec<_>>()
        };
        let run = Path::new("/run");
        assert_eq!(
            mounted_in(table, run, &words(&["tmpfs", "ro", "nosuid", "size=1024k"])),
            Ok(())
        );
        assert_eq!(
            mounted_in(table, run, &words(&["rw"])),
            Err("/run is mounted without `rw`: tmpfs,ro,nosuid,ro,size=1024k".into())
        );
        assert_eq!(
            mounted_in(table, Path::new("/run/my dir"), &words(&["ext4"])),
            Ok(())
        );
        assert_eq!(
            mounted_in(table, Path::new("/mnt"), &[]),
            Err("nothing is mounted at /mnt".into())
        );
    }

    #[test]
    fn a_check_that_never_holds_fails_at_the_deadline() {
        let start = Instant::now();
        let result = Check::Exists("/nonexistent/probe".into()).until(
            start + Duration::from_millis(300),
            Duration::from_millis(50),
        );
        assert!(result.is_err());
        assert!(start.elapsed() >= Duration::from_millis(250));
    }
}
