//! The configuration directory (/run/config) and what providers write into it, each file with
//! exactly the mode LinuxKit gives it: `provider` (who answered), `hostname` and the
//! provider's other facts (0644), `ssh/authorized_keys` (0600 in a 0755 directory) and
//! `userdata` (0644), with what [`crate::userdata`] unfolds from it.
//! Runs in: the metadata program.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where LinuxKit's metadata writes, and where images read.
pub const CONFIG_DIR: &str = "/run/config";

/// The configuration directory.
#[derive(Debug, Clone)]
pub struct Config {
    root: PathBuf,
}

impl Config {
    /// The directory at `root`, made (0755) if missing.
    pub fn at(root: &Path) -> Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes `name` (a path below the directory) with `data` and exactly `mode`, whatever the
    /// umask, replacing what was there.
    pub fn write(&self, name: &str, data: &[u8], mode: u32) -> Result<()> {
        write_file(&self.root.join(name), data, mode)
    }

    /// Writes the provider's ssh keys, one per line, to ssh/authorized_keys (0600).
    pub fn authorized_keys(&self, keys: &[String]) -> Result<()> {
        make_dir(&self.root.join("ssh"), 0o755)?;
        let mut text = String::new();
        for key in keys {
            text.push_str(key.trim_end());
            text.push('\n');
        }
        self.write("ssh/authorized_keys", text.as_bytes(), 0o600)
    }

    /// The hostname a provider or the user data left in `hostname`, without the line's end.
    pub fn hostname(&self) -> Option<String> {
        let text = fs::read_to_string(self.root.join("hostname")).ok()?;
        let name = text.trim();
        (!name.is_empty()).then(|| name.to_owned())
    }
}

/// Writes `path` with `data`, its mode exactly `mode`.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Makes the directory `path` (and its missing parents), its mode exactly `mode`.
pub fn make_dir(path: &Path, mode: u32) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0)
    }

    #[test]
    fn keys_and_files_get_linuxkits_modes_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = Config::at(&dir.path().join("run/config")).unwrap_or_else(|e| panic!("{e}"));
        config
            .authorized_keys(&[
                "ssh-ed25519 AAAA one\n".to_owned(),
                "ssh-rsa BBBB two".to_owned(),
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let keys = config.root().join("ssh/authorized_keys");
        assert_eq!(
            fs::read_to_string(&keys).unwrap_or_default(),
            "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n"
        );
        assert_eq!(mode(&keys), 0o600);
        assert_eq!(mode(&config.root().join("ssh")), 0o755);
        config
            .write("hostname", b"web-1\n", 0o644)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.hostname().as_deref(), Some("web-1"));
        config
            .write("hostname", b"web-2", 0o644)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.hostname().as_deref(), Some("web-2"), "replaced");
        assert_eq!(mode(&config.root().join("hostname")), 0o644);
    }
}
