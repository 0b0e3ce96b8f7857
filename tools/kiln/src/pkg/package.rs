//! A package: a folder of this workspace (`pkg/NAME`) whose `build.yml` says how to make one
//! OCI image without Docker: its name, its `org.mobyproject.config` label (written as YAML, with
//! the fields of a manifest entry), its image config, and its contents in order: files of the
//! folder, binaries built from the workspace, Debian packages (all of one, or the paths kept),
//! busybox applet links, a Debian kernel as LinuxKit's kernel images hold it, directories and
//! symlinks. Loading checks every field and reports each problem with its line.
//! Runs in: `kiln pkg`, and `kiln build` for `@pkg:` images, on the build host. Reads the
//! folder only.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::decode::Decoder;
use crate::manifest::diagnostic::{Document, Report};
use crate::manifest::document::{self, FieldPath, Node, Value};
use crate::manifest::entry::ImageConfig;

/// The file in a package folder that defines it.
pub const BUILD_FILE: &str = "build.yml";
/// The organisation of a package's reference unless `org` says otherwise.
pub const DEFAULT_ORG: &str = "kiln";

/// A package's definition, as loaded from its folder.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package folder.
    pub dir: PathBuf,
    /// The bytes of build.yml, which the tag covers.
    pub definition: Vec<u8>,
    pub spec: Spec,
    /// The label as JSON (keys as written), when `config` is given.
    pub label: Option<serde_json::Value>,
}

/// The fields of build.yml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// The image name: the reference is `ORG/IMAGE:TAG`.
    pub image: String,
    pub org: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub contents: Vec<Content>,
}

/// One entry of `contents`: exactly one of the kind keys, with the options that kind takes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Content {
    /// A file or directory of the package folder (relative to it).
    pub files: Option<String>,
    /// A binary target of this workspace.
    pub binary: Option<String>,
    /// The crate holding `binary` (default: the binary's name).
    #[serde(rename = "crate")]
    pub crate_name: Option<String>,
    /// A Debian package, unpacked at `/`.
    pub deb: Option<String>,
    /// Paths of the Debian package to take (with everything below them); default all.
    pub keep: Option<Vec<String>>,
    /// A busybox binary already in the image: a symlink to it for every applet it has.
    pub applets: Option<String>,
    /// A Debian kernel package: `kernel`, `kernel.tar` (modules with modules.dep) and
    /// `vmlinux` (the uncompressed ELF) at `/`.
    pub kernel: Option<String>,
    /// A directory to create.
    pub directory: Option<String>,
    /// A symlink to create, pointing at `target`.
    pub symlink: Option<String>,
    pub target: Option<String>,
    /// Where `files` or `binary` go in the image.
    pub to: Option<String>,
    /// The mode of a `directory`, or of what `files` or `binary` put (octal text).
    pub mode: Option<String>,
}

/// What one entry of `contents` does, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Files {
        source: String,
        to: String,
        mode: Option<u32>,
    },
    Binary {
        krate: String,
        bin: String,
        to: String,
        mode: u32,
    },
    Deb {
        name: String,
        keep: Option<Vec<String>>,
    },
    Applets {
        busybox: String,
    },
    Kernel {
        name: String,
    },
    Directory {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

const KINDS: [&str; 7] = [
    "files",
    "binary",
    "deb",
    "applets",
    "kernel",
    "directory",
    "symlink",
];

impl Package {
    /// Loads `dir/build.yml`. The error lists every problem, each as `FILE:LINE: FIELD:
    /// message`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let file = dir.join(BUILD_FILE);
        let definition = std::fs::read(&file).map_err(|err| {
            format!(
                "{}: cannot read the package definition: {err}",
                file.display()
            )
        })?;
        let text = String::from_utf8_lossy(&definition).into_owned();
        let name = file.display().to_string();
        let mut report = Report::default();
        let root = match document::parse(&text) {
            Ok(root) => root,
            Err(err) => return Err(format!("{name}:{}: {}", err.line, err.message)),
        };
        report.documents.push(Document {
            name: name.clone(),
            root: root.clone(),
        });
        let mut decoder = Decoder {
            report: &mut report,
            document: 0,
        };
        let spec = decoder.fields::<Spec>(&root, &FieldPath::root(), &["config"]);
        let label = root.get("config").filter(|node| node.value != Value::Null);
        if let Some(node) = label {
            decoder.fields::<ImageConfig>(node, &FieldPath::root().key("config"), &[]);
            for key in ["name", "image"] {
                if node.get(key).is_some() {
                    report.error(
                        0,
                        &FieldPath::root().key("config").key(key),
                        "not allowed in a label",
                    );
                }
            }
        }
        let package = spec.map(|spec| Package {
            dir: dir.to_owned(),
            definition,
            label: label.map(Node::to_json),
            spec,
        });
        if let Some(package) = &package {
            package.check(&mut report);
        }
        match package {
            Some(package) if report.diagnostics.is_empty() => Ok(package),
            _ => Err(report
                .diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    /// `ORG/IMAGE`, without a tag.
    pub fn repository(&self) -> String {
        let org = self.spec.org.as_deref().unwrap_or(DEFAULT_ORG);
        format!("{org}/{}", self.spec.image)
    }

    /// The package's name for messages: its folder.
    pub fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    /// The checked contents, in order.
    pub fn steps(&self) -> Vec<Step> {
        self.spec
            .contents
            .iter()
            .filter_map(|content| step(content).ok())
            .collect()
    }

    fn check(&self, report: &mut Report) {
        let name_ok = |text: &str| {
            !text.is_empty()
                && text.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                })
        };
        if !name_ok(&self.spec.image) {
            report.error(
                0,
                &FieldPath::root().key("image"),
                format!(
                    "`{}` is not an image name (lower-case letters, digits, `-`, `_`, `.`)",
                    self.spec.image
                ),
            );
        }
        if let Some(org) = &self.spec.org {
            if !name_ok(org) {
                report.error(
                    0,
                    &FieldPath::root().key("org"),
                    format!("`{org}` is not an organisation name"),
                );
            }
        }
        if self.spec.contents.is_empty() {
            report.error(
                0,
                &FieldPath::root().key("contents"),
                "a package needs contents",
            );
        }
        for (index, content) in self.spec.contents.iter().enumerate() {
            if let Err((field, message)) = step(content) {
                let path = FieldPath::root().key("contents").index(index);
                let path = match field {
                    Some(field) => path.key(field),
                    None => path,
                };
                report.error(0, &path, message);
            }
        }
    }
}

/// What is wrong with a `contents` entry: the field at fault when there is one, and why.
type Problem = (Option<&'static str>, String);

/// The kind of a `contents` entry (it gives exactly one), checking that it sets only the
/// fields that kind uses.
fn kind_of(content: &Content) -> Result<&'static str, Problem> {
    let given: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|kind| match *kind {
            "files" => content.files.is_some(),
            "binary" => content.binary.is_some(),
            "deb" => content.deb.is_some(),
            "applets" => content.applets.is_some(),
            "kernel" => content.kernel.is_some(),
            "directory" => content.directory.is_some(),
            _ => content.symlink.is_some(),
        })
        .collect();
    let kind = match given.as_slice() {
        [kind] => *kind,
        [] => return Err((None, format!("needs one of `{}`", KINDS.join("`, `")))),
        several => {
            return Err((
                None,
                format!("has `{}`: give one kind per entry", several.join("` and `")),
            ))
        }
    };
    let allowed: &[&str] = match kind {
        "files" => &["to", "mode"],
        "binary" => &["crate", "to", "mode"],
        "deb" => &["keep"],
        "directory" => &["mode"],
        "symlink" => &["target"],
        _ => &[],
    };
    for (field, present) in [
        ("crate", content.crate_name.is_some()),
        ("keep", content.keep.is_some()),
        ("target", content.target.is_some()),
        ("to", content.to.is_some()),
        ("mode", content.mode.is_some()),
    ] {
        if present && !allowed.contains(&field) {
            return Err((Some(field), format!("not used by `{kind}`")));
        }
    }
    Ok(kind)
}

/// An absolute path without `..`, else the problem with `field`.
fn absolute(field: &'static str, path: &str) -> Result<String, Problem> {
    if path.starts_with('/') && !path.split('/').any(|part| part == "..") {
        Ok(path.to_owned())
    } else {
        Err((
            Some(field),
            format!("`{path}` must be an absolute path without `..`"),
        ))
    }
}

/// A text that is not empty, else the problem with `field`.
fn not_empty(field: &'static str, text: &str) -> Result<String, Problem> {
    if text.is_empty() {
        Err((Some(field), "must not be empty".to_owned()))
    } else {
        Ok(text.to_owned())
    }
}

/// Checks one `contents` entry; the error names the field at fault when there is one.
fn step(content: &Content) -> Result<Step, Problem> {
    let kind = kind_of(content)?;
    let mode = match &content.mode {
        Some(text) => Some(
            u32::from_str_radix(text, 8)
                .ok()
                .filter(|mode| *mode <= 0o7777)
                .ok_or((Some("mode"), format!("`{text}` is not an octal mode")))?,
        ),
        None => None,
    };
    Ok(match kind {
        "files" => {
            let source = not_empty("files", content.files.as_deref().unwrap_or_default())?;
            if source.starts_with('/') || source.split('/').any(|part| part == "..") {
                return Err((
                    Some("files"),
                    format!("`{source}` must be a path inside the package folder"),
                ));
            }
            let to = absolute("to", content.to.as_deref().unwrap_or("/"))?;
            Step::Files { source, to, mode }
        }
        "binary" => {
            let bin = not_empty("binary", content.binary.as_deref().unwrap_or_default())?;
            let krate = content.crate_name.clone().unwrap_or_else(|| bin.clone());
            let to = match &content.to {
                Some(to) => absolute("to", to)?,
                None => format!("/usr/bin/{bin}"),
            };
            Step::Binary {
                krate,
                bin,
                to,
                mode: mode.unwrap_or(0o755),
            }
        }
        "deb" => Step::Deb {
            name: debian_name("deb", content.deb.as_deref().unwrap_or_default())?,
            keep: match &content.keep {
                Some(keep) => Some(
                    keep.iter()
                        .map(|path| absolute("keep", path))
                        .collect::<Result<_, _>>()?,
                ),
                None => None,
            },
        },
        "applets" => Step::Applets {
            busybox: absolute("applets", content.applets.as_deref().unwrap_or_default())?,
        },
        "kernel" => Step::Kernel {
            name: debian_name("kernel", content.kernel.as_deref().unwrap_or_default())?,
        },
        "directory" => Step::Directory {
            path: absolute(
                "directory",
                content.directory.as_deref().unwrap_or_default(),
            )?,
            mode: mode.unwrap_or(0o755),
        },
        _ => Step::Symlink {
            path: absolute("symlink", content.symlink.as_deref().unwrap_or_default())?,
            target: match &content.target {
                Some(target) => not_empty("target", target)?,
                None => return Err((Some("target"), "a symlink needs a target".to_owned())),
            },
        },
    })
}

/// A Debian package name: lower-case letters, digits, `+`, `-`, `.`, starting with an
/// alphanumeric (Debian policy 5.6.1).
fn debian_name(field: &'static str, name: &str) -> Result<String, Problem> {
    let valid = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err((
            Some(field),
            format!("`{name}` is not a Debian package name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Package, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(BUILD_FILE), text).expect("write");
        Package::load(dir.path())
    }

    #[test]
    fn a_full_definition_loads_in_order() {
        let package = load(
            r#"image: web
config:
  capabilities: [CAP_NET_BIND_SERVICE]
  binds: ["/etc/web:/etc/web:ro"]
entrypoint: [/bin/httpd, -f]
env: [PORT=80]
contents:
  - deb: busybox-static
    keep: [/bin/busybox]
  - applets: /bin/busybox
  - files: www
    to: /var/www
  - binary: service
    crate: supervisor
  - directory: /run
    mode: "0700"
  - symlink: /bin/sh
    target: busybox
  - kernel: linux-image-cloud-amd64
"#,
        )
        .expect("valid");
        assert_eq!(package.repository(), "kiln/web");
        assert_eq!(
            package.label,
            Some(serde_json::json!({
                "capabilities": ["CAP_NET_BIND_SERVICE"],
                "binds": ["/etc/web:/etc/web:ro"]
            }))
        );
        assert_eq!(
            package.steps(),
            [
                Step::Deb {
                    name: "busybox-static".into(),
                    keep: Some(vec!["/bin/busybox".into()])
                },
                Step::Applets {
                    busybox: "/bin/busybox".into()
                },
                Step::Files {
                    source: "www".into(),
                    to: "/var/www".into(),
                    mode: None
                },
                Step::Binary {
                    krate: "supervisor".into(),
                    bin: "service".into(),
                    to: "/usr/bin/service".into(),
                    mode: 0o755
                },
                Step::Directory {
                    path: "/run".into(),
                    mode: 0o700
                },
                Step::Symlink {
                    path: "/bin/sh".into(),
                    target: "busybox".into()
                },
                Step::Kernel {
                    name: "linux-image-cloud-amd64".into()
                },
            ]
        );
    }

    #[test]
    fn every_problem_is_named_with_its_line() {
        let err = load(
            r#"image: Web
config:
  pid: 3
  name: x
contents:
  - deb: Busybox
  - files: ../outside
  - binary: init
    keep: [/x]
  - directory: relative
  - symlink: /bin/sh
  - files: a
    binary: b
  - {}
  - directory: /x
    mode: "999"
colour: blue
"#,
        )
        .expect_err("invalid");
        for expected in [
            ":1: image: `Web` is not an image name",
            ":3: config.pid: ",
            ":4: config.name: not allowed in a label",
            ":6: contents[0].deb: `Busybox` is not a Debian package name",
            ":7: contents[1].files: `../outside` must be a path inside the package folder",
            "contents[2].keep: not used by `binary`",
            "contents[3].directory: `relative` must be an absolute path",
            "contents[4].target: a symlink needs a target",
            "contents[5]: has `files` and `binary`",
            "contents[6]: needs one of `files`",
            "contents[7].mode: `999` is not an octal mode",
            "colour",
        ] {
            assert!(err.contains(expected), "`{expected}` not in:\n{err}");
        }
        let err = load("image: [").expect_err("syntax");
        assert!(err.contains("build.yml:2: "), "{err}");
        let missing = Package::load(Path::new("/nonexistent/pkg")).expect_err("missing");
        assert!(
            missing.contains("/nonexistent/pkg/build.yml: cannot read"),
            "{missing}"
        );
    }
}
