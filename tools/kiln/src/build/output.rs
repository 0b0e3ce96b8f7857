//! Writing an assembled image into the output directory in one or more formats, with
//! LinuxKit's file names: `tar` (the whole root filesystem, `boot/` included, as `NAME.tar`),
//! `kernel+initrd` (`NAME-kernel`, `NAME-initrd.img` as a compressed newc cpio,
//! `NAME-cmdline`, and `NAME-vmlinux`, the ELF kernel, when the kernel image has one), and the
//! bootable media of [`crate::media`]: `raw-efi` (`NAME-efi.img`), `qcow2-efi`
//! (`NAME-efi.qcow2`), `raw-bios` (`NAME-bios.img`), `iso-efi` (`NAME-efi.iso`;
//! `iso-efi-initrd`, LinuxKit's name for it, writes `NAME-efi-initrd.iso`) and `iso-bios`
//! (`NAME.iso`). What several formats share (the kernel, the initrd, the EFI system
//! partition, the raw disk) is made once. Files are written into a temporary directory inside
//! the output directory and renamed into place only when all of them are complete; on
//! failure nothing is left behind. A file whose bytes are those already in place is left as
//! it is, neither synced nor replaced: building again what did not change writes nothing.
//! Runs in: `kiln build` on the build host. Writes only in the output directory.

use std::cell::OnceCell;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build::assemble::Assembly;
use crate::media::{self, host::Host, Boot, Identity};
use crate::tree::archive;
use crate::tree::compression::Compression;
use crate::tree::initrd;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    KernelInitrd,
    RawEfi,
    Qcow2Efi,
    RawBios,
    IsoEfi,
    IsoEfiInitrd,
    IsoBios,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::KernelInitrd,
        Format::Tar,
        Format::RawEfi,
        Format::Qcow2Efi,
        Format::RawBios,
        Format::IsoEfi,
        Format::IsoEfiInitrd,
        Format::IsoBios,
    ];

    /// The format's name, as `--format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::KernelInitrd => "kernel+initrd",
            Format::RawEfi => "raw-efi",
            Format::Qcow2Efi => "qcow2-efi",
            Format::RawBios => "raw-bios",
            Format::IsoEfi => "iso-efi",
            Format::IsoEfiInitrd => "iso-efi-initrd",
            Format::IsoBios => "iso-bios",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|format| format.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown format `{text}`; the formats are {}",
                    names.join(", ")
                )
            })
    }

    /// The suffix of the one file a bootable medium is written as (`NAME` + suffix).
    pub fn medium_suffix(self) -> Option<&'static str> {
        match self {
            Format::Tar | Format::KernelInitrd => None,
            Format::RawEfi => Some("-efi.img"),
            Format::Qcow2Efi => Some("-efi.qcow2"),
            Format::RawBios => Some("-bios.img"),
            Format::IsoEfi => Some("-efi.iso"),
            Format::IsoEfiInitrd => Some("-efi-initrd.iso"),
            Format::IsoBios => Some(".iso"),
        }
    }

    /// Whether the format boots under UEFI (else BIOS, if it boots at all).
    pub fn is_efi(self) -> bool {
        matches!(
            self,
            Format::RawEfi | Format::Qcow2Efi | Format::IsoEfi | Format::IsoEfiInitrd
        )
    }

    /// What the build host must have to write the format.
    pub fn needs(self) -> Vec<Host> {
        let mut needs = Vec::new();
        if self.is_efi() {
            needs.extend_from_slice(media::ESP_NEEDS);
        }
        match self {
            Format::Tar | Format::KernelInitrd | Format::RawEfi => {}
            Format::Qcow2Efi => needs.push(media::host::QEMU_IMG),
            Format::RawBios => needs.extend_from_slice(media::BIOS_NEEDS),
            Format::IsoEfi | Format::IsoEfiInitrd => needs.extend_from_slice(media::iso::EFI_NEEDS),
            Format::IsoBios => needs.extend_from_slice(media::iso::BIOS_NEEDS),
        }
        needs
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `kiln build` writes: the formats, and how the initrd is compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub formats: Vec<Format>,
    pub compression: Compression,
}

/// Writes one output file at the path it is given.
type Writer<'a> = Box<dyn Fn(&Path) -> Result<()> + 'a>;

/// What a format that boots says of a manifest without a kernel.
pub fn needs_kernel(format: Format) -> String {
    format!("the {format} format needs a `kernel` section naming an image (or give --format tar)")
}

/// What the build host lacks to write `formats`, one line for each missing file or program.
pub fn host_problems(formats: &[Format]) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    for format in formats {
        for host in format.needs() {
            let problem = format!("--format {format}: {}", host.missing());
            if !host.present() && !problems.contains(&problem) {
                problems.push(problem);
            }
        }
    }
    problems
}

/// What is wrong with `name` as the outputs' base name, if anything.
pub fn name_problem(name: &str) -> Option<String> {
    (name.is_empty() || name.contains('/'))
        .then(|| format!("the image name `{name}` must be a non-empty file name"))
}

/// Whether the files at `a` and `b` are both regular files holding the same bytes (false when
/// either cannot be read).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let open = |path: &Path| {
        let file = fs::File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        meta.is_file().then_some((file, meta.len()))
    };
    let (Some((a, a_len)), Some((b, b_len))) = (open(a), open(b)) else {
        return false;
    };
    if a_len != b_len {
        return false;
    }
    let (mut a, mut b) = (io::BufReader::new(a), io::BufReader::new(b));
    loop {
        let (left, right) = match (a.fill_buf(), b.fill_buf()) {
            (Ok(left), Ok(right)) => (left, right),
            _ => return false,
        };
        if left.is_empty() || right.is_empty() {
            return left.is_empty() && right.is_empty();
        }
        let n = left.len().min(right.len());
        if left[..n] != right[..n] {
            return false;
        }
        a.consume(n);
        b.consume(n);
    }
}

/// Creates `path` and writes it with `write`.
fn stream(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.into_inner()
        .map_err(|err| err.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Makes `to` hold the file at `from`: a hard link where the file system allows, else a copy.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// What several formats are made from, each made once, on first use, in the work directory.
struct Parts<'a> {
    assembly: &'a Assembly,
    compression: Compression,
    work: PathBuf,
    kernel: OnceCell<PathBuf>,
    initrd: OnceCell<PathBuf>,
    identity: OnceCell<Identity>,
    esp: OnceCell<PathBuf>,
    raw_efi: OnceCell<PathBuf>,
}

/// `cell`'s value, made by `make` the first time.
fn once<T>(cell: &OnceCell<T>, make: impl FnOnce() -> Result<T>) -> Result<&T> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = make()?;
    Ok(cell.get_or_init(|| value))
}

impl Parts<'_> {
    /// A file of the work directory, made by `write` the first time.
    fn file<'c>(
        &self,
        cell: &'c OnceCell<PathBuf>,
        name: &str,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<&'c Path> {
        once(cell, || {
            let path = self.work.join(name);
            write(&path)?;
            Ok(path)
        })
        .map(PathBuf::as_path)
    }

    fn kernel(&self) -> Result<&Path> {
        self.file(&self.kernel, "kernel", |path| {
            let Some(kernel) = &self.assembly.kernel else {
                bail!(needs_kernel(Format::KernelInitrd));
            };
            stream(path, |out| {
                Ok(io::copy(&mut kernel.reader(), out).map(drop)?)
            })
        })
    }

    fn initrd(&self) -> Result<&Path> {
        self.file(&self.initrd, "initrd.img", |path| {
            stream(path, |out| {
                let assembly = self.assembly;
                initrd::write_initrd(
                    &assembly.rootfs,
                    assembly.ucode.as_ref(),
                    self.compression,
                    out,
                )
                .map(drop)
                .context("cannot write the initrd")
            })
        })
    }

    fn boot(&self) -> Result<Boot<'_>> {
        Ok(Boot {
            kernel: self.kernel()?,
            initrd: self.initrd()?,
            cmdline: &self.assembly.cmdline,
        })
    }

    fn identity(&self) -> Result<&Identity> {
        once(&self.identity, || Identity::of(&self.boot()?))
    }

    fn esp(&self) -> Result<&Path> {
        self.file(&self.esp, "esp.img", |path| {
            media::esp(&self.boot()?, self.identity()?, path)
        })
    }

    fn raw_efi(&self) -> Result<&Path> {
        self.file(&self.raw_efi, "efi.img", |path| {
            media::raw_efi(self.esp()?, self.identity()?, path)
        })
    }

    /// Writes the bootable medium `format` at `out`.
    fn medium(&self, format: Format, out: &Path) -> Result<()> {
        match format {
            Format::Tar | Format::KernelInitrd => unreachable!("not a medium"),
            Format::RawEfi => link_or_copy(self.raw_efi()?, out),
            Format::Qcow2Efi => media::qcow2(self.raw_efi()?, out),
            Format::RawBios => media::raw_bios(&self.boot()?, self.identity()?, &self.work, out),
            Format::IsoEfi | Format::IsoEfiInitrd => media::iso::efi(
                self.esp()?,
                self.identity()?.uuid("iso disk guid"),
                &self.work,
                out,
            ),
            Format::IsoBios => media::iso::bios(&self.boot()?, &self.work, out),
        }
    }
}

/// Writes `assembly` in each of `output`'s formats into `dir` under `name`; returns the files
/// written.
pub fn write(assembly: &Assembly, dir: &Path, name: &str, output: &Output) -> Result<Vec<PathBuf>> {
    if let Some(problem) = name_problem(name) {
        bail!(problem);
    }
    let mut formats: Vec<Format> = Vec::new();
    for format in &output.formats {
        if !formats.contains(format) {
            formats.push(*format);
        }
    }
    if let Some(format) = formats.iter().find(|f| **f != Format::Tar) {
        if assembly.kernel.is_none() {
            bail!(needs_kernel(*format));
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    let work = staging.path().join(".work");
    fs::create_dir(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let parts = Parts {
        assembly,
        compression: output.compression,
        work,
        kernel: OnceCell::new(),
        initrd: OnceCell::new(),
        identity: OnceCell::new(),
        esp: OnceCell::new(),
        raw_efi: OnceCell::new(),
    };
    let parts = &parts;
    let mut files: Vec<(String, Writer<'_>)> = Vec::new();
    for format in &formats {
        match format {
            Format::Tar => files.push((
                format!("{name}.tar"),
                Box::new(|path: &Path| {
                    stream(path, |out| {
                        archive::write_tar(&assembly.rootfs, out)
                            .map(drop)
                            .context("cannot write the tar")
                    })
                }),
            )),
            Format::KernelInitrd => {
                files.push((
                    format!("{name}-kernel"),
                    Box::new(|path: &Path| link_or_copy(parts.kernel()?, path)),
                ));
                files.push((
                    format!("{name}-initrd.img"),
                    Box::new(|path: &Path| link_or_copy(parts.initrd()?, path)),
                ));
                files.push((
                    format!("{name}-cmdline"),
                    Box::new(|path: &Path| {
                        stream(path, |out| Ok(out.write_all(assembly.cmdline.as_bytes())?))
                    }),
                ));
                if let Some(elf) = &assembly.vmlinux {
                    files.push((
                        format!("{name}-vmlinux"),
                        Box::new(move |path: &Path| {
                            stream(path, |out| Ok(io::copy(&mut elf.reader(), out).map(drop)?))
                        }),
                    ));
                }
            }
            medium => {
                let medium = *medium;
                let suffix = medium.medium_suffix().unwrap_or_default();
                files.push((
                    format!("{name}{suffix}"),
                    Box::new(move |path: &Path| parts.medium(medium, path)),
                ));
            }
        }
    }
    let mut changed = Vec::new();
    for (file, write) in &files {
        let path = staging.path().join(file);
        write(&path).with_context(|| format!("{}", dir.join(file).display()))?;
        if !same_bytes(&path, &dir.join(file)) {
            fs::File::open(&path)
                .and_then(|out| out.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            changed.push(file);
        }
    }
    let mut written = Vec::new();
    for (file, _) in &files {
        let target = dir.join(file);
        if changed.contains(&file) {
            fs::rename(staging.path().join(file), &target)
                .with_context(|| format!("cannot move {} into place", target.display()))?;
        }
        written.push(target);
    }
    if formats.contains(&Format::KernelInitrd) && assembly.vmlinux.is_none() {
        // One left by an earlier build would be booted in place of this kernel.
        let stale = dir.join(format!("{name}-vmlinux"));
        match fs::remove_file(&stale) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("cannot remove {}", stale.display()));
            }
            _ => {}
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_the_same_only_with_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name);
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(path("a"), &big).expect("write");
        fs::write(path("b"), &big).expect("write");
        assert!(same_bytes(&path("a"), &path("b")));
        let mut other = big.clone();
        other[99_000] ^= 1;
        fs::write(path("b"), &other).expect("write");
        assert!(!same_bytes(&path("a"), &path("b")), "a byte differs");
        fs::write(path("b"), &big[1..]).expect("write");
        assert!(!same_bytes(&path("a"), &path("b")), "a length differs");
        assert!(!same_bytes(&path("a"), &path("missing")));
        assert!(!same_bytes(&path("a"), dir.path()), "a directory");
    }
}
