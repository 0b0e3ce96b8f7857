//! Writing an assembled image into the output directory in one of the formats: `tar` (the
//! whole root filesystem, `boot/` included, as `NAME.tar`) or `kernel+initrd` (`NAME-kernel`,
//! `NAME-initrd.img` as a gzip newc cpio, `NAME-cmdline`, as LinuxKit writes them, and
//! `NAME-vmlinux`, the ELF kernel, when the kernel image has one). Files are
//! written into a temporary directory inside the output directory and renamed into place
//! only when all of them are complete; on failure nothing is left behind. A file whose bytes
//! are those already in place is left as it is, neither synced nor replaced: building again
//! what did not change writes nothing.
//! Runs in: `kiln build` on the build host. Writes only in the output directory.

use std::fs;
use std::io::{self, BufRead, BufWriter, Write};
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
    let mut changed = Vec::new();
    for (file, write) in &files {
        let path = staging.path().join(file);
        let out =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::new(out);
        write(&mut out).with_context(|| format!("{}", dir.join(file).display()))?;
        let out = out
            .into_inner()
            .map_err(|err| err.into_error())
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !same_bytes(&path, &dir.join(file)) {
            out.sync_all()
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
