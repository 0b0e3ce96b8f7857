//! sha256 digests the way OCI writes them (`sha256:` and lowercase hex): of bytes in memory,
//! of a hash fed in parts, of a stream passing through a reader or writer, and the check that
//! a descriptor's digest is one kiln can verify. Every digest kiln computes or compares is
//! spelled here.
//! Runs in: `kiln` on the build host. Pure.

use std::io::{self, Read, Write};

use anyhow::{bail, Result};
use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};

/// A reader or writer that hashes and counts the bytes passing through it.
#[derive(Debug)]
pub struct Hashing<T> {
    inner: T,
    hash: Sha256,
    count: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// The inner reader or writer, the digest of what passed and how many bytes did.
    pub fn finish(self) -> (T, String, u64) {
        (self.inner, text(self.hash), self.count)
    }
}

impl<R: Read> Hashing<R> {
    /// Reads what is left, so the digest covers the whole stream; then as [`Hashing::finish`].
    pub fn drain(mut self) -> io::Result<(R, String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.finish())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    text(Sha256::new_with_prefix(bytes))
}

/// `sha256:` and the hex digest of what `hash` was fed.
pub fn text(hash: Sha256) -> String {
    of_hex(&hex(hash))
}

/// The lowercase hex digest of what `hash` was fed, without the algorithm.
pub fn hex(hash: Sha256) -> String {
    format!("{:x}", hash.finalize())
}

/// The digest whose sha256 hex is `hex` (as apt or a file name gives it).
pub fn of_hex(hex: &str) -> String {
    format!("sha256:{hex}")
}

/// Refuses a digest whose algorithm is not sha256: the only one kiln verifies.
pub fn require_sha256(digest: &Digest) -> Result<()> {
    if digest.algorithm() != &DigestAlgorithm::Sha256 {
        bail!("{digest}: only sha256 digests are supported");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_bytes_is_sha256_in_lowercase_hex() {
        assert_eq!(
            sha256(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut parts = Sha256::new();
        parts.update(b"a");
        parts.update(b"bc");
        assert_eq!(text(parts), sha256(b"abc"));
        assert_eq!(
            of_hex(&hex(Sha256::new_with_prefix(b"abc"))),
            sha256(b"abc")
        );
    }

    #[test]
    fn only_sha256_digests_are_verified() {
        let sha512 = Digest::try_from(format!("sha512:{}", "0".repeat(128))).expect("digest");
        let err = require_sha256(&sha512).expect_err("sha512 refused");
        assert!(err.to_string().contains("only sha256"), "{err}");
        let sha256 = Digest::try_from(sha256(b"")).expect("digest");
        require_sha256(&sha256).expect("sha256 accepted");
    }
}
