//! FAT file systems as image files, for the EFI system partition (raw-efi, qcow2-efi, and the
//! El Torito image of iso-efi) and the BIOS disk's boot partition (raw-bios). The file system
//! is written into its file by the `fatfs` crate, files streamed in (memory does not grow with
//! them): no mount, no root. Every
//! time stamp is FAT's first, 1980-01-01 00:00, and the volume serial is given, so the same
//! files make the same bytes.
//! Runs in: `kiln build` on the build host. Writes only the image file it is given.

use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

/// Where a file's bytes come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// A file of the file system: its path from the root (`EFI/BOOT/BOOTX64.EFI`) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub path: &'a str,
    pub source: Source<'a>,
}

impl Entry<'_> {
    fn len(&self) -> Result<u64> {
        Ok(match self.source {
            Source::File(path) => fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len(),
            Source::Bytes(bytes) => bytes.len() as u64,
        })
    }
}

/// FAT's first time, 1980-01-01 00:00, for every time stamp.
const FIRST: DateTime = DateTime {
    date: Date {
        year: 1980,
        month: 1,
        day: 1,
    },
    time: Time {
        hour: 0,
        min: 0,
        sec: 0,
        millis: 0,
    },
};

/// Gives fatfs [`FIRST`] as the time now.
#[derive(Debug)]
struct Fixed;

impl TimeProvider for Fixed {
    fn get_current_date(&self) -> Date {
        FIRST.date
    }

    fn get_current_date_time(&self) -> DateTime {
        FIRST
    }
}

static FIXED: Fixed = Fixed;

/// How every file system here is opened: its times fixed.
fn options() -> FsOptions {
    FsOptions::new().time_provider(&FIXED)
}

const MIB: u64 = 1 << 20;
/// The largest cluster the size is reckoned with (FAT's own choice for a volume of this size
/// is no larger), and a FAT entry's size at most.
const CLUSTER: u64 = 64 << 10;

/// The size of a file system that holds files of `sizes` bytes in `dirs` directories, with
/// room for FAT's tables and a little to spare, in whole MiB.
fn size_for(sizes: &[u64], dirs: usize) -> u64 {
    let clusters: u64 =
        sizes.iter().map(|size| size.div_ceil(CLUSTER)).sum::<u64>() + dirs as u64 + 1;
    let data = clusters * CLUSTER;
    // Two FATs of at most 4 bytes per 512-byte sector of data, the boot sectors, and spare.
    let size = data + data / 64 + 2 * MIB;
    size.div_ceil(MIB) * MIB
}

/// An 11-byte, space-padded volume label of upper-case letters, digits, `-` and `_`.
fn label_bytes(label: &str) -> Result<[u8; 11]> {
    if label.is_empty()
        || label.len() > 11
        || !label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        bail!("`{label}` is not a FAT volume label (1 to 11 of A-Z, 0-9, - and _)");
    }
    let mut bytes = [b' '; 11];
    bytes[..label.len()].copy_from_slice(label.as_bytes());
    Ok(bytes)
}

/// The directories a file's path lies in, parents first (`EFI`, `EFI/BOOT`).
fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

/// Writes a FAT file system holding `entries` to `out`; returns its FAT type, which FAT
/// picks by size. A file system of the same entries, serial and label has the same bytes.
pub fn write(entries: &[Entry<'_>], volume_id: u32, label: &str, out: &Path) -> Result<FatType> {
    let label = label_bytes(label)?;
    let mut dirs: Vec<&str> = entries.iter().flat_map(|e| parents(e.path)).collect();
    dirs.sort_unstable();
    dirs.dedup();
    let sizes = entries
        .iter()
        .map(Entry::len)
        .collect::<Result<Vec<u64>>>()?;
    let size = size_for(&sizes, dirs.len());
    let made = || format!("cannot make a FAT file system in {}", out.display());
    let mut image = super::create_sized(out, size)?;
    fatfs::format_volume(
        &mut image,
        FormatVolumeOptions::new()
            .volume_id(volume_id)
            .volume_label(label),
    )
    .with_context(made)?;
    image.seek(SeekFrom::Start(0)).with_context(made)?;
    let fat_type = {
        let fs = FileSystem::new(&mut image, options()).with_context(made)?;
        let root = fs.root_dir();
        for dir in &dirs {
            root.create_dir(dir)
                .with_context(|| format!("{}: cannot make the directory {dir}", out.display()))?;
        }
        for entry in entries {
            let at = || format!("{}: cannot write {}", out.display(), entry.path);
            let mut file = root.create_file(entry.path).with_context(at)?;
            file.truncate().with_context(at)?;
            match entry.source {
                Source::File(path) => {
                    let mut from = fs::File::open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    io::copy(&mut from, &mut file).with_context(at)?;
                }
                Source::Bytes(bytes) => file.write_all(bytes).with_context(at)?,
            }
            file.flush().with_context(at)?;
        }
        drop(root);
        let fat_type = fs.fat_type();
        fs.unmount().with_context(made)?;
        fat_type
    };
    Ok(fat_type)
}

/// Sets every file's times in the FAT image at `path` to FAT's first, as
/// [`write`] leaves them; a tool that wrote into the image (syslinux's installer stamps the
/// time it ran) is thus made reproducible.
pub fn clear_times(path: &Path) -> Result<()> {
    let at = || format!("cannot reset the file times in {}", path.display());
    let image = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(at)?;
    let fs = FileSystem::new(image, options()).with_context(at)?;
    let mut dirs = vec![fs.root_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in dir.iter() {
            let entry = entry.with_context(at)?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            if entry.is_dir() {
                dirs.push(entry.to_dir());
            } else {
                let mut file = entry.to_file();
                #[allow(
                    deprecated,
                    reason = "fatfs offers a time provider for new entries only; these were \
                              written by another tool"
                )]
                {
                    file.set_created(FIRST);
                    file.set_accessed(FIRST.date);
                    file.set_modified(FIRST);
                }
                file.flush().with_context(at)?;
            }
        }
    }
    drop(dirs);
    fs.unmount().with_context(at)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn files_are_written_in_their_directories_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let source = dir.path().join("kernel");
        fs::write(&source, &big).expect("source");
        let entries = [
            Entry {
                path: "EFI/BOOT/BOOTX64.EFI",
                source: Source::Bytes(b"loader"),
            },
            Entry {
                path: "loader/entries/kiln.conf",
                source: Source::Bytes(b"linux /kernel\n"),
            },
            Entry {
                path: "kernel",
                source: Source::File(&source),
            },
        ];
        let image = dir.path().join("fat.img");
        write(&entries, 0xdead_beef, "KILN", &image).expect("write");
        let fs = FileSystem::new(fs::File::open(&image).expect("open"), FsOptions::new())
            .expect("a FAT file system");
        assert_eq!(fs.volume_id(), 0xdead_beef);
        assert_eq!(fs.volume_label(), "KILN");
        let read = |path: &str| {
            let mut bytes = Vec::new();
            fs.root_dir()
                .open_file(path)
                .expect(path)
                .read_to_end(&mut bytes)
                .expect(path);
            bytes
        };
        assert_eq!(read("EFI/BOOT/BOOTX64.EFI"), b"loader");
        assert_eq!(read("loader/entries/kiln.conf"), b"linux /kernel\n");
        assert_eq!(read("kernel"), big);
    }

    #[test]
    fn the_same_files_make_the_same_bytes_and_another_serial_other_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries = [Entry {
            path: "a/b.txt",
            source: Source::Bytes(b"hello"),
        }];
        let image = |name: &str, serial: u32| {
            let path = dir.path().join(name);
            write(&entries, serial, "KILN", &path).expect("write");
            fs::read(path).expect("read")
        };
        assert_eq!(image("one", 1), image("two", 1));
        assert_ne!(image("one", 1), image("three", 2));
    }

    #[test]
    fn times_written_by_another_tool_are_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fat.img");
        let entries = [Entry {
            path: "boot/file",
            source: Source::Bytes(b"x"),
        }];
        write(&entries, 7, "KILN", &path).expect("write");
        let clean = fs::read(&path).expect("read");
        {
            let image = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open");
            let fs = FileSystem::new(image, options()).expect("fs");
            let mut file = fs.root_dir().open_file("boot/file").expect("file");
            #[allow(deprecated, reason = "stands in for another tool's time stamp")]
            file.set_modified(DateTime {
                date: Date {
                    year: 2026,
                    month: 12,
                    day: 3,
                },
                ..FIRST
            });
            file.flush().expect("flush");
            drop(file);
            fs.unmount().expect("unmount");
        }
        assert_ne!(fs::read(&path).expect("read"), clean, "the time was set");
        clear_times(&path).expect("clear");
        assert_eq!(fs::read(&path).expect("read"), clean);
    }

    #[test]
    fn labels_are_checked_and_sizes_leave_room() {
        assert_eq!(&label_bytes("KILN").expect("ok"), b"KILN       ");
        for bad in ["", "lower", "TWELVE_CHARS", "A B"] {
            assert!(label_bytes(bad).is_err(), "{bad}");
        }
        let size = size_for(&[50 << 20, 10 << 20, 100], 3);
        assert!(size > 60 << 20 && size % MIB == 0, "{size}");
        assert_eq!(
            parents("EFI/BOOT/X.EFI").collect::<Vec<_>>(),
            ["EFI", "EFI/BOOT"]
        );
    }
}
