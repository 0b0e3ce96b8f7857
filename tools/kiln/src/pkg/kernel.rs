//! A Debian kernel package turned into what LinuxKit's kernel images hold: `kernel` (the
//! bzImage), `kernel.tar` (`lib/modules/RELEASE` with modules.dep and the other indexes
//! `depmod` writes, which Debian leaves to its postinst), and, beyond LinuxKit, `vmlinux`: the
//! uncompressed ELF kernel that qemu's microvm machine boots directly.
//! Runs in: `kiln pkg build` on the build host. Unpacks into a temporary directory and runs
//! `depmod` there.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::pkg::debian::{Debian, Record};
use crate::pkg::tool;
use crate::tree::archive;
use crate::tree::compression::{unlz4_legacy, LZ4_LEGACY};
use crate::tree::hostdir;
use crate::tree::Tree;

/// Metapackages followed to the real kernel package, at most.
const MAX_INDIRECTIONS: usize = 3;
/// The ELF magic.
const ELF: &[u8] = b"\x7fELF";
const GZIP: &[u8] = b"\x1f\x8b\x08";

/// The files a kernel image holds.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    pub release: String,
    pub kernel: Vec<u8>,
    pub kernel_tar: Vec<u8>,
    pub vmlinux: Vec<u8>,
}

/// The records of `name` and of the packages it stands for, down to the one holding the
/// kernel (`linux-image-cloud-amd64` depends on `linux-image-6.1.0-NN-cloud-amd64`).
pub fn records(debian: &Debian, name: &str) -> Result<Vec<Record>> {
    let mut records = vec![debian.show(name)?];
    for _ in 0..MAX_INDIRECTIONS {
        let last = records.last().map(|record| record.depends.clone());
        let next = last
            .into_iter()
            .flatten()
            .flatten()
            .find(|dep| dep.starts_with("linux-image-"));
        match next {
            Some(next) => records.push(debian.show(&next)?),
            None => break,
        }
    }
    Ok(records)
}

/// Fetches and converts the kernel of `records` (as [`records`] gave them).
pub fn build(debian: &Debian, records: &[Record]) -> Result<KernelFiles> {
    let record = records.last().ok_or_else(|| anyhow!("no kernel package"))?;
    let deb = debian.fetch(record)?;
    let work = tempfile::tempdir().context("cannot make a temporary directory")?;
    tool::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(work.path()),
        &format!("dpkg-deb -x {}", deb.display()),
    )?;
    let modules = work.path().join("lib/modules");
    let release = fs::read_dir(&modules)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| {
            anyhow!(
                "`{}` holds no lib/modules/RELEASE: it is not a kernel package",
                record.name
            )
        })?;
    let vmlinuz = work.path().join(format!("boot/vmlinuz-{release}"));
    let kernel = fs::read(&vmlinuz)
        .with_context(|| format!("`{}` has no boot/vmlinuz-{release}", record.name))?;
    depmod(work.path(), &release)?;
    let mut tree = Tree::new();
    hostdir::read_into(
        &mut tree,
        &format!("lib/modules/{release}"),
        &modules.join(&release),
    )?;
    let kernel_tar = archive::write_tar(&tree, Vec::new()).context("cannot write kernel.tar")?;
    let vmlinux =
        vmlinux(&kernel).with_context(|| format!("boot/vmlinuz-{release} of `{}`", record.name))?;
    Ok(KernelFiles {
        release,
        kernel,
        kernel_tar,
        vmlinux,
    })
}

/// Writes modules.dep and the other module indexes for `release` under `root`.
fn depmod(root: &Path, release: &str) -> Result<()> {
    let program = ["depmod", "/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .find(|program| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .ok_or_else(|| anyhow!("depmod is not installed (Debian package kmod)"))?;
    tool::run(
        Command::new(program).arg("-b").arg(root).arg(release),
        &format!("depmod {release}"),
    )?;
    Ok(())
}

/// The ELF kernel inside the bzImage `image`: the first place its payload's compression
/// magic appears that decompresses to an ELF file.
pub fn vmlinux(image: &[u8]) -> Result<Vec<u8>> {
    let mut found = Vec::new();
    for (magic, name) in [(LZ4_LEGACY, "lz4"), (GZIP, "gzip")] {
        let mut from = 0;
        while let Some(offset) = find(&image[from..], magic) {
            let start = from + offset;
            let data = &image[start..];
            let out = match name {
                "lz4" => unlz4_legacy(data),
                _ => gunzip(data),
            };
            if out.starts_with(ELF) {
                return Ok(out);
            }
            found.push(name);
            from = start + 1;
        }
    }
    for (magic, name) in [
        (&b"\xfd7zXZ\x00"[..], "xz"),
        (&b"\x28\xb5\x2f\xfd"[..], "zstd"),
    ] {
        if find(image, magic).is_some() {
            bail!("the kernel is compressed with {name}; kiln extracts lz4 and gzip kernels");
        }
    }
    bail!(
        "no ELF kernel found inside (tried {})",
        if found.is_empty() {
            "nothing: no lz4 or gzip payload".to_owned()
        } else {
            found.join(", ")
        }
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(data).read_to_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn elf() -> Vec<u8> {
        let mut elf = ELF.to_vec();
        elf.extend((0..20_000u32).flat_map(|n| (n % 251).to_le_bytes()));
        elf
    }

    #[test]
    fn the_elf_is_found_after_a_setup_header_and_false_starts() {
        let elf = elf();
        // lz4: a false magic first, then the real frame, then trailing data.
        let block = lz4_flex::block::compress(&elf);
        let mut image = b"MZ setup code".to_vec();
        image.extend_from_slice(LZ4_LEGACY);
        image.extend_from_slice(b"garbage");
        image.extend_from_slice(LZ4_LEGACY);
        image.extend_from_slice(&u32::try_from(block.len()).expect("small").to_le_bytes());
        image.extend_from_slice(&block);
        image.extend_from_slice(&[0, 0, 0x40, 0]);
        assert_eq!(vmlinux(&image).expect("lz4"), elf);

        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&elf).expect("gzip");
        let mut image = b"MZ setup".to_vec();
        image.extend(gzip.finish().expect("gzip"));
        image.extend_from_slice(b"trailer");
        assert_eq!(vmlinux(&image).expect("gzip"), elf);

        let err = vmlinux(b"MZ \xfd7zXZ\x00 payload").expect_err("xz");
        assert!(err.to_string().contains("compressed with xz"), "{err}");
        let err = vmlinux(b"MZ nothing").expect_err("none");
        assert!(err.to_string().contains("no ELF kernel"), "{err}");
    }
}
