//! How outputs are stored: zstd-compressed where it pays, as they are
//! otherwise.
//!
//! Go's outputs (compiled packages, mostly) compress about 3.5x, and on a
//! real link a fleet pays for its bucket and its transfers by the byte. An
//! output is compressed when it is at least [`MIN_SIZE`] bytes and the
//! result saves at least one part in [`MIN_SAVING`]; otherwise (tiny
//! objects, already-compressed data) it is stored as it is, readable by
//! every version of gocache. The level ([`DEFAULT_LEVEL`]) and both
//! thresholds were chosen by measuring real caches (see the remote tier's
//! section of `DESIGN.md`).
//!
//! Both directions stream; nothing holds a whole large output:
//!
//! - [`encode`] compresses from a reader once, keeping the result in
//!   memory only while it is at most a bound ([`KEEP_IN_MEMORY`]); past
//!   it, only the length is kept, and the upload compresses again as it
//!   sends ([`Encoder::open`]), with the same parameters and the same
//!   reads, so the bytes and their length are the same (an S3 put must say
//!   its length before its body). Outputs up to several MiB compress once.
//! - [`Decoding`] is a sink that decompresses what is written to it into
//!   another sink, refusing more than the expected length (the action
//!   entry gives it) and frames whose window would need more than
//!   `2^`[`WINDOW_LOG_MAX`] bytes of memory.
//!
//! The caller checks the decompressed bytes' length and SHA-256 against
//! the action entry, as for a stored-as-is output: a damaged compressed
//! object is refused like any other, never served.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

/// The zstd level used unless told otherwise: see `DESIGN.md` for the
/// measurement.
pub const DEFAULT_LEVEL: i32 = 1;

/// The highest level accepted: its window (8 MiB) is what a reader
/// allows ([`WINDOW_LOG_MAX`]).
pub const MAX_LEVEL: i32 = 19;

/// Outputs smaller than this are stored as they are: the bytes saved do
/// not pay for a request's worth of anything.
pub const MIN_SIZE: u64 = 1024;

/// A compressed output is kept only when it is at most `(n - 1) / n` of
/// the original, i.e. it saves at least 1/n (already-compressed data does
/// not).
pub const MIN_SAVING: u64 = 8;

/// Compressed bytes an upload keeps in memory to send without
/// compressing again; beyond it, it compresses twice and keeps nothing.
pub const KEEP_IN_MEMORY: usize = 4 << 20;

/// The largest window a reader accepts, as a power of two (8 MiB): level
/// 19's for large inputs. A frame that asks for more is refused before it
/// allocates it.
pub const WINDOW_LOG_MAX: u32 = 23;

/// What [`encode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Encoded {
    /// Not worth it: store the output as it is.
    AsIs,
    /// Compressed, small enough to keep: these bytes.
    Bytes(Vec<u8>),
    /// Compressed to this many bytes, not kept: compress again to send.
    Stream {
        /// The compressed length.
        len: u64,
    },
}

/// Reads the first `len` bytes of a file with positioned reads (so that
/// passes over it never move its offset and always read alike); a file
/// shorter than `len` is an error.
pub struct FileReader<'a> {
    file: &'a std::fs::File,
    pos: u64,
    len: u64,
}

impl<'a> FileReader<'a> {
    /// The first `len` bytes of `file`.
    pub fn new(file: &'a std::fs::File, len: u64) -> FileReader<'a> {
        FileReader { file, pos: 0, len }
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        loop {
            return match self.file.read_at(&mut buf[..n], self.pos) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended at {} of {} bytes", self.pos, self.len),
                )),
                Ok(got) => {
                    self.pos += got as u64;
                    Ok(got)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

/// One way to compress an output: its level and length. Every pass made
/// with the same `Encoder` over the same bytes gives the same result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoder {
    /// The zstd level, 1 to [`MAX_LEVEL`].
    pub level: i32,
    /// The output's length (written in the frame header, so a reader can
    /// check it before it decompresses anything).
    pub size: u64,
}

impl Encoder {
    /// A reader of `src`, compressed.
    pub fn open<'a, R: Read + 'a>(&self, src: R) -> io::Result<impl Read + 'a> {
        // One buffer size for every pass: what zstd reads at a time, so
        // that it sees the same input in the same pieces.
        let buffered = BufReader::with_capacity(zstd::zstd_safe::CCtx::in_size(), src);
        let mut e = zstd::stream::read::Encoder::with_buffer(buffered, self.level)?;
        e.set_pledged_src_size(Some(self.size))?;
        e.include_contentsize(true)?;
        // The caller checks SHA-256; zstd's own checksum would add nothing.
        e.include_checksum(false)?;
        e.include_dictid(false)?;
        Ok(e)
    }
}

/// Compresses `src` (which holds `encoder.size` bytes) once, deciding
/// whether the output is worth storing compressed. Stops as soon as the
/// result is too big to save [`MIN_SAVING`]. Outputs under [`MIN_SIZE`]
/// are not read at all.
pub fn encode(src: impl Read, encoder: Encoder, keep: usize) -> io::Result<Encoded> {
    if encoder.size < MIN_SIZE {
        return Ok(Encoded::AsIs);
    }
    let worth = encoder.size - encoder.size / MIN_SAVING;
    let mut compressed = encoder.open(src)?;
    let mut kept = Vec::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match compressed.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n as u64;
        if len > worth {
            return Ok(Encoded::AsIs);
        }
        if len <= keep as u64 {
            kept.extend_from_slice(&buf[..n]);
        } else if !kept.is_empty() {
            kept = Vec::new();
        }
    }
    Ok(if len <= keep as u64 {
        Encoded::Bytes(kept)
    } else {
        Encoded::Stream { len }
    })
}

/// Why a [`Decoding`] refused what was written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFault {
    /// It decompressed to more than the expected length.
    TooLong,
    /// It is not a zstd stream this reader accepts (damaged, or a window
    /// over `2^WINDOW_LOG_MAX`).
    Invalid(String),
    /// The sink behind it failed (a local error, not the object's).
    Sink(io::ErrorKind, String),
}

/// Bounds and watches the sink behind the decoder.
struct Limit<'a> {
    inner: &'a mut dyn Write,
    left: u64,
    written: u64,
    fault: Option<DecodeFault>,
}

impl Write for Limit<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.fault = Some(DecodeFault::TooLong);
            return Err(io::Error::other("decompressed past the expected length"));
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.left -= n as u64;
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.fault = Some(DecodeFault::Sink(e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.fault = Some(DecodeFault::Sink(e.kind(), e.to_string()));
        })
    }
}

/// A sink that decompresses a zstd stream into another sink, at most
/// `limit` bytes of it.
pub struct Decoding<'a> {
    decoder: zstd::stream::write::Decoder<'static, Limit<'a>>,
    fault: Option<DecodeFault>,
}

impl<'a> Decoding<'a> {
    /// Decompresses into `inner`, refusing more than `limit` bytes.
    pub fn new(inner: &'a mut dyn Write, limit: u64) -> io::Result<Decoding<'a>> {
        let limit = Limit {
            inner,
            left: limit,
            written: 0,
            fault: None,
        };
        let mut decoder = zstd::stream::write::Decoder::new(limit)?;
        decoder.window_log_max(WINDOW_LOG_MAX)?;
        Ok(Decoding {
            decoder,
            fault: None,
        })
    }

    /// Ends the stream: everything decompressed so far reaches the sink.
    /// Returns the bytes written to it, or why the stream was refused.
    pub fn finish(mut self) -> Result<u64, DecodeFault> {
        if let Some(f) = self.fault() {
            return Err(f);
        }
        if let Err(e) = self.decoder.flush() {
            return Err(self
                .decoder
                .get_mut()
                .fault
                .take()
                .unwrap_or(DecodeFault::Invalid(e.to_string())));
        }
        Ok(self.decoder.get_ref().written)
    }

    /// Why a write failed, if one did.
    pub fn fault(&mut self) -> Option<DecodeFault> {
        self.decoder
            .get_mut()
            .fault
            .clone()
            .or_else(|| self.fault.clone())
    }
}

impl Write for Decoding<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.decoder.write(buf).inspect_err(|e| {
            if self.decoder.get_ref().fault.is_none() {
                self.fault = Some(DecodeFault::Invalid(e.to_string()));
            }
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would gain nothing; `finish` ends it.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that compress like code: repeated words with some noise.
    fn compressible(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let words: [&[u8]; 6] = [
            b"func ",
            b"return ",
            b"runtime.",
            b"0x00",
            b"\n\t",
            b"type ",
        ];
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if rng.u8(..) < 40 {
                out.push(rng.u8(..));
            } else {
                out.extend_from_slice(words[rng.usize(..words.len())]);
            }
        }
        out.truncate(len);
        out
    }

    fn decode(data: &[u8], limit: u64) -> Result<Vec<u8>, DecodeFault> {
        let mut out = Vec::new();
        let mut d = Decoding::new(&mut out, limit).unwrap();
        // Small writes, as a network read gives them.
        for chunk in data.chunks(1000) {
            if d.write_all(chunk).is_err() {
                return Err(d.fault().expect("a failed write says why"));
            }
        }
        let n = d.finish()?;
        assert_eq!(n as usize, out.len());
        Ok(out)
    }

    #[test]
    fn small_and_incompressible_outputs_stay_as_they_are() {
        let e = |size| Encoder { level: 3, size };
        let tiny = compressible(1000, 1);
        assert_eq!(encode(&tiny[..], e(1000), 1 << 20).unwrap(), Encoded::AsIs);
        let mut noise = vec![0u8; 300_000];
        fastrand::Rng::with_seed(2).fill(&mut noise);
        assert_eq!(
            encode(&noise[..], e(300_000), 1 << 20).unwrap(),
            Encoded::AsIs
        );
    }

    #[test]
    fn both_passes_give_the_same_bytes_and_they_decode_back() {
        let data = compressible(3 << 20, 3);
        let enc = Encoder {
            level: 3,
            size: data.len() as u64,
        };
        let Encoded::Bytes(kept) = encode(&data[..], enc, 16 << 20).unwrap() else {
            panic!("compressible data, kept in memory");
        };
        assert!(kept.len() * 3 < data.len(), "{}", kept.len());
        // Too big to keep: only the length, and the second pass (from a
        // file, read in other pieces) gives the same bytes.
        let Encoded::Stream { len } = encode(&data[..], enc, 1000).unwrap() else {
            panic!("over the bound: streamed");
        };
        assert_eq!(len, kept.len() as u64);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let mut again = Vec::new();
        enc.open(FileReader::new(&file, data.len() as u64))
            .unwrap()
            .read_to_end(&mut again)
            .unwrap();
        assert_eq!(again, kept);
        assert_eq!(decode(&kept, data.len() as u64).unwrap(), data);
    }

    #[test]
    fn decoding_refuses_what_is_too_long_damaged_or_too_demanding() {
        let data = compressible(200_000, 4);
        let enc = Encoder {
            level: 3,
            size: data.len() as u64,
        };
        let Encoded::Bytes(z) = encode(&data[..], enc, 1 << 20).unwrap() else {
            panic!()
        };
        assert_eq!(
            decode(&z, data.len() as u64 - 1).unwrap_err(),
            DecodeFault::TooLong
        );
        let mut bad = z.clone();
        bad[0] ^= 0xff; // the magic number
        assert!(matches!(
            decode(&bad, data.len() as u64),
            Err(DecodeFault::Invalid(_))
        ));
        // Cut short: fewer bytes, which the caller's length check refuses.
        let short = decode(&z[..z.len() / 2], data.len() as u64).unwrap();
        assert!(short.len() < data.len());
        // A frame whose window is over the limit: refused before it
        // allocates the window.
        let mut big = Vec::new();
        {
            let mut w = zstd::stream::write::Encoder::new(&mut big, 3).unwrap();
            w.window_log(WINDOW_LOG_MAX + 2).unwrap();
            w.long_distance_matching(true).unwrap();
            w.write_all(&compressible(1 << 20, 5)).unwrap();
            w.finish().unwrap();
        }
        assert!(matches!(
            decode(&big, 1 << 20),
            Err(DecodeFault::Invalid(_))
        ));
    }

    #[test]
    fn a_sink_that_fails_is_a_local_fault() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::StorageFull))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = compressible(100_000, 6);
        let enc = Encoder {
            level: 1,
            size: data.len() as u64,
        };
        let Encoded::Bytes(z) = encode(&data[..], enc, 1 << 20).unwrap() else {
            panic!()
        };
        let mut sink = Full;
        let mut d = Decoding::new(&mut sink, 1 << 20).unwrap();
        let fault = match d.write_all(&z) {
            Err(_) => d.fault(),
            Ok(()) => d.finish().err(),
        };
        assert!(
            matches!(
                fault,
                Some(DecodeFault::Sink(io::ErrorKind::StorageFull, _))
            ),
            "{fault:?}"
        );
    }
}
