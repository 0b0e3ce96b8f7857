//! User data, as LinuxKit's metadata unfolds it: always kept whole in /run/config/userdata,
//! and when it is a JSON object, each member written below /run/config: an entry with
//! `content` is a file, one with `entries` a directory, each with `perm` (an octal mode,
//! default 0644 for files and 0755 for directories):
//!
//! ```json
//! {"ssh": {"entries": {"authorized_keys": {"perm": "0600", "content": "ssh-ed25519 ..."}}},
//!  "hostname": {"content": "web-1"}}
//! ```
//!
//! Anything else (a shell script, cloud-config YAML) is only kept in `userdata`. An entry that
//! is neither a file nor a directory, a bad mode, or a name that would leave its directory
//! (`..`, a `/`, empty) is a problem named with its path and left out; the others are
//! written. Beyond LinuxKit: modes are exactly what `perm` says, not narrowed by the umask,
//! and names cannot climb out of /run/config.
//! Runs in: the metadata program, once a provider answered with user data.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::config::{make_dir, write_file, Config};

/// What became of the user data.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unfolded {
    /// Whether the data was a JSON object of entries (not only kept as `userdata`).
    pub json: bool,
    /// The files and directories written, by path below the configuration directory.
    pub written: Vec<String>,
    /// The entries left out, and why.
    pub problems: Vec<Problem>,
}

/// An entry left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Its path below the configuration directory (`ssh/authorized_keys`).
    pub path: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "userdata: {}: {}", self.path, self.why)
    }
}

/// Keeps `data` as `userdata` and unfolds it when it is a JSON object of entries.
pub fn unfold(config: &Config, data: &[u8]) -> Result<Unfolded> {
    config.write("userdata", data, 0o644)?;
    let mut unfolded = Unfolded::default();
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(data) else {
        return Ok(unfolded);
    };
    unfolded.json = true;
    entries(config.root(), "", &members, &mut unfolded);
    Ok(unfolded)
}

/// Writes the entries `members` into `dir`, whose path below the configuration directory is
/// `prefix`.
fn entries(dir: &Path, prefix: &str, members: &Map<String, Value>, unfolded: &mut Unfolded) {
    for (name, entry) in members {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let mut problem = |why: String| {
            unfolded.problems.push(Problem {
                path: path.clone(),
                why,
            })
        };
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            problem(format!("`{name}` is not a file name"));
            continue;
        }
        let Value::Object(fields) = entry else {
            problem("is not an object with `content` or `entries`".to_owned());
            continue;
        };
        if let Some(unknown) = fields
            .keys()
            .find(|key| !["perm", "content", "entries"].contains(&key.as_str()))
        {
            problem(format!(
                "unknown field `{unknown}` (an entry has perm, and content or entries)"
            ));
            continue;
        }
        let content = fields.get("content").filter(|value| !value.is_null());
        let children = fields.get("entries").filter(|value| !value.is_null());
        let default = if children.is_some() { 0o755 } else { 0o644 };
        let mode = match fields.get("perm") {
            None | Some(Value::Null) => default,
            Some(Value::String(text)) if text.is_empty() => default,
            Some(Value::String(text)) => match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => mode,
                _ => {
                    problem(format!("perm `{text}` is not an octal mode (0644)"));
                    continue;
                }
            },
            Some(other) => {
                problem(format!("perm {other} is not a string such as \"0644\""));
                continue;
            }
        };
        let target = dir.join(name);
        match (content, children) {
            (Some(Value::String(text)), None) => match write_file(&target, text.as_bytes(), mode) {
                Ok(()) => unfolded.written.push(path),
                Err(err) => problem(format!("{err:#}")),
            },
            (Some(_), None) => problem("content is not a string".to_owned()),
            (None, Some(Value::Object(members))) => match make_dir(&target, mode) {
                Ok(()) => {
                    unfolded.written.push(path.clone());
                    entries(&target, &path, members, unfolded);
                }
                Err(err) => problem(format!("{err:#}")),
            },
            (None, Some(_)) => problem("entries is not an object".to_owned()),
            (Some(_), Some(_)) => problem("has both content and entries".to_owned()),
            (None, None) => problem("has neither content nor entries".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn config() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = Config::at(&dir.path().join("config")).unwrap_or_else(|e| panic!("{e}"));
        (dir, config)
    }

    fn mode(config: &Config, name: &str) -> u32 {
        fs::metadata(config.root().join(name))
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn read(config: &Config, name: &str) -> String {
        fs::read_to_string(config.root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn linuxkits_json_becomes_directories_and_files_with_their_modes() {
        let (_dir, config) = config();
        // LinuxKit's own test data (013_metadata), nested as its documentation shows.
        let data = r#"{
            "file1": {"perm": "0644", "content": "abcdefg"},
            "file2": {"perm": "0700", "content": "supersecret"},
            "ssh": {"entries": {"authorized_keys": {"perm": "0600", "content": "ssh-ed25519 AAAA k\n"}}},
            "app": {"perm": "0750", "entries": {"etc": {"entries": {"app.conf": {"content": "x=1\n"}}}}}
        }"#;
        let unfolded = unfold(&config, data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(unfolded.json);
        assert_eq!(unfolded.problems, Vec::new());
        assert_eq!(read(&config, "userdata"), data, "kept whole");
        assert_eq!(mode(&config, "userdata"), 0o644);
        assert_eq!(read(&config, "file1"), "abcdefg");
        assert_eq!(mode(&config, "file1"), 0o644);
        assert_eq!(read(&config, "file2"), "supersecret");
        assert_eq!(mode(&config, "file2"), 0o700);
        assert_eq!(read(&config, "ssh/authorized_keys"), "ssh-ed25519 AAAA k\n");
        assert_eq!(mode(&config, "ssh/authorized_keys"), 0o600);
        assert_eq!(mode(&config, "ssh"), 0o755, "a directory's default");
        assert_eq!(mode(&config, "app"), 0o750);
        assert_eq!(read(&config, "app/etc/app.conf"), "x=1\n");
        assert_eq!(mode(&config, "app/etc/app.conf"), 0o644, "a file's default");
        assert_eq!(
            unfolded.written,
            [
                "app",
                "app/etc",
                "app/etc/app.conf",
                "file1",
                "file2",
                "ssh",
                "ssh/authorized_keys"
            ]
        );
    }

    #[test]
    fn anything_but_a_json_object_is_only_kept_as_userdata() {
        for data in [
            "#!/bin/sh\necho hello\n",
            "#cloud-config\nhostname: web\n",
            "[1, 2]",
            "\"text\"",
            "{\"broken\": ",
        ] {
            let (_dir, config) = config();
            let unfolded = unfold(&config, data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            assert!(!unfolded.json, "{data}");
            assert_eq!(read(&config, "userdata"), data);
            let names: Vec<_> = fs::read_dir(config.root())
                .unwrap_or_else(|e| panic!("{e}"))
                .flatten()
                .map(|entry| entry.file_name())
                .collect();
            assert_eq!(names, ["userdata"], "{data}");
        }
    }

    #[test]
    fn bad_entries_are_named_and_left_out_while_the_others_are_written() {
        let (dir, config) = config();
        let data = r#"{
            "good": {"content": "yes"},
            "both": {"content": "a", "entries": {}},
            "neither": {"perm": "0600"},
            "badmode": {"perm": "0999", "content": "x"},
            "bigmode": {"perm": "17777", "content": "x"},
            "nummode": {"perm": 644, "content": "x"},
            "number": {"content": 5},
            "list": ["a"],
            "typo": {"contents": "x"},
            "..": {"content": "escape"},
            "d": {"entries": {"../../outside": {"content": "escape"}, "inner": {"content": "ok"}}}
        }"#;
        let unfolded = unfold(&config, data.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let said: Vec<String> = unfolded.problems.iter().map(Problem::to_string).collect();
        assert_eq!(
            said,
            [
                "userdata: ..: `..` is not a file name",
                "userdata: badmode: perm `0999` is not an octal mode (0644)",
                "userdata: bigmode: perm `17777` is not an octal mode (0644)",
                "userdata: both: has both content and entries",
                "userdata: d/../../outside: `../../outside` is not a file name",
                "userdata: list: is not an object with `content` or `entries`",
                "userdata: neither: has neither content nor entries",
                "userdata: number: content is not a string",
                "userdata: nummode: perm 644 is not a string such as \"0644\"",
                "userdata: typo: unknown field `contents` (an entry has perm, and content or entries)",
            ]
        );
        assert_eq!(unfolded.written, ["d", "d/inner", "good"]);
        assert_eq!(read(&config, "good"), "yes");
        assert_eq!(read(&config, "d/inner"), "ok");
        assert!(!dir.path().join("outside").exists());
        assert!(!config.root().join("both").exists());
    }
}
