//! SPDY/3.1 frames as a Kubernetes streaming client sends and receives them, and the zlib-compressed
//! name/value header blocks (one compression context per direction for the whole connection, each
//! block ended with a sync flush so it decodes on its own).

use anyhow::{Context, bail};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The zlib preset dictionary for SPDY/3 header blocks (SPDY/3 draft, section 2.6.10.1), the one
/// thing taken from pkg/spdy (checked against the draft's length and Adler-32 below).
pub use berth_spdy::DICTIONARY;

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;

pub const FLAG_FIN: u8 = 0x01;
/// SETTINGS id of the initial stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// RST_STREAM statuses a client sends.
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// Frames longer than this are refused (SPDY's length field has 24 bits).
const MAX_FRAME: usize = (1 << 24) - 1;

pub type Headers = Vec<(String, String)>;

/// One decoded frame. Header blocks are already decompressed.
#[derive(Debug)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    SynStream {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        entries: Vec<(u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    Unknown {
        kind: u16,
    },
}

/// The 8-byte frame header: whether it is a control frame, then (type or stream id), flags, length.
pub struct FrameHead {
    pub control: bool,
    /// Control frame type, or the stream id of a data frame.
    pub kind_or_stream: u32,
    pub flags: u8,
    pub len: usize,
}

pub fn parse_head(head: &[u8; 8]) -> anyhow::Result<FrameHead> {
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let control = first & 0x8000_0000 != 0;
    let kind_or_stream = if control {
        let version = (first >> 16) & 0x7fff;
        if version != 3 {
            bail!("SPDY control frame of version {version}, not 3");
        }
        first & 0xffff
    } else {
        first & 0x7fff_ffff
    };
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    Ok(FrameHead {
        control,
        kind_or_stream,
        flags: head[4],
        len,
    })
}

fn be32(b: &[u8], at: usize) -> anyhow::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .context("SPDY frame too short")
}

/// Decodes the payload of a frame whose head was read; `inflate` decompresses header blocks.
pub fn decode(head: &FrameHead, payload: Vec<u8>, inflate: &mut Inflater) -> anyhow::Result<Frame> {
    let fin = head.flags & FLAG_FIN != 0;
    if !head.control {
        return Ok(Frame::Data {
            stream: head.kind_or_stream,
            fin,
            data: payload,
        });
    }
    let p = &payload;
    let stream = || be32(p, 0).map(|v| v & 0x7fff_ffff);
    // parse_head masked a control frame's type to 16 bits.
    Ok(
        match u16::try_from(head.kind_or_stream).context("SPDY control frame type")? {
            SYN_STREAM => Frame::SynStream {
                stream: stream()?,
                fin,
                headers: inflate.block(p.get(10..).context("short SYN_STREAM")?)?,
            },
            SYN_REPLY => Frame::SynReply {
                stream: stream()?,
                fin,
                headers: inflate.block(p.get(4..).context("short SYN_REPLY")?)?,
            },
            RST_STREAM => Frame::RstStream {
                stream: stream()?,
                status: be32(p, 4)?,
            },
            SETTINGS => {
                let n = be32(p, 0)? as usize;
                let mut entries = Vec::with_capacity(n.min(16));
                for i in 0..n {
                    let id = be32(p, 4 + 8 * i)? & 0x00ff_ffff;
                    entries.push((id, be32(p, 8 + 8 * i)?));
                }
                Frame::Settings { entries }
            }
            PING => Frame::Ping { id: be32(p, 0)? },
            GOAWAY => Frame::GoAway {
                last_stream: stream()?,
                status: be32(p, 4).unwrap_or(0),
            },
            HEADERS => {
                // Decompress anyway: the block advances the shared zlib context.
                inflate.block(p.get(4..).context("short HEADERS")?)?;
                Frame::Headers {
                    stream: stream()?,
                    fin,
                }
            }
            WINDOW_UPDATE => Frame::WindowUpdate {
                stream: stream()?,
                delta: be32(p, 4)? & 0x7fff_ffff,
            },
            kind => Frame::Unknown { kind },
        },
    )
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_FRAME, "SPDY frame too long");
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8003_0000u32 | kind as u32).to_be_bytes());
    out.push(flags);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("asserted above")
            .to_be_bytes()[1..],
    );
    out.extend_from_slice(payload);
    out
}

pub fn data(stream: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= MAX_FRAME, "SPDY frame too long");
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(if fin { FLAG_FIN } else { 0 });
    out.extend_from_slice(
        &u32::try_from(data.len())
            .expect("asserted above")
            .to_be_bytes()[1..],
    );
    out.extend_from_slice(data);
    out
}

pub fn syn_stream(stream: u32, fin: bool, block: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(10 + block.len());
    p.extend_from_slice(&stream.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // associated-to stream
    p.extend_from_slice(&[0, 0]); // priority 0 (highest), slot 0
    p.extend_from_slice(block);
    control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &p)
}

pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut p = stream.to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &p)
}

pub fn window_update(stream: u32, delta: u32) -> Vec<u8> {
    let mut p = stream.to_be_bytes().to_vec();
    p.extend_from_slice(&delta.to_be_bytes());
    control(WINDOW_UPDATE, 0, &p)
}

pub fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

pub fn go_away(last_stream: u32) -> Vec<u8> {
    let mut p = last_stream.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    control(GOAWAY, 0, &p)
}

/// The uncompressed name/value block: count, then length-prefixed names and values.
fn encode_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let count = u32::try_from(headers.len()).expect("a test's header block is small");
    let mut out = count.to_be_bytes().to_vec();
    for (name, value) in headers {
        for s in [name.to_ascii_lowercase().as_str(), value] {
            let len = u32::try_from(s.len()).expect("a test's header is small");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// The sending side's header compression context.
pub struct Deflater(Compress);

impl Deflater {
    pub fn new() -> anyhow::Result<Deflater> {
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(DICTIONARY)
            .context("zlib set_dictionary (needs flate2's zlib-rs backend)")?;
        Ok(Deflater(c))
    }

    /// Compresses one header block, ended with a sync flush.
    pub fn block(&mut self, headers: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
        let input = encode_block(headers);
        let mut out = Vec::with_capacity(input.len() + 64);
        let start_in = self.0.total_in();
        loop {
            let consumed =
                usize::try_from(self.0.total_in() - start_in).expect("at most the input's length");
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.0
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .context("compressing a SPDY header block")?;
            let done = usize::try_from(self.0.total_in() - start_in)
                .expect("at most the input's length")
                == input.len();
            // A sync flush is complete once zlib leaves output space unused.
            if done && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's header decompression context.
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater(Decompress::new(true))
    }

    /// Decompresses one header block and parses its names and values.
    pub fn block(&mut self, input: &[u8]) -> anyhow::Result<Headers> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start_in = self.0.total_in();
        loop {
            let consumed =
                usize::try_from(self.0.total_in() - start_in).expect("at most the input's length");
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before_out = out.len();
            match self
                .0
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => bail!("the peer ended its SPDY header zlib stream"),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(DICTIONARY)
                        .context("setting the SPDY header dictionary")?;
                }
                Err(e) => return Err(e).context("decompressing a SPDY header block"),
            }
            let consumed =
                usize::try_from(self.0.total_in() - start_in).expect("at most the input's length");
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
            if consumed == input.len() && out.len() == before_out {
                break;
            }
        }
        parse_block(&out)
    }
}

fn parse_block(b: &[u8]) -> anyhow::Result<Headers> {
    let n = be32(b, 0)? as usize;
    let mut at = 4;
    let mut take = || -> anyhow::Result<String> {
        let len = be32(b, at)? as usize;
        let s = b
            .get(at + 4..at + 4 + len)
            .context("truncated SPDY header block")?;
        at += 4 + len;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    let mut headers = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let name = take()?;
        let value = take()?;
        headers.push((name, value));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in DICTIONARY {
            a = (a + byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2, "Adler-32 of the dictionary");
    }

    #[test]
    fn header_blocks_round_trip_across_one_zlib_stream() {
        let mut deflate = Deflater::new().unwrap();
        let mut inflate = Inflater::new();
        for i in 0..3 {
            let value = format!("value-{i}");
            let block = deflate
                .block(&[("streamType", "stdout"), ("x-n", &value)])
                .unwrap();
            let headers = inflate.block(&block).unwrap();
            assert_eq!(
                headers,
                [
                    ("streamtype".to_string(), "stdout".to_string()),
                    ("x-n".to_string(), value)
                ]
            );
        }
    }

    #[test]
    fn frames_encode_and_decode() {
        let mut inflate = Inflater::new();
        let mut deflate = Deflater::new().unwrap();
        let block = deflate.block(&[("port", "80")]).unwrap();
        for (bytes, check) in [
            (
                data(5, true, b"abc"),
                "Data { stream: 5, fin: true, data: [97, 98, 99] }",
            ),
            (
                window_update(3, 100),
                "WindowUpdate { stream: 3, delta: 100 }",
            ),
            (
                rst_stream(7, RST_CANCEL),
                "RstStream { stream: 7, status: 5 }",
            ),
            (ping(9), "Ping { id: 9 }"),
            (
                syn_stream(1, false, &block),
                "SynStream { stream: 1, fin: false, headers: [(\"port\", \"80\")] }",
            ),
        ] {
            let head = parse_head(bytes[..8].try_into().unwrap()).unwrap();
            assert_eq!(head.len, bytes.len() - 8);
            let frame = decode(&head, bytes[8..].to_vec(), &mut inflate).unwrap();
            assert_eq!(format!("{frame:?}"), check);
        }
    }
}
