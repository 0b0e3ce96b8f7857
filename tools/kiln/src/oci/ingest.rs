//! A blob on its way into a layout: bytes arrive in `ingest/<hex>` beside `blobs/`, hashed as
//! they are written; only when the size and the sha256 digest are the descriptor's is the file
//! renamed to `blobs/sha256/<hex>`. A blob in the layout is therefore always whole and right,
//! whatever stops a download. A download cut off (the network, Ctrl-C) leaves its partial file,
//! and the next one resumes from it: its bytes are hashed again first, and it is started over
//! when the server does not resume or the result does not match.
//! Runs in: `kiln` on the build host, under the layout's lock (one writer per partial file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use crate::oci::{digest, layout};

/// The folder of a layout that holds partial downloads.
pub const INGEST_DIR: &str = "ingest";

/// A blob whose bytes are not what its digest says (they have been dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {digest} does not match its digest: its content is {actual}")]
pub struct Mismatch {
    pub digest: String,
    pub actual: String,
}

/// Why a blob did not move into the layout. A puller starts a resumed download over on a
/// [`CommitError::Mismatch`] (the kept bytes were wrong) and keeps a short one to resume.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("blob {digest} ended after {written} of its {size} bytes; the next pull resumes it")]
    Short {
        digest: String,
        written: u64,
        size: u64,
    },
    #[error(transparent)]
    Mismatch(Mismatch),
    /// Syncing, renaming or setting the mode of the blob failed.
    #[error("{action}")]
    Store {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// A partial blob being written.
#[derive(Debug)]
pub struct Ingest {
    file: File,
    path: PathBuf,
    target: PathBuf,
    digest: String,
    size: u64,
    hasher: Sha256,
    written: u64,
}

impl Ingest {
    /// Opens the partial file of the blob `digest` (`size` bytes) in the layout at `dir`,
    /// keeping what an earlier download left there (at most `size` bytes).
    pub fn open(dir: &Path, digest: &Digest, size: u64) -> Result<Self> {
        digest::require_sha256(digest)?;
        let ingest = dir.join(INGEST_DIR);
        fs::create_dir_all(&ingest)
            .with_context(|| format!("cannot create {}", ingest.display()))?;
        let path = ingest.join(digest.digest());
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // What is kept is hashed as it is read, never held whole.
        let mut hasher = Sha256::new();
        let kept = io::copy(&mut (&mut file).take(size), &mut hasher)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut ingest = Self {
            file,
            target: layout::blob_path(dir, digest),
            path,
            digest: digest.to_string(),
            size,
            hasher,
            written: kept,
        };
        ingest
            .file
            .set_len(ingest.written)
            .map_err(|err| ingest.error(err))?;
        ingest
            .file
            .seek(SeekFrom::End(0))
            .map_err(|err| ingest.error(err))?;
        Ok(ingest)
    }

    /// Bytes already there: where a resumed download starts.
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Drops what is there, to download from the start.
    pub fn restart(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|err| self.error(err))?;
        self.file.rewind().map_err(|err| self.error(err))?;
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
    }

    /// Appends `bytes`; more than the descriptor's size is refused (and the partial dropped).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let written = self.written + bytes.len() as u64;
        if written > self.size {
            self.discard();
            bail!(
                "blob {} is longer than the {} bytes its descriptor says",
                self.digest,
                self.size
            );
        }
        self.file.write_all(bytes).map_err(|err| self.error(err))?;
        self.hasher.update(bytes);
        self.written = written;
        Ok(())
    }

    /// Checks size and digest and moves the blob into the layout. A blob that is short is
    /// kept to resume; one whose digest is wrong is deleted.
    pub fn commit(mut self) -> Result<(), CommitError> {
        if self.written < self.size {
            return Err(CommitError::Short {
                digest: self.digest.clone(),
                written: self.written,
                size: self.size,
            });
        }
        let actual = digest::text(self.hasher.clone());
        if actual != self.digest {
            self.discard();
            return Err(CommitError::Mismatch(Mismatch {
                digest: self.digest.clone(),
                actual,
            }));
        }
        let store = |action: String| move |source| CommitError::Store { action, source };
        self.file
            .sync_all()
            .map_err(store(format!("cannot write {}", self.path.display())))?;
        fs::rename(&self.path, &self.target).map_err(store(format!(
            "cannot move {} to {}",
            self.path.display(),
            self.target.display()
        )))?;
        // Readable by everyone, like the layout's other files: the cache may be shared.
        fs::set_permissions(
            &self.target,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .map_err(store(format!(
            "cannot set the mode of {}",
            self.target.display()
        )))
    }

    fn discard(&mut self) {
        // The partial file is wrong: the next download starts over. If it cannot be removed
        // the digest check refuses it again, so nothing wrong ever reaches blobs/.
        let _ = fs::remove_file(&self.path);
    }

    fn error(&self, err: std::io::Error) -> anyhow::Error {
        anyhow::Error::new(err).context(format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::sha256;

    /// The sha256 digest of `bytes`.
    fn digest_of(bytes: &[u8]) -> Digest {
        Digest::try_from(sha256(bytes)).expect("a sha256 digest")
    }

    fn layout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("blobs/sha256")).expect("blobs");
        dir
    }

    #[test]
    fn a_cut_off_download_resumes_and_lands_whole() {
        let dir = layout();
        let content = b"the bytes of a layer".repeat(100);
        let digest = digest_of(&content);
        let size = content.len() as u64;
        let mut first = Ingest::open(dir.path(), &digest, size).expect("open");
        first.write(&content[..700]).expect("write");
        let error = first.commit().expect_err("short");
        assert!(format!("{error}").contains("ended after 700"), "{error}");
        assert!(!layout::blob_path(dir.path(), &digest).exists());

        let mut second = Ingest::open(dir.path(), &digest, size).expect("reopen");
        assert_eq!(second.offset(), 700);
        second.write(&content[700..]).expect("write the rest");
        second.commit().expect("commit");
        assert_eq!(
            fs::read(layout::blob_path(dir.path(), &digest)).expect("blob"),
            content
        );
        assert!(!dir.path().join(INGEST_DIR).join(digest.digest()).exists());
    }

    #[test]
    fn wrong_bytes_never_reach_the_blobs() {
        let dir = layout();
        let content = b"right".repeat(10);
        let digest = digest_of(&content);
        let size = content.len() as u64;
        let mut ingest = Ingest::open(dir.path(), &digest, size).expect("open");
        let mut wrong = content.clone();
        wrong[3] ^= 1;
        ingest.write(&wrong).expect("write");
        let error = ingest.commit().expect_err("mismatch");
        let CommitError::Mismatch(mismatch) = &error else {
            panic!("not a mismatch: {error}");
        };
        assert_eq!(mismatch.actual, sha256(&wrong));
        assert!(
            format!("{error}").contains("does not match its digest"),
            "{error}"
        );
        assert!(!layout::blob_path(dir.path(), &digest).exists());
        // The wrong partial is gone: a new download starts from nothing.
        let mut again = Ingest::open(dir.path(), &digest, size).expect("reopen");
        assert_eq!(again.offset(), 0);
        let error = again.write(&b"x".repeat(51)).expect_err("too long");
        assert!(format!("{error}").contains("longer than"), "{error}");
    }
}
