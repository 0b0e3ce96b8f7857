//! The manifest model: LinuxKit's top-level sections (kernel, init, volumes, onboot,
//! onshutdown, services, files, and trust, accepted and ignored), decoded from a document with
//! every problem reported, and the merge of several files (lists appended, kernel fields
//! overridden by later files), as `linuxkit build` does.
//! Runs in: `kiln` on the build host. Pure.

pub mod check;
pub mod decode;
pub mod defaults;
pub mod diagnostic;
pub mod document;
pub mod entry;
pub mod label;
pub mod mounts;
pub mod process;
pub mod reference;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::manifest::decode::Decoder;
use crate::manifest::diagnostic::{Document, Origin, Report};
use crate::manifest::document::{FieldPath, Node, Value};
use crate::manifest::entry::{Id, Image, ImageConfig};

/// A whole manifest: one file, or several merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Manifest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<Kernel>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onboot: Vec<Image>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onshutdown: Vec<Image>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Image>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Where each `init` entry was written, in the same order.
    #[serde(skip)]
    pub init_origins: Vec<Origin>,
}

/// `kernel`: the image holding the kernel and how to find it there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kernel {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cmdline: String,
    /// The kernel's file name in the image (default `kernel`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary: String,
    /// The modules tarball (default `kernel.tar`; `""` or `none` for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar: Option<String>,
    /// A cpio archive put before the initrd (CPU microcode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ucode: Option<String>,
    /// Modules kept beyond those the image's devices and manifest need: names, aliases or
    /// globs (Kiln's key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

/// A named volume, overlaid at boot under /containers/volumes/NAME.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    /// The image whose contents fill the volume; none for a blank one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Containers may bind it read-only only.
    pub readonly: bool,
    /// `filesystem` (the image's root filesystem) or `oci` (an OCI image layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(skip)]
    pub origin: Origin,
}

/// An entry of `files`: a file, directory or symlink added to the root filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct File {
    pub path: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub directory: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub symlink: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// A file on the build host; `~/` is the user's home.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// `yaml` or `json`: the merged manifest itself.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Octal, as a string (`"0644"`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<Id>,
    #[serde(skip)]
    pub origin: Origin,
}

/// `trust`: LinuxKit's old content-trust section, accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trust {
    pub image: Vec<String>,
    pub org: Vec<String>,
}

/// The top-level sections, in the order LinuxKit processes them.
const SECTIONS: [&str; 8] = [
    "kernel",
    "init",
    "volumes",
    "onboot",
    "onshutdown",
    "services",
    "files",
    "trust",
];

/// Parses `text` (named `name` in messages) as one manifest, adding its document and every
/// problem to `report`. What decodes is kept, so later checks see as much as possible.
pub fn parse(report: &mut Report, name: &str, text: &str) -> Manifest {
    let (root, syntax_error) = match document::parse(text) {
        Ok(root) => (root, None),
        Err(err) => (
            Node {
                line: err.line,
                value: Value::Null,
            },
            Some(err),
        ),
    };
    report.documents.push(Document {
        name: name.to_owned(),
        root: root.clone(),
    });
    let document = report.documents.len() - 1;
    if let Some(err) = syntax_error {
        report.error_at_line(document, err.line, &FieldPath::root(), err.message);
        return Manifest::default();
    }
    let mut decoder = Decoder { report, document };
    decode_manifest(&mut decoder, &root)
}

fn decode_manifest(d: &mut Decoder<'_>, root: &Node) -> Manifest {
    let mut manifest = Manifest::default();
    let entries: &[(Node, Node)] = match &root.value {
        Value::Mapping(entries) => entries,
        Value::Null => &[],
        _ => {
            d.report.error(
                d.document,
                &FieldPath::root(),
                format!("a manifest is a mapping of sections, found {}", root.kind()),
            );
            return manifest;
        }
    };
    for (key, node) in entries {
        let name = key.key_text();
        let path = FieldPath::root().key(name.clone());
        match name.as_str() {
            "kernel" => {
                manifest.kernel = d.fields::<Kernel>(node, &path, &[]).map(|mut kernel| {
                    kernel.origin = d.origin(&path);
                    kernel
                })
            }
            "init" => {
                for (i, item) in items(d, node, &path) {
                    if let Some(reference) = d.value::<String>(item, &path.index(i)) {
                        manifest.init.push(reference);
                        manifest.init_origins.push(d.origin(&path.index(i)));
                    }
                }
            }
            "volumes" => {
                manifest.volumes = list_entries(d, node, &path, |v: &mut Volume| &mut v.origin)
            }
            "onboot" | "onshutdown" | "services" => {
                let mut images = Vec::new();
                for (i, item) in items(d, node, &path) {
                    if let Some(image) = decode_image(d, item, &path.index(i)) {
                        images.push(image);
                    }
                }
                match name.as_str() {
                    "onboot" => manifest.onboot = images,
                    "onshutdown" => manifest.onshutdown = images,
                    _ => manifest.services = images,
                }
            }
            "files" => manifest.files = list_entries(d, node, &path, |f: &mut File| &mut f.origin),
            "trust" => {
                d.fields::<Trust>(node, &path, &[]);
            }
            _ => d.report.error_at_line(
                d.document,
                key.line,
                &path,
                format!(
                    "unknown section `{name}`; the sections are {}",
                    SECTIONS.map(|s| format!("`{s}`")).join(", ")
                ),
            ),
        }
    }
    manifest
}

/// The items of a list section; null is an empty list.
fn items<'n>(d: &mut Decoder<'_>, node: &'n Node, path: &FieldPath) -> Vec<(usize, &'n Node)> {
    match &node.value {
        Value::Sequence(items) => items.iter().enumerate().collect(),
        Value::Null => Vec::new(),
        _ => {
            d.report.error(
                d.document,
                path,
                format!("expected a list, found {}", node.kind()),
            );
            Vec::new()
        }
    }
}

/// The entries of a list section whose items are plain mappings (volumes, files), each with
/// its origin set.
fn list_entries<T: DeserializeOwned>(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &FieldPath,
    origin: fn(&mut T) -> &mut Origin,
) -> Vec<T> {
    let mut decoded = Vec::new();
    for (i, item) in items(d, node, path) {
        let at = path.index(i);
        if let Some(mut entry) = d.fields::<T>(item, &at, &[]) {
            *origin(&mut entry) = d.origin(&at);
            decoded.push(entry);
        }
    }
    decoded
}

/// An entry of onboot, onshutdown or services: `name` and `image` (both required) and the
/// container settings.
fn decode_image(d: &mut Decoder<'_>, node: &Node, path: &FieldPath) -> Option<Image> {
    let config = d.fields::<ImageConfig>(node, path, &["name", "image"]);
    let mut required = |key: &str| -> String {
        match node.get(key) {
            Some(value) => d.value::<String>(value, &path.key(key)).unwrap_or_default(),
            None => {
                if matches!(node.value, Value::Mapping(_)) {
                    d.report.error(d.document, path, format!("missing `{key}`"));
                }
                String::new()
            }
        }
    };
    let name = required("name");
    let image = required("image");
    Some(Image {
        name,
        image,
        config: config?,
        origin: d.origin(path),
    })
}

impl Manifest {
    /// Appends `other` as LinuxKit's AppendConfig does: kernel fields that `other` sets win,
    /// every list is appended.
    pub fn merge(&mut self, other: Manifest) {
        match (&mut self.kernel, other.kernel) {
            (Some(kernel), Some(later)) => {
                if !later.image.is_empty() {
                    kernel.image = later.image;
                    kernel.origin = later.origin;
                }
                if !later.cmdline.is_empty() {
                    kernel.cmdline = later.cmdline;
                }
                if !later.binary.is_empty() {
                    kernel.binary = later.binary;
                }
                if later.tar.is_some() {
                    kernel.tar = later.tar;
                }
                if later.ucode.is_some() {
                    kernel.ucode = later.ucode;
                }
                kernel.modules.extend(later.modules);
            }
            (kernel @ None, later) => *kernel = later,
            (Some(_), None) => {}
        }
        self.init.extend(other.init);
        self.init_origins.extend(other.init_origins);
        self.volumes.extend(other.volumes);
        self.onboot.extend(other.onboot);
        self.onshutdown.extend(other.onshutdown);
        self.services.extend(other.services);
        self.files.extend(other.files);
    }
}

impl Decoder<'_> {
    /// The origin of the entry at `path` in this decoder's document.
    pub fn origin(&self, path: &FieldPath) -> Origin {
        Origin {
            document: self.document,
            path: path.clone(),
        }
    }
}
