//! Writing an assembled image into the output directory in one of the formats: `tar` (the
//! whole root filesystem, `boot/` included, as `NAME.tar`) or `kernel+initrd` (`NAME-kernel`,
//! `NAME-initrd.img` as a gzip newc cpio, `NAME-cmdline`, as LinuxKit writes them, and
//! `NAME-vmlinux`, the ELF kernel, when the kernel image has one). Files are
//! written into a temporary directory inside the output directory and renamed into place
//! only when all of them are complete; on failure nothing is left behind.
//! Runs in: `kiln build` on the build host. Writes only in the output directory.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build::assemble::Assembly;
use crate::tree::archive;
use crate::tree::compression::Compression;
use crate::tree::initrd;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    KernelInitrd,
}

impl Format {
    pub const NAMES: [&'static str; 2] = ["kernel+initrd", "tar"];

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "tar" => Ok(Format::Tar),
            "kernel+initrd" => Ok(Format::KernelInitrd),
            other => Err(format!(
                "unknown format `{other}`; the formats are {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

/// What `kiln build` writes: the format, and how the initrd is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub format: Format,
    pub compression: Compression,
}

/// Writes one output file's content.
type Writer<'a> = Box<dyn Fn(&mut dyn Write) -> Result<()> + 'a>;

/// What the kernel+initrd format says of a manifest without a kernel.
pub const NEEDS_KERNEL: &str =
    "the kernel+initrd format needs a `kernel` section naming an image (or give --format tar)";

/// What is wrong with `name` as the outputs' base name, if anything.
pub fn name_problem(name: &str) -> Option<String> {
    (name.is_empty() || name.contains('/'))
        .then(|| format!("the image name `{name}` must be a non-empty file name"))
}

/// Writes `assembly` as `format` into `dir` under `name`; returns the files written.
pub fn write(assembly: &Assembly, dir: &Path, name: &str, output: Output) -> Result<Vec<PathBuf>> {
    let Output {
        format,
        compression,
    } = output;
    if let Some(problem) = name_problem(name) {
        bail!(problem);
    }
    let files: Vec<(String, Writer<'_>)> = match format {
        Format::Tar => vec![(
            format!("{name}.tar"),
            Box::new(|out: &mut dyn Write| {
                archive::write_tar(&assembly.rootfs, out).context("cannot write the tar")?;
                Ok(())
            }),
        )],
        Format::KernelInitrd => {
            let Some(kernel) = &assembly.kernel else {
                bail!(NEEDS_KERNEL);
            };
            let mut files: Vec<(String, Writer<'_>)> = vec![
                (
                    format!("{name}-kernel"),
                    Box::new(move |out: &mut dyn Write| {
                        Ok(io::copy(&mut kernel.reader(), out).map(drop)?)
                    }),
                ),
                (
                    format!("{name}-initrd.img"),
                    Box::new(move |out: &mut dyn Write| {
                        initrd::write_initrd(
                            &assembly.rootfs,
                            assembly.ucode.as_ref(),
                            compression,
                            out,
                        )
                        .context("cannot write the initrd")?;
                        Ok(())
                    }),
                ),
                (
                    format!("{name}-cmdline"),
                    Box::new(|out: &mut dyn Write| Ok(out.write_all(assembly.cmdline.as_bytes())?)),
                ),
            ];
            if let Some(elf) = &assembly.vmlinux {
                files.push((
                    format!("{name}-vmlinux"),
                    Box::new(move |out: &mut dyn Write| {
                        Ok(io::copy(&mut elf.reader(), out).map(drop)?)
                    }),
                ));
            }
            files
        }
    };
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary directory in {}", dir.display()))?;
    for (file, write) in &files {
        let path = staging.path().join(file);
        let out =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(out);
        write(&mut out).with_context(|| format!("{}", dir.join(file).display()))?;
        out.into_inner()
            .map_err(|err| err.into_error())
            .and_then(|file| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut written = Vec::new();
    for (file, _) in &files {
        let target = dir.join(file);
        fs::rename(staging.path().join(file), &target)
            .with_context(|| format!("cannot move {} into place", target.display()))?;
        written.push(target);
    }
    if format == Format::KernelInitrd && assembly.vmlinux.is_none() {
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
