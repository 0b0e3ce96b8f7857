//! Debian packages for images: what apt would install (`apt-cache show`: version, checksum,
//! dependencies), the `.deb` fetched once with `apt-get download` into a cache of files named
//! by Debian and checked against apt's SHA256, and its files unpacked with `dpkg-deb`. apt's
//! answers are kept in the cache beside the `.deb` files for as long as what apt answers from
//! (its package lists, its configuration and dpkg's status) is unchanged, so asking again costs
//! no apt-cache run (a third of a second each).
//! Runs in: `kiln pkg build` on a Debian build host. Runs apt-cache, apt-get and dpkg-deb;
//! writes only into the cache directory.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::images::cache::{keep_hint, user_cache};
use crate::oci::digest::{self, sha256};
use crate::pkg::tool;
use crate::tree::layer;
use crate::tree::Tree;

/// What apt knows about the version of a package it would install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub version: String,
    /// `sha256:` and hex, as [`sha256`] gives it.
    pub sha256: String,
    /// The `.deb` file's name in the archive.
    pub filename: String,
    /// Package names this one depends on (first of each alternative).
    pub depends: Vec<String>,
}

impl Record {
    /// Parses the first paragraph of `apt-cache show` output.
    pub fn parse(text: &str) -> Option<Self> {
        let paragraph = text.split("\n\n").next()?;
        let field = |name: &str| {
            paragraph.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|value| value.trim().to_owned())
            })
        };
        let depends = field("Depends")
            .unwrap_or_default()
            .split(',')
            .filter_map(|alternatives| {
                let first = alternatives.split('|').next()?.trim();
                let name = first.split([' ', '(', ':']).next()?.trim();
                (!name.is_empty()).then(|| name.to_owned())
            })
            .collect();
        Some(Record {
            name: field("Package")?,
            version: field("Version")?,
            sha256: digest::of_hex(&field("SHA256")?),
            filename: field("Filename")?.rsplit('/').next()?.to_owned(),
            depends,
        })
    }
}

/// The packages apt was asked about in this run: apt's answer does not change within one.
static SHOWN: OnceLock<Mutex<HashMap<String, Record>>> = OnceLock::new();

/// What apt's answers depend on: its package lists, its configuration, and the installed
/// versions (a candidate can be the installed one).
const APT_SOURCES: [&str; 4] = [
    "/var/lib/apt/lists",
    "/etc/apt",
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/arch",
];

/// apt's answers kept from earlier runs, with the state of its sources they were given in.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Answers {
    state: String,
    records: HashMap<String, Record>,
}

/// A digest of the name, size and modification time of every file under `paths` (and of
/// `$APT_CONFIG`'s file): it changes whenever apt's answers may. Missing paths count as
/// missing.
fn sources_state(paths: &[&Path]) -> String {
    let mut hash = Sha256::new();
    let mut pending: Vec<PathBuf> = paths.iter().rev().map(|path| path.to_path_buf()).collect();
    if let Some(config) = std::env::var_os("APT_CONFIG") {
        pending.push(PathBuf::from(config));
    }
    while let Some(path) = pending.pop() {
        hash.update(path.as_os_str().as_encoded_bytes());
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let mut entries: Vec<PathBuf> = fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path())
                    .collect();
                entries.sort_unstable_by(|a, b| b.cmp(a));
                pending.extend(entries);
            }
            Ok(meta) => {
                use std::os::unix::fs::MetadataExt as _;
                hash.update(format!(
                    "\0{}\0{}.{}\0",
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec()
                ));
            }
            Err(_) => hash.update(b"\0missing\0"),
        }
    }
    digest::text(hash)
}

/// The state of apt's sources ([`APT_SOURCES`]), taken once: like apt's answers, it does not
/// change within a run.
fn apt_state() -> &'static str {
    static STATE: OnceLock<String> = OnceLock::new();
    STATE.get_or_init(|| {
        let sources: Vec<&Path> = APT_SOURCES.iter().map(Path::new).collect();
        sources_state(&sources)
    })
}

/// Where fetched `.deb` files are kept.
#[derive(Debug, Clone)]
pub struct Debian {
    pub cache: PathBuf,
}

impl Debian {
    /// `$KILN_DEB_CACHE`, else `kiln/debs` in the user's cache directory.
    pub fn default_cache() -> PathBuf {
        match std::env::var_os("KILN_DEB_CACHE").filter(|dir| !dir.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => user_cache().join("kiln/debs"),
        }
    }

    /// The version of `name` apt would install; asked once per run.
    pub fn show(&self, name: &str) -> Result<Record> {
        let mut shown = SHOWN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = shown.get(name) {
            return Ok(record.clone());
        }
        let state = apt_state();
        let file = self.cache.join("apt/answers.json");
        let mut answers = fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Answers>(&bytes).ok())
            .filter(|answers| answers.state == state)
            .unwrap_or_default();
        let record = match answers.records.get(name) {
            Some(record) => record.clone(),
            None => {
                let record = self.ask_apt(name)?;
                answers.state = state.to_owned();
                answers.records.insert(name.to_owned(), record.clone());
                keep_hint(&file, &answers);
                record
            }
        };
        shown.insert(name.to_owned(), record.clone());
        Ok(record)
    }

    fn ask_apt(&self, name: &str) -> Result<Record> {
        // apt's binary package cache is kept with the .debs: apt-cache otherwise rebuilds it
        // from the package lists on every run (most of a second) wherever the system's copy is
        // switched off, as in Debian's container images, or not writable by this user.
        let apt_cache = self.cache.join("apt");
        let mut command = Command::new("apt-cache");
        if fs::create_dir_all(&apt_cache).is_ok() {
            for (option, file) in [
                ("Dir::Cache::pkgcache", "pkgcache.bin"),
                ("Dir::Cache::srcpkgcache", "srcpkgcache.bin"),
            ] {
                command
                    .arg("-o")
                    .arg(format!("{option}={}", apt_cache.join(file).display()));
            }
        }
        let output = command
            .args(["show", "--no-all-versions", name])
            .stdin(Stdio::null())
            .output()
            .context("cannot run apt-cache (is this a Debian machine?)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        match Record::parse(&text) {
            Some(record) if output.status.success() => Ok(record),
            _ => {
                let said = String::from_utf8_lossy(&output.stderr);
                let said = said.trim();
                bail!(
                    "Debian package `{name}` is not known to apt{}; is the name right, and has \
                     `apt-get update` run?",
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(" ({said})")
                    }
                )
            }
        }
    }

    /// The `.deb` of `record`, from the cache or fetched into it; checked against apt's
    /// SHA256 either way.
    pub fn fetch(&self, record: &Record) -> Result<PathBuf> {
        let path = self.cache.join(&record.filename);
        if let Ok(bytes) = fs::read(&path) {
            if sha256(&bytes) == record.sha256 {
                return Ok(path);
            }
        }
        fs::create_dir_all(&self.cache)
            .with_context(|| format!("cannot create {}", self.cache.display()))?;
        let work = tempfile::tempdir_in(&self.cache)
            .with_context(|| format!("cannot make a directory in {}", self.cache.display()))?;
        let wanted = format!("{}={}", record.name, record.version);
        tool::run(
            Command::new("apt-get")
                .args(["download", "-q", &wanted])
                .current_dir(work.path()),
            &format!("apt-get download {wanted}"),
        )?;
        let fetched = fs::read_dir(work.path())
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .ok_or_else(|| anyhow!("apt-get download {wanted} wrote no .deb file"))?;
        let bytes =
            fs::read(&fetched).with_context(|| format!("cannot read {}", fetched.display()))?;
        let actual = sha256(&bytes);
        if actual != record.sha256 {
            bail!(
                "{} does not match apt's checksum: {actual}, expected {}",
                record.filename,
                record.sha256
            );
        }
        fs::rename(&fetched, &path)
            .with_context(|| format!("cannot move the package to {}", path.display()))?;
        Ok(path)
    }

    /// The files of the `.deb` at `path`.
    pub fn unpack(path: &Path) -> Result<Tree> {
        let tar = tool::run(
            Command::new("dpkg-deb").arg("--fsys-tarfile").arg(path),
            &format!("dpkg-deb --fsys-tarfile {}", path.display()),
        )?;
        let mut tree = Tree::new();
        layer::apply(&mut tree, tar.as_slice())
            .map_err(|err| anyhow!(err))
            .with_context(|| format!("cannot unpack {}", path.display()))?;
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_from_apt_cache_output() {
        let text = "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (6.1.158+1)\n\
            Version: 6.1.158-1\nDepends: linux-image-6.1.0-41-cloud-amd64 (= 6.1.158-1), \
            foo | bar, baz:any\nFilename: pool/main/l/linux-signed-amd64/\
            linux-image-cloud-amd64_6.1.158-1_amd64.deb\nSize: 1484\nSHA256: ab12\n\
            Description: x\n\nPackage: other\n";
        let record = Record::parse(text).expect("record");
        assert_eq!(record.name, "linux-image-cloud-amd64");
        assert_eq!(record.version, "6.1.158-1");
        assert_eq!(record.sha256, "sha256:ab12");
        assert_eq!(
            record.filename,
            "linux-image-cloud-amd64_6.1.158-1_amd64.deb"
        );
        assert_eq!(
            record.depends,
            ["linux-image-6.1.0-41-cloud-amd64", "foo", "baz"]
        );
        assert_eq!(Record::parse("N: purely virtual\n"), None);
    }

    #[test]
    fn the_sources_state_changes_with_any_list_or_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lists = dir.path().join("lists");
        let status = dir.path().join("status");
        fs::create_dir_all(lists.join("partial")).expect("mkdir");
        fs::write(lists.join("deb.debian.org_Packages"), "Package: a\n").expect("write");
        fs::write(&status, "Package: b\n").expect("write");
        let paths = [lists.as_path(), status.as_path()];
        let first = sources_state(&paths);
        assert_eq!(sources_state(&paths), first, "nothing changed");
        fs::write(lists.join("deb.debian.org_Packages"), "Package: a2\n").expect("write");
        let updated = sources_state(&paths);
        assert_ne!(updated, first, "a list was updated");
        fs::write(lists.join("security_Packages"), "").expect("write");
        let added = sources_state(&paths);
        assert_ne!(added, updated, "a list was added");
        fs::remove_file(&status).expect("remove");
        assert_ne!(sources_state(&paths), added, "the status file went away");
    }

    #[test]
    fn answers_are_taken_from_the_cache_only_while_apt_sources_are_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let debian = Debian {
            cache: dir.path().to_owned(),
        };
        let record = |name: &str| Record {
            name: name.to_owned(),
            version: "1.0-1".to_owned(),
            sha256: "sha256:00".to_owned(),
            filename: format!("{name}_1.0-1_amd64.deb"),
            depends: Vec::new(),
        };
        let write = |state: String, name: &str| {
            let answers = Answers {
                state,
                records: [(name.to_owned(), record(name))].into(),
            };
            fs::create_dir_all(dir.path().join("apt")).expect("mkdir");
            fs::write(
                dir.path().join("apt/answers.json"),
                serde_json::to_vec(&answers).expect("json"),
            )
            .expect("write");
        };
        // Names apt has never heard of: only the kept answer can give them.
        write(apt_state().to_owned(), "kiln-test-kept-answer");
        assert_eq!(
            debian.show("kiln-test-kept-answer").expect("kept"),
            record("kiln-test-kept-answer")
        );
        write("sha256:stale".to_owned(), "kiln-test-stale-answer");
        let err = debian
            .show("kiln-test-stale-answer")
            .expect_err("asked apt");
        assert!(err.to_string().contains("not known to apt"), "{err}");
    }
}
