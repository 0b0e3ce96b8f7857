//! The local image cache: where it is (`$KILN_CACHE`, else `kiln/images` in the user's cache
//! directory) and `kiln cache`, what it holds and clearing it. `ls` lists each image by the
//! reference it is named by, with its digest and the bytes of its blobs; `rm` forgets images
//! and frees the blobs no other image uses; `prune` frees every blob no image uses, and the
//! partial downloads pulls left behind. Blobs are found from `index.json` through indexes
//! and manifests to configs and layers; an index's other platforms, never pulled, are not
//! there, and that is fine.
//! Runs in: `kiln` on the build host, under the cache's lock. Deletes only below the cache.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::manifest::reference::ImageSource;
use crate::oci::ingest::INGEST_DIR;
use crate::oci::layout::{self, ref_name};

/// The local cache: `$KILN_CACHE`, else `kiln/images` in the user's cache directory.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    user_cache().join("kiln/images")
}

/// Writes `value` as JSON to `path` (its directory made first), atomically: for the records a
/// later run only reads as hints (apt's answers, what a package was made from), so a failure
/// to write one is left unsaid and the later run works it out again.
pub fn keep_hint(path: &Path, value: &impl serde::Serialize) {
    if let (Some(dir), Ok(bytes)) = (path.parent(), serde_json::to_vec(value)) {
        let _ = fs::create_dir_all(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| layout::write_atomic(path, &bytes));
    }
}

/// The user's cache directory: `$XDG_CACHE_HOME`, else `~/.cache`.
pub fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// One image in the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    #[serde(rename = "reference")]
    pub name: String,
    pub digest: String,
    /// The bytes of the blobs it uses that the cache holds.
    pub size: u64,
}

/// What a clean-up freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freed {
    pub blobs: usize,
    pub bytes: u64,
}

/// The images of the cache at `dir`, by name.
pub fn list(dir: &Path) -> Result<Vec<Entry>> {
    let _lock = layout::lock(dir)?;
    let mut entries = Vec::new();
    for descriptor in layout::read_index(dir)?.manifests() {
        let mut blobs = BTreeSet::new();
        reachable(dir, descriptor, &mut blobs, 0)?;
        let size = blobs
            .iter()
            .filter_map(|path| fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum();
        entries.push(Entry {
            name: ref_name(descriptor).unwrap_or("<unnamed>").to_owned(),
            digest: descriptor.digest().to_string(),
            size,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Forgets the images `names` (references as a manifest writes them, or the names `ls`
/// shows) and frees the blobs no image left uses. Nothing is removed when a name is not there.
pub fn remove(dir: &Path, names: &[String]) -> Result<Freed> {
    let _lock = layout::lock(dir)?;
    let mut index = layout::read_index(dir)?;
    let mut wanted = Vec::new();
    for name in names {
        let full = match ImageSource::parse(name) {
            Ok(ImageSource::Registry(reference)) => reference.whole(),
            _ => name.clone(),
        };
        let known = |candidate: &str| {
            index
                .manifests()
                .iter()
                .any(|entry| ref_name(entry) == Some(candidate))
        };
        if known(&full) {
            wanted.push(full);
        } else if known(name) {
            wanted.push(name.clone());
        } else {
            bail!("`{name}` is not in the cache {}", dir.display());
        }
    }
    let kept: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|entry| !ref_name(entry).is_some_and(|name| wanted.iter().any(|w| w == name)))
        .cloned()
        .collect();
    index.set_manifests(kept);
    layout::write_index(dir, &index)?;
    collect(dir, &index)
}

/// Frees every blob no image uses and every partial download.
pub fn prune(dir: &Path) -> Result<Freed> {
    let _lock = layout::lock(dir)?;
    let index = layout::read_index(dir)?;
    collect(dir, &index)
}

/// Deletes the blobs `index` does not reach, and the ingest folder's partial files.
fn collect(dir: &Path, index: &ImageIndex) -> Result<Freed> {
    let mut keep = BTreeSet::new();
    for descriptor in index.manifests() {
        reachable(dir, descriptor, &mut keep, 0)?;
    }
    let mut freed = Freed::default();
    let blobs = dir.join("blobs");
    for folder in [blobs.join("sha256"), dir.join(INGEST_DIR)] {
        let listing = match fs::read_dir(&folder) {
            Ok(listing) => listing,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot list {}", folder.display()))
            }
        };
        for file in listing {
            let path = file
                .with_context(|| format!("cannot list {}", folder.display()))?
                .path();
            if keep.contains(&path) {
                continue;
            }
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            freed.blobs += 1;
            freed.bytes += size;
        }
    }
    Ok(freed)
}

/// Adds the blob `descriptor` names, and what it leads to, to `blobs` (those the cache has).
fn reachable(
    dir: &Path,
    descriptor: &Descriptor,
    blobs: &mut BTreeSet<PathBuf>,
    depth: usize,
) -> Result<()> {
    let path = layout::blob_path(dir, descriptor.digest());
    if depth > 4 || !path.is_file() || !blobs.insert(path.clone()) {
        return Ok(());
    }
    let media_type = descriptor.media_type().to_string();
    let is_index = layout::is_index(&media_type);
    let is_manifest = media_type.contains("manifest");
    if !is_index && !is_manifest {
        return Ok(());
    }
    let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if is_index {
        let index = ImageIndex::from_reader(&bytes[..])
            .with_context(|| format!("{} is not an image index", path.display()))?;
        for entry in index.manifests() {
            reachable(dir, entry, blobs, depth + 1)?;
        }
    } else {
        let manifest = ImageManifest::from_reader(&bytes[..])
            .with_context(|| format!("{} is not an image manifest", path.display()))?;
        for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
            reachable(dir, blob, blobs, depth + 1)?;
        }
    }
    Ok(())
}
