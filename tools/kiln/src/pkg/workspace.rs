//! The Cargo workspace packages take their binaries from: found by walking up from a package
//! folder; the crate folders a binary is built from (its crate and every workspace crate it
//! depends on by path), as `cargo metadata` lists them, with a digest of their Cargo.toml files
//! that says while the list holds; a digest of each source file, so a package's tag changes
//! exactly when its binaries may; and the release build itself: the whole workspace's, as
//! `cargo build --release` makes it, so a binary built once for the workspace is not compiled
//! again for a package (building one crate alone would resolve other dependency features).
//! Runs in: `kiln pkg build` and `kiln build` on the build host. Runs `cargo metadata` only
//! when the crate list is not known or a Cargo.toml changed, and `cargo build`.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::oci::digest;
use crate::pkg::tool;
use crate::tree::hostdir;

/// Files of the workspace root that change every binary.
const SETTINGS: [&str; 4] = [
    "Cargo.toml",
    "Cargo.lock",
    ".cargo/config.toml",
    "rust-toolchain.toml",
];

/// A Cargo workspace on this machine.
#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    /// Its crates, as `cargo metadata` lists them, once asked for.
    crates: OnceCell<Vec<MetaPackage>>,
}

/// The crate folders a binary is built from, and while that holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    #[serde(rename = "crate")]
    pub krate: String,
    pub bin: String,
    /// Relative to the workspace root, sorted.
    pub dirs: Vec<String>,
    /// A digest of the workspace's Cargo.toml and of each folder's: the list stays right
    /// while it is unchanged.
    pub manifests: String,
}

/// A release binary of the workspace.
#[derive(Debug)]
pub struct Binary {
    pub bytes: Vec<u8>,
    /// Whether cargo compiled or linked anything for it (false: the workspace's release build
    /// was up to date).
    pub compiled: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetaPackage {
    name: String,
    manifest_path: PathBuf,
    dependencies: Vec<MetaDependency>,
    targets: Vec<MetaTarget>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetaDependency {
    name: String,
    path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
struct MetaTarget {
    name: String,
    kind: Vec<String>,
}

/// The workspace at `root`, as `cargo metadata` describes it (its own crates only).
fn metadata(root: &Path) -> Result<Metadata> {
    let stdout = tool::run(
        cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(root),
        &format!("cargo metadata in {}", root.display()),
    )?;
    serde_json::from_slice(&stdout).context("cannot read cargo metadata's output")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

impl Workspace {
    /// The workspace holding `dir`: the nearest directory above it whose Cargo.toml has a
    /// `[workspace]` table.
    pub fn find(dir: &Path) -> Result<Self> {
        let start = dir
            .canonicalize()
            .with_context(|| format!("cannot find {}", dir.display()))?;
        for candidate in start.ancestors() {
            let manifest = candidate.join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&manifest) {
                if text.lines().any(|line| line.trim() == "[workspace]") {
                    return Ok(Self {
                        root: candidate.to_owned(),
                        crates: OnceCell::new(),
                    });
                }
            }
        }
        bail!(
            "{} is not inside a Cargo workspace, so it cannot take binaries from one",
            dir.display()
        )
    }

    fn crates(&self) -> Result<&[MetaPackage]> {
        if let Some(crates) = self.crates.get() {
            return Ok(crates);
        }
        let crates = metadata(&self.root)?.packages;
        Ok(self.crates.get_or_init(|| crates))
    }

    /// The crate folders the binary `bin` of crate `krate` is built from, as `cargo metadata`
    /// lists them. Fails if the workspace has no such binary.
    pub fn graph(&self, krate: &str, bin: &str) -> Result<Graph> {
        let packages: BTreeMap<&str, &MetaPackage> = self
            .crates()?
            .iter()
            .map(|package| (package.name.as_str(), package))
            .collect();
        let package = packages
            .get(krate)
            .ok_or_else(|| anyhow!("the workspace has no crate `{krate}`"))?;
        if !package
            .targets
            .iter()
            .any(|target| target.name == bin && target.kind.iter().any(|kind| kind == "bin"))
        {
            bail!("the crate `{krate}` has no binary `{bin}`");
        }
        let mut dirs = BTreeSet::new();
        let mut pending = vec![*package];
        while let Some(package) = pending.pop() {
            let dir = package.manifest_path.parent().unwrap_or(&self.root);
            if dir == self.root {
                bail!(
                    "the crate `{}` is the workspace root; its sources cannot be told apart",
                    package.name
                );
            }
            let relative = dir.strip_prefix(&self.root).unwrap_or(dir);
            if !dirs.insert(relative.to_string_lossy().into_owned()) {
                continue;
            }
            for dependency in &package.dependencies {
                if dependency.path.is_some() {
                    if let Some(next) = packages.get(dependency.name.as_str()) {
                        pending.push(next);
                    }
                }
            }
        }
        let dirs: Vec<String> = dirs.into_iter().collect();
        Ok(Graph {
            krate: krate.to_owned(),
            bin: bin.to_owned(),
            manifests: self.manifests(&dirs),
            dirs,
        })
    }

    /// A digest of the workspace's Cargo.toml and of each of `dirs`' (a missing one counts as
    /// missing).
    pub fn manifests(&self, dirs: &[String]) -> String {
        let mut hash = Sha256::new();
        let files = std::iter::once(String::new())
            .chain(dirs.iter().cloned())
            .map(|dir| self.root.join(dir).join("Cargo.toml"));
        for file in files {
            match std::fs::read(&file) {
                Ok(bytes) => {
                    hash.update(format!("{}\0{}\0", file.display(), bytes.len()));
                    hash.update(bytes);
                }
                Err(_) => hash.update(format!("{}\0missing\0", file.display())),
            }
        }
        digest::text(hash)
    }

    /// A digest of each file the crates of `dirs` are built from, by its path from the root:
    /// the workspace's build settings and every file of each folder but build output.
    pub fn sources(&self, dirs: &[String]) -> Result<BTreeMap<String, String>> {
        let mut sources = BTreeMap::new();
        for name in SETTINGS {
            if let Ok(bytes) = std::fs::read(self.root.join(name)) {
                sources.insert(name.to_owned(), digest::sha256(&bytes));
            }
        }
        for dir in dirs {
            let path = self.root.join(dir);
            let digests = hostdir::read(&path)?
                .digests(|key| key.split('/').any(|part| part == "target"))
                .with_context(|| format!("cannot read {}", path.display()))?;
            sources.extend(
                digests
                    .into_iter()
                    .map(|(key, digest)| (format!("{dir}/{key}"), digest)),
            );
        }
        Ok(sources)
    }

    /// The release binary `bin` of crate `krate`, built as the workspace's release build
    /// builds it (every crate selected, so every dependency has the features it has there):
    /// when that build is up to date, cargo compiles nothing. Cargo's messages go to stderr.
    pub fn build(&self, krate: &str, bin: &str) -> Result<Binary> {
        let mut child = cargo()
            .args([
                "build",
                "--release",
                "--message-format=json-render-diagnostics",
                "--workspace",
                "--bin",
                bin,
            ])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run cargo build (cargo, on PATH or named by $CARGO, builds a package's binaries)")?;
        let mut executable = None;
        let mut compiled = false;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.context("cannot read cargo build's output")?;
                let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if message["reason"] != "compiler-artifact" {
                    continue;
                }
                compiled |= message["fresh"] == false;
                if message["target"]["name"] == bin
                    && message["package_id"]
                        .as_str()
                        .is_some_and(|id| names_crate(id, krate))
                {
                    if let Some(path) = message["executable"].as_str() {
                        executable = Some(PathBuf::from(path));
                    }
                }
            }
        }
        let status = child.wait().context("cannot wait for cargo build")?;
        if !status.success() {
            bail!("cargo build of `{bin}` (crate `{krate}`) failed: {status}");
        }
        let path =
            executable.ok_or_else(|| anyhow!("cargo build named no executable for `{bin}`"))?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Binary { bytes, compiled })
    }
}

/// Whether cargo's package id `id` is of the crate `krate`: `path+file:///DIR#NAME@VERSION`,
/// or `path+file:///DIR/NAME#VERSION` when the folder has the crate's name.
fn names_crate(id: &str, krate: &str) -> bool {
    let Some((location, fragment)) = id.rsplit_once('#') else {
        return false;
    };
    match fragment.split_once('@') {
        Some((name, _)) => name == krate,
        None => location.rsplit('/').next() == Some(krate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_ids_name_their_crate_in_either_form() {
        let named = "path+file:///work/main/service/supervisor#supervisor@0.1.0";
        assert!(names_crate(named, "supervisor"));
        assert!(!names_crate(named, "service"));
        let by_folder = "path+file:///work/main/init#0.1.0";
        assert!(names_crate(by_folder, "init"));
        assert!(!names_crate(by_folder, "main"));
        assert!(!names_crate("registry+https://x", "init"));
    }
}
