//! What a package is made from, and its tag: a digest of the package folder (build.yml and
//! its files), of the sources of each workspace binary it takes, and of the exact version and
//! checksum of each Debian package apt would give. So an unchanged package has the same tag,
//! and any change to what goes in gives a new one.
//! What a package was made from when it was last found in or put into the image cache is
//! recorded there (`packages/KEY.json`, KEY a digest of the package folder's path): the crate
//! folders of each binary, with a digest of the Cargo.toml files that list them, and a digest
//! of every input. While no Cargo.toml changed the tag is computed without cargo, and when a
//! package must be built again the record says what changed since.
//! Runs in: `kiln pkg` and `kiln build` on the build host. Reads the package's and the
//! workspace's folders and writes its record; runs `cargo metadata` only when a crate list is
//! unknown or stale.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::images::cache::keep_hint;
use crate::oci::digest;
use crate::pkg::debian::{Debian, Record};
use crate::pkg::kernel;
use crate::pkg::package::{Package, Step};
use crate::pkg::workspace::{Graph, Workspace};
use crate::tree::hostdir;

/// Hex digits of the inputs' digest a tag keeps.
const TAG_LENGTH: usize = 20;

/// The folder of the image cache holding the records.
const RECORDS_DIR: &str = "packages";

/// How many changed inputs a message names.
const NAMED_CHANGES: usize = 5;

/// What a package is made from, looked up once for the tag and the build.
#[derive(Debug)]
pub struct Inputs {
    pub tag: String,
    /// The workspace its binaries come from, when it takes any.
    pub workspace: Option<Workspace>,
    /// Apt's records for each `deb` step (the package, then its dependencies) and `kernel`
    /// step, by package name as written.
    pub records: HashMap<String, Vec<Record>>,
    /// What is recorded once the package is in the cache.
    now: Recorded,
    /// What was recorded when it was last there.
    before: Option<Recorded>,
}

/// A package's inputs as recorded in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    /// `ORG/IMAGE:TAG` the inputs made.
    reference: String,
    /// The crate folders of each binary.
    graphs: Vec<Graph>,
    /// A digest of each file of the package folder, by its path in the folder.
    package: BTreeMap<String, String>,
    /// A digest of each workspace file its binaries are built from, by its path from the
    /// workspace root.
    sources: BTreeMap<String, String>,
    /// The version of each Debian package, by name.
    debian: BTreeMap<String, String>,
}

impl Recorded {
    /// Counts the Debian package of `record` in the tag (as `what`) and records its version.
    fn debian_input(&mut self, hash: &mut Sha256, what: &str, record: &Record) {
        hash.update(format!(
            "{what}\0{}\0{}\0{}\0",
            record.name, record.version, record.sha256
        ));
        self.debian
            .insert(record.name.clone(), record.version.clone());
    }
}

impl Inputs {
    /// Looks up everything `package` is made from and computes its tag, with the record in
    /// `cache` for the crate folders. Nothing is fetched or built.
    pub fn of(package: &Package, debian: &Debian, cache: &Path) -> Result<Self> {
        let before = Recorded::load(cache, package);
        let mut now = Recorded {
            package: hostdir::read(&package.dir)?
                .digests(|_| false)
                .with_context(|| format!("cannot read {}", package.dir.display()))?,
            ..Recorded::default()
        };
        let mut hash = Sha256::new();
        hash.update(b"kiln package 2\0");
        for (path, digest) in &now.package {
            hash.update(format!("{path}\0{digest}\0"));
        }
        let mut workspace = None;
        let mut records = HashMap::new();
        for step in package.steps() {
            match step {
                Step::Binary { krate, bin, .. } => {
                    let workspace = match &mut workspace {
                        Some(workspace) => workspace,
                        None => workspace.insert(Workspace::find(&package.dir)?),
                    };
                    let graph = graph(workspace, before.as_ref(), &krate, &bin)
                        .with_context(|| format!("the binary `{bin}` (crate {krate})"))?;
                    let sources = workspace.sources(&graph.dirs)?;
                    hash.update(format!("binary\0{krate}\0{bin}\0"));
                    for (path, digest) in &sources {
                        hash.update(format!("{path}\0{digest}\0"));
                    }
                    now.sources.extend(sources);
                    now.graphs.push(graph);
                }
                Step::Deb { name, .. } => {
                    // The package, then what it depends on: the libraries its programs load
                    // come from those.
                    let closure = debian.closure(&name)?;
                    for (index, record) in closure.iter().enumerate() {
                        let what = if index == 0 { "deb" } else { "dependency" };
                        now.debian_input(&mut hash, what, record);
                    }
                    records.insert(name, closure);
                }
                Step::Kernel { name } => {
                    let chain = kernel::records(debian, &name)?;
                    for record in &chain {
                        now.debian_input(&mut hash, "kernel", record);
                    }
                    records.insert(name, chain);
                }
                _ => {}
            }
        }
        let mut tag = digest::hex(hash);
        tag.truncate(TAG_LENGTH);
        now.reference = format!("{}:{tag}", package.repository());
        Ok(Self {
            tag,
            workspace,
            records,
            now,
            before,
        })
    }

    /// Records these inputs in `cache` as those of the package's image there. Only a later
    /// run's speed and messages depend on it, so a record that cannot be written is left out.
    pub fn remember(&self, cache: &Path, package: &Package) {
        if self.before.as_ref() == Some(&self.now) {
            return;
        }
        keep_hint(&Recorded::path(cache, package), &self.now);
    }

    /// What changed since the package's image was last in the cache, as a clause for a
    /// message ("since kiln/init:TAG was built: service/spec/src/lib.rs changed"), or None when
    /// there is no record of it.
    pub fn changes(&self, package: &Package) -> Option<String> {
        let before = self.before.as_ref()?;
        let mut changes = Vec::new();
        let mut compare = |old: &BTreeMap<String, String>,
                           new: &BTreeMap<String, String>,
                           name: &dyn Fn(&str) -> String| {
            for (key, digest) in new {
                match old.get(key) {
                    None => changes.push(format!("{} was added", name(key))),
                    Some(was) if was != digest => changes.push(format!("{} changed", name(key))),
                    Some(_) => {}
                }
            }
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                changes.push(format!("{} was removed", name(key)));
            }
        };
        compare(&before.package, &self.now.package, &|key| {
            package.dir.join(key).display().to_string()
        });
        compare(&before.sources, &self.now.sources, &|key| key.to_owned());
        for (name, version) in &self.now.debian {
            match before.debian.get(name) {
                Some(was) if was != version => {
                    changes.push(format!("Debian's {name} is {version}, was {was}"));
                }
                None => changes.push(format!("Debian's {name} {version} was added")),
                Some(_) => {}
            }
        }
        let more = changes.len().saturating_sub(NAMED_CHANGES);
        changes.truncate(NAMED_CHANGES);
        if more > 0 {
            changes.push(format!("{more} more"));
        }
        let what = if changes.is_empty() {
            "nothing it is made from changed (the image left the cache)".to_owned()
        } else {
            changes.join(", ")
        };
        Some(format!("since {} was built: {what}", before.reference))
    }
}

/// The crate folders of `bin`: as recorded while the Cargo.toml files that list them are
/// unchanged, else from `cargo metadata`.
fn graph(
    workspace: &Workspace,
    before: Option<&Recorded>,
    krate: &str,
    bin: &str,
) -> Result<Graph> {
    let recorded = before.and_then(|before| {
        before
            .graphs
            .iter()
            .find(|graph| graph.krate == krate && graph.bin == bin)
    });
    if let Some(recorded) = recorded {
        if workspace.manifests(&recorded.dirs) == recorded.manifests {
            return Ok(recorded.clone());
        }
    }
    workspace.graph(krate, bin).with_context(|| match recorded {
        Some(_) => "its crates are listed again because a Cargo.toml changed".to_owned(),
        None => "its crates are listed once, when the package is first built here".to_owned(),
    })
}

impl Recorded {
    /// The record of `package` in `cache`.
    fn path(cache: &Path, package: &Package) -> PathBuf {
        let dir = package
            .dir
            .canonicalize()
            .unwrap_or_else(|_| package.dir.clone());
        let key = digest::hex(Sha256::new_with_prefix(dir.as_os_str().as_encoded_bytes()));
        cache.join(RECORDS_DIR).join(format!("{key}.json"))
    }

    /// The record of `package` in `cache`, if there is a readable one.
    fn load(cache: &Path, package: &Package) -> Option<Self> {
        let bytes = std::fs::read(Self::path(cache, package)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
