//! `kiln validate --print`: the merged manifest with the defaults the build applies filled in.
//! Container settings that an image's `org.mobyproject.config` label may still provide are
//! left as written, since the label is only known once the image is read.
//! Runs in: `kiln` on the build host. Pure.

use crate::manifest::{File, Kernel, Manifest};

/// The kernel's file name in its image unless `kernel.binary` says otherwise.
pub const KERNEL_BINARY: &str = "kernel";
/// The modules tarball in the kernel image unless `kernel.tar` says otherwise.
pub const KERNEL_TAR: &str = "kernel.tar";
/// The kernel as an uncompressed ELF in the kernel image, when it has one; written out as
/// `NAME-vmlinux` for a quick boot.
pub const KERNEL_ELF: &str = "vmlinux";
/// A volume's format unless it says otherwise.
pub const VOLUME_FORMAT: &str = "filesystem";
/// The mode of a file from `files` that gives none.
pub const FILE_MODE: &str = "0600";
/// The mode of a directory from `files` that gives none.
pub const DIRECTORY_MODE: &str = "0700";

/// Fills in every default that does not depend on an image's contents.
pub fn fill(manifest: &mut Manifest) {
    if let Some(kernel) = &mut manifest.kernel {
        fill_kernel(kernel);
    }
    for volume in &mut manifest.volumes {
        volume
            .format
            .get_or_insert_with(|| VOLUME_FORMAT.to_owned());
    }
    for file in &mut manifest.files {
        if file.mode.is_empty() && file.symlink.is_empty() {
            file.mode = file_mode(file).to_owned();
        }
        file.uid
            .get_or_insert(crate::manifest::entry::Id::Number(0));
        file.gid
            .get_or_insert(crate::manifest::entry::Id::Number(0));
    }
}

/// The mode a `files` entry gets when it gives none.
pub fn file_mode(file: &File) -> &'static str {
    if file.directory {
        DIRECTORY_MODE
    } else {
        FILE_MODE
    }
}

fn fill_kernel(kernel: &mut Kernel) {
    if kernel.binary.is_empty() {
        kernel.binary = KERNEL_BINARY.to_owned();
    }
    kernel.tar.get_or_insert_with(|| KERNEL_TAR.to_owned());
}
