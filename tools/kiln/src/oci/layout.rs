//! Writing images into an OCI image layout directory: the local cache `kiln pkg build` fills
//! and the layouts tests build their images in. Blobs are named by digest and written once;
//! layers are tars written from a [`Tree`] (reproducible: same tree, same digest), gzip
//! compressed unless the layout is the local cache, where plain tars are read faster;
//! `index.json` names each image by `org.opencontainers.image.ref.name` and is replaced
//! atomically, a new image of the same name replacing the old entry.
//! Runs in: `kiln` on the build host. Writes only below the layout directory.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{
    Arch, Config, Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifestBuilder,
    MediaType, Os, RootFs, SCHEMA_VERSION,
};

use crate::oci::digest::{sha256, Hashing};
use crate::tree::archive;
use crate::tree::Tree;

/// The annotation an index entry is named by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The name an index entry carries, if any.
pub fn ref_name(entry: &Descriptor) -> Option<&str> {
    entry
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(REF_NAME))
        .map(String::as_str)
}

/// The entry named `name` in the index of the layout at `dir`; `None` when the layout or
/// the entry does not exist.
pub fn lookup(dir: &Path, name: &str) -> Result<Option<Descriptor>> {
    Ok(read_index(dir)?
        .manifests()
        .iter()
        .find(|entry| ref_name(entry) == Some(name))
        .cloned())
}

/// The index of the layout at `dir`; an empty one when the layout has none yet.
pub fn read_index(dir: &Path) -> Result<ImageIndex> {
    let path = dir.join("index.json");
    if !path.exists() {
        return Ok(ImageIndex::default());
    }
    ImageIndex::from_file(&path)
        .with_context(|| format!("{} is not an image index", path.display()))
}

/// Replaces the index of the layout at `dir` (atomically: readers see the old or the new).
pub fn write_index(dir: &Path, index: &ImageIndex) -> Result<()> {
    let text = serde_json::to_vec_pretty(index).context("cannot write index.json")?;
    write_atomic(&dir.join("index.json"), &text)
}

/// The path of the blob `digest` inside a layout: `blobs/ALGORITHM/HEX`.
pub fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_ref(), digest.digest())
}

/// The path of the blob `digest` in the layout at `dir` (whether it is there or not).
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(blob_name(digest))
}

/// Whether a descriptor's media type is an index (OCI) or a manifest list (Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type.contains("image.index") || media_type.contains("manifest.list")
}

/// The file a layout's writers lock (flock) beside `index.json`.
const LOCK_FILE: &str = ".kiln-lock";

/// Takes the exclusive lock on the layout at `dir` (creating the directory), held until the
/// guard is dropped: builds that may run at once (two `kiln build`s wanting the same package)
/// hold it from looking an image up to naming it in `index.json`, so neither loses the
/// other's entry and the second finds the image the first made. A second lock in the same
/// process waits for ever: take it once, around the whole update.
pub fn lock(dir: &Path) -> Result<Flock<fs::File>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow::Error::from(errno))
        .with_context(|| format!("cannot lock {}", path.display()))
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
    /// Whether layers are written as plain tars rather than gzip.
    plain_layers: bool,
}

impl Layout {
    /// Opens the layout at `dir`, creating the directory and its `oci-layout` marker if needed.
    pub fn create(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            plain_layers: false,
        })
    }

    /// Writes layers as plain tars: for a layout read on this machine only, where reading a
    /// layer back then costs one digest and no decompression or copy.
    pub fn with_plain_layers(mut self) -> Self {
        self.plain_layers = true;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the layout holds the blob `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        blob_path(&self.dir, digest).is_file()
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    pub fn put_blob(&self, bytes: &[u8], media_type: MediaType) -> Result<Descriptor> {
        let digest = Digest::try_from(sha256(bytes)).context("a sha256 digest")?;
        let path = blob_path(&self.dir, &digest);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    }

    /// Stores an image made of `layers` (each a tree written as one layer) and
    /// `config`, names it `name` in the index and returns its manifest's descriptor.
    pub fn put_image(&self, name: &str, layers: &[Tree], config: Config) -> Result<Descriptor> {
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in layers {
            let (descriptor, diff_id) = self.put_layer(layer)?;
            descriptors.push(descriptor);
            diff_ids.push(diff_id);
        }
        let mut rootfs = RootFs::default();
        rootfs.set_diff_ids(diff_ids);
        let mut image = ImageConfiguration::default();
        image
            .set_architecture(Arch::Amd64)
            .set_os(Os::Linux)
            .set_rootfs(rootfs)
            .set_config(Some(config));
        let image = serde_json::to_vec(&image).context("cannot write the image config")?;
        let config = self.put_blob(&image, MediaType::ImageConfig)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(descriptors)
            .build()
            .context("cannot make the manifest")?;
        let manifest = serde_json::to_vec(&manifest).context("cannot write the manifest")?;
        let mut descriptor = self.put_blob(&manifest, MediaType::ImageManifest)?;
        descriptor.set_annotations(Some([(REF_NAME.to_owned(), name.to_owned())].into()));
        self.name(descriptor.clone())?;
        Ok(descriptor)
    }

    /// Stores `layer` as a tar blob (gzip, or plain), streamed to a temporary file beside the
    /// blobs while both digests are taken; returns its descriptor and its diff id.
    fn put_layer(&self, layer: &Tree) -> Result<(Descriptor, String)> {
        let dir = self.dir.join("blobs/sha256");
        let file = tempfile::NamedTempFile::new_in(&dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let compressed = Hashing::new(io::BufWriter::new(file));
        let (buffered, digest, size, diff_id, media_type) = if self.plain_layers {
            let tar = archive::write_tar(layer, compressed).context("cannot write a layer")?;
            let (buffered, digest, size) = tar.finish();
            let diff_id = digest.clone();
            (buffered, digest, size, diff_id, MediaType::ImageLayer)
        } else {
            let gzip = flate2::write::GzEncoder::new(compressed, flate2::Compression::default());
            let tar =
                archive::write_tar(layer, Hashing::new(gzip)).context("cannot write a layer")?;
            let (gzip, diff_id, _) = tar.finish();
            let compressed = gzip.finish().context("cannot compress a layer")?;
            let (buffered, digest, size) = compressed.finish();
            (buffered, digest, size, diff_id, MediaType::ImageLayerGzip)
        };
        let file = buffered
            .into_inner()
            .map_err(|err| err.into_error())
            .context("cannot write a layer")?;
        let digest = Digest::try_from(digest).context("a sha256 digest")?;
        let path = blob_path(&self.dir, &digest);
        if !path.exists() {
            file.as_file()
                .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .and_then(|()| file.persist(&path).map(drop).map_err(|err| err.error))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok((Descriptor::new(media_type, size, digest), diff_id))
    }

    /// Adds `descriptor` to index.json, replacing an entry with the same ref name.
    pub fn name(&self, descriptor: Descriptor) -> Result<()> {
        let mut index = read_index(&self.dir)?;
        let new_name = ref_name(&descriptor).map(str::to_owned);
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|entry| ref_name(entry) != new_name.as_deref())
            .cloned()
            .collect();
        manifests.push(descriptor);
        manifests.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        index.set_manifests(manifests);
        write_index(&self.dir, &index)
    }
}

/// Writes `bytes` to a temporary file next to `path` and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Readable by everyone, like any file the user would create: the cache may be shared.
    file.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
