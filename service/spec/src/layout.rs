//! Where things are on an image: `/containers/{onboot,onshutdown}/NNN-name`,
//! `/containers/services/name`, `/containers/volumes/name`, and the files inside a bundle.
//! Runs in: the builder (to write the layout) and the supervisor (to find bundles). Only reads
//! directories; the root is a parameter so that tests use a temporary directory.
//! Mirrors LinuxKit src/moby/build.go `outputImage` and image.go `ImageBundle`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where `kiln build` puts the bundles on an image.
pub const CONTAINERS_DIR: &str = "/containers";

/// A bundle's root filesystem, relative to the bundle: config.json's `root.path`.
pub const ROOTFS: &str = "rootfs";

/// A group of bundles, run in a fixed way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// One-shot containers run in name order at boot, each to completion.
    Onboot,
    /// Long-running containers, supervised.
    Services,
    /// One-shot containers run in name order at shutdown.
    Onshutdown,
}

impl Section {
    /// Every section, in the order a system runs them.
    pub const ALL: [Section; 3] = [Section::Onboot, Section::Services, Section::Onshutdown];

    /// The directory name under `/containers`, also the manifest key.
    pub fn dir_name(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Services => "services",
            Section::Onshutdown => "onshutdown",
        }
    }

    /// Whether bundle directories carry an `NNN-` index prefix.
    pub fn is_sequenced(self) -> bool {
        !matches!(self, Section::Services)
    }

    /// The bundle directory name for the entry at `index` of this section in the manifest.
    pub fn bundle_dir_name(self, index: usize, name: &str) -> String {
        if self.is_sequenced() {
            format!("{index:03}-{name}")
        } else {
            name.to_owned()
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// A `/containers` tree, rooted anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new(CONTAINERS_DIR)
    }
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn section_dir(&self, section: Section) -> PathBuf {
        self.root.join(section.dir_name())
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The directories of volume `name`: `lower` (image), `tmp` (tmpfs for upper/work), `merged`.
    pub fn volume(&self, name: &str) -> Volume {
        Volume {
            dir: self.volumes_dir().join(name),
        }
    }

    /// The bundle of the entry at `index` of `section` in the manifest.
    pub fn bundle(&self, section: Section, index: usize, name: &str) -> Bundle {
        Bundle::new(
            section,
            self.section_dir(section)
                .join(section.bundle_dir_name(index, name)),
        )
    }

    /// The bundles of a section, sorted by directory name (the run order); none if the
    /// directory does not exist.
    pub fn bundles(&self, section: Section) -> io::Result<Vec<Bundle>> {
        bundles_in(section, &self.section_dir(section))
    }
}

/// The bundles in `dir`, a directory of `section`'s bundles, sorted by directory name (the run
/// order); none if the directory does not exist.
pub fn bundles_in(section: Section, dir: &Path) -> io::Result<Vec<Bundle>> {
    let entries = match dir.read_dir() {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut bundles = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            bundles.push(Bundle::new(section, entry.path()));
        }
    }
    bundles.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(bundles)
}

/// The directories of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub dir: PathBuf,
}

impl Volume {
    pub fn lower(&self) -> PathBuf {
        self.dir.join("lower")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }
    /// The overlay's upper directory, on the tmpfs at `tmp`.
    pub fn upper(&self) -> PathBuf {
        self.tmp().join(UPPER)
    }
    /// The overlay's work directory, on the tmpfs at `tmp`.
    pub fn work(&self) -> PathBuf {
        self.tmp().join(WORK)
    }
}

/// The overlay directories a writable bundle or volume gets on its `tmp` tmpfs.
const UPPER: &str = "upper";
const WORK: &str = "work";

/// The longest container id: it names the runtime's state directory and the container's
/// cgroup (one path component each), and with a service's name a notify socket's directory,
/// whose whole path must stay under 108 bytes.
pub const MAX_ID_LEN: usize = 128;

/// The longest name of a manifest entry: an onboot or onshutdown entry's id adds an `NNN-`
/// prefix to it, its logs add `.out.log.N`, and a service's notify socket is
/// `/run/kiln/notify/NAME/notify.sock`.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `id` can name a container (and so a bundle directory): letters, digits, `.`, `_`,
/// `-` and `+`, not empty, at most [`MAX_ID_LEN`] long and not starting with `.`, so that it
/// cannot escape its directory.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// One bundle directory: `config.json`, `runtime.json`, and `rootfs/` (read-only image) or
/// `lower/` + `tmp/` + `rootfs/` (writable: an overlay is mounted on rootfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub section: Section,
    pub dir: PathBuf,
}

impl Bundle {
    pub fn new(section: Section, dir: impl Into<PathBuf>) -> Self {
        Self {
            section,
            dir: dir.into(),
        }
    }

    /// The container id: the directory name (`001-dhcpcd` for onboot, `sshd` for a service).
    pub fn id(&self) -> String {
        self.dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The entry's name in the manifest: the id without an `NNN-` index prefix.
    pub fn name(&self) -> String {
        let id = self.id();
        if self.section.is_sequenced() {
            if let Some((index, rest)) = id.split_once('-') {
                if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) {
                    return rest.to_owned();
                }
            }
        }
        id
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(crate::config::FILE_NAME)
    }
    pub fn runtime_path(&self) -> PathBuf {
        self.dir.join(crate::runtime::FILE_NAME)
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS)
    }
    pub fn lower(&self) -> PathBuf {
        self.dir.join("lower")
    }
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    /// The overlay's upper directory, on the tmpfs at `tmp`.
    pub fn upper(&self) -> PathBuf {
        self.tmp().join(UPPER)
    }
    /// The overlay's work directory, on the tmpfs at `tmp`.
    pub fn work(&self) -> PathBuf {
        self.tmp().join(WORK)
    }

    /// A writable bundle has its image in `lower/` and gets an overlay on `rootfs/`.
    pub fn is_writable(&self) -> bool {
        self.lower().is_dir()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn bundles_sorted_by_name_and_missing_section_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        for name in ["010-late", "001-early", "002-middle"] {
            fs::create_dir_all(layout.section_dir(Section::Onboot).join(name)).unwrap();
        }
        fs::write(layout.section_dir(Section::Onboot).join("stray-file"), "").unwrap();
        let names: Vec<_> = layout
            .bundles(Section::Onboot)
            .unwrap()
            .iter()
            .map(Bundle::id)
            .collect();
        assert_eq!(names, ["001-early", "002-middle", "010-late"]);
        assert!(layout.bundles(Section::Services).unwrap().is_empty());
    }

    #[test]
    fn a_manifest_entry_has_its_bundle_where_the_supervisor_finds_it() {
        let layout = Layout::default();
        let onboot = layout.bundle(Section::Onboot, 7, "dhcpcd");
        assert_eq!(onboot.dir, Path::new("/containers/onboot/007-dhcpcd"));
        assert_eq!(
            (onboot.id(), onboot.name()),
            ("007-dhcpcd".into(), "dhcpcd".into())
        );
        let service = layout.bundle(Section::Services, 3, "sshd");
        assert_eq!(service.dir, Path::new("/containers/services/sshd"));
        assert_eq!(
            service.config_path(),
            Path::new("/containers/services/sshd/config.json")
        );
        assert_eq!(
            service.upper(),
            Path::new("/containers/services/sshd/tmp/upper")
        );
        assert_eq!(
            layout.volume("data").work(),
            Path::new("/containers/volumes/data/tmp/work")
        );
    }

    #[test]
    fn bundle_name_strips_index_only_in_sequenced_sections() {
        assert_eq!(
            Bundle::new(Section::Onboot, "/c/onboot/003-dhcpcd").name(),
            "dhcpcd"
        );
        assert_eq!(
            Bundle::new(Section::Onshutdown, "/c/onshutdown/000-a-b").name(),
            "a-b"
        );
        assert_eq!(
            Bundle::new(Section::Services, "/c/services/001-x").name(),
            "001-x"
        );
        assert_eq!(
            Bundle::new(Section::Onboot, "/c/onboot/sysctl").name(),
            "sysctl"
        );
    }

    #[test]
    fn bundle_dir_name_pads_index_for_sequenced_sections() {
        assert_eq!(Section::Onboot.bundle_dir_name(7, "sysctl"), "007-sysctl");
        assert_eq!(Section::Onshutdown.bundle_dir_name(12, "x"), "012-x");
        assert_eq!(Section::Services.bundle_dir_name(3, "sshd"), "sshd");
    }

    #[test]
    fn writable_bundle_is_detected_by_lower_dir() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::new(Section::Services, dir.path().join("svc"));
        fs::create_dir_all(bundle.rootfs()).unwrap();
        assert!(!bundle.is_writable());
        fs::create_dir_all(bundle.lower()).unwrap();
        assert!(bundle.is_writable());
    }
}
