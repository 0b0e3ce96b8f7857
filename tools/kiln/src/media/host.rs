//! What making boot media takes from the build host: Debian's boot loaders (systemd-boot,
//! syslinux, isolinux) as files, and its tools (xorriso, qemu-img), each named with the Debian
//! package that provides it, so a missing one is an error saying what to install.
//! Runs in: `kiln build` on the build host; reads and runs, never writes, what it names.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

/// A file or program of the build host and the Debian package it comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// An absolute path, or a program's name looked up on PATH.
    pub path: &'static str,
    pub package: &'static str,
    /// What it is for, as an error says it.
    pub role: &'static str,
}

/// The UEFI boot manager that loads the kernel and initrd from an EFI system partition.
pub const SYSTEMD_BOOT: Host = Host {
    path: "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
    package: "systemd-boot-efi",
    role: "the UEFI boot loader",
};
/// The MBR boot code that starts the active partition's boot sector.
pub const SYSLINUX_MBR: Host = Host {
    path: "/usr/lib/syslinux/mbr/mbr.bin",
    package: "syslinux-common",
    role: "the BIOS disk's boot code",
};
/// syslinux's installer for FAT file systems in image files (it runs mtools, no mount).
pub const SYSLINUX: Host = Host {
    path: "syslinux",
    package: "syslinux",
    role: "installs the BIOS boot loader",
};
/// syslinux's mtools helpers, which the installer runs.
pub const MTOOLS: Host = Host {
    path: "mcopy",
    package: "mtools",
    role: "syslinux's installer writes its files with it",
};
/// isolinux's El Torito boot image, and the core module it loads.
pub const ISOLINUX: Host = Host {
    path: "/usr/lib/ISOLINUX/isolinux.bin",
    package: "isolinux",
    role: "the BIOS boot loader of a CD",
};
pub const LDLINUX: Host = Host {
    path: "/usr/lib/syslinux/modules/bios/ldlinux.c32",
    package: "syslinux-common",
    role: "isolinux's core module",
};
/// The MBR that lets an ISO boot from a disk or USB stick as well as from a CD.
pub const ISOHYBRID_MBR: Host = Host {
    path: "/usr/lib/ISOLINUX/isohdpfx.bin",
    package: "isolinux",
    role: "the hybrid ISO's boot code",
};
pub const XORRISO: Host = Host {
    path: "xorriso",
    package: "xorriso",
    role: "writes ISO 9660 images",
};
/// qemu's UEFI firmware, and the template of its variable store (each run boots with a copy).
pub const OVMF_CODE: Host = Host {
    path: "/usr/share/OVMF/OVMF_CODE_4M.fd",
    package: "ovmf",
    role: "the UEFI firmware kiln run boots -efi images with",
};
pub const OVMF_VARS: Host = Host {
    path: "/usr/share/OVMF/OVMF_VARS_4M.fd",
    package: "ovmf",
    role: "the UEFI firmware's variable store",
};
pub const QEMU_IMG: Host = Host {
    path: "qemu-img",
    package: "qemu-utils",
    role: "converts a raw disk to qcow2",
};

impl Host {
    /// Whether the build host has it.
    pub fn present(&self) -> bool {
        if self.path.starts_with('/') {
            return Path::new(self.path).is_file();
        }
        let Some(dirs) = std::env::var_os("PATH") else {
            return false;
        };
        std::env::split_paths(&dirs).any(|dir| dir.join(self.path).is_file())
    }

    /// What a build says when it is missing.
    pub fn missing(&self) -> String {
        format!(
            "{} ({}) is missing: install Debian's package {}",
            self.path, self.role, self.package
        )
    }

    /// An error unless the host has it.
    pub fn require(&self) -> Result<()> {
        if !self.present() {
            bail!(self.missing());
        }
        Ok(())
    }

    /// The program, ready to be given its arguments.
    pub fn command(&self) -> Result<Command> {
        self.require()?;
        Ok(Command::new(self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_or_program_is_named_with_its_package() {
        let file = Host {
            path: "/nonexistent/boot.bin",
            package: "boot-pkg",
            role: "a test loader",
        };
        let program = Host {
            path: "kiln-no-such-program",
            package: "prog-pkg",
            role: "a test tool",
        };
        for host in [file, program] {
            assert!(!host.present());
            let err = host.require().expect_err("missing").to_string();
            assert!(err.contains(host.path), "{err}");
            assert!(
                err.contains(&format!("install Debian's package {}", host.package)),
                "{err}"
            );
        }
        let sh = Host {
            path: "sh",
            package: "dash",
            role: "a shell",
        };
        assert!(sh.present());
        let root = Host {
            path: "/bin/sh",
            ..sh
        };
        assert!(root.present());
    }
}
