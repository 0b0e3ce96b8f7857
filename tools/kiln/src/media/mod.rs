//! Bootable media made of an image's kernel, initrd and command line, for machines that boot
//! disks and CDs rather than qemu's `-kernel`: a GPT disk whose EFI system partition holds
//! systemd-boot (raw-efi, and as qcow2, qcow2-efi), an MBR disk that syslinux boots from a
//! FAT partition (raw-bios), and El Torito ISOs for UEFI (the same EFI system partition as
//! the boot image) and for BIOS (isolinux), all hybrid so a USB stick boots them too. The
//! root stays the initrd on every medium: the kernel reads nothing from the disk or CD.
//! Every GUID, serial and signature is derived from the content, and every time stamp is
//! fixed, so the same image gives the same bytes. FAT and the partition tables are written
//! here (the `fatfs` and `gpt` crates); Debian's boot loaders and xorriso, syslinux's
//! installer and qemu-img do the rest ([`host`] names their packages).
//! Runs in: `kiln build` on the build host. Writes only the files it is given, and scratch
//! files in the work directory it is given.

pub mod fat;
pub mod host;
pub mod iso;
pub mod table;

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::pkg::tool;
use fat::{Entry, Source};
use host::Host;

/// Creates (or empties) the image file at `path`, readable and writable, `len` bytes long:
/// sparse until written.
fn create_sized(path: &Path, len: u64) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.set_len(len)
        .with_context(|| format!("cannot size {}", path.display()))?;
    Ok(file)
}

/// What a medium boots: files on the build host, and the kernel's command line.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    /// A bzImage: it has the EFI stub that systemd-boot starts.
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub cmdline: &'a str,
}

impl<'a> Boot<'a> {
    /// The kernel and the initrd as files of a medium's root, where the boot loaders'
    /// settings name them (`/kernel`, `/initrd.img`).
    pub fn files(&self) -> [(&'static str, &'a Path); 2] {
        [("kernel", self.kernel), ("initrd.img", self.initrd)]
    }

    /// [`Boot::files`] as FAT entries.
    fn entries(&self) -> impl Iterator<Item = Entry<'a>> {
        self.files().into_iter().map(|(path, file)| Entry {
            path,
            source: Source::File(file),
        })
    }

    /// The command line as one line, for a boot loader's configuration.
    fn line(&self) -> String {
        self.cmdline
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A digest of everything a medium holds, from which its GUIDs, serials and signatures are
/// derived: media of the same content get the same ones, others different ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity([u8; 32]);

impl Identity {
    /// The identity of `boot`'s kernel, initrd and command line.
    pub fn of(boot: &Boot<'_>) -> Result<Self> {
        let mut digest = Sha256::new();
        digest.update(b"kiln media 1\0");
        for path in [boot.kernel, boot.initrd] {
            let mut file =
                fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let len = io::copy(&mut file, &mut digest)
                .with_context(|| format!("cannot read {}", path.display()))?;
            digest.update(len.to_le_bytes());
        }
        digest.update(boot.cmdline.as_bytes());
        Ok(Self(digest.finalize().into()))
    }

    /// 32 bytes for `what` (a GUID's or serial's purpose).
    fn derive(&self, what: &str) -> [u8; 32] {
        let mut digest = Sha256::new();
        digest.update(self.0);
        digest.update(what.as_bytes());
        digest.finalize().into()
    }

    /// A GUID for `what`, in the form of a random (version 4) one.
    pub fn uuid(&self, what: &str) -> Uuid {
        let bytes = self.derive(what);
        let mut first = [0u8; 16];
        first.copy_from_slice(&bytes[..16]);
        uuid::Builder::from_random_bytes(first).into_uuid()
    }

    /// Four bytes for `what` (a FAT serial, an MBR disk signature).
    pub fn four(&self, what: &str) -> [u8; 4] {
        let bytes = self.derive(what);
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }
}

/// The FAT volume label of every medium's boot partition.
const LABEL: &str = "KILN";

/// The hosts the EFI system partition needs.
pub const ESP_NEEDS: &[Host] = &[host::SYSTEMD_BOOT];
/// The hosts a BIOS disk needs.
pub const BIOS_NEEDS: &[Host] = &[host::SYSLINUX_MBR, host::SYSLINUX, host::MTOOLS];

/// systemd-boot's settings: the one entry, booted at once (a key held down still shows the
/// menu).
const LOADER_CONF: &str = "default kiln.conf\ntimeout 0\n";

/// Writes `out`: the FAT image of an EFI system partition that boots `boot` under UEFI with
/// systemd-boot as the removable-media loader (EFI/BOOT/BOOTX64.EFI), the kernel, initrd and
/// command line as its one entry.
pub fn esp(boot: &Boot<'_>, id: &Identity, out: &Path) -> Result<()> {
    host::SYSTEMD_BOOT.require()?;
    let entry = format!(
        "title Kiln\nlinux /kernel\ninitrd /initrd.img\noptions {}\n",
        boot.line()
    );
    let mut entries = vec![
        Entry {
            path: "EFI/BOOT/BOOTX64.EFI",
            source: Source::File(Path::new(host::SYSTEMD_BOOT.path)),
        },
        Entry {
            path: "loader/loader.conf",
            source: Source::Bytes(LOADER_CONF.as_bytes()),
        },
        Entry {
            path: "loader/entries/kiln.conf",
            source: Source::Bytes(entry.as_bytes()),
        },
    ];
    entries.extend(boot.entries());
    fat::write(
        &entries,
        u32::from_le_bytes(id.four("esp serial")),
        LABEL,
        out,
    )?;
    Ok(())
}

/// Writes `out`: the raw-efi disk, a GPT whose one partition is the EFI system partition at
/// `esp`.
pub fn raw_efi(esp: &Path, id: &Identity, out: &Path) -> Result<()> {
    table::gpt_disk(
        esp,
        "EFI system partition",
        id.uuid("disk guid"),
        id.uuid("esp guid"),
        out,
    )
}

/// syslinux's and isolinux's configuration: `boot` at once, no prompt.
pub fn syslinux_cfg(boot: &Boot<'_>) -> String {
    format!(
        "DEFAULT kiln\nPROMPT 0\nTIMEOUT 0\nLABEL kiln\n  KERNEL /kernel\n  INITRD /initrd.img\n  \
         APPEND {}\n",
        boot.line()
    )
}

/// Writes `out`: the raw-bios disk, an MBR with syslinux's boot code whose one active FAT
/// partition holds syslinux, the kernel and the initrd. `work` takes the partition image.
pub fn raw_bios(boot: &Boot<'_>, id: &Identity, work: &Path, out: &Path) -> Result<()> {
    for host in BIOS_NEEDS {
        host.require()?;
    }
    let cfg = syslinux_cfg(boot);
    let mut entries = vec![Entry {
        path: "syslinux.cfg",
        source: Source::Bytes(cfg.as_bytes()),
    }];
    entries.extend(boot.entries());
    let partition = work.join("bios-partition.img");
    let fat_type = fat::write(
        &entries,
        u32::from_le_bytes(id.four("bios serial")),
        LABEL,
        &partition,
    )?;
    tool::run(
        host::SYSLINUX.command()?.arg("--install").arg(&partition),
        "syslinux --install (the BIOS boot loader)",
    )?;
    fat::clear_times(&partition)?;
    let code = fs::read(host::SYSLINUX_MBR.path)
        .with_context(|| format!("cannot read {}", host::SYSLINUX_MBR.path))?;
    table::mbr_disk(&partition, fat_type, &code, id.four("mbr signature"), out)?;
    fs::remove_file(&partition).with_context(|| format!("cannot remove {}", partition.display()))
}

/// Writes `out`: the raw disk at `raw` as qcow2.
pub fn qcow2(raw: &Path, out: &Path) -> Result<()> {
    tool::run(
        host::QEMU_IMG
            .command()?
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(out),
        "qemu-img convert (raw to qcow2)",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_with_the_content_and_names_with_their_purpose() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kernel = dir.path().join("kernel");
        let initrd = dir.path().join("initrd");
        fs::write(&kernel, "kernel").expect("kernel");
        fs::write(&initrd, "initrd").expect("initrd");
        let boot = Boot {
            kernel: &kernel,
            initrd: &initrd,
            cmdline: "console=ttyS0",
        };
        let id = Identity::of(&boot).expect("identity");
        assert_eq!(id, Identity::of(&boot).expect("identity"));
        assert_ne!(id.uuid("disk guid"), id.uuid("esp guid"));
        assert_eq!(id.uuid("disk guid").get_version_num(), 4);
        let other = Identity::of(&Boot {
            cmdline: "console=ttyS0 quiet",
            ..boot
        })
        .expect("identity");
        assert_ne!(id.uuid("disk guid"), other.uuid("disk guid"));
        fs::write(&initrd, "initrd2").expect("initrd");
        assert_ne!(id, Identity::of(&boot).expect("identity"));
    }

    #[test]
    fn loader_settings_carry_the_command_line_on_one_line() {
        let boot = Boot {
            kernel: Path::new("k"),
            initrd: Path::new("i"),
            cmdline: "console=ttyS0\n  quiet\n",
        };
        let cfg = syslinux_cfg(&boot);
        assert!(cfg.contains("\n  APPEND console=ttyS0 quiet\n"), "{cfg}");
        assert!(cfg.contains("KERNEL /kernel") && cfg.contains("INITRD /initrd.img"));
    }
}
