//! The bytes of a regular file in a [`Tree`](super::Tree): up to [`INLINE_MAX`] in memory,
//! anything larger appended to the spill, one unlinked temporary file on disk, or left where
//! it is in a file that does not change (an uncompressed layer of the image cache), and read
//! back with positioned reads. A build's memory so stays the same whatever size the image's
//! files are; clones share the bytes.
//! Runs in: `kiln` on the build host. The spill is made in the directory [`set_spill_dir`]
//! named (the image cache's, on disk), else the system's temporary directory, on first use.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The largest file kept in memory.
pub const INLINE_MAX: usize = 64 * 1024;

/// A file's bytes, in memory or in the spill.
#[derive(Clone)]
pub struct Content(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Arc<[u8]>),
    /// `len` bytes at `offset` of `file`: the spill's or another that does not change.
    InFile {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

/// The spill file and where its next bytes go.
struct Spill {
    file: Arc<File>,
    end: Mutex<u64>,
}

static SPILL_DIR: OnceLock<PathBuf> = OnceLock::new();
static SPILL: OnceLock<Result<Arc<Spill>, String>> = OnceLock::new();

/// Puts the spill in `dir` (made if missing) rather than the system's temporary directory,
/// which may be a tmpfs (memory). Only the first call before the spill is made counts.
pub fn set_spill_dir(dir: PathBuf) {
    let _ = SPILL_DIR.set(dir);
}

fn spill() -> io::Result<Arc<Spill>> {
    let made = SPILL.get_or_init(|| {
        let dir = SPILL_DIR.get().cloned().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&dir)
            .and_then(|()| tempfile::tempfile_in(&dir))
            .map(|file| {
                Arc::new(Spill {
                    file: Arc::new(file),
                    end: Mutex::new(0),
                })
            })
            .map_err(|err| format!("cannot make a temporary file in {}: {err}", dir.display()))
    });
    made.clone().map_err(io::Error::other)
}

impl Content {
    /// Reads `reader` to its end: into memory when it ends within [`INLINE_MAX`] bytes, else
    /// into the spill, in fixed-size pieces.
    pub fn read_from(mut reader: impl Read) -> io::Result<Self> {
        let mut head = Vec::new();
        (&mut reader)
            .take(INLINE_MAX as u64 + 1)
            .read_to_end(&mut head)?;
        if head.len() <= INLINE_MAX {
            return Ok(Self(Repr::Inline(head.into())));
        }
        let spill = spill()?;
        let (offset, len) = {
            let mut end = spill
                .end
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let mut writer = SpillWriter {
                file: &spill.file,
                at: *end,
            };
            writer.write_all(&head)?;
            io::copy(&mut reader, &mut writer)?;
            let offset = *end;
            *end = writer.at;
            (offset, writer.at - offset)
        };
        Ok(Self(Repr::InFile {
            file: spill.file.clone(),
            offset,
            len,
        }))
    }

    /// The `len` bytes at `offset` of `file`, read from there when wanted: `file` must not
    /// change while the content is used (a blob of the image cache, which is only ever
    /// written whole, under its digest, and renamed into place).
    pub fn in_file(file: Arc<File>, offset: u64, len: u64) -> Self {
        Self(Repr::InFile { file, offset, len })
    }

    /// Reads the regular file at `path` (through a symlink). Anything else is refused once
    /// opened, without blocking, before a byte is read: a FIFO or a device could give bytes
    /// for ever, and a path checked earlier may have been replaced since.
    pub fn read_file(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)?;
        if let Some(what) = not_regular(file.metadata()?.file_type()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is {what}, not a regular file"),
            ));
        }
        Self::read_from(file)
    }

    /// The number of bytes.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Repr::Inline(data) => data.len() as u64,
            Repr::InFile { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the bytes from the start.
    pub fn reader(&self) -> ContentReader<'_> {
        ContentReader {
            content: self,
            at: 0,
        }
    }

    /// All the bytes in memory: for the small files a build reads (and tests).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        match &self.0 {
            Repr::Inline(data) => Ok(data.to_vec()),
            Repr::InFile { .. } => {
                let mut bytes = Vec::new();
                self.reader().read_to_end(&mut bytes)?;
                Ok(bytes)
            }
        }
    }

    /// Whether the bytes begin with `prefix`.
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        let mut head = Vec::with_capacity(prefix.len());
        self.reader()
            .take(prefix.len() as u64)
            .read_to_end(&mut head)
            .is_ok_and(|_| head == prefix)
    }
}

/// What a file of type `kind` is, in words, when it is not a regular file.
pub fn not_regular(kind: std::fs::FileType) -> Option<&'static str> {
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_symlink() {
        Some("a symlink")
    } else {
        Some("a device")
    }
}

/// Appends at `at` with positioned writes.
struct SpillWriter<'a> {
    file: &'a File,
    at: u64,
}

impl Write for SpillWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write_at(buf, self.at)?;
        self.at += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a [`Content`] from the start.
#[derive(Debug)]
pub struct ContentReader<'a> {
    content: &'a Content,
    at: u64,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = match &self.content.0 {
            Repr::Inline(data) => {
                let at = usize::try_from(self.at).unwrap_or(usize::MAX);
                let rest = data.get(at..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                n
            }
            Repr::InFile { file, offset, len } => {
                let left = len.saturating_sub(self.at);
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if n == 0 {
                    0
                } else {
                    file.read_at(&mut buf[..n], offset + self.at)?
                }
            }
        };
        self.at += read as u64;
        Ok(read)
    }
}

impl From<Vec<u8>> for Content {
    fn from(data: Vec<u8>) -> Self {
        Self(Repr::Inline(data.into()))
    }
}

impl From<&[u8]> for Content {
    fn from(data: &[u8]) -> Self {
        Self(Repr::Inline(data.into()))
    }
}

impl<const N: usize> From<&[u8; N]> for Content {
    fn from(data: &[u8; N]) -> Self {
        Self(Repr::Inline(data[..].into()))
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        text.as_bytes().into()
    }
}

impl PartialEq for Content {
    /// Equal bytes, compared piece by piece.
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        if let (Repr::Inline(a), Repr::Inline(b)) = (&self.0, &other.0) {
            return a == b;
        }
        let (mut a, mut b) = (self.reader(), other.reader());
        let (mut left, mut right) = ([0u8; 8192], [0u8; 8192]);
        loop {
            let n = match a.read(&mut left) {
                Ok(0) => return true,
                Ok(n) => n,
                Err(_) => return false,
            };
            if b.read_exact(&mut right[..n]).is_err() || left[..n] != right[..n] {
                return false;
            }
        }
    }
}

impl Eq for Content {}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Inline(data) if data.len() <= 64 => {
                write!(f, "Content({:?})", String::from_utf8_lossy(data))
            }
            _ => write!(f, "Content({} bytes)", self.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = Content::read_file(&fifo).unwrap_err();
        assert!(
            err.to_string().contains("a FIFO, not a regular file"),
            "{err}"
        );
        let err = Content::read_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("a device"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"bytes").unwrap();
        assert_eq!(
            Content::read_file(&file).unwrap().to_vec().unwrap(),
            b"bytes"
        );
    }

    #[test]
    fn small_files_stay_in_memory_and_large_ones_spill_and_read_back() {
        let small = Content::read_from(&b"hello"[..]).unwrap();
        assert!(matches!(small.0, Repr::Inline(_)));
        assert_eq!(small.to_vec().unwrap(), b"hello");

        let big: Vec<u8> = (0..INLINE_MAX * 3 + 7)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        let spilled = Content::read_from(&big[..]).unwrap();
        assert!(matches!(spilled.0, Repr::InFile { .. }));
        assert_eq!(spilled.len(), big.len() as u64);
        assert_eq!(spilled.to_vec().unwrap(), big);
        assert!(spilled.starts_with(&big[..10]));
        assert!(!spilled.starts_with(b"nope"));
        // A second spilled file does not disturb the first; equal bytes are equal.
        let other = Content::read_from(&big[1..]).unwrap();
        assert_eq!(other.to_vec().unwrap(), &big[1..]);
        assert_eq!(spilled, Content::from(big.clone()));
        assert_ne!(spilled, other);
        // Exactly INLINE_MAX stays in memory.
        let edge = Content::read_from(&big[..INLINE_MAX]).unwrap();
        assert!(matches!(edge.0, Repr::Inline(_)));
    }

    #[test]
    fn a_range_of_a_file_reads_in_place() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"headBODYtail").unwrap();
        let content = Content::in_file(Arc::new(file), 4, 4);
        assert_eq!(content.len(), 4);
        assert_eq!(content.to_vec().unwrap(), b"BODY");
        assert_eq!(content, Content::from("BODY"));
    }
}
