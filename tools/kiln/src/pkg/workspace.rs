//! The Cargo workspace packages take their binaries from: found by walking up from a package
//! folder; a digest of the sources a binary is built from (its crate and every workspace crate
//! it depends on by path, with the lock file and the workspace's build settings), so a
//! package's tag changes exactly when its binaries may; and the release build itself, with the
//! workspace's own settings (static binaries for the image's target).
//! Runs in: `kiln pkg build` on the build host. Runs `cargo metadata` and `cargo build`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
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
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    /// Its crates, as `cargo metadata` lists them.
    packages: Vec<MetaPackage>,
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
    /// `[workspace]` table. Its crates are listed once, here.
    pub fn find(dir: &Path) -> Result<Self> {
        let start = dir
            .canonicalize()
            .with_context(|| format!("cannot find {}", dir.display()))?;
        for candidate in start.ancestors() {
            let manifest = candidate.join("Cargo.toml");
            if let Ok(text) = std::fs::read_to_string(&manifest) {
                if text.lines().any(|line| line.trim() == "[workspace]") {
                    let root = candidate.to_owned();
                    let packages = metadata(&root)?.packages;
                    return Ok(Self { root, packages });
                }
            }
        }
        bail!(
            "{} is not inside a Cargo workspace, so it cannot take binaries from one",
            dir.display()
        )
    }

    /// A digest of everything the binary `bin` of crate `krate` is built from. Fails if the
    /// workspace has no such binary.
    pub fn sources_digest(&self, krate: &str, bin: &str) -> Result<String> {
        let packages: BTreeMap<&str, &MetaPackage> = self
            .packages
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
            let dir = package
                .manifest_path
                .parent()
                .unwrap_or(&self.root)
                .to_owned();
            if !dirs.insert(dir) {
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
        let mut hash = Sha256::new();
        for name in SETTINGS {
            if let Ok(bytes) = std::fs::read(self.root.join(name)) {
                hash.update(format!("{name}\0{}\0", bytes.len()));
                hash.update(bytes);
            }
        }
        for dir in dirs {
            if dir == self.root {
                bail!(
                    "the crate `{krate}` is the workspace root; its sources cannot be told apart"
                );
            }
            let relative = dir.strip_prefix(&self.root).unwrap_or(&dir);
            hostdir::read(&dir)?
                .hash_into(&mut hash, &format!("{}/", relative.display()), |key| {
                    key.split('/').any(|part| part == "target")
                })
                .with_context(|| format!("cannot read {}", dir.display()))?;
        }
        Ok(digest::text(hash))
    }

    /// Builds the release binary `bin` of crate `krate` and returns its bytes. Cargo's
    /// messages go to stderr.
    pub fn build(&self, krate: &str, bin: &str) -> Result<Vec<u8>> {
        let mut child = cargo()
            .args([
                "build",
                "--release",
                "--message-format=json-render-diagnostics",
                "-p",
                krate,
                "--bin",
                bin,
            ])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run cargo build")?;
        let mut executable = None;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.context("cannot read cargo build's output")?;
                let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if message["reason"] == "compiler-artifact" && message["target"]["name"] == bin {
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
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }
}
