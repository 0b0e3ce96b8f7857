//! Where each entry's image comes from, as the manifest names it: a local OCI image layout
//! (`oci:PATH`, or `oci:PATH:NAME` to pick by `org.opencontainers.image.ref.name`), an OCI
//! archive (`oci-archive:PATH`), a `docker save` archive (`docker-archive:PATH`), a registry
//! reference read from the local cache (pulled into it first when a registry is given and the
//! cache lacks it), or a package of this workspace (`@pkg:PATH`: its image in the cache under
//! its current tag, built first if missing).
//! Runs in: `kiln build` on the build host. Writes only what pulls and package builds put into
//! the caches.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::images::local::{self, LocalImage};
use crate::images::registry::Registry;
use crate::manifest::reference::ImageSource;
use crate::pkg;
use crate::pkg::debian::Debian;
use crate::pkg::package::Package;

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
    /// The most bytes one layer may unpack to.
    pub max_layer: u64,
}

impl Sources<'_> {
    /// Reads the image `text` (as written in the manifest), calling `progress` with the
    /// number of layers applied and the total.
    pub fn read(&self, text: &str, progress: &mut dyn FnMut(usize, usize)) -> Result<LocalImage> {
        let source = ImageSource::parse(text).map_err(|err| anyhow!(err))?;
        let image = match &source {
            ImageSource::OciLayout(path) => {
                let (dir, name) = layout_path(&self.base, path);
                local::from_layout(&dir, name.as_deref(), self.max_layer, progress)
            }
            ImageSource::OciArchive(path) => {
                local::from_oci_archive(&self.base.join(path), self.max_layer, progress)
            }
            ImageSource::DockerArchive(path) => {
                local::from_docker_archive(&self.base.join(path), self.max_layer, progress)
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
                local::from_layout(&self.cache, Some(&name), self.max_layer, progress)
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
        let built = pkg::build::build(&package, &debian, &self.cache, false, &mut |step| {
            eprintln!("kiln pkg: {step}")
        })?;
        let name = pkg::build::cache_name(&built.reference)?;
        local::from_layout(&self.cache, Some(&name), self.max_layer, progress)
    }
}

/// Whether the image `text` names (as a manifest entry at `base` writes it) can be read
/// without fetching anything: a local layout or archive is there, a package folder holds a
/// valid build.yml. A registry reference is taken as written: the cache or the registry is
/// asked when it is read, and a malformed one is left to the manifest's checks, which name it.
pub fn locate(base: &Path, text: &str) -> Result<(), String> {
    let is = |path: &Path, what: &str, test: fn(&std::fs::Metadata) -> bool| match path.metadata() {
        Ok(meta) if test(&meta) => Ok(()),
        Ok(_) => Err(format!("{} is not {what}", path.display())),
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    };
    let Ok(source) = ImageSource::parse(text) else {
        return Ok(());
    };
    match source {
        ImageSource::OciLayout(path) => {
            let (dir, _) = layout_path(base, &path);
            is(
                &dir.join("index.json"),
                "an OCI image layout's index",
                std::fs::Metadata::is_file,
            )
        }
        ImageSource::OciArchive(path) | ImageSource::DockerArchive(path) => is(
            &base.join(path),
            "an archive file",
            std::fs::Metadata::is_file,
        ),
        ImageSource::Registry(_) => Ok(()),
        ImageSource::Package(path) => Package::load(&base.join(path)).map(drop),
    }
}

/// `PATH` or `PATH:NAME`: the name is split off only when the whole text is not a directory
/// and the part before the last `:` is.
fn layout_path(base: &Path, text: &str) -> (PathBuf, Option<String>) {
    let whole = base.join(text);
    if !whole.is_dir() {
        if let Some((dir, name)) = text.rsplit_once(':') {
            if base.join(dir).is_dir() {
                return (base.join(dir), Some(name.to_owned()));
            }
        }
    }
    (whole, None)
}
