//! The image's root filesystem, assembled in memory in LinuxKit's order: the kernel (boot/
//! files and its modules tarball at `/`), the `init` images unpacked into `/`, volumes under
//! `/containers/volumes/NAME/{lower,tmp,merged}`, the onboot, onshutdown and service bundles
//! (`/containers/onboot/NNN-name`, `/containers/onshutdown/NNN-name`,
//! `/containers/services/name`, each with config.json, runtime.json and its root filesystem:
//! `rootfs/` when read-only, else `lower/`, `tmp/` and `rootfs/` for the overlay the build
//! writes into runtime.json), and finally the `files` section; then the mount points that
//! read-only bundles need. An image used by several entries is unpacked once; later bundles
//! mount the first one's copy.
//! Runs in: `kiln` on the build host. Reads images and `files` sources; writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context as _, Result};
use spec::layout::{Bundle, Layout as Containers, Section};
use spec::runtime::Mount;

use crate::build::container::{self, Configs, Context};
use crate::build::modules::{self, Kept, Needs};
use crate::build::mountpoint;
use crate::build::source::Sources;
use crate::images::local::LocalImage;
use crate::images::registry::Registry;
use crate::manifest::defaults;
use crate::manifest::diagnostic::{Origin, Report};
use crate::manifest::entry::{Id, Image};
use crate::manifest::{label, process};
use crate::manifest::{File, Manifest, Volume};
use crate::oci::layout::Layout;
use crate::tree::{self, Content, Kind, Node, Tree};
use crate::tree::{hostdir, layer};

/// Where init images and volumes point `/etc/resolv.conf`.
const RESOLV_SYMLINK: &str = "/run/resolvconf/resolv.conf";
const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
const NO_RESOLV: &str = "\n# no resolv.conf configured\n";
/// What is dropped from every image: files the build tool that made it left behind, and
/// what the container runtime provides.
const EXCLUDE: [&str; 6] = [
    ".dockerenv",
    "Dockerfile",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
];
/// The APK database, concatenated over all init images.
const APK_DB: &str = "lib/apk/db/installed";
/// The first bytes of an ELF file.
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// Ids given to container names, in section order.
const FIRST_ID: u32 = 100;

/// What a build produces before it is written out.
#[derive(Debug, Clone, Default)]
pub struct Assembly {
    /// Everything, including `boot/kernel`, `boot/cmdline` and `boot/ucode.cpio`.
    pub rootfs: Tree,
    pub kernel: Option<Content>,
    /// What the kernel modules kept came to, per kernel release.
    pub modules: Vec<Kept>,
    /// The kernel as an ELF (`vmlinux` in the kernel image, as Kiln's kernel packages carry
    /// it): qemu boots it directly, seconds sooner than the compressed kernel.
    pub vmlinux: Option<Content>,
    pub cmdline: String,
    pub ucode: Option<Content>,
}

/// Reports unpacking progress: the image, layers done, layers in all.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// Assembles `manifest` (already checked; `report` holds its documents, so relative paths
/// are taken from each entry's file), reading cached images from `cache` and pulling the
/// registry images it lacks through `registry`. No layer may unpack to more than `max_layer`
/// bytes.
pub fn assemble(
    manifest: &Manifest,
    report: &Report,
    cache: &Path,
    registry: Option<&Registry>,
    max_layer: u64,
    progress: Progress<'_>,
) -> Result<Assembly> {
    let mut builder = Builder {
        report,
        cache: cache.to_owned(),
        registry,
        max_layer,
        images: HashMap::new(),
        progress,
        assembly: Assembly::default(),
        read_only: Vec::new(),
        needs: Needs::default(),
    };
    builder.kernel(manifest)?;
    builder.init(manifest)?;
    let context = Context {
        ids: allocate_ids(manifest),
        volumes: manifest.volumes.iter().map(|v| v.name.clone()).collect(),
    };
    for volume in &manifest.volumes {
        builder.volume(volume)?;
    }
    let mut unpacked = HashMap::new();
    for (section, entries) in [
        (Section::Onboot, &manifest.onboot),
        (Section::Onshutdown, &manifest.onshutdown),
        (Section::Services, &manifest.services),
    ] {
        for (index, entry) in entries.iter().enumerate() {
            let bundle = Containers::default().bundle(section, index, &entry.name);
            builder
                .bundle(&bundle, entry, &context, &mut unpacked)
                .with_context(|| report.describe(&entry.origin))?;
        }
    }
    for file in &manifest.files {
        builder
            .file(file, manifest, &context.ids)
            .with_context(|| report.describe(&file.origin))?;
    }
    for (root, mounts) in &builder.read_only {
        mountpoint::create(&mut builder.assembly.rootfs, root, mounts);
    }
    let kernel = manifest.kernel.as_ref();
    let patterns = kernel
        .map(|kernel| kernel.modules.as_slice())
        .unwrap_or_default();
    builder.assembly.modules =
        modules::prune(&mut builder.assembly.rootfs, &builder.needs, patterns)
            .map_err(|err| anyhow!(err))
            .with_context(|| {
                kernel
                    .map(|k| report.describe(&k.origin))
                    .unwrap_or_default()
            })?;
    Ok(builder.assembly)
}

/// runtime.json's first mounts for `bundle`, whose image is at `root` in the tree: a bind
/// of it on `rootfs/` when read-only (the directory made here when `shared` with an earlier
/// bundle), else a tmpfs on `tmp/` and an overlay of it on `rootfs/`.
fn root_mounts(
    bundle: &Bundle,
    root: &str,
    readonly: bool,
    shared: bool,
    rootfs: &mut Tree,
) -> Vec<Mount> {
    if readonly {
        if shared {
            rootfs.put(&key(&bundle.rootfs()), Node::dir(0o755));
        }
        vec![Mount {
            destination: path_text(&bundle.rootfs()),
            kind: String::new(),
            source: format!("/{root}"),
            options: vec!["bind".into()],
        }]
    } else {
        rootfs.put(&key(&bundle.tmp()), Node::dir(0o755));
        rootfs.put(&key(&bundle.rootfs()), Node::dir(0o755));
        vec![
            Mount {
                destination: path_text(&bundle.tmp()),
                kind: "tmpfs".into(),
                source: "tmpfs".into(),
                options: Vec::new(),
            },
            Mount {
                destination: path_text(&bundle.tmp()),
                kind: String::new(),
                source: String::new(),
                options: vec!["remount".into(), "private".into()],
            },
            Mount {
                destination: path_text(&bundle.rootfs()),
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir=/{root}"),
                    format!("upperdir={}", path_text(&bundle.upper())),
                    format!("workdir={}", path_text(&bundle.work())),
                ],
            },
        ]
    }
}

/// The tree key of `path`, an absolute path on the image.
fn key(path: &Path) -> String {
    path_text(path).trim_start_matches('/').to_owned()
}

/// `path` as runtime.json writes it.
fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// Container names to ids, from 100 in onboot, onshutdown, services order; a name used
/// twice keeps the later id.
pub fn allocate_ids(manifest: &Manifest) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    let entries = manifest
        .onboot
        .iter()
        .chain(&manifest.onshutdown)
        .chain(&manifest.services);
    for (id, entry) in (FIRST_ID..).zip(entries) {
        ids.insert(entry.name.clone(), id);
    }
    ids
}

struct Builder<'a> {
    report: &'a Report,
    cache: PathBuf,
    registry: Option<&'a Registry>,
    max_layer: u64,
    images: HashMap<(PathBuf, String), Rc<LocalImage>>,
    progress: Progress<'a>,
    assembly: Assembly,
    /// Read-only bundles' root filesystems (keys) and their config.json mounts.
    read_only: Vec<(String, Vec<oci_spec::runtime::Mount>)>,
    /// What the bundles will ask the kernel for.
    needs: Needs,
}

impl Builder<'_> {
    /// Reads an image once per build.
    fn image(&mut self, origin: &Origin, text: &str) -> Result<Rc<LocalImage>> {
        let base = self.report.base(origin);
        let key = (base.clone(), text.to_owned());
        if let Some(image) = self.images.get(&key) {
            return Ok(image.clone());
        }
        let sources = Sources {
            base,
            cache: self.cache.clone(),
            registry: self.registry,
            max_layer: self.max_layer,
        };
        let progress = &mut self.progress;
        let image = Rc::new(sources.read(text, &mut |done, total| progress(text, done, total))?);
        self.images.insert(key, image.clone());
        Ok(image)
    }

    fn kernel(&mut self, manifest: &Manifest) -> Result<()> {
        let Some(kernel) = manifest.kernel.as_ref().filter(|k| !k.image.is_empty()) else {
            return Ok(());
        };
        let context = || self.report.describe(&kernel.origin);
        let image = self
            .image(&kernel.origin, &kernel.image)
            .with_context(context)?;
        let file = |name: &str| -> Option<Content> {
            let key = tree::key(name).ok()??;
            match &image.rootfs.get(&key)?.kind {
                Kind::File { data, .. } => Some(data.clone()),
                _ => None,
            }
        };
        let binary = if kernel.binary.is_empty() {
            defaults::KERNEL_BINARY
        } else {
            &kernel.binary
        };
        let bytes = file(binary)
            .ok_or_else(|| anyhow!("image `{}` has no kernel file `{binary}`", kernel.image))
            .with_context(context)?;
        let rootfs = &mut self.assembly.rootfs;
        rootfs.put("boot", Node::dir(0o755));
        rootfs.put("boot/kernel", Node::file(bytes.clone(), 0o644));
        rootfs.put("boot/cmdline", Node::file(kernel.cmdline.as_bytes(), 0o644));
        match kernel.tar.as_deref() {
            Some("" | "none") => {}
            given => {
                let name = given.unwrap_or(defaults::KERNEL_TAR);
                match file(name) {
                    Some(tar) => layer::apply(rootfs, tar.reader())
                        .map_err(|err| anyhow!("image `{}`: {name}: {err}", kernel.image))
                        .with_context(context)?,
                    None if given.is_some() => {
                        return Err(anyhow!("image `{}` has no `{name}`", kernel.image))
                            .with_context(context)
                    }
                    None => {}
                }
            }
        }
        if let Some(ucode) = kernel.ucode.as_deref().filter(|u| !u.is_empty()) {
            let bytes = file(ucode)
                .ok_or_else(|| anyhow!("image `{}` has no `{ucode}`", kernel.image))
                .with_context(context)?;
            rootfs.put("boot/ucode.cpio", Node::file(bytes.clone(), 0o644));
            self.assembly.ucode = Some(bytes);
        }
        self.assembly.vmlinux = file(defaults::KERNEL_ELF).filter(|elf| elf.starts_with(ELF_MAGIC));
        self.assembly.kernel = Some(bytes);
        self.assembly.cmdline = kernel.cmdline.clone();
        Ok(())
    }

    fn init(&mut self, manifest: &Manifest) -> Result<()> {
        let mut apk_db: Option<Vec<u8>> = None;
        for (text, origin) in manifest.init.iter().zip(&manifest.init_origins) {
            let image = self
                .image(origin, text)
                .with_context(|| self.report.describe(origin))?;
            if let Some(Kind::File { data, .. }) = image.rootfs.get(APK_DB).map(|n| &n.kind) {
                let db = data
                    .to_vec()
                    .with_context(|| format!("cannot read {APK_DB}"))?;
                apk_db.get_or_insert_with(Vec::new).extend_from_slice(&db);
            }
            self.assembly
                .rootfs
                .graft("", &filtered(&image.rootfs, Some(RESOLV_SYMLINK)));
        }
        if let Some(db) = apk_db {
            self.assembly.rootfs.put(APK_DB, Node::file(db, 0o644));
        }
        Ok(())
    }

    fn volume(&mut self, volume: &Volume) -> Result<()> {
        let dirs = Containers::default().volume(&volume.name);
        let rootfs = &mut self.assembly.rootfs;
        for dir in [dirs.lower(), dirs.tmp(), dirs.merged()] {
            rootfs.put(&key(&dir), Node::dir(0o755));
        }
        // The supervisor overlays `merged/` at boot.
        self.needs.filesystem("overlay");
        if volume.image.is_empty() {
            return Ok(());
        }
        let describe = || self.report.describe(&volume.origin);
        let image = self
            .image(&volume.origin, &volume.image)
            .with_context(describe)?;
        let lower = key(&dirs.lower());
        if volume.format.as_deref() == Some("oci") {
            let layout = layout_tree(&volume.image, &image).with_context(describe)?;
            self.assembly.rootfs.graft(&lower, &layout);
        } else {
            self.assembly
                .rootfs
                .graft(&lower, &filtered(&image.rootfs, Some(RESOLV_SYMLINK)));
        }
        Ok(())
    }

    fn bundle(
        &mut self,
        bundle: &Bundle,
        entry: &Image,
        context: &Context,
        unpacked: &mut HashMap<String, String>,
    ) -> Result<()> {
        let image = self.image(&entry.origin, &entry.image)?;
        let label = match image
            .config
            .labels()
            .as_ref()
            .and_then(|labels| labels.get(label::LABEL))
        {
            Some(text) => label::decode(&entry.image, text).map_err(|err| anyhow!(err))?,
            None => Default::default(),
        };
        let Configs { spec, mut runtime } =
            container::convert(entry, &label, &image.config, context)
                .map_err(|err| anyhow!(err))?;
        let readonly = spec
            .root()
            .as_ref()
            .is_some_and(|root| root.readonly() == Some(true));
        let own = key(&if readonly {
            bundle.rootfs()
        } else {
            bundle.lower()
        });
        let rootfs = &mut self.assembly.rootfs;
        rootfs.put(&key(&bundle.dir), Node::dir(0o755));
        let shared = unpacked.get(&entry.image).cloned();
        let root = match &shared {
            Some(first) => first.clone(),
            None => {
                // The first entry of an image: what its files need of the kernel is the same
                // for every other.
                self.needs
                    .programs(&image.rootfs)
                    .map_err(|err| anyhow::anyhow!("{}: {err}", entry.image))?;
                rootfs.graft(&own, &filtered(&image.rootfs, None));
                unpacked.insert(entry.image.clone(), own.clone());
                own
            }
        };
        // The supervisor binds its notify socket's directory here; make sure it can.
        if runtime.ready.as_ref().is_some_and(|ready| ready.notify) {
            let notify = format!("{root}/run/notify");
            if !rootfs.contains(&notify) {
                rootfs.put(&notify, Node::dir(0o755));
            }
        }
        if readonly {
            let mounts = spec.mounts().clone().unwrap_or_default();
            self.read_only.push((root.clone(), mounts));
            if runtime.init {
                // The supervisor binds the container init there; a read-only root cannot
                // have the file made at boot.
                mountpoint::create_file(rootfs, &root, spec::runtime::CONTAINER_INIT);
            }
        }
        let mut mounts = root_mounts(bundle, &root, readonly, shared.is_some(), rootfs);
        mounts.append(&mut runtime.mounts);
        runtime.mounts = mounts;
        let configs = Configs { spec, runtime };
        self.needs.record(&configs);
        let spec_json = configs.spec_json().map_err(|err| anyhow!(err))?;
        let runtime_json = configs.runtime_json().map_err(|err| anyhow!(err))?;
        rootfs.put(&key(&bundle.config_path()), Node::file(spec_json, 0o644));
        rootfs.put(
            &key(&bundle.runtime_path()),
            Node::file(runtime_json, 0o644),
        );
        Ok(())
    }

    fn file(
        &mut self,
        file: &File,
        manifest: &Manifest,
        ids: &BTreeMap<String, u32>,
    ) -> Result<()> {
        let key = tree::key(&file.path)
            .map_err(|err| anyhow!("path: {err}"))?
            .ok_or_else(|| anyhow!("path: `{}` is the root", file.path))?;
        let mode_text = if file.mode.is_empty() {
            defaults::file_mode(file)
        } else {
            &file.mode
        };
        let mode = process::parse_mode(mode_text)
            .ok_or_else(|| anyhow!("mode: `{mode_text}` is not an octal mode"))?;
        let id = |field: &str, id: &Option<Id>| {
            container::numeric_id(field, id.as_ref(), ids).map_err(|err| anyhow!(err))
        };
        let (uid, gid) = (id("uid", &file.uid)?, id("gid", &file.gid)?);
        let kind = if file.directory {
            Kind::Dir
        } else if !file.symlink.is_empty() {
            Kind::Symlink(file.symlink.clone())
        } else if let Some(contents) = &file.contents {
            file_kind(contents.as_bytes().to_vec())
        } else if !file.metadata.is_empty() {
            file_kind(metadata(manifest, &file.metadata)?)
        } else if !file.source.is_empty() {
            let path = source_path(file, self.report);
            match Content::read_file(&path) {
                Ok(bytes) => file_kind(bytes),
                Err(_) if file.optional => return Ok(()),
                Err(err) => bail!("source: cannot read {}: {err}", path.display()),
            }
        } else {
            bail!("give one of contents, source, metadata, symlink or directory");
        };
        // Missing parents get the file's owner and its mode with x wherever r or w is set.
        let mut dir_mode = mode;
        for (any, x) in [(0o700, 0o100), (0o070, 0o010), (0o007, 0o001)] {
            if dir_mode & any != 0 {
                dir_mode |= x;
            }
        }
        let rootfs = &mut self.assembly.rootfs;
        let mut parent = tree::parent(&key);
        let mut missing = Vec::new();
        while let Some(dir) = parent {
            if rootfs.get(dir).is_some_and(Node::is_dir) {
                break;
            }
            missing.push(dir.to_owned());
            parent = tree::parent(dir);
        }
        for dir in missing.iter().rev() {
            rootfs.put(dir, Node::dir(dir_mode).owned(uid, gid));
        }
        rootfs.put(&key, Node::new(kind, mode).owned(uid, gid));
        Ok(())
    }
}

fn file_kind(data: impl Into<Content>) -> Kind {
    Kind::File {
        data: data.into(),
        inode: 0,
    }
}

/// Where a `files:` entry's `source` is on this machine: `~/` at the start is the user's home;
/// a relative path starts at its manifest's directory.
pub fn source_path(file: &File, report: &Report) -> PathBuf {
    match (file.source.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => report.base(&file.origin).join(&file.source),
    }
}

/// The merged manifest itself, as `yaml` or `json`.
fn metadata(manifest: &Manifest, format: &str) -> Result<Vec<u8>> {
    match format {
        "json" => serde_json::to_vec_pretty(manifest).context("metadata: cannot write JSON"),
        "yaml" => serde_yaml_ng::to_string(manifest)
            .map(String::into_bytes)
            .context("metadata: cannot write YAML"),
        other => bail!("metadata: `{other}` is neither yaml nor json"),
    }
}

/// An image's root filesystem as it goes into a bundle, a volume or `/`: build leftovers and
/// runtime-provided paths dropped, `/etc/hosts` a localhost file, `/etc/resolv.conf` a note
/// (or, given `resolv`, a symlink to it), and the directories every container needs.
pub fn filtered(image: &Tree, resolv: Option<&str>) -> Tree {
    let mut tree = image.clone();
    for name in EXCLUDE {
        tree.remove(name);
    }
    for (name, contents) in [("etc/hosts", HOSTS), ("etc/resolv.conf", NO_RESOLV)] {
        let old = tree.get(name).cloned();
        let node = match (name, resolv) {
            ("etc/resolv.conf", Some(target)) => Node::symlink(target),
            _ => {
                let mut node = Node::file(contents.as_bytes(), 0o644);
                if let Some(old) = old.filter(|old| matches!(old.kind, Kind::File { .. })) {
                    node.mode = old.mode;
                    node.uid = old.uid;
                    node.gid = old.gid;
                }
                node
            }
        };
        tree.put(name, node);
    }
    for dir in ["dev", "dev/pts", "dev/shm", "etc", "proc", "sys"] {
        match tree.get_mut(dir) {
            Some(node) if node.is_dir() => node.mtime = tree::FIXED_MTIME,
            _ => tree.put(dir, Node::dir(0o755)),
        }
    }
    match tree.get_mut("etc/mtab") {
        Some(node) => node.mtime = tree::FIXED_MTIME,
        None => tree.put("etc/mtab", Node::symlink("/proc/mounts")),
    }
    tree
}

/// A volume of `format: oci`: the image as a one-layer OCI image layout, named by its text.
fn layout_tree(text: &str, image: &LocalImage) -> Result<Tree> {
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let layout = Layout::create(dir.path())?;
    layout.put_image(
        text,
        std::slice::from_ref(&image.rootfs),
        image.config.clone(),
    )?;
    hostdir::read(dir.path())
}
