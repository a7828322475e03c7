//! SPDY/3 name/value header blocks (section 2.6.10) and their zlib compression.
//!
//! A SPDY session has exactly one compression context per direction: every SYN_STREAM,
//! SYN_REPLY and HEADERS block a peer sends continues the same zlib stream, primed with
//! [`DICTIONARY`] and ended with a `Z_SYNC_FLUSH` so each block is decodable on its own. So an
//! [`Encoder`] and a [`Decoder`] live as long as the session, and blocks must pass through them in
//! wire order (the session's writer task encodes, its reader task decodes).
//!
//! Wire rules, as the real peer (Go's spdystream framer) enforces them, because it tears the
//! whole connection down on a violation: names are lower-case, a name appears at most once per
//! block, several values of one name are joined with NUL. [`Encoder::encode`] lower-cases names
//! and merges repeated names itself. [`Decoder::decode`] is lenient the other way (lower-cases,
//! accepts repeats) and splits NUL-joined values into separate entries. Decompressed blocks are
//! bounded ([`MAX_DECOMPRESSED`] by default) so a small frame cannot inflate into a zlib bomb.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

pub use crate::dictionary::{DICTIONARY, DICTIONARY_ID};

/// Header list: `(name, value)` pairs, names lower-case. A name may repeat (SPDY joins the values
/// with NUL on the wire).
pub type Headers = Vec<(String, String)>;

/// Default bound on one decompressed header block.
pub const MAX_DECOMPRESSED: usize = 256 * 1024;

/// Why a header block could not be encoded or decoded. Decoding errors are fatal for the session
/// (the shared decompression context is unusable afterwards).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("zlib: {0}")]
    Zlib(String),
    #[error("decompressed header block exceeds {0} bytes")]
    TooLarge(usize),
    #[error("header block truncated")]
    Truncated,
    #[error("header block announces {0} entries, more than it can hold")]
    TooManyEntries(u32),
    #[error("empty header name")]
    EmptyName,
    #[error("{0} trailing bytes after the header block")]
    TrailingBytes(usize),
    #[error("header name or value longer than 4 GiB")]
    FieldTooLong,
    #[error("zlib stream ended by the peer")]
    StreamEnded,
    /// A hop-by-hop header the Go peer rejects by closing the connection.
    #[error("header {0:?} is not allowed in SPDY")]
    Forbidden(String),
}

/// Compressor for the headers this side sends.
pub struct Encoder {
    z: Compress,
    primed: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            z: Compress::new(Compression::default(), true),
            primed: false,
        }
    }

    /// Serialises and compresses one header block (ending it with a sync flush).
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, HeaderError> {
        let raw = serialize(headers)?;
        if !self.primed {
            self.z
                .set_dictionary(DICTIONARY)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            self.primed = true;
        }
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let start = self.z.total_in();
        loop {
            let used = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            let input = raw.get(used..).unwrap_or_default();
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            let used = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            // Done once all input is in and zlib left spare room (the flush is complete).
            if used >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Builds the uncompressed block: distinct names in first-seen order, values NUL-joined.
pub fn serialize(headers: &[(String, String)]) -> Result<Vec<u8>, HeaderError> {
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let len32 = |n: usize| u32::try_from(n).map_err(|_| HeaderError::FieldTooLong);
    let mut raw = Vec::with_capacity(
        4 + merged
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>(),
    );
    raw.extend_from_slice(&len32(merged.len())?.to_be_bytes());
    for (name, value) in &merged {
        raw.extend_from_slice(&len32(name.len())?.to_be_bytes());
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(&len32(value.len())?.to_be_bytes());
        raw.extend_from_slice(value.as_bytes());
    }
    Ok(raw)
}

/// Decompressor for the headers the peer sends.
pub struct Decoder {
    z: Decompress,
    max: usize,
    ended: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::with_limit(MAX_DECOMPRESSED)
    }

    /// A decoder that rejects blocks inflating to more than `max` bytes.
    pub fn with_limit(max: usize) -> Decoder {
        Decoder {
            z: Decompress::new(true),
            max,
            ended: false,
        }
    }

    /// Inflates one block (continuing the session's zlib stream) and parses it.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.inflate(block)?;
        parse(&raw)
    }

    /// Inflates one block without parsing it.
    pub fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        if self.ended {
            return Err(HeaderError::StreamEnded);
        }
        let mut out: Vec<u8> = Vec::new();
        let start = self.z.total_in();
        loop {
            let used = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            let input = block.get(used..).unwrap_or_default();
            let budget = (self.max + 1).saturating_sub(out.len());
            if budget == 0 {
                return Err(HeaderError::TooLarge(self.max));
            }
            if out.capacity() == out.len() {
                out.reserve_exact(budget.min(16 * 1024));
            }
            let before_out = out.len();
            let before_in = self.z.total_in();
            match self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    self.ended = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary() == Some(DICTIONARY_ID) => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| HeaderError::Zlib(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            }
            if out.len() > self.max {
                return Err(HeaderError::TooLarge(self.max));
            }
            let used = usize::try_from(self.z.total_in() - start).unwrap_or(usize::MAX);
            let progressed = out.len() != before_out || self.z.total_in() != before_in;
            if used >= block.len() && out.len() < out.capacity() {
                break;
            }
            if !progressed && out.len() < out.capacity() {
                // Neither input taken nor output produced although there is room: the block
                // ends in the middle of a deflate symbol.
                return Err(HeaderError::Truncated);
            }
        }
        if out.len() > self.max {
            return Err(HeaderError::TooLarge(self.max));
        }
        Ok(out)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Result<u32, HeaderError> {
        let s = self.bytes(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        let end = self.at.checked_add(n).ok_or(HeaderError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(HeaderError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }
}

/// Parses an uncompressed name/value block.
pub fn parse(raw: &[u8]) -> Result<Headers, HeaderError> {
    let mut c = Cursor { b: raw, at: 0 };
    let count = c.u32()?;
    // Every entry needs at least two length fields.
    if count as usize > c.remaining() / 8 {
        return Err(HeaderError::TooManyEntries(count));
    }
    let mut headers = Headers::with_capacity(count as usize);
    for _ in 0..count {
        let n = c.u32()? as usize;
        let name = c.bytes(n)?;
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let n = c.u32()? as usize;
        let value = c.bytes(n)?;
        for v in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    if c.remaining() != 0 {
        return Err(HeaderError::TrailingBytes(c.remaining()));
    }
    Ok(headers)
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
