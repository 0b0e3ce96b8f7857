//! The shared libraries a Debian package's programs load, taken from the packages it depends
//! on: no maintainer script runs, and a dependency that holds nothing the programs load
//! (debconf, adduser, a tool the package's scripts call) adds nothing. Every ELF file of the
//! package names its loader (`PT_INTERP`) and the libraries it needs (`DT_NEEDED`); each is
//! looked for as glibc's loader looks without an `ld.so.cache` (RPATH, RUNPATH with `$ORIGIN`,
//! then the system directories), in the package itself first and then in its dependencies in
//! order, and the libraries found are read in turn for what they need. A library is taken with
//! the symlinks that name it; one that none of the packages holds is an error naming the
//! program and the library.
//! Runs in: `kiln pkg build` on the build host; reads unpacked packages only.

use std::collections::{BTreeSet, HashSet};

use anyhow::{anyhow, bail, Context, Result};
use goblin::elf::Elf;

use crate::tree::{self, Kind, Node, Tree};

/// Where glibc's loader looks for a library named without a slash, after the ELF file's own
/// paths, when no `/etc/ld.so.cache` exists (Debian's amd64 loader, `ld.so --help`).
const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// Symlinks followed for one name, at most (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// What a package's programs load from its dependencies.
#[derive(Debug, Default)]
pub struct Libraries {
    /// The files to add to the package's own: each library and loader, with the symlinks
    /// that lead to it.
    pub files: Tree,
    /// The dependencies they come from, in the order given.
    pub packages: Vec<String>,
}

/// One package whose files may hold libraries.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub files: Tree,
}

/// Which tree a file is in: the package's own, or the nth provider's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Own,
    Provider(usize),
}

/// The libraries the ELF files of `own` (the package `package`'s files) load, found in `own`
/// or in the providers `next` hands out one at a time, in order (`None` once there are no
/// more): a provider is asked for only when the ones before it lack something, so the
/// dependencies a package needs nothing from need not be fetched.
pub fn resolve(
    package: &str,
    own: &Tree,
    mut next: impl FnMut() -> Result<Option<Provider>>,
) -> Result<Libraries> {
    let mut providers: Vec<Provider> = Vec::new();
    let mut exhausted = false;
    let mut libraries = Libraries::default();
    let mut used: BTreeSet<usize> = BTreeSet::new();
    let mut pending: Vec<(Source, String)> = own
        .iter()
        .filter(|(_, node)| is_elf(node))
        .map(|(key, _)| (Source::Own, key.to_owned()))
        .collect();
    let mut read: HashSet<(Source, String)> = pending.iter().cloned().collect();
    while let Some((source, key)) = pending.pop() {
        let tree = match source {
            Source::Own => own,
            Source::Provider(index) => &providers[index].files,
        };
        let Some(Node {
            kind: Kind::File { data, .. },
            ..
        }) = tree.get(&key)
        else {
            continue;
        };
        let bytes = data
            .to_vec()
            .with_context(|| format!("cannot read /{key} of {package}"))?;
        let wants = Wants::of(&bytes, &key)
            .with_context(|| format!("/{key} of {package} is not an ELF file kiln can read"))?;
        let program = match source {
            Source::Own => format!("/{key} (of {package})"),
            Source::Provider(index) => format!("/{key} (of {})", providers[index].name),
        };
        for wanted in wants.paths() {
            let candidates = wanted.candidates();
            let search = |source: Source, tree: &Tree| {
                candidates.iter().find_map(|(asked, path)| {
                    find(tree, path).map(|at| (source, asked.clone(), at))
                })
            };
            // The package itself, then each provider in order, fetched as the search needs.
            let mut found = search(Source::Own, own);
            let mut index = 0;
            while found.is_none() {
                if index == providers.len() && !exhausted {
                    match next()? {
                        Some(provider) => providers.push(provider),
                        None => exhausted = true,
                    }
                }
                let Some(provider) = providers.get(index) else {
                    break;
                };
                found = search(Source::Provider(index), &provider.files);
                index += 1;
            }
            let Some((source, asked, at)) = found else {
                bail!(
                    "{program} needs {}, which neither {package} nor any package it depends \
                     on holds",
                    wanted.describe()
                );
            };
            if let Source::Provider(index) = source {
                used.insert(index);
                take(&mut libraries.files, &providers[index].files, &at);
                if let Some(wanted_key) = tree::key(&asked).ok().flatten() {
                    if at.requested != wanted_key && !libraries.files.contains(&wanted_key) {
                        // Found under /usr only (a merged-/usr package): the name the
                        // program asks for leads there.
                        libraries
                            .files
                            .put(&wanted_key, Node::symlink(format!("/{}", at.requested)));
                    }
                }
            }
            if read.insert((source, at.file.clone())) {
                pending.push((source, at.file));
            }
        }
    }
    libraries.packages = used
        .into_iter()
        .map(|index| providers[index].name.clone())
        .collect();
    Ok(libraries)
}

fn is_elf(node: &Node) -> bool {
    matches!(&node.kind, Kind::File { data, .. } if data.starts_with(b"\x7fELF"))
}

/// What one ELF file asks the loader for.
#[derive(Debug, Default)]
struct Wants {
    interpreter: Option<String>,
    needed: Vec<String>,
    /// RPATH and RUNPATH directories, `$ORIGIN` expanded.
    dirs: Vec<String>,
}

/// One thing an ELF file loads.
#[derive(Debug)]
enum Wanted {
    /// The loader, by its absolute path.
    Interpreter(String),
    /// A library: the paths tried, in order, and its name.
    Library { paths: Vec<String>, name: String },
}

impl Wanted {
    /// The absolute paths it may be at, in the loader's order, then each under /usr (a
    /// merged-/usr package holds only that one): `(the path asked for, where to look)`.
    fn candidates(&self) -> Vec<(String, String)> {
        let paths = match self {
            Self::Interpreter(path) => std::slice::from_ref(path),
            Self::Library { paths, .. } => paths.as_slice(),
        };
        let mut all: Vec<(String, String)> = paths
            .iter()
            .map(|path| (path.clone(), path.clone()))
            .collect();
        all.extend(
            paths
                .iter()
                .filter(|path| !path.starts_with("/usr/"))
                .map(|path| (path.clone(), format!("/usr{path}"))),
        );
        all
    }

    fn describe(&self) -> String {
        match self {
            Self::Interpreter(path) => format!("the loader {path}"),
            Self::Library { name, .. } => format!("the library {name}"),
        }
    }
}

impl Wants {
    /// Reads the program headers and the dynamic section of the ELF file at `key`.
    fn of(bytes: &[u8], key: &str) -> Result<Self> {
        let elf = Elf::parse(bytes).map_err(|err| anyhow!("{err}"))?;
        let origin = tree::parent(key).map_or_else(|| "/".to_owned(), |dir| format!("/{dir}"));
        let dirs = elf
            .rpaths
            .iter()
            .chain(&elf.runpaths)
            .flat_map(|list| list.split(':'))
            .filter(|dir| !dir.is_empty())
            .map(|dir| {
                dir.replace("${ORIGIN}", &origin)
                    .replace("$ORIGIN", &origin)
            })
            .filter(|dir| dir.starts_with('/'))
            .collect();
        Ok(Self {
            interpreter: elf.interpreter.map(str::to_owned),
            needed: elf
                .libraries
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            dirs,
        })
    }

    fn paths(&self) -> Vec<Wanted> {
        let mut wanted: Vec<Wanted> = self
            .interpreter
            .iter()
            .map(|path| Wanted::Interpreter(path.clone()))
            .collect();
        for name in &self.needed {
            let paths = if name.contains('/') {
                vec![name.clone()]
            } else {
                self.dirs
                    .iter()
                    .map(String::as_str)
                    .chain(SYSTEM_DIRS)
                    .map(|dir| format!("{}/{name}", dir.trim_end_matches('/')))
                    .collect()
            };
            wanted.push(Wanted::Library {
                paths,
                name: name.clone(),
            });
        }
        wanted
    }
}

/// Where a name led in a tree.
#[derive(Debug)]
struct Found {
    /// The key of the name itself, its directories resolved.
    requested: String,
    /// The symlinks followed from it, in order.
    links: Vec<String>,
    /// The regular file reached.
    file: String,
}

/// Follows the absolute `path` in `tree` to a regular file, noting each symlink on the way
/// at the last component (directories are resolved as a container would).
fn find(tree: &Tree, path: &str) -> Option<Found> {
    let mut path = path.to_owned();
    let mut requested = None;
    let mut links = Vec::new();
    for _ in 0..MAX_LINKS {
        let (dir, name) = path.rsplit_once('/')?;
        let resolved = tree.resolve("", dir)?;
        if !resolved.missing.is_empty() || name.is_empty() {
            return None;
        }
        let key = if resolved.key.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", resolved.key)
        };
        requested.get_or_insert_with(|| key.clone());
        match &tree.get(&key)?.kind {
            Kind::File { .. } => {
                return Some(Found {
                    requested: requested?,
                    links,
                    file: key,
                })
            }
            Kind::Symlink(target) => {
                path = if target.starts_with('/') {
                    target.clone()
                } else {
                    format!("/{}/{target}", resolved.key)
                };
                links.push(key);
            }
            _ => return None,
        }
    }
    None
}

/// Copies what `found` went through in `from` into `into`: the symlinks and the file (as a
/// file of its own, linked to nothing else in `into`).
fn take(into: &mut Tree, from: &Tree, found: &Found) {
    for key in found.links.iter().chain([&found.file]) {
        if into.contains(key) {
            continue;
        }
        if let Some(node) = from.get(key) {
            let mut node = node.clone();
            if let Kind::File { inode, .. } = &mut node.kind {
                *inode = 0;
            }
            into.put(key, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host program and the libraries it loads: real ELF files to resolve.
    fn host_file(path: &str) -> Node {
        let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("read {path}: {err}"));
        Node::file(bytes, 0o755)
    }

    fn provider(name: &str, files: &[(&str, Node)]) -> Provider {
        let mut tree = Tree::new();
        for (key, node) in files {
            tree.put(key, node.clone());
        }
        Provider {
            name: name.to_owned(),
            files: tree,
        }
    }

    fn providers(list: Vec<Provider>) -> impl FnMut() -> Result<Option<Provider>> {
        let mut list = list.into_iter();
        move || Ok(list.next())
    }

    #[test]
    fn a_program_gets_its_loader_and_libraries_with_their_symlinks() {
        let mut own = Tree::new();
        own.put("usr/bin/true", host_file("/usr/bin/true"));
        own.put("usr/share/doc/x/README", Node::file(&b"text"[..], 0o644));
        let libc = host_file("/lib/x86_64-linux-gnu/libc.so.6");
        let loader = host_file("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
        let list = vec![
            provider(
                "debconf",
                &[("usr/share/debconf/x", Node::file(&b"x"[..], 0o644))],
            ),
            provider(
                "libc6",
                &[
                    ("lib/x86_64-linux-gnu/libc.so.6", libc),
                    ("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", loader),
                    (
                        "lib64/ld-linux-x86-64.so.2",
                        Node::symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                    ),
                    ("usr/share/i18n/x", Node::file(&b"x"[..], 0o644)),
                ],
            ),
            provider("never-asked", &[]),
        ];
        let mut asked = 0;
        let mut next = providers(list);
        let libraries = resolve("coreutils", &own, || {
            asked += 1;
            next()
        })
        .expect("resolved");
        assert_eq!(libraries.packages, ["libc6"]);
        let keys: Vec<&str> = libraries
            .files
            .iter()
            .filter(|(_, node)| !node.is_dir())
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            keys,
            [
                "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                "lib/x86_64-linux-gnu/libc.so.6",
                "lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert_eq!(asked, 2, "the third provider was not needed");
    }

    #[test]
    fn a_merged_usr_library_is_named_where_the_program_looks() {
        let mut own = Tree::new();
        own.put("bin/true", host_file("/usr/bin/true"));
        let list = vec![provider(
            "libc6",
            &[
                (
                    "usr/lib/x86_64-linux-gnu/libc.so.6",
                    host_file("/lib/x86_64-linux-gnu/libc.so.6"),
                ),
                (
                    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                    host_file("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                ),
                (
                    "usr/lib64/ld-linux-x86-64.so.2",
                    Node::symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
                ),
            ],
        )];
        let libraries = resolve("coreutils", &own, providers(list)).expect("resolved");
        assert_eq!(
            libraries.files.get("lib64/ld-linux-x86-64.so.2"),
            Some(&Node::symlink("/usr/lib64/ld-linux-x86-64.so.2"))
        );
        assert!(libraries
            .files
            .contains("usr/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(libraries.files.contains("usr/lib64/ld-linux-x86-64.so.2"));
        assert!(libraries
            .files
            .contains("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
    }

    #[test]
    fn a_library_no_package_holds_is_an_error_naming_the_program_and_the_library() {
        let mut own = Tree::new();
        own.put("sbin/prog", host_file("/usr/bin/true"));
        let list = vec![provider(
            "libc6",
            &[(
                "lib64/ld-linux-x86-64.so.2",
                host_file("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            )],
        )];
        let err = resolve("prog-pkg", &own, providers(list)).expect_err("libc.so.6 is missing");
        let text = format!("{err:#}");
        assert!(text.contains("/sbin/prog (of prog-pkg)"), "{text}");
        assert!(text.contains("the library libc.so.6"), "{text}");
    }

    #[test]
    fn a_static_program_needs_nothing() {
        let mut own = Tree::new();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists());
        let Some(busybox) = busybox else {
            panic!("busybox-static is installed by tools/dev setup");
        };
        own.put("bin/busybox", host_file(busybox));
        let libraries = resolve("busybox-static", &own, || {
            panic!("no provider is asked for")
        })
        .expect("resolved");
        assert!(libraries.files.is_empty() && libraries.packages.is_empty());
    }
}
