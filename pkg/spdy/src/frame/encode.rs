//! Encoding: the wire form of each [`Frame`]. Header blocks must already be compressed.

use bytes::{BufMut, BytesMut};

use super::{
    FLAG_CLEAR_SETTINGS, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, FrameError, HEADER_LEN,
    MAX_PAYLOAD_LEN, MAX_STREAM_ID, VERSION, kind,
};

fn check_id(id: u32) -> Result<u32, FrameError> {
    if id > MAX_STREAM_ID {
        return Err(FrameError::InvalidStreamId(id));
    }
    Ok(id)
}

/// `len` as the 24-bit length field of a frame header, or `TooLarge`.
fn length_field(len: usize) -> Result<u32, FrameError> {
    u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_PAYLOAD_LEN)
        .ok_or(FrameError::TooLarge {
            len,
            max: MAX_PAYLOAD_LEN,
        })
}

fn control_header(
    out: &mut BytesMut,
    frame_type: u16,
    flags: u8,
    len: usize,
) -> Result<(), FrameError> {
    let len = length_field(len)?;
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32(((flags as u32) << 24) | len);
    Ok(())
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

impl Frame {
    /// Appends the wire form of this frame to `out`. On error nothing is appended.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if *stream_id == 0 {
                    return Err(FrameError::ZeroStreamId("DATA"));
                }
                check_id(*stream_id)?;
                let len = length_field(data.len())?;
                out.reserve(HEADER_LEN + data.len());
                out.put_u32(*stream_id);
                out.put_u32(((fin_flag(*fin) as u32) << 24) | len);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_stream_id,
                priority,
                slot,
                fin,
                unidirectional,
                header_block,
            } => {
                let flags = fin_flag(*fin)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control_header(out, kind::SYN_STREAM, flags, 10 + header_block.len())?;
                out.put_u32(check_id(*stream_id)?);
                out.put_u32(*associated_stream_id & MAX_STREAM_ID);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(*slot);
                out.put_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                check_id(*stream_id)?;
                control_header(out, kind::SYN_REPLY, fin_flag(*fin), 4 + header_block.len())?;
                out.put_u32(*stream_id);
                out.put_slice(header_block);
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                check_id(*stream_id)?;
                control_header(out, kind::HEADERS, fin_flag(*fin), 4 + header_block.len())?;
                out.put_u32(*stream_id);
                out.put_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                check_id(*stream_id)?;
                if status.code() == 0 {
                    return Err(FrameError::ZeroRstStatus);
                }
                control_header(out, kind::RST_STREAM, 0, 8)?;
                out.put_u32(*stream_id);
                out.put_u32(status.code());
            }
            Frame::Settings { clear, entries } => {
                let len = entries
                    .len()
                    .checked_mul(8)
                    .and_then(|l| l.checked_add(4))
                    .unwrap_or(usize::MAX);
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control_header(out, kind::SETTINGS, flags, len)?;
                // Fits: the payload length (8 per entry) passed control_header's check.
                out.put_u32(length_field(entries.len())?);
                for e in entries {
                    out.put_u32(((e.flags as u32) << 24) | (e.id & 0x00ff_ffff));
                    out.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                if *id == 0 {
                    return Err(FrameError::ZeroPingId);
                }
                control_header(out, kind::PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                check_id(*last_good_stream_id)?;
                control_header(out, kind::GOAWAY, 0, 8)?;
                out.put_u32(*last_good_stream_id);
                out.put_u32(status.code());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                check_id(*stream_id)?;
                control_header(out, kind::WINDOW_UPDATE, 0, 8)?;
                out.put_u32(*stream_id);
                out.put_u32(*delta & 0x7fff_ffff);
            }
            Frame::Unknown {
                frame_type,
                flags,
                length,
            } => {
                // Only for tests and fuzz seeds: a frame of that type with a zeroed payload.
                let len = *length as usize;
                control_header(out, *frame_type, *flags, len)?;
                out.put_bytes(0, len);
            }
        }
        Ok(())
    }

    /// The stream this frame belongs to (0 for session-level frames).
    pub fn stream_id(&self) -> u32 {
        match self {
            Frame::Data { stream_id, .. }
            | Frame::SynStream { stream_id, .. }
            | Frame::SynReply { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::WindowUpdate { stream_id, .. } => *stream_id,
            _ => 0,
        }
    }
}
