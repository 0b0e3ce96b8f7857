//! `kiln run --data` and `--data-file`: the machine's user data on a small ISO 9660 volume
//! labelled `cidata` (cloud-init's NoCloud volume) holding `user-data` and a `meta-data` with
//! the instance's name, written by Debian's xorriso and attached read-only as a virtio disk
//! after the `--disk`s. pkg/metadata (and cloud-init) find it by its label, on microvm too,
//! which has no CD drive.
//! Runs in: `kiln run` on the host, before qemu starts; the ISO is a temporary file removed
//! when the run ends.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use tempfile::TempPath;

use crate::media::host;
use crate::pkg::tool;

/// The volume label pkg/metadata and cloud-init look for.
pub const LABEL: &str = "cidata";

/// Writes `data` as the user data of a cidata volume for the instance `name`.
pub fn iso(data: &[u8], name: &str) -> Result<TempPath> {
    let tree = tempfile::tempdir().context("cannot make a directory for the user data")?;
    let write = |file: &str, bytes: &[u8]| {
        let path = tree.path().join(file);
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write("user-data", data)?;
    write(
        "meta-data",
        format!("instance-id: {name}\nlocal-hostname: {name}\n").as_bytes(),
    )?;
    let out = tempfile::Builder::new()
        .prefix("kiln-data-")
        .suffix(".iso")
        .tempfile()
        .context("cannot create the user data's ISO")?
        .into_temp_path();
    let mut command = host::XORRISO.command()?;
    command
        .args(["-as", "mkisofs", "-quiet", "-r", "-J", "-V", LABEL, "-o"])
        .arg(&out)
        .arg(tree.path());
    tool::run(&mut command, "xorriso (the user data's ISO)")?;
    Ok(out)
}

/// The user data `--data-file` names.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("--data-file {}: cannot read it", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt as _;
    use std::process::Command;

    use super::*;

    /// A file of the ISO, as xorriso reads it back.
    fn extract(iso: &Path, name: &str) -> String {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join(name);
        let status = Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", &format!("/{name}")])
            .arg(&out)
            .output()
            .expect("run xorriso");
        assert!(status.status.success(), "{status:?}");
        fs::read_to_string(&out).expect("extracted")
    }

    #[test]
    fn the_user_data_is_on_a_volume_labelled_cidata() {
        let data = b"{\"hostname\": {\"content\": \"web\"}}";
        let iso = iso(data, "web").expect("the ISO");
        // The primary volume descriptor (sector 16): its identifier at bytes 40..72.
        let mut sector = [0u8; 2048];
        fs::File::open(&iso)
            .and_then(|file| file.read_exact_at(&mut sector, 16 * 2048))
            .expect("read the descriptor");
        assert_eq!(&sector[1..6], b"CD001");
        assert_eq!(String::from_utf8_lossy(&sector[40..72]).trim_end(), LABEL);
        assert_eq!(extract(&iso, "user-data").as_bytes(), data);
        assert_eq!(
            extract(&iso, "meta-data"),
            "instance-id: web\nlocal-hostname: web\n"
        );
        let path = iso.to_path_buf();
        drop(iso);
        assert!(!path.exists(), "removed when the run ends");
    }
}
