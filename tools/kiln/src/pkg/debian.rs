//! Debian packages for images: what apt would install (`apt-cache show`: version, checksum,
//! dependencies), the `.deb` fetched once with `apt-get download` into a cache of files named
//! by Debian and checked against apt's SHA256, and its files unpacked with `dpkg-deb`.
//! Runs in: `kiln pkg build` on a Debian build host. Runs apt-cache, apt-get and dpkg-deb;
//! writes only into the cache directory.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{anyhow, bail, Context, Result};

use crate::images::cache::user_cache;
use crate::oci::digest::{self, sha256};
use crate::pkg::tool;
use crate::tree::layer;
use crate::tree::Tree;

/// What apt knows about the version of a package it would install.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        let record = self.ask_apt(name)?;
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
}
