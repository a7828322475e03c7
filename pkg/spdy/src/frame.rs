//! SPDY/3 frame layer: incremental parsing and encoding of every frame type.
//!
//! The parser works on a byte slice that holds whatever has been read from the connection so far
//! and either returns a complete frame with the number of bytes it used, `Ok(None)` when more
//! input is needed, or a [`FrameError`]. Every error is fatal for the session: SPDY has no way to
//! resynchronise a byte stream after a malformed frame header, and the header compression context
//! is shared by the whole session. The parser never panics on any input (it is fuzzed), and only
//! looks at a frame's payload once the whole frame is buffered, so a peer cannot make it allocate
//! more than `max_frame_len` bytes at a time.
//!
//! Header blocks of SYN_STREAM, SYN_REPLY and HEADERS stay compressed here ([`Frame`] carries the
//! raw block); [`crate::headers`] inflates them with the session's single decompression context,
//! which must see the blocks in wire order.
//!
//! Unknown control frame types (including SPDY/3 CREDENTIAL and SPDY/2 NOOP, which this crate
//! does not use) are skipped as the spec requires and surface as [`Frame::Unknown`].

use bytes::Bytes;
use thiserror::Error;

/// The only protocol version spoken (SPDY/3 and SPDY/3.1 share version number 3).
pub const VERSION: u16 = 3;
/// Size of every frame header (data and control).
pub const HEADER_LEN: usize = 8;
/// Largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD_LEN: usize = 0x00ff_ffff;
/// Largest stream id (31 bits).
pub const MAX_STREAM_ID: u32 = 0x7fff_ffff;

/// Control frame types.
pub mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Setting ids (SPDY/3 section 2.6.4).
pub mod setting {
    pub const UPLOAD_BANDWIDTH: u32 = 1;
    pub const DOWNLOAD_BANDWIDTH: u32 = 2;
    pub const ROUND_TRIP_TIME: u32 = 3;
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    pub const CURRENT_CWND: u32 = 5;
    pub const DOWNLOAD_RETRANS_RATE: u32 = 6;
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
    pub const CLIENT_CERTIFICATE_VECTOR_SIZE: u32 = 8;
}

/// RST_STREAM status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RstStatus {
    ProtocolError,
    InvalidStream,
    RefusedStream,
    UnsupportedVersion,
    Cancel,
    InternalError,
    FlowControlError,
    StreamInUse,
    StreamAlreadyClosed,
    InvalidCredentials,
    FrameTooLarge,
    /// A status this crate does not know (never 0: that is rejected by the parser).
    Other(u32),
}

impl RstStatus {
    pub fn code(self) -> u32 {
        match self {
            RstStatus::ProtocolError => 1,
            RstStatus::InvalidStream => 2,
            RstStatus::RefusedStream => 3,
            RstStatus::UnsupportedVersion => 4,
            RstStatus::Cancel => 5,
            RstStatus::InternalError => 6,
            RstStatus::FlowControlError => 7,
            RstStatus::StreamInUse => 8,
            RstStatus::StreamAlreadyClosed => 9,
            RstStatus::InvalidCredentials => 10,
            RstStatus::FrameTooLarge => 11,
            RstStatus::Other(c) => c,
        }
    }

    pub fn from_code(code: u32) -> RstStatus {
        match code {
            1 => RstStatus::ProtocolError,
            2 => RstStatus::InvalidStream,
            3 => RstStatus::RefusedStream,
            4 => RstStatus::UnsupportedVersion,
            5 => RstStatus::Cancel,
            6 => RstStatus::InternalError,
            7 => RstStatus::FlowControlError,
            8 => RstStatus::StreamInUse,
            9 => RstStatus::StreamAlreadyClosed,
            10 => RstStatus::InvalidCredentials,
            11 => RstStatus::FrameTooLarge,
            c => RstStatus::Other(c),
        }
    }
}

impl std::fmt::Display for RstStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RstStatus::Other(c) => write!(f, "status {c}"),
            s => write!(f, "{s:?}"),
        }
    }
}

/// GOAWAY status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayStatus {
    Ok,
    ProtocolError,
    InternalError,
    Other(u32),
}

impl GoAwayStatus {
    pub fn code(self) -> u32 {
        match self {
            GoAwayStatus::Ok => 0,
            GoAwayStatus::ProtocolError => 1,
            GoAwayStatus::InternalError => 2,
            GoAwayStatus::Other(c) => c,
        }
    }

    pub fn from_code(code: u32) -> GoAwayStatus {
        match code {
            0 => GoAwayStatus::Ok,
            1 => GoAwayStatus::ProtocolError,
            2 => GoAwayStatus::InternalError,
            c => GoAwayStatus::Other(c),
        }
    }
}

/// One SETTINGS entry: flags (8 bits), id (24 bits), value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A parsed frame. Header blocks are still zlib-compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_stream_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: RstStatus,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: GoAwayStatus,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type this crate does not handle; its payload was skipped.
    Unknown {
        frame_type: u16,
        flags: u8,
        length: u32,
    },
}

/// Why a byte sequence is not a valid SPDY/3 frame (or a frame cannot be encoded).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    #[error("{frame} frame with invalid length {len}")]
    InvalidLength { frame: &'static str, len: usize },
    #[error("{0} frame on stream 0")]
    ZeroStreamId(&'static str),
    #[error("stream id {0} does not fit in 31 bits")]
    InvalidStreamId(u32),
    #[error("RST_STREAM with status 0")]
    ZeroRstStatus,
    #[error("PING with id 0")]
    ZeroPingId,
    #[error("SETTINGS announces {count} entries in {len} bytes")]
    SettingsCount { count: u32, len: usize },
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one frame from the front of `buf`.
///
/// Returns `Ok(None)` if `buf` does not hold a whole frame yet. `max_frame_len` bounds the
/// payload length (it is clamped to the 24-bit maximum); a larger frame is an error before any
/// of its payload is needed, so the caller never buffers more than that.
pub fn parse(buf: &[u8], max_frame_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let (Some(word0), Some(word1)) = (be32(buf, 0), be32(buf, 4)) else {
        return Ok(None);
    };
    let flags = (word1 >> 24) as u8;
    let len = (word1 & 0x00ff_ffff) as usize;
    let max = max_frame_len.min(MAX_PAYLOAD_LEN);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let total = HEADER_LEN + len;
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    let frame = if word0 & 0x8000_0000 == 0 {
        let stream_id = word0;
        if stream_id == 0 {
            return Err(FrameError::ZeroStreamId("DATA"));
        }
        Frame::Data {
            stream_id,
            fin: flags & FLAG_FIN != 0,
            data: Bytes::copy_from_slice(payload),
        }
    } else {
        let version = ((word0 >> 16) & 0x7fff) as u16;
        let frame_type = (word0 & 0xffff) as u16;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        parse_control(frame_type, flags, payload)?
    };
    Ok(Some((frame, total)))
}

fn stream_id_at(p: &[u8], at: usize, frame: &'static str) -> Result<u32, FrameError> {
    let id = be32(p, at).ok_or(FrameError::InvalidLength {
        frame,
        len: p.len(),
    })? & MAX_STREAM_ID;
    if id == 0 {
        return Err(FrameError::ZeroStreamId(frame));
    }
    Ok(id)
}

fn exact(p: &[u8], want: usize, frame: &'static str) -> Result<(), FrameError> {
    if p.len() != want {
        return Err(FrameError::InvalidLength {
            frame,
            len: p.len(),
        });
    }
    Ok(())
}

fn at_least(p: &[u8], want: usize, frame: &'static str) -> Result<(), FrameError> {
    if p.len() < want {
        return Err(FrameError::InvalidLength {
            frame,
            len: p.len(),
        });
    }
    Ok(())
}

fn rest(p: &[u8], from: usize) -> Bytes {
    Bytes::copy_from_slice(p.get(from..).unwrap_or_default())
}

fn parse_control(frame_type: u16, flags: u8, p: &[u8]) -> Result<Frame, FrameError> {
    let fin = flags & FLAG_FIN != 0;
    Ok(match frame_type {
        kind::SYN_STREAM => {
            const NAME: &str = "SYN_STREAM";
            at_least(p, 10, NAME)?;
            let stream_id = stream_id_at(p, 0, NAME)?;
            let associated_stream_id = be32(p, 4).unwrap_or(0) & MAX_STREAM_ID;
            let priority = p.get(8).copied().unwrap_or(0) >> 5;
            let slot = p.get(9).copied().unwrap_or(0);
            Frame::SynStream {
                stream_id,
                associated_stream_id,
                priority,
                slot,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                header_block: rest(p, 10),
            }
        }
        kind::SYN_REPLY => {
            at_least(p, 4, "SYN_REPLY")?;
            Frame::SynReply {
                stream_id: stream_id_at(p, 0, "SYN_REPLY")?,
                fin,
                header_block: rest(p, 4),
            }
        }
        kind::RST_STREAM => {
            exact(p, 8, "RST_STREAM")?;
            let stream_id = stream_id_at(p, 0, "RST_STREAM")?;
            let code = be32(p, 4).unwrap_or(0);
            if code == 0 {
                return Err(FrameError::ZeroRstStatus);
            }
            Frame::RstStream {
                stream_id,
                status: RstStatus::from_code(code),
            }
        }
        kind::SETTINGS => {
            at_least(p, 4, "SETTINGS")?;
            let count = be32(p, 0).unwrap_or(0);
            let body = p.len() - 4;
            if !body.is_multiple_of(8) || (count as usize) != body / 8 {
                return Err(FrameError::SettingsCount {
                    count,
                    len: p.len(),
                });
            }
            let entries = p
                .get(4..)
                .unwrap_or_default()
                .chunks_exact(8)
                .map(|e| {
                    let w = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
                    Setting {
                        flags: (w >> 24) as u8,
                        id: w & 0x00ff_ffff,
                        value: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                    }
                })
                .collect();
            Frame::Settings {
                clear: flags & FLAG_CLEAR_SETTINGS != 0,
                entries,
            }
        }
        kind::PING => {
            exact(p, 4, "PING")?;
            let id = be32(p, 0).unwrap_or(0);
            if id == 0 {
                return Err(FrameError::ZeroPingId);
            }
            Frame::Ping { id }
        }
        kind::GOAWAY => {
            exact(p, 8, "GOAWAY")?;
            Frame::GoAway {
                last_good_stream_id: be32(p, 0).unwrap_or(0) & MAX_STREAM_ID,
                status: GoAwayStatus::from_code(be32(p, 4).unwrap_or(0)),
            }
        }
        kind::HEADERS => {
            at_least(p, 4, "HEADERS")?;
            Frame::Headers {
                stream_id: stream_id_at(p, 0, "HEADERS")?,
                fin,
                header_block: rest(p, 4),
            }
        }
        kind::WINDOW_UPDATE => {
            exact(p, 8, "WINDOW_UPDATE")?;
            Frame::WindowUpdate {
                // Stream 0 is the session window (SPDY/3.1).
                stream_id: be32(p, 0).unwrap_or(0) & MAX_STREAM_ID,
                delta: be32(p, 4).unwrap_or(0) & 0x7fff_ffff,
            }
        }
        frame_type => Frame::Unknown {
            frame_type,
            flags,
            // A payload is at most MAX_PAYLOAD_LEN (24 bits).
            length: u32::try_from(p.len()).unwrap_or(u32::MAX),
        },
    })
}

mod encode;

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
