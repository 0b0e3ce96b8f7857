//! Reading an image that is already on this machine: an OCI image layout directory
//! (`oci:PATH`, or `oci:PATH:NAME` to pick by `org.opencontainers.image.ref.name`), an OCI
//! archive (`oci-archive:PATH`), a `docker save` archive (`docker-archive:PATH`), or a
//! reference found in the local cache (an OCI layout whose entries are named by the full
//! reference), or a package of this workspace (`@pkg:PATH`: its image in the cache under its
//! current tag, built first if missing). Indexes are followed to linux/amd64. Every blob is
//! checked against its digest and every uncompressed layer against the config's diff id before
//! it is used; the layers are then applied in order into one [`Tree`].
//! Runs in: `kiln` on the build host. Reads the image files; writes only packages it builds
//! into the cache.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{Config, Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::debian::Debian;
use crate::fstree::{self, Tree};
use crate::layer;
use crate::oci_layout::{is_index, ref_name};
use crate::package::Package;
use crate::pkgbuild;
use crate::reference::ImageSource;
use crate::registry::Registry;

/// The platform every image is built for.
pub const OS: &str = "linux";
pub const ARCHITECTURE: &str = "amd64";

/// The local cache: `$KILN_CACHE`, else `kiln/images` in the user's cache directory.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    user_cache().join("kiln/images")
}

/// The user's cache directory: `$XDG_CACHE_HOME`, else `~/.cache`.
pub fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// An image read into memory: its config (entrypoint, cmd, env, working dir, labels) and its
/// root filesystem with every layer applied.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub config: Config,
    pub rootfs: Tree,
}

/// Where images are looked for.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    /// Relative `oci:`, `oci-archive:` and `docker-archive:` paths are taken from here (the
    /// manifest's directory).
    pub base: PathBuf,
    /// The local cache: an OCI layout whose manifests are named by full reference.
    pub cache: PathBuf,
    /// Where registry references missing from the cache are pulled from; without it they
    /// must be in the cache.
    pub registry: Option<&'a Registry>,
}

impl Sources<'_> {
    /// Reads the image `text` (as written in the manifest), calling `progress` with the
    /// number of layers applied and the total.
    pub fn read(&self, text: &str, progress: &mut dyn FnMut(usize, usize)) -> Result<LocalImage> {
        let source = ImageSource::parse(text).map_err(|err| anyhow!(err))?;
        let image = match &source {
            ImageSource::OciLayout(path) => {
                let (dir, name) = self.layout_path(path);
                oci_image(&Blobs::Dir(dir), name.as_deref(), progress)
            }
            ImageSource::OciArchive(path) => {
                oci_image(&Blobs::archive(&self.base.join(path))?, None, progress)
            }
            ImageSource::DockerArchive(path) => {
                docker_image(&Blobs::archive(&self.base.join(path))?, progress)
            }
            ImageSource::Registry(reference) => {
                let name = reference.whole();
                if let Some(registry) = self.registry {
                    registry.ensure(reference, &self.cache)?;
                }
                if !self.cache.join("index.json").is_file() {
                    bail!(
                        "`{name}` is not in the local cache ({} has no images yet)",
                        self.cache.display()
                    );
                }
                oci_image(&Blobs::Dir(self.cache.clone()), Some(&name), progress)
            }
            ImageSource::Package(path) => self.package(path, progress),
        };
        image.with_context(|| format!("image `{text}`"))
    }

    /// The image of the package folder `path` from the cache, built into it first when the
    /// cache does not have its current tag.
    fn package(&self, path: &str, progress: &mut dyn FnMut(usize, usize)) -> Result<LocalImage> {
        let package = Package::load(&self.base.join(path)).map_err(anyhow::Error::msg)?;
        let debian = Debian {
            cache: Debian::default_cache(),
        };
        let built = pkgbuild::build(&package, &debian, &self.cache, false, &mut |step| {
            eprintln!("kiln pkg: {step}")
        })?;
        let name = pkgbuild::cache_name(&built.reference)?;
        oci_image(&Blobs::Dir(self.cache.clone()), Some(&name), progress)
    }

    /// `PATH` or `PATH:NAME`: the name is split off only when the whole text is not a
    /// directory and the part before the last `:` is.
    fn layout_path(&self, text: &str) -> (PathBuf, Option<String>) {
        let whole = self.base.join(text);
        if !whole.is_dir() {
            if let Some((dir, name)) = text.rsplit_once(':') {
                if self.base.join(dir).is_dir() {
                    return (self.base.join(dir), Some(name.to_owned()));
                }
            }
        }
        (whole, None)
    }
}

/// The files of a layout or archive, by path inside it.
enum Blobs {
    Dir(PathBuf),
    Archive(Tree),
}

impl Blobs {
    /// Reads the tar archive at `path` into memory.
    fn archive(path: &Path) -> Result<Self> {
        let file =
            fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut tree = Tree::new();
        layer::apply(&mut tree, file)
            .map_err(|err| anyhow!(err))
            .with_context(|| format!("cannot read the archive {}", path.display()))?;
        Ok(Blobs::Archive(tree))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(path);
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
            }
            Blobs::Archive(tree) => {
                let key = fstree::key(path).map_err(|err| anyhow!(err))?;
                match key.and_then(|key| tree.get(&key)).map(|node| &node.kind) {
                    Some(fstree::Kind::File { data, .. }) => Ok(data.to_vec()),
                    _ => Err(anyhow!("the archive has no `{path}`")),
                }
            }
        }
    }

    /// Reads the blob `descriptor` names and checks its digest and size.
    fn blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let digest = descriptor.digest();
        let algorithm = digest.algorithm().as_ref().to_owned();
        if algorithm != "sha256" {
            bail!("{digest}: only sha256 digests are supported");
        }
        let bytes = self.read(&format!("blobs/sha256/{}", digest.digest()))?;
        let actual = sha256(&bytes);
        if actual != digest.to_string() {
            bail!("blob {digest} does not match its digest: its content is {actual}");
        }
        if u64::try_from(bytes.len()).ok() != Some(descriptor.size()) {
            bail!(
                "blob {digest} is {} bytes, its descriptor says {}",
                bytes.len(),
                descriptor.size()
            );
        }
        Ok(bytes)
    }
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let mut text = String::from("sha256:");
    for byte in Sha256::digest(bytes) {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn oci_image(
    blobs: &Blobs,
    name: Option<&str>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LocalImage> {
    let index = blobs.read("index.json")?;
    let index = ImageIndex::from_reader(&index[..]).context("index.json is not an image index")?;
    let descriptor = choose(index.manifests(), name)?;
    let manifest = manifest_of(blobs, descriptor, 0)?;
    let config = blobs.blob(manifest.config()).context("the image config")?;
    let config = parse_config(&config)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "the manifest has {} layers but the config lists {} diff ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    let mut rootfs = Tree::new();
    let total = manifest.layers().len();
    for (number, (descriptor, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let blob = blobs
            .blob(descriptor)
            .with_context(|| format!("layer {number}"))?;
        apply_layer(&mut rootfs, &blob, diff_id).with_context(|| format!("layer {number}"))?;
        progress(number + 1, total);
    }
    Ok(LocalImage {
        config: config.config().clone().unwrap_or_default(),
        rootfs,
    })
}

/// The manifest a layout entry leads to, following indexes (manifest lists) to linux/amd64.
fn manifest_of(blobs: &Blobs, descriptor: &Descriptor, depth: usize) -> Result<ImageManifest> {
    if depth > 4 {
        bail!("indexes nested too deeply");
    }
    let bytes = blobs.blob(descriptor)?;
    let media_type = descriptor.media_type().to_string();
    if is_index(&media_type) {
        let index =
            ImageIndex::from_reader(&bytes[..]).context("nested index is not an image index")?;
        let platform = platform(&index)?;
        return manifest_of(blobs, platform, depth + 1);
    }
    ImageManifest::from_reader(&bytes[..]).context("not an image manifest")
}

/// The index entry for linux/amd64: one without a variant first.
pub fn platform(index: &ImageIndex) -> Result<&Descriptor> {
    let matching: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|entry| {
            entry.platform().as_ref().is_some_and(|platform| {
                platform.os().to_string() == OS
                    && platform.architecture().to_string() == ARCHITECTURE
            })
        })
        .collect();
    if let Some(entry) = matching
        .iter()
        .find(|entry| {
            entry
                .platform()
                .as_ref()
                .is_some_and(|p| p.variant().is_none())
        })
        .or(matching.first())
    {
        return Ok(entry);
    }
    let offered: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|entry| entry.platform().as_ref())
        .map(|platform| {
            let mut text = format!("{}/{}", platform.os(), platform.architecture());
            if let Some(variant) = platform.variant() {
                text = format!("{text}/{variant}");
            }
            text
        })
        .collect();
    bail!(
        "the image has no {OS}/{ARCHITECTURE} version; its index offers {}",
        if offered.is_empty() {
            "no platforms".to_owned()
        } else {
            offered.join(", ")
        }
    )
}

/// The layout entry named `name`, or else the only one.
fn choose<'a>(manifests: &'a [Descriptor], name: Option<&str>) -> Result<&'a Descriptor> {
    if let Some(name) = name {
        return manifests
            .iter()
            .find(|entry| ref_name(entry) == Some(name))
            .ok_or_else(|| anyhow!("no image named `{name}` in the layout"));
    }
    match manifests {
        [] => bail!("the layout holds no image"),
        [only] => Ok(only),
        _ => {
            let names: Vec<&str> = manifests.iter().filter_map(ref_name).collect();
            bail!(
                "the layout holds {} images; name one with `oci:PATH:NAME` (names: {})",
                manifests.len(),
                names.join(", ")
            )
        }
    }
}

fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration> {
    let config = ImageConfiguration::from_reader(bytes).context("the image config is not valid")?;
    let (os, architecture) = (config.os().to_string(), config.architecture().to_string());
    if os != OS || architecture != ARCHITECTURE {
        bail!("the image is for {os}/{architecture}, not {OS}/{ARCHITECTURE}");
    }
    Ok(config)
}

/// Uncompresses a layer (gzip or plain tar), checks it against `diff_id` and applies it.
fn apply_layer(rootfs: &mut Tree, blob: &[u8], diff_id: &str) -> Result<()> {
    let tar = if blob.starts_with(&[0x1f, 0x8b]) {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut tar)
            .context("cannot uncompress the gzip layer")?;
        tar
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("zstd-compressed layers are not supported; use gzip or plain tar layers");
    } else {
        blob.to_vec()
    };
    let actual = sha256(&tar);
    if actual != diff_id {
        bail!("the uncompressed layer is {actual}, but the config's diff id is {diff_id}");
    }
    layer::apply(rootfs, &tar[..]).map_err(|err| anyhow!(err))
}

/// One entry of a `docker save` archive's manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_image(blobs: &Blobs, progress: &mut dyn FnMut(usize, usize)) -> Result<LocalImage> {
    let manifest = blobs.read("manifest.json")?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&manifest).context("manifest.json is not a docker manifest")?;
    let entry = match entries.as_slice() {
        [only] => only,
        other => bail!(
            "manifest.json lists {} images; a docker archive must hold exactly one",
            other.len()
        ),
    };
    let config = blobs.read(&entry.config)?;
    // The config is named by its digest: `<hex>.json` or `blobs/sha256/<hex>`.
    let stem = entry
        .config
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json");
    let actual = sha256(&config);
    if stem.len() == 64 && actual != format!("sha256:{stem}") {
        bail!(
            "the config {} does not match its digest: its content is {actual}",
            entry.config
        );
    }
    let config = parse_config(&config)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        bail!(
            "manifest.json lists {} layers but the config lists {} diff ids",
            entry.layers.len(),
            diff_ids.len()
        );
    }
    let mut rootfs = Tree::new();
    for (number, (path, diff_id)) in entry.layers.iter().zip(diff_ids).enumerate() {
        let blob = blobs.read(path)?;
        apply_layer(&mut rootfs, &blob, diff_id).with_context(|| format!("layer {path}"))?;
        progress(number + 1, entry.layers.len());
    }
    Ok(LocalImage {
        config: config.config().clone().unwrap_or_default(),
        rootfs,
    })
}
