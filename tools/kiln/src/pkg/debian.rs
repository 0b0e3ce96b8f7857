//! Debian packages for images: what apt would install (`apt-cache show`: version, checksum,
//! dependencies), the `.deb` fetched once with `apt-get download` into a cache of files named
//! by Debian and checked against apt's SHA256, and its files unpacked with `dpkg-deb`. apt's
//! answers are kept in the cache beside the `.deb` files for as long as what apt answers from
//! (its package lists, its configuration and dpkg's status) is unchanged, so asking again costs
//! no apt-cache run (a third of a second each). A package's runtime dependencies are its
//! Depends and Pre-Depends closure ([`Debian::closure`]), looked up one level at a time.
//! Runs in: `kiln pkg build` on a Debian build host. Runs apt-cache, apt-get and dpkg-deb;
//! writes only into the cache directory.

use std::collections::{HashMap, HashSet};
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
    /// What this one needs installed first or beside it (Pre-Depends, then Depends): for
    /// each dependency, the package names of its alternatives in apt's order.
    pub depends: Vec<Vec<String>>,
}

impl Record {
    /// Parses the first paragraph of `apt-cache show` output.
    pub fn parse(text: &str) -> Option<Self> {
        Self::parse_paragraph(text.split("\n\n").next()?)
    }

    /// Parses every paragraph of `apt-cache show` output that is a package's record.
    pub fn parse_all(text: &str) -> Vec<Self> {
        text.split("\n\n")
            .filter_map(Self::parse_paragraph)
            .collect()
    }

    fn parse_paragraph(paragraph: &str) -> Option<Self> {
        let field = |name: &str| {
            paragraph.lines().find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .map(|value| value.trim().to_owned())
            })
        };
        let depends = ["Pre-Depends", "Depends"]
            .into_iter()
            .filter_map(field)
            .flat_map(|list| {
                list.split(',')
                    .map(|alternatives| {
                        alternatives
                            .split('|')
                            .filter_map(|one| {
                                let name = one.trim().split([' ', '(', ':']).next()?.trim();
                                (!name.is_empty()).then(|| name.to_owned())
                            })
                            .collect::<Vec<_>>()
                    })
                    .filter(|alternatives| !alternatives.is_empty())
                    .collect::<Vec<_>>()
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

/// The packages apt was asked about in this run (`None`: no package of that name, or a purely
/// virtual one): apt's answer does not change within one.
static SHOWN: OnceLock<Mutex<HashMap<String, Option<Record>>>> = OnceLock::new();

/// Changes whenever what is kept of apt's answers does, so answers kept in another shape are
/// asked again.
const ANSWERS_FORMAT: &str = "answers 2";

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
    records: HashMap<String, Option<Record>>,
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
        format!("{ANSWERS_FORMAT} {}", sources_state(&sources))
    })
}

/// Where fetched `.deb` files are kept.
#[derive(Debug, Clone)]
pub struct Debian {
    pub cache: PathBuf,
}

/// `root` and the closure of its dependencies, looking names up with `lookup` (one call for
/// each level, `None` for a name with no package). See [`Debian::closure`].
pub fn closure(
    root: Record,
    mut lookup: impl FnMut(&[&str]) -> Result<Vec<Option<Record>>>,
) -> Result<Vec<Record>> {
    // Names taken, and names apt has no package of: neither is asked about again.
    let mut names: HashSet<String> = HashSet::from([root.name.clone()]);
    let mut absent: HashSet<String> = HashSet::new();
    let mut taken: Vec<Record> = vec![root];
    let mut level = 0..1;
    while !level.is_empty() {
        let groups: Vec<Vec<String>> = taken[level.clone()]
            .iter()
            .flat_map(|record| record.depends.iter().cloned())
            .collect();
        let ask: Vec<&str> = {
            let mut ask: Vec<&str> = groups
                .iter()
                .flatten()
                .map(String::as_str)
                .filter(|name| !names.contains(*name) && !absent.contains(*name))
                .collect();
            ask.sort_unstable();
            ask.dedup();
            ask
        };
        let answers = if ask.is_empty() {
            Vec::new()
        } else {
            lookup(&ask)?
        };
        let mut found: HashMap<&str, Record> = HashMap::new();
        for (name, answer) in ask.iter().zip(answers) {
            match answer {
                Some(record) => {
                    found.insert(name, record);
                }
                None => {
                    absent.insert((*name).to_owned());
                }
            }
        }
        let start = taken.len();
        for group in &groups {
            if group.iter().any(|name| names.contains(name)) {
                continue;
            }
            if let Some(record) = group.iter().find_map(|name| found.remove(name.as_str())) {
                names.insert(record.name.clone());
                taken.push(record);
            }
        }
        level = start..taken.len();
    }
    Ok(taken)
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
        self.lookup(&[name])?.pop().flatten().ok_or_else(|| {
            anyhow!(
                "Debian package `{name}` is not known to apt; is the name right, and has \
                 `apt-get update` run?"
            )
        })
    }

    /// `name` and every package it needs to run, as apt would install them: the closure of
    /// Pre-Depends and Depends, each dependency met by the first of its alternatives apt has
    /// a package of (one already taken wins). A dependency only virtual packages would meet
    /// is left out. `name` comes first, then the others by distance from it.
    pub fn closure(&self, name: &str) -> Result<Vec<Record>> {
        let root = self.show(name)?;
        closure(root, |names| self.lookup(names))
    }

    /// apt's record of each of `names` (`None` where there is no such package), from this
    /// run's answers, the kept ones, or one apt-cache run for all that are left.
    fn lookup(&self, names: &[&str]) -> Result<Vec<Option<Record>>> {
        let mut shown = SHOWN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut unknown: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !shown.contains_key(*name))
            .collect();
        if !unknown.is_empty() {
            let state = apt_state();
            let file = self.cache.join("apt/answers.json");
            let mut answers = fs::read(&file)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Answers>(&bytes).ok())
                .filter(|answers| answers.state == state)
                .unwrap_or_default();
            unknown.retain(|name| match answers.records.get(*name) {
                Some(record) => {
                    shown.insert((*name).to_owned(), record.clone());
                    false
                }
                None => true,
            });
            if !unknown.is_empty() {
                let mut found: HashMap<String, Record> = self
                    .ask_apt(&unknown)?
                    .into_iter()
                    .map(|record| (record.name.clone(), record))
                    .collect();
                answers.state = state.to_owned();
                for name in unknown {
                    let record = found.remove(name);
                    answers.records.insert(name.to_owned(), record.clone());
                    shown.insert(name.to_owned(), record);
                }
                keep_hint(&file, &answers);
            }
        }
        Ok(names
            .iter()
            .map(|name| shown.get(*name).cloned().flatten())
            .collect())
    }

    /// The records apt-cache shows for `names`; names it has no package of are left out.
    fn ask_apt(&self, names: &[&str]) -> Result<Vec<Record>> {
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
            .args(["show", "--no-all-versions"])
            .args(names)
            .stdin(Stdio::null())
            .output()
            .context("cannot run apt-cache (is this a Debian machine?)")?;
        let records = Record::parse_all(&String::from_utf8_lossy(&output.stdout));
        let said = String::from_utf8_lossy(&output.stderr);
        // apt-cache fails when it has none of the names; that answer is "no such package".
        if !output.status.success() && records.is_empty() && !said.contains("No packages found") {
            bail!(
                "apt-cache show {} failed ({}): {}",
                names.join(" "),
                output.status,
                said.trim()
            );
        }
        Ok(records)
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
            [
                vec!["linux-image-6.1.0-41-cloud-amd64"],
                vec!["foo", "bar"],
                vec!["baz"]
            ]
        );
        assert_eq!(Record::parse("N: purely virtual\n"), None);
    }

    /// apt's records (the fields kiln reads) of e2fsprogs and what it depends on, as Debian 12
    /// has them, with two made-up packages for alternatives and virtual names.
    const E2FSPROGS: &str = "\
Package: e2fsprogs\nVersion: 1.47.0-2+b2\nDepends: logsave\nPre-Depends: libblkid1 (>= 2.36), \
libc6 (>= 2.34), libcom-err2 (>= 1.43.9), libext2fs2 (= 1.47.0-2+b2), libss2 (>= 1.38), \
libuuid1 (>= 2.16)\nFilename: pool/main/e/e2fsprogs/e2fsprogs_1.47.0-2+b2_amd64.deb\nSHA256: 01\n\n\
Package: logsave\nVersion: 1.47.0-2+b2\nDepends: libc6 (>= 2.34)\nFilename: l.deb\nSHA256: 02\n\n\
Package: libblkid1\nVersion: 2.38.1-5+deb12u3\nDepends: libc6 (>= 2.33)\nFilename: b.deb\nSHA256: 03\n\n\
Package: libc6\nVersion: 2.36-9+deb12u14\nDepends: libgcc-s1\nFilename: c.deb\nSHA256: 04\n\n\
Package: libcom-err2\nVersion: 1.47.0-2+b2\nDepends: libc6 (>= 2.17)\nFilename: e.deb\nSHA256: 05\n\n\
Package: libext2fs2\nVersion: 1.47.0-2+b2\nDepends: libc6 (>= 2.34)\nFilename: f.deb\nSHA256: 06\n\n\
Package: libss2\nVersion: 1.47.0-2+b2\nDepends: libcom-err2, libc6 (>= 2.34)\nFilename: s.deb\n\
SHA256: 07\n\n\
Package: libuuid1\nVersion: 2.38.1-5+deb12u3\nDepends: libc6 (>= 2.25)\nFilename: u.deb\nSHA256: 08\n\n\
Package: libgcc-s1\nVersion: 12.2.0-14+deb12u1\nDepends: gcc-12-base (= 12.2.0-14+deb12u1), \
libc6 (>= 2.35)\nFilename: g.deb\nSHA256: 09\n\n\
Package: gcc-12-base\nVersion: 12.2.0-14+deb12u1\nFilename: h.deb\nSHA256: 10\n\n\
Package: tool\nVersion: 1\nDepends: libc6, debconf (>= 0.5) | debconf-2.0, mawk | awk, \
virtual-only\nFilename: t.deb\nSHA256: 11\n\n\
Package: debconf\nVersion: 1.5.82\nFilename: d.deb\nSHA256: 12\n";

    /// A lookup answering from [`E2FSPROGS`] and counting its calls.
    fn lookup_in<'a>(
        text: &str,
        calls: &'a mut Vec<Vec<String>>,
    ) -> impl FnMut(&[&str]) -> Result<Vec<Option<Record>>> + 'a {
        let records = Record::parse_all(text);
        move |names: &[&str]| {
            calls.push(names.iter().map(|name| (*name).to_owned()).collect());
            Ok(names
                .iter()
                .map(|name| records.iter().find(|record| record.name == *name).cloned())
                .collect())
        }
    }

    #[test]
    fn the_closure_of_e2fsprogs_is_its_pre_depends_and_depends_level_by_level() {
        let all = Record::parse_all(E2FSPROGS);
        let root = all[0].clone();
        assert_eq!(root.depends[0], ["libblkid1"], "Pre-Depends come first");
        assert_eq!(root.depends[6], ["logsave"]);
        let mut calls = Vec::new();
        let closure = closure(root, lookup_in(E2FSPROGS, &mut calls)).expect("closure");
        let names: Vec<&str> = closure.iter().map(|record| record.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "e2fsprogs",
                "libblkid1",
                "libc6",
                "libcom-err2",
                "libext2fs2",
                "libss2",
                "libuuid1",
                "logsave",
                "libgcc-s1",
                "gcc-12-base"
            ]
        );
        assert_eq!(closure[2].version, "2.36-9+deb12u14");
        assert_eq!(
            calls.len(),
            3,
            "one lookup per level, each name once: {calls:?}"
        );
        assert_eq!(calls[1], ["libgcc-s1"], "libc6 was not asked again");
    }

    #[test]
    fn alternatives_take_the_first_real_package_and_virtual_names_are_left_out() {
        let all = Record::parse_all(E2FSPROGS);
        let tool = all
            .iter()
            .find(|record| record.name == "tool")
            .expect("tool")
            .clone();
        let mut calls = Vec::new();
        let closure = closure(tool, lookup_in(E2FSPROGS, &mut calls)).expect("closure");
        let names: Vec<&str> = closure.iter().map(|record| record.name.as_str()).collect();
        // mawk is not in the data (as a name apt does not know): awk is virtual, so that
        // dependency is left out, as is virtual-only.
        assert_eq!(
            names,
            ["tool", "libc6", "debconf", "libgcc-s1", "gcc-12-base"]
        );
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
                records: [(name.to_owned(), Some(record(name)))].into(),
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
