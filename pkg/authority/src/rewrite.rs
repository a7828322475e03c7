//! The client-to-server half of an HTTP/2 connection, rewritten frame by frame (RFC 9113 §4, §6).
//!
//! Only header blocks are collected and rewritten; the payloads of all other frames are copied as
//! they arrive, and [`Rewriter::forwardable`] lets the caller copy them without going through us.

use crate::hpack::BlockRewriter;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// SETTINGS_MAX_FRAME_SIZE's initial value, which hyper's server keeps unless told otherwise: no
/// frame the client sends may be larger, and none we send h2 is.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16_384;

/// A header block (HEADERS plus CONTINUATIONs) larger than this is not collected: the connection
/// is handed to h2 unchanged from there on. gRPC clients' metadata is far smaller (grpc-go caps
/// what it receives at 16 KiB).
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Rewrites the bytes a client sends: feed it what was read, forward what it writes to `out`.
pub struct Rewriter {
    state: State,
    max_frame_size: usize,
    hpack: BlockRewriter,
    /// The preface, frame header or frame payload read so far.
    partial: Vec<u8>,
    /// The header block being assembled, between a HEADERS frame without END_HEADERS and the
    /// CONTINUATION that ends it.
    block: Option<PendingBlock>,
    dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Preface,
    FrameHeader,
    /// Copying the payload of a frame that is not part of a header block.
    Forward {
        remaining: usize,
    },
    /// Collecting the payload of a HEADERS or CONTINUATION frame into `partial`.
    Collect {
        header: [u8; FRAME_HEADER_LEN],
    },
    /// Given up on rewriting: everything is copied unchanged.
    Passthrough,
}

struct PendingBlock {
    stream_id: u32,
    /// END_STREAM and PRIORITY of the HEADERS frame; END_HEADERS is set on whatever ends the block.
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as received, handed to h2 unchanged if the block cannot be rewritten.
    raw: Vec<u8>,
}

struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored, as RFC 9113 §4.1 says receivers must.
            stream_id: u32::from_be_bytes([b[5] & 0x7f, b[6], b[7], b[8]]),
        }
    }
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Rewriter {
    /// `max_frame_size` is the SETTINGS_MAX_FRAME_SIZE the server advertises.
    pub fn new(max_frame_size: usize) -> Rewriter {
        Rewriter {
            state: State::Preface,
            max_frame_size,
            hpack: BlockRewriter::new(),
            partial: Vec::with_capacity(FRAME_HEADER_LEN),
            block: None,
            dropped: 0,
        }
    }

    /// How many `:authority` fields were left out so far.
    pub fn dropped_authorities(&self) -> u64 {
        self.dropped
    }

    /// How many of the next input bytes may be copied to the server as they are, without
    /// [`Rewriter::feed`]; report them with [`Rewriter::forwarded`].
    pub fn forwardable(&self) -> Option<usize> {
        match self.state {
            State::Passthrough => Some(usize::MAX),
            State::Forward { remaining } => Some(remaining),
            _ => None,
        }
    }

    /// Records that `n` bytes (at most [`Rewriter::forwardable`]) were copied unchanged.
    pub fn forwarded(&mut self, n: usize) {
        if let State::Forward { remaining } = self.state {
            let remaining = remaining.saturating_sub(n);
            self.state = if remaining == 0 {
                State::FrameHeader
            } else {
                State::Forward { remaining }
            };
        }
    }

    /// Consumes all of `input`, appending what the server is to read to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Forward { remaining } => {
                    let n = remaining.min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    self.forwarded(n);
                }
                State::Preface => {
                    input = self.fill(input, PREFACE.len());
                    if !PREFACE.starts_with(&self.partial) {
                        // Not HTTP/2 with prior knowledge: h2 will say so.
                        self.give_up(out);
                    } else if self.partial.len() == PREFACE.len() {
                        out.append(&mut self.partial);
                        self.state = State::FrameHeader;
                    }
                }
                State::FrameHeader => {
                    input = self.fill(input, FRAME_HEADER_LEN);
                    if let Ok(header) = <[u8; FRAME_HEADER_LEN]>::try_from(self.partial.as_slice())
                    {
                        self.partial.clear();
                        self.on_frame_header(header, out);
                    }
                }
                State::Collect { header } => {
                    let len = FrameHeader::parse(&header).len;
                    input = self.fill(input, len);
                    if self.partial.len() == len {
                        self.on_collected(header, out);
                    }
                }
            }
        }
    }

    /// The client closed its side: whatever was held back goes to h2 as it was, so h2 sees the
    /// same truncated frame the client sent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.give_up(out);
    }

    /// Moves bytes from `input` into `partial` until it holds `want`; returns the rest of `input`.
    fn fill<'a>(&mut self, input: &'a [u8], want: usize) -> &'a [u8] {
        let n = want.saturating_sub(self.partial.len()).min(input.len());
        self.partial.extend_from_slice(&input[..n]);
        &input[n..]
    }

    fn on_frame_header(&mut self, header: [u8; FRAME_HEADER_LEN], out: &mut Vec<u8>) {
        let frame = FrameHeader::parse(&header);
        let collect = match &self.block {
            Some(block) => frame.kind == TYPE_CONTINUATION && frame.stream_id == block.stream_id,
            None => frame.kind == TYPE_HEADERS,
        };
        if collect && frame.len <= self.max_frame_size {
            self.state = State::Collect { header };
            if frame.len == 0 {
                self.on_collected(header, out);
            }
        } else if collect || self.block.is_some() {
            // An oversized header frame, or a frame interleaved in a header block: both are
            // connection errors h2 will report once it sees the bytes.
            self.partial.extend_from_slice(&header);
            self.give_up(out);
        } else {
            out.extend_from_slice(&header);
            self.state = if frame.len == 0 {
                State::FrameHeader
            } else {
                State::Forward {
                    remaining: frame.len,
                }
            };
        }
    }

    /// A whole HEADERS or CONTINUATION frame is in `partial`.
    fn on_collected(&mut self, header: [u8; FRAME_HEADER_LEN], out: &mut Vec<u8>) {
        let frame = FrameHeader::parse(&header);
        let payload = std::mem::take(&mut self.partial);
        self.state = State::FrameHeader;
        let mut block = match self.block.take() {
            Some(block) => block,
            None => match PendingBlock::start(&frame) {
                Some(block) => block,
                None => {
                    self.partial = [&header[..], &payload[..]].concat();
                    return self.give_up(out);
                }
            },
        };
        block.raw.extend_from_slice(&header);
        block.raw.extend_from_slice(&payload);
        let fragment = if frame.kind == TYPE_HEADERS {
            headers_fragment(&frame, &payload).map(|(priority, fragment)| {
                block.priority = priority;
                fragment
            })
        } else {
            Some(&payload[..])
        };
        let Some(fragment) = fragment else {
            self.block = Some(block);
            return self.give_up(out);
        };
        block.fragment.extend_from_slice(fragment);
        if block.raw.len() > MAX_HEADER_BLOCK {
            self.block = Some(block);
            return self.give_up(out);
        }
        if frame.flags & FLAG_END_HEADERS == 0 {
            self.block = Some(block);
            return;
        }
        match self.hpack.rewrite(&block.fragment) {
            Ok(rewritten) => {
                if let Some(authority) = rewritten.dropped_authority {
                    self.dropped += 1;
                    if self.dropped == 1 {
                        tracing::debug!(
                            authority = %String::from_utf8_lossy(&authority),
                            "leaving out an :authority h2 would refuse"
                        );
                    }
                }
                block.emit(&rewritten.block, self.max_frame_size, out);
            }
            Err(e) => {
                tracing::debug!(error = %e, "header block does not decode; passing the connection through");
                self.block = Some(block);
                self.give_up(out);
            }
        }
    }

    /// Hands everything held back to h2 unchanged and stops rewriting this connection.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.raw);
        }
        if let State::Collect { header } = self.state {
            out.extend_from_slice(&header);
        }
        out.append(&mut self.partial);
        self.state = State::Passthrough;
    }
}

impl PendingBlock {
    fn start(frame: &FrameHeader) -> Option<PendingBlock> {
        (frame.kind == TYPE_HEADERS).then(|| PendingBlock {
            stream_id: frame.stream_id,
            flags: frame.flags & (FLAG_END_STREAM | FLAG_PRIORITY),
            priority: None,
            fragment: Vec::new(),
            raw: Vec::new(),
        })
    }

    /// Writes the rewritten block as a HEADERS frame and as many CONTINUATIONs as it needs.
    fn emit(&self, block: &[u8], max_frame_size: usize, out: &mut Vec<u8>) {
        let priority = self.priority.as_ref().map_or(&[][..], |p| &p[..]);
        let first_room = max_frame_size.saturating_sub(priority.len()).max(1);
        let (first, mut rest) = block.split_at(first_room.min(block.len()));
        let end = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        write_frame_header(
            out,
            priority.len() + first.len(),
            TYPE_HEADERS,
            self.flags | end,
            self.stream_id,
        );
        out.extend_from_slice(priority);
        out.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(max_frame_size.min(rest.len()));
            let end = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
            write_frame_header(out, chunk.len(), TYPE_CONTINUATION, end, self.stream_id);
            out.extend_from_slice(chunk);
            rest = tail;
        }
    }
}

/// The priority fields and header block fragment of a HEADERS payload, padding removed (RFC 9113
/// §6.2); `None` when padding and priority do not fit, which h2 treats as a PROTOCOL_ERROR.
fn headers_fragment<'a>(
    frame: &FrameHeader,
    payload: &'a [u8],
) -> Option<(Option<[u8; 5]>, &'a [u8])> {
    let mut start = 0;
    let mut pad = 0;
    if frame.flags & FLAG_PADDED != 0 {
        pad = usize::from(*payload.first()?);
        start = 1;
    }
    let mut priority = None;
    if frame.flags & FLAG_PRIORITY != 0 {
        priority = Some(<[u8; 5]>::try_from(payload.get(start..start + 5)?).ok()?);
        start += 5;
    }
    let end = payload.len().checked_sub(pad)?;
    Some((priority, payload.get(start..end)?))
}

fn write_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream_id: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream_id.to_be_bytes());
}
