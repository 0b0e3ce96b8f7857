//! `kiln pkg build`: a package's image in the local cache, named `ORG/IMAGE:TAG` by its inputs'
//! tag ([`Inputs`]), so an unchanged package is not built again. The image is made in memory
//! (contents applied in order into one layer, files owned by root with fixed times) and only
//! then stored in the cache; a failure leaves no entry, and says what changed since the
//! package was last built.
//! Runs in: `kiln` on the build host. Runs cargo, apt and dpkg-deb; writes only the caches.

use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::distribution::Reference;
use oci_spec::image::Config;

use crate::manifest::defaults;
use crate::manifest::label::LABEL;
use crate::oci::layout::{self, Layout};
use crate::pkg::debian::Debian;
use crate::pkg::inputs::Inputs;
use crate::pkg::kernel;
use crate::pkg::libraries::{self, Provider};
use crate::pkg::package::{Package, Step};
use crate::tree::hostdir;
use crate::tree::{self, Kind, Node, Tree};

/// The outcome of [`build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `ORG/IMAGE:TAG`, as manifests name it.
    pub reference: String,
    /// The image manifest's digest.
    pub digest: String,
    /// False when the cache already held it.
    pub built: bool,
}

/// `ORG/IMAGE:TAG` for `package` with `inputs`.
pub fn reference(package: &Package, inputs: &Inputs) -> String {
    format!("{}:{}", package.repository(), inputs.tag)
}

/// The name an image of `reference` has in the cache: the full reference.
pub fn cache_name(reference: &str) -> Result<String> {
    Reference::from_str(reference)
        .map(|reference| reference.whole())
        .map_err(|err| anyhow!("`{reference}` is not a reference: {err}"))
}

/// Builds `package` into the cache layout at `cache`, unless it is there already and
/// `force` is false. `progress` hears what is being done.
pub fn build(
    package: &Package,
    debian: &Debian,
    cache: &std::path::Path,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Built> {
    let inputs = Inputs::of(package, debian, cache)
        .with_context(|| format!("package {}", package.describe()))?;
    let reference = reference(package, &inputs);
    let name = cache_name(&reference)?;
    let _lock = layout::lock(cache)?;
    if !force {
        if let Some(descriptor) = layout::lookup(cache, &name)? {
            inputs.remember(cache, package);
            return Ok(Built {
                reference,
                digest: descriptor.digest().to_string(),
                built: false,
            });
        }
    }
    progress(&format!("building {reference} from {}", package.describe()));
    let tree = contents(package, &inputs, debian, progress)
        .with_context(|| match inputs.changes(package) {
            Some(changes) => format!("building {reference}, {changes}"),
            None => format!("building {reference}"),
        })
        .with_context(|| format!("package {}", package.describe()))?;
    let descriptor =
        Layout::create(cache)?
            .with_plain_layers()
            .put_image(&name, &[tree], config(package)?)?;
    inputs.remember(cache, package);
    Ok(Built {
        reference,
        digest: descriptor.digest().to_string(),
        built: true,
    })
}

/// The image config: build.yml's entrypoint, cmd, env and working directory, and the label.
fn config(package: &Package) -> Result<Config> {
    let spec = &package.spec;
    let mut config = Config::default();
    config
        .set_entrypoint(spec.entrypoint.clone())
        .set_cmd(spec.cmd.clone())
        .set_env(spec.env.clone())
        .set_working_dir(spec.working_dir.clone());
    if let Some(label) = &package.label {
        let text = serde_json::to_string(label).context("cannot write the label")?;
        config.set_labels(Some([(LABEL.to_owned(), text)].into()));
    }
    Ok(config)
}

/// The image's files: every step applied in order.
fn contents(
    package: &Package,
    inputs: &Inputs,
    debian: &Debian,
    progress: &mut dyn FnMut(&str),
) -> Result<Tree> {
    let mut tree = Tree::new();
    for (index, step) in package.steps().into_iter().enumerate() {
        let at = |field: &str| format!("contents[{index}].{field}");
        match step {
            Step::Files { source, to, mode } => {
                let path = package.dir.join(&source);
                if !path.exists() {
                    bail!(
                        "{}: `{source}` is not in {}",
                        at("files"),
                        package.describe()
                    );
                }
                let mut files = Tree::new();
                let is_dir = path.is_dir();
                let key = if is_dir {
                    String::new()
                } else {
                    file_key(&to, &source)
                };
                hostdir::read_into(&mut files, &key, &path).with_context(|| at("files"))?;
                if let Some(mode) = mode {
                    let keys: Vec<String> = files
                        .iter()
                        .filter(|(_, node)| matches!(node.kind, Kind::File { .. }))
                        .map(|(key, _)| key.to_owned())
                        .collect();
                    for key in keys {
                        if let Some(node) = files.get_mut(&key) {
                            node.mode = mode;
                        }
                    }
                }
                let prefix = if is_dir { key_of(&to) } else { String::new() };
                tree.graft(&prefix, &files);
            }
            Step::Binary {
                krate,
                bin,
                to,
                mode,
            } => {
                progress(&format!("building the binary {bin} (crate {krate})"));
                let workspace = inputs
                    .workspace
                    .as_ref()
                    .ok_or_else(|| anyhow!("{}: no workspace", at("binary")))?;
                let binary = workspace
                    .build(&krate, &bin)
                    .with_context(|| at("binary"))?;
                if !binary.compiled {
                    progress(&format!(
                        "the binary {bin} is the workspace's release build, which was up to date"
                    ));
                }
                tree.put(&key_of(&to), Node::file(binary.bytes, mode));
            }
            Step::Deb { name, keep } => {
                let (record, dependencies) = inputs
                    .records
                    .get(&name)
                    .and_then(|records| records.split_first())
                    .ok_or_else(|| anyhow!("{}: `{name}` was not looked up", at("deb")))?;
                progress(&format!("unpacking {} {}", record.name, record.version));
                let deb = debian.fetch(record).with_context(|| at("deb"))?;
                let files = Debian::unpack(&deb).with_context(|| at("deb"))?;
                let files = match keep {
                    Some(keep) => kept(&files, &keep).with_context(|| at("keep"))?,
                    None => files,
                };
                let mut dependencies = dependencies.iter();
                let libraries = libraries::resolve(&record.name, &files, || {
                    let Some(record) = dependencies.next() else {
                        return Ok(None);
                    };
                    let deb = debian.fetch(record)?;
                    Ok(Some(Provider {
                        name: format!("{} {}", record.name, record.version),
                        files: Debian::unpack(&deb)?,
                    }))
                })
                .with_context(|| at("deb"))?;
                if !libraries.packages.is_empty() {
                    progress(&format!(
                        "the libraries its programs load come from {}",
                        libraries.packages.join(", ")
                    ));
                }
                tree.graft("", &libraries.files);
                tree.graft("", &files);
            }
            Step::Applets { busybox } => {
                applets(&mut tree, &busybox).with_context(|| at("applets"))?;
            }
            Step::Kernel { name } => {
                let records = inputs
                    .records
                    .get(&name)
                    .ok_or_else(|| anyhow!("{}: `{name}` was not looked up", at("kernel")))?;
                progress(&format!("converting the kernel {name}"));
                let files = kernel::build(debian, records).with_context(|| at("kernel"))?;
                tree.put(defaults::KERNEL_BINARY, Node::file(files.kernel, 0o644));
                tree.put(defaults::KERNEL_TAR, Node::file(files.kernel_tar, 0o644));
                tree.put(defaults::KERNEL_ELF, Node::file(files.vmlinux, 0o644));
            }
            Step::Directory { path, mode } => tree.put(&key_of(&path), Node::dir(mode)),
            Step::Symlink { path, target } => tree.put(&key_of(&path), Node::symlink(target)),
        }
    }
    Ok(tree)
}

/// The tree key of an absolute path checked by the package loader ("" for `/`).
fn key_of(path: &str) -> String {
    tree::key(path).ok().flatten().unwrap_or_default()
}

/// Where a single file goes: `to` itself, or inside it when `to` ends with `/`.
fn file_key(to: &str, source: &str) -> String {
    let name = source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(source);
    if to.ends_with('/') {
        key_of(&format!("{to}{name}"))
    } else {
        key_of(to)
    }
}

/// The entries of `files` at or below any of `keep`; each path must exist.
fn kept(files: &Tree, keep: &[String]) -> Result<Tree> {
    let mut out = Tree::new();
    for path in keep {
        let key = key_of(path);
        let node = files
            .get(&key)
            .ok_or_else(|| anyhow!("the package has no `{path}`"))?;
        out.put(&key, node.clone());
        for (below, node) in files.below(&key) {
            out.put(below, node.clone());
        }
    }
    Ok(out)
}

/// A symlink to `busybox` for each applet it lists, where nothing is yet.
fn applets(tree: &mut Tree, busybox: &str) -> Result<()> {
    let key = key_of(busybox);
    let data = match tree.get(&key).map(|node| &node.kind) {
        Some(Kind::File { data, .. }) => data.clone(),
        _ => bail!("`{busybox}` is not a file of the image (put it there first)"),
    };
    let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
    let program = dir.path().join("busybox");
    std::fs::File::create(&program)
        .and_then(|mut file| std::io::copy(&mut data.reader(), &mut file).map(drop))
        .and_then(|()| {
            std::fs::set_permissions(
                &program,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
        })
        .with_context(|| format!("cannot write {}", program.display()))?;
    let output = Command::new(&program)
        .arg("--list-full")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{busybox} --list-full`"))?;
    if !output.status.success() {
        bail!("`{busybox} --list-full` failed: {}", output.status);
    }
    let list = String::from_utf8_lossy(&output.stdout);
    for applet in list.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let Ok(Some(applet)) = tree::key(applet) else {
            continue;
        };
        if !tree.contains(&applet) {
            tree.put(&applet, Node::symlink(busybox));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_paths_take_everything_below_and_must_exist() {
        let mut files = Tree::new();
        files.put("bin/busybox", Node::file(&b"elf"[..], 0o755));
        files.put(
            "usr/share/doc/busybox/copyright",
            Node::file(&b"c"[..], 0o644),
        );
        files.put("usr/share/man/busybox.1", Node::file(&b"m"[..], 0o644));
        let out = kept(&files, &["/bin/busybox".into(), "/usr/share/doc".into()]).expect("kept");
        let keys: Vec<_> = out.iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys,
            [
                "bin",
                "bin/busybox",
                "usr",
                "usr/share",
                "usr/share/doc",
                "usr/share/doc/busybox",
                "usr/share/doc/busybox/copyright"
            ]
        );
        let err = kept(&files, &["/sbin/missing".into()]).expect_err("missing");
        assert!(err.to_string().contains("`/sbin/missing`"), "{err}");
    }

    #[test]
    fn single_files_go_to_or_into_their_destination() {
        assert_eq!(file_key("/etc/issue", "issue.txt"), "etc/issue");
        assert_eq!(file_key("/etc/", "conf/issue"), "etc/issue");
        assert_eq!(file_key("/", "rc"), "rc");
    }
}
