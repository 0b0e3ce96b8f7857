//! Reading an image that is already on this machine: an OCI image layout directory (the
//! local cache is one, its entries named by full reference), an OCI archive, or a `docker
//! save` archive. Indexes are followed to linux/amd64. Every blob is checked against its
//! digest and every uncompressed layer against the config's diff id before it is applied; the
//! layers are then applied in order into one [`Tree`]. Layers are streamed: read, uncompressed
//! and hashed in pieces, their large files going to the spill (or, for an uncompressed layer of
//! a layout, left in its blob file), never whole in memory; a layer that unpacks to more than
//! the limit given is refused, naming it.
//! Runs in: `kiln` on the build host. Reads the image files only.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{Config, Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::oci::digest::{self, require_sha256, sha256, Hashing};
use crate::oci::layout::{self, is_index, ref_name};
use crate::oci::platform::{platform, ARCHITECTURE, OS};
use crate::tree::layer;
use crate::tree::{self, Tree};

/// The most bytes one layer may unpack to unless the caller says otherwise: far above any
/// real image's layer, far below what a decompression bomb reaches.
pub const DEFAULT_MAX_LAYER: u64 = 8 << 30;

/// The largest JSON document (index, manifest, config) read from an image.
const MAX_DOCUMENT: u64 = 16 << 20;

/// An image read: its config (entrypoint, cmd, env, working dir, labels) and its root
/// filesystem with every layer applied.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub config: Config,
    pub rootfs: Tree,
}

/// Reads the image in the OCI layout at `dir`: the entry named `name`, or else the only one.
/// No layer may unpack to more than `max_layer` bytes.
pub fn from_layout(
    dir: &Path,
    name: Option<&str>,
    max_layer: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LocalImage> {
    oci_image(&Blobs::Dir(dir.to_owned()), name, max_layer, progress)
}

/// Reads the image in the OCI archive (a tar of a layout) at `path`.
pub fn from_oci_archive(
    path: &Path,
    max_layer: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LocalImage> {
    oci_image(&Blobs::archive(path)?, None, max_layer, progress)
}

/// Reads the image in the `docker save` archive at `path`.
pub fn from_docker_archive(
    path: &Path,
    max_layer: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LocalImage> {
    docker_image(&Blobs::archive(path)?, max_layer, progress)
}

/// The files of a layout or archive, by path inside it.
enum Blobs {
    Dir(PathBuf),
    /// An archive's files, read once (large ones into the spill).
    Archive(Tree),
}

impl Blobs {
    /// Reads the tar archive at `path`.
    fn archive(path: &Path) -> Result<Self> {
        let file =
            fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut tree = Tree::new();
        layer::apply(&mut tree, file)
            .map_err(|err| anyhow!(err))
            .with_context(|| format!("cannot read the archive {}", path.display()))?;
        Ok(Blobs::Archive(tree))
    }

    /// A reader of the file at `path`, and its size.
    fn open(&self, path: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(path);
                let context = || format!("cannot read {}", path.display());
                let file = fs::File::open(&path).with_context(context)?;
                let size = file.metadata().with_context(context)?.len();
                Ok((Box::new(file), size))
            }
            Blobs::Archive(tree) => {
                let key = tree::key(path).map_err(|err| anyhow!(err))?;
                match key.and_then(|key| tree.get(&key)).map(|node| &node.kind) {
                    Some(tree::Kind::File { data, .. }) => {
                        Ok((Box::new(data.reader()), data.len()))
                    }
                    _ => Err(anyhow!("the archive has no `{path}`")),
                }
            }
        }
    }

    /// The file at `path` of a layout directory, opened (None for an archive).
    fn file(&self, path: &str) -> Result<Option<Arc<fs::File>>> {
        match self {
            Blobs::Dir(dir) => {
                let path = dir.join(path);
                let file = fs::File::open(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Ok(Some(Arc::new(file)))
            }
            Blobs::Archive(_) => Ok(None),
        }
    }

    /// Reads the document at `path`, refusing one larger than [`MAX_DOCUMENT`].
    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let (reader, size) = self.open(path)?;
        if size > MAX_DOCUMENT {
            bail!("`{path}` is {size} bytes; a document of an image is at most {MAX_DOCUMENT}");
        }
        let mut bytes = Vec::new();
        reader
            .take(MAX_DOCUMENT)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read `{path}`"))?;
        Ok(bytes)
    }

    /// Reads the document blob `descriptor` names and checks its digest and size.
    fn blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let digest = descriptor.digest();
        require_sha256(digest)?;
        if descriptor.size() > MAX_DOCUMENT {
            bail!(
                "blob {digest} is {} bytes; a document of an image is at most {MAX_DOCUMENT}",
                descriptor.size()
            );
        }
        let bytes = self.read(&layout::blob_name(digest))?;
        let actual = sha256(&bytes);
        check_blob(descriptor, &actual, bytes.len() as u64)?;
        Ok(bytes)
    }
}

/// Refuses a blob whose digest or size is not what its descriptor says.
fn check_blob(descriptor: &Descriptor, actual: &str, size: u64) -> Result<()> {
    let digest = descriptor.digest();
    if actual != digest.to_string() {
        bail!("blob {digest} does not match its digest: its content is {actual}");
    }
    if size != descriptor.size() {
        bail!(
            "blob {digest} is {size} bytes, its descriptor says {}",
            descriptor.size()
        );
    }
    Ok(())
}

fn oci_image(
    blobs: &Blobs,
    name: Option<&str>,
    max_layer: u64,
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
        let digest = descriptor.digest();
        let context = || format!("layer {number} ({digest})");
        require_sha256(digest).with_context(context)?;
        let name = layout::blob_name(digest);
        let in_place = blobs.file(&name).with_context(context)?;
        let blob: Box<dyn Read + '_> = match &in_place {
            Some(file) => Box::new(ReadAt::new(file.clone())),
            None => blobs.open(&name).with_context(context)?.0,
        };
        apply_layer(
            &mut rootfs,
            blob,
            in_place.as_ref(),
            Some(descriptor),
            diff_id,
            max_layer,
        )
        .with_context(context)?;
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

/// Reads a shared file from its start with positioned reads, leaving its offset alone.
struct ReadAt {
    file: Arc<fs::File>,
    at: u64,
}

impl ReadAt {
    fn new(file: Arc<fs::File>) -> Self {
        Self { file, at: 0 }
    }
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A reader that fails once more than `left` bytes have passed.
struct Bounded<R> {
    inner: R,
    limit: u64,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::other(format!(
                "it unpacks to more than {} bytes (the limit; kiln build --max-layer-size \
                 raises it)",
                self.limit
            ))
        })?;
        Ok(n)
    }
}

/// Streams a layer (gzip or plain tar) from `blob`: checks the blob against `descriptor` (when
/// it has one: a `docker save` layer has none), the uncompressed tar against `diff_id`, its
/// size against `max_layer`, and only then applies it. A plain tar is hashed once, its digest
/// being both; when `blob` reads the file `in_place` from its start, its large files are left
/// there rather than copied.
fn apply_layer(
    rootfs: &mut Tree,
    blob: Box<dyn Read + '_>,
    in_place: Option<&Arc<fs::File>>,
    descriptor: Option<&Descriptor>,
    diff_id: &str,
    max_layer: u64,
) -> Result<()> {
    let mut blob = BufReader::new(blob);
    let head = blob.fill_buf().context("cannot read the layer")?;
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        bail!("zstd-compressed layers are not supported; use gzip or plain tar layers");
    }
    let bounded = |inner| Bounded {
        inner,
        limit: max_layer,
        left: max_layer,
    };
    let (read, actual, blob_digest, blob_size) = if head.starts_with(&[0x1f, 0x8b]) {
        let mut compressed = Hashing::new(blob);
        let mut tar = Hashing::new(bounded(
            Box::new(flate2::read::GzDecoder::new(&mut compressed)) as Box<dyn Read + '_>,
        ));
        let read = layer::read(&mut tar, None);
        let (_, actual, _) = tar.drain().context("cannot read the layer")?;
        let (_, blob_digest, blob_size) = compressed.drain().context("cannot read the layer")?;
        (read, actual, blob_digest, blob_size)
    } else {
        let mut tar = Hashing::new(bounded(Box::new(blob) as Box<dyn Read + '_>));
        let read = layer::read(&mut tar, in_place);
        let (_, actual, size) = tar.drain().context("cannot read the layer")?;
        (read, actual.clone(), actual, size)
    };
    // The blob's own digest first: a changed blob is named as such, whatever it unpacks to.
    if let Some(descriptor) = descriptor {
        check_blob(descriptor, &blob_digest, blob_size)?;
    }
    let layer = read.map_err(|err| anyhow!(err))?;
    if actual != diff_id {
        bail!("the uncompressed layer is {actual}, but the config's diff id is {diff_id}");
    }
    layer.apply(rootfs).map_err(|err| anyhow!(err))
}

/// One entry of a `docker save` archive's manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_image(
    blobs: &Blobs,
    max_layer: u64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LocalImage> {
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
    if stem.len() == 64 && actual != digest::of_hex(stem) {
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
        let context = || format!("layer {path}");
        let (blob, _) = blobs.open(path).with_context(context)?;
        apply_layer(&mut rootfs, blob, None, None, diff_id, max_layer).with_context(context)?;
        progress(number + 1, entry.layers.len());
    }
    Ok(LocalImage {
        config: config.config().clone().unwrap_or_default(),
        rootfs,
    })
}
