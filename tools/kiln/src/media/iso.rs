//! El Torito ISOs written by Debian's xorriso: iso-efi, whose boot image is the EFI system
//! partition of raw-efi, and iso-bios, booted by isolinux from the kernel and initrd on the
//! ISO. Both are hybrid: iso-bios carries isolinux's MBR and iso-efi a GPT whose EFI system
//! partition is its boot image, so either boots from a disk or USB stick as well as from a CD. The tree is staged
//! with every time stamp at the epoch, Rock Ridge owners and modes are normalised (`-r`), and
//! SOURCE_DATE_EPOCH fixes the volume's dates, so the same image gives the same ISO; the
//! GPT's disk GUID is given.
//! Runs in: `kiln build` on the build host. Writes the ISO it is given and its tree under the
//! work directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};
use uuid::Uuid;

use super::host::{self, Host};
use super::{syslinux_cfg, Boot};
use crate::pkg::tool;

/// The ISO 9660 volume identifier.
const VOLUME: &str = "KILN";

/// The hosts iso-efi needs besides the EFI system partition's.
pub const EFI_NEEDS: &[Host] = &[host::XORRISO];
/// The hosts iso-bios needs.
pub const BIOS_NEEDS: &[Host] = &[
    host::XORRISO,
    host::ISOLINUX,
    host::LDLINUX,
    host::ISOHYBRID_MBR,
];

/// A file of the ISO's tree: its path in the ISO and the host file it is.
type Staged<'a> = (&'a str, &'a Path);

/// Makes `tree` hold copies of `files` (never links: a time stamp set here must not change the
/// host's file), every time stamp at the epoch.
fn stage(tree: &Path, files: &[Staged<'_>]) -> Result<()> {
    let epoch = fs::FileTimes::new()
        .set_accessed(SystemTime::UNIX_EPOCH)
        .set_modified(SystemTime::UNIX_EPOCH);
    // The tree, each directory in it and each file: every one gets the epoch's times.
    let mut stamped: Vec<PathBuf> = vec![tree.to_owned()];
    for (name, from) in files {
        let to = tree.join(name);
        let parent = to.parent().unwrap_or(tree).to_owned();
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        fs::copy(from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        let mut dir = parent;
        while dir.starts_with(tree) && !stamped.contains(&dir) {
            stamped.push(dir.clone());
            dir = dir.parent().unwrap_or(tree).to_owned();
        }
        stamped.push(to);
    }
    for path in &stamped {
        fs::File::open(path)
            .and_then(|file| file.set_times(epoch))
            .with_context(|| format!("cannot set the times of {}", path.display()))?;
    }
    Ok(())
}

/// xorriso in mkisofs mode with what every Kiln ISO has: reproducible dates, normalised Rock
/// Ridge, the volume name.
fn mkisofs(out: &Path) -> Result<Command> {
    let mut command = host::XORRISO.command()?;
    command
        .env("SOURCE_DATE_EPOCH", "0")
        .args(["-as", "mkisofs", "-quiet", "-r", "-V", VOLUME, "-o"])
        .arg(out);
    Ok(command)
}

/// Writes `out`: the iso-efi ISO, the EFI system partition at `esp` its El Torito boot image.
/// `work` takes the ISO's tree.
pub fn efi(esp: &Path, disk_guid: Uuid, work: &Path, out: &Path) -> Result<()> {
    let tree = work.join("iso-efi");
    stage(&tree, &[("efiboot.img", esp)])?;
    let guid = disk_guid.simple().to_string();
    tool::run(
        mkisofs(out)?
            .args(["-e", "efiboot.img", "-no-emul-boot"])
            // The boot image is also the GPT's EFI system partition, behind a protective MBR.
            .args([
                "--efi-boot-part",
                "--efi-boot-image",
                "--protective-msdos-label",
            ])
            .args(["--gpt_disk_guid", &guid])
            .arg(&tree),
        "xorriso (the UEFI ISO)",
    )?;
    fs::remove_dir_all(&tree).with_context(|| format!("cannot remove {}", tree.display()))
}

/// Writes `out`: the iso-bios ISO, isolinux booting `boot`'s kernel and initrd from it.
/// `work` takes the ISO's tree.
pub fn bios(boot: &Boot<'_>, work: &Path, out: &Path) -> Result<()> {
    for host in BIOS_NEEDS {
        host.require()?;
    }
    let tree = work.join("iso-bios");
    let cfg = work.join("isolinux.cfg");
    fs::write(&cfg, syslinux_cfg(boot))
        .with_context(|| format!("cannot write {}", cfg.display()))?;
    let mut files = vec![
        ("isolinux/isolinux.bin", Path::new(host::ISOLINUX.path)),
        ("isolinux/ldlinux.c32", Path::new(host::LDLINUX.path)),
        ("isolinux/isolinux.cfg", &cfg),
    ];
    files.extend(boot.files());
    stage(&tree, &files)?;
    tool::run(
        mkisofs(out)?
            .args(["-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat"])
            .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
            .args(["-isohybrid-mbr", host::ISOHYBRID_MBR.path])
            .arg(&tree),
        "xorriso (the BIOS ISO)",
    )?;
    fs::remove_dir_all(&tree).with_context(|| format!("cannot remove {}", tree.display()))?;
    fs::remove_file(&cfg).with_context(|| format!("cannot remove {}", cfg.display()))
}
