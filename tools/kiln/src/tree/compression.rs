//! The compressions an initramfs can have, as the kernel unpacks them: gzip, zstd, LZ4 in
//! the legacy frame the kernel's decompressor reads (`lz4 -l`: a magic number, then blocks
//! of 8 MiB of input each, each led by its compressed size), or none.
//! Runs in: `kiln build` on the build host (writing the initrd) and `kiln pkg build` (reading
//! a kernel compressed with lz4). Writes only to the stream it is given.

use std::fmt;
use std::io::{self, Write};

/// LZ4's legacy frame magic number, as it is written (little-endian 0x184C2102).
pub const LZ4_LEGACY: &[u8] = b"\x02\x21\x4c\x18";
/// A legacy frame's block holds this much input; only the last one holds less.
const LZ4_BLOCK: usize = 8 << 20;
/// zstd's level for an initramfs: measured in BENCHMARKS.md, about gzip's speed of
/// compression for two thirds of its size; levels above it take many times longer for a
/// few percent.
const ZSTD_LEVEL: i32 = 9;

/// How an initramfs is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    Gzip,
    #[default]
    Zstd,
    Lz4,
    None,
}

impl Compression {
    pub const NAMES: [&'static str; 4] = ["zstd", "gzip", "lz4", "none"];

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "zstd" => Ok(Self::Zstd),
            "gzip" => Ok(Self::Gzip),
            "lz4" => Ok(Self::Lz4),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown compression `{other}`; the compressions are {}",
                Self::NAMES.join(", ")
            )),
        }
    }

    /// A writer that compresses into `out`; [`Encoder::finish`] ends the stream.
    pub fn encoder<W: Write>(self, out: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Self::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Self::Zstd => {
                let mut zstd = zstd::stream::Encoder::new(out, ZSTD_LEVEL)?;
                // The kernel's decompressor needs the checksum no more than the size.
                zstd.include_checksum(false)?;
                Encoder::Zstd(zstd)
            }
            Self::Lz4 => Encoder::Lz4(Lz4Legacy::new(out)?),
            Self::None => Encoder::None(out),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
            Self::None => "none",
        };
        f.write_str(name)
    }
}

/// A compressing writer of one of the [`Compression`]s.
pub enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::Encoder<'static, W>),
    Lz4(Lz4Legacy<W>),
    None(W),
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Gzip(_) => "gzip",
            Self::Zstd(_) => "zstd",
            Self::Lz4(_) => "lz4",
            Self::None(_) => "none",
        };
        write!(f, "Encoder({name})")
    }
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and gives back the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::Gzip(gzip) => gzip.finish(),
            Self::Zstd(zstd) => zstd.finish(),
            Self::Lz4(lz4) => lz4.finish(),
            Self::None(out) => Ok(out),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(gzip) => gzip.write(buf),
            Self::Zstd(zstd) => zstd.write(buf),
            Self::Lz4(lz4) => lz4.write(buf),
            Self::None(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(gzip) => gzip.flush(),
            Self::Zstd(zstd) => zstd.flush(),
            Self::Lz4(lz4) => lz4.flush(),
            Self::None(out) => out.flush(),
        }
    }
}

/// Writes LZ4's legacy frame: input gathered into blocks of 8 MiB, each written as its
/// compressed size (32 bits, little-endian) and the compressed block.
pub struct Lz4Legacy<W: Write> {
    out: W,
    block: Vec<u8>,
}

impl<W: Write> fmt::Debug for Lz4Legacy<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lz4Legacy({} bytes pending)", self.block.len())
    }
}

impl<W: Write> Lz4Legacy<W> {
    fn new(mut out: W) -> io::Result<Self> {
        out.write_all(LZ4_LEGACY)?;
        Ok(Self {
            out,
            block: Vec::with_capacity(LZ4_BLOCK),
        })
    }

    fn write_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let compressed = lz4_flex::block::compress(&self.block);
        let size = u32::try_from(compressed.len())
            .map_err(|_| io::Error::other("an lz4 block does not fit in 32 bits"))?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&compressed)?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.write_block()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Lz4Legacy<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = LZ4_BLOCK - self.block.len();
        let taken = buf.len().min(room);
        self.block.extend_from_slice(&buf[..taken]);
        if self.block.len() == LZ4_BLOCK {
            self.write_block()?;
        }
        Ok(taken)
    }

    /// Writes nothing early: a block shorter than 8 MiB ends the frame.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses an LZ4 legacy frame that starts at `data` (its magic number included) and
/// may be followed by other data: blocks until one comes out shorter than 8 MiB or does not
/// decode.
pub fn unlz4_legacy(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = LZ4_LEGACY.len();
    while let Some(size) = data.get(at..at + 4) {
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let Some(block) = data.get(at + 4..at + 4 + size) else {
            break;
        };
        match lz4_flex::block::decompress(block, LZ4_BLOCK) {
            Ok(chunk) => {
                let last = chunk.len() < LZ4_BLOCK;
                out.extend_from_slice(&chunk);
                if last {
                    break;
                }
            }
            Err(_) => break,
        }
        at += 4 + size;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// 20 MiB that compress but are not all alike: three lz4 blocks, the last short.
    fn input() -> Vec<u8> {
        (0..20u32 << 20)
            .map(|i| (i / 7 % 251) ^ (i >> 16))
            .map(|i| u8::try_from(i % 256).unwrap_or_default())
            .collect()
    }

    fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
        let mut encoder = compression.encoder(Vec::new()).expect("encoder");
        // Uneven writes, as the cpio writer makes them.
        for chunk in data.chunks(1_000_003) {
            encoder.write_all(chunk).expect("write");
        }
        encoder.finish().expect("finish")
    }

    #[test]
    fn each_compression_round_trips_and_names_itself() {
        let data = input();
        let gzip = compress(Compression::Gzip, &data);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        assert_eq!(out, data);
        let zstd = compress(Compression::Zstd, &data);
        assert_eq!(zstd::decode_all(&zstd[..]).expect("unzstd"), data);
        assert!(
            zstd.len() < gzip.len(),
            "zstd {} gzip {}",
            zstd.len(),
            gzip.len()
        );
        let lz4 = compress(Compression::Lz4, &data);
        assert!(lz4.starts_with(LZ4_LEGACY));
        let first = u32::from_le_bytes(lz4[4..8].try_into().unwrap()) as usize;
        assert_eq!(
            lz4_flex::block::decompress(&lz4[8..8 + first], LZ4_BLOCK)
                .unwrap()
                .len(),
            LZ4_BLOCK,
            "a full first block"
        );
        assert_eq!(unlz4_legacy(&lz4), data);
        assert_eq!(compress(Compression::None, &data), data);
        for name in Compression::NAMES {
            assert_eq!(Compression::parse(name).unwrap().to_string(), name);
        }
        assert_eq!(Compression::default(), Compression::Zstd);
        assert!(Compression::parse("xz")
            .unwrap_err()
            .contains("the compressions are zstd, gzip, lz4, none"));
    }
}
