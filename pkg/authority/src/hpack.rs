//! Decoding a client's header block (RFC 7541) and re-encoding it without the `:authority` h2
//! would refuse.
//!
//! The decoder is ours: it only has to track the client's dynamic table and hand each field over,
//! and the crates we tried either rebuild the Huffman code per string or panic on bad input.

use std::collections::VecDeque;

use crate::huffman::{self, HuffmanError};

/// The dynamic table size h2 allows its peers (SETTINGS_HEADER_TABLE_SIZE's initial value, which
/// tonic and hyper leave unchanged): a client's size update above it is an error for h2 and for us.
pub(crate) const HEADER_TABLE_SIZE: usize = 4096;

/// Integers above this are refused (h2 refuses those over 4 continuation octets, about 2^28).
const MAX_INTEGER: usize = 1 << 28;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Why a header block does not decode; the connection is then left to h2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    Truncated,
    IntegerTooLarge,
    BadIndex,
    Huffman(HuffmanError),
    /// A size update above what h2 allows, or after the first field of a block.
    BadSizeUpdate,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Tracks the client's HPACK dynamic table across the header blocks of one connection.
pub(crate) struct BlockRewriter {
    /// Newest first, as HPACK indexes it.
    dynamic: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
}

/// What [`BlockRewriter::rewrite`] did to one block.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rewritten {
    /// The block for h2: every field a literal without indexing, in the client's order.
    pub block: Vec<u8>,
    /// The `:authority` value that was left out, if any.
    pub dropped_authority: Option<Vec<u8>>,
}

impl BlockRewriter {
    pub(crate) fn new() -> BlockRewriter {
        BlockRewriter {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: HEADER_TABLE_SIZE,
        }
    }

    /// Decodes a complete header block (HEADERS plus its CONTINUATIONs, padding and priority
    /// removed). An error leaves the table in an unknown state: the connection cannot be
    /// rewritten past it.
    pub(crate) fn rewrite(&mut self, mut block: &[u8]) -> Result<Rewritten, DecodeError> {
        let mut out = Rewritten {
            block: Vec::with_capacity(block.len() * 2),
            dropped_authority: None,
        };
        let mut fields_seen = false;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.get(index)?;
                emit(&mut out, name, value);
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update: only at the start of a block (RFC 7541 §4.2).
                let size = integer(&mut block, 5)?;
                if fields_seen || size > HEADER_TABLE_SIZE {
                    return Err(DecodeError::BadSizeUpdate);
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
                let indexing = first & 0x40 != 0;
                let index = integer(&mut block, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    string(&mut block)?
                } else {
                    self.get(index)?.0.to_vec()
                };
                let value = string(&mut block)?;
                emit(&mut out, &name, &value);
                if indexing {
                    self.insert(name, value);
                }
            }
            fields_seen = true;
        }
        Ok(out)
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
        match index {
            0 => Err(DecodeError::BadIndex),
            1..=61 => Ok(STATIC_TABLE[index - 1]),
            _ => self
                .dynamic
                .get(index - 62)
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .ok_or(DecodeError::BadIndex),
        }
    }

    /// Adds an entry, evicting the oldest ones to make room (RFC 7541 §4.4); an entry larger than
    /// the table empties it and is not added.
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let entry = name.len() + value.len() + 32;
        self.evict(entry);
        if entry <= self.max_size {
            self.size += entry;
            self.dynamic.push_front((name, value));
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.dynamic.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }
}

/// Appends a field to the block for h2, or leaves out an `:authority` h2 would refuse.
fn emit(out: &mut Rewritten, name: &[u8], value: &[u8]) {
    if name == b":authority" && !acceptable_authority(value) {
        out.dropped_authority = Some(value.to_vec());
    } else {
        encode_literal(&mut out.block, name, value);
    }
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1), consumed from `buf`.
fn integer(buf: &mut &[u8], prefix_bits: u8) -> Result<usize, DecodeError> {
    let (&first, rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
    *buf = rest;
    let max = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let (&byte, rest) = buf.split_first().ok_or(DecodeError::Truncated)?;
        *buf = rest;
        value += usize::from(byte & 0x7f) << shift;
        if value > MAX_INTEGER {
            return Err(DecodeError::IntegerTooLarge);
        }
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// An HPACK string literal (RFC 7541 §5.2), raw or Huffman-coded, consumed from `buf`.
fn string(buf: &mut &[u8]) -> Result<Vec<u8>, DecodeError> {
    let huffman_coded = buf.first().is_some_and(|b| b & 0x80 != 0);
    let len = integer(buf, 7)?;
    if len > buf.len() {
        return Err(DecodeError::Truncated);
    }
    let (raw, rest) = buf.split_at(len);
    *buf = rest;
    if !huffman_coded {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::with_capacity(len * 8 / 5);
    huffman::decode(raw, &mut out).map_err(DecodeError::Huffman)?;
    Ok(out)
}

/// What h2 accepts as `:authority`: it parses the value with `http::uri::Authority`.
fn acceptable_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// "Literal Header Field without Indexing — New Name" (RFC 7541 §6.2.2), no Huffman coding: h2's
/// dynamic table stays empty, so no later block depends on how this one was encoded.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_string(out, name);
    encode_string(out, value);
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, s.len(), 7);
    out.extend_from_slice(s);
}

// Every byte cast is of a value below the prefix's maximum (at most 255 for 8 bits) or masked to
// 7 bits.
#[allow(clippy::cast_possible_truncation)]
fn encode_integer(out: &mut Vec<u8>, mut value: usize, prefix_bits: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::{Decoder, Encoder};

    fn decode_all(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Decoder::new().decode(block).expect("our output decodes")
    }

    #[test]
    fn static_table_matches_an_independent_decoder() {
        for index in 1..=61u8 {
            let ours = BlockRewriter::new().rewrite(&[0x80 | index]).unwrap();
            let theirs = Decoder::new().decode(&[0x80 | index]).unwrap();
            if index == 1 {
                // An empty :authority is left out.
                assert_eq!(ours.dropped_authority, Some(Vec::new()));
                continue;
            }
            assert_eq!(decode_all(&ours.block), theirs, "static index {index}");
        }
    }

    #[test]
    fn integers_round_trip_and_huge_ones_are_refused() {
        for value in [0usize, 1, 30, 31, 126, 127, 128, 1337, 4096, 1 << 20] {
            for prefix in [4u8, 5, 6, 7] {
                let mut buf = Vec::new();
                encode_integer(&mut buf, value, prefix);
                let mut slice = buf.as_slice();
                assert_eq!(integer(&mut slice, prefix), Ok(value));
                assert!(slice.is_empty());
            }
        }
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(integer(&mut huge, 7), Err(DecodeError::IntegerTooLarge));
        let mut cut: &[u8] = &[0x7f, 0xff];
        assert_eq!(integer(&mut cut, 7), Err(DecodeError::Truncated));
    }

    #[test]
    fn table_eviction_follows_the_size_rules() {
        // A table of 100 bytes holds one 60-byte entry at a time; the client's encoder agrees.
        let mut encoder = Encoder::new();
        encoder.set_max_table_size(100);
        let mut rewriter = BlockRewriter::new();
        let mut first = vec![0x3f, 0x45]; // size update to 100
        first.extend(encoder.encode([(&b"x-a"[..], &[b'a'; 25][..])]));
        rewriter.rewrite(&first).unwrap();
        for (name, value) in [(&b"x-b"[..], &[b'b'; 25][..]), (b"x-a", &[b'a'; 25])] {
            let block = encoder.encode([(name, value)]);
            let out = rewriter.rewrite(&block).unwrap();
            assert_eq!(
                decode_all(&out.block),
                vec![(name.to_vec(), value.to_vec())]
            );
        }
        assert_eq!(rewriter.dynamic.len(), 1);
        assert!(rewriter.size <= 100);
    }

    #[test]
    fn acceptable_authorities_match_what_h2_parses() {
        for ok in [
            &b"localhost"[..],
            b"localhost:1234",
            b"berth",
            b"[::1]:80",
            b"a.b",
        ] {
            assert!(
                acceptable_authority(ok),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"/run/berth/berth.sock"[..],
            b"%2Frun%2Fberth%2Fberth.sock",
            b"",
            b"a b",
            b"unix:///run/berth.sock",
        ] {
            assert!(
                !acceptable_authority(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn drops_a_path_authority_and_keeps_everything_else_in_order() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", b"/run/berth/berth.sock"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ];
        let block = Encoder::new().encode(headers.iter().copied());
        let out = BlockRewriter::new().rewrite(&block).unwrap();
        assert_eq!(
            out.dropped_authority.as_deref(),
            Some(&b"/run/berth/berth.sock"[..])
        );
        let expected: Vec<_> = headers
            .iter()
            .filter(|(n, _)| *n != b":authority")
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(decode_all(&out.block), expected);
    }

    #[test]
    fn keeps_a_valid_authority() {
        let headers: Vec<(&[u8], &[u8])> = vec![(b":authority", b"localhost"), (b":path", b"/")];
        let block = Encoder::new().encode(headers.iter().copied());
        let out = BlockRewriter::new().rewrite(&block).unwrap();
        assert_eq!(out.dropped_authority, None);
        assert_eq!(decode_all(&out.block).len(), 2);
    }

    #[test]
    fn follows_the_clients_dynamic_table_across_blocks() {
        // The encoder indexes the first block's fields; the second block refers to them by index.
        let mut encoder = Encoder::new();
        let mut rewriter = BlockRewriter::new();
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":authority", b"%2Frun%2Fberth.sock"),
            (b"x-custom", b"one"),
        ];
        for round in 0..3 {
            let block = encoder.encode(headers.iter().copied());
            let out = rewriter.rewrite(&block).unwrap();
            assert!(out.dropped_authority.is_some(), "round {round}");
            assert_eq!(
                decode_all(&out.block),
                vec![(b"x-custom".to_vec(), b"one".to_vec())],
                "round {round}"
            );
        }
    }

    #[test]
    fn rfc7541_huffman_requests_decode_and_keep_their_authority() {
        // RFC 7541 Appendix C.4.1 and C.4.2: Huffman-coded, the second block indexes the first's.
        let c41 = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        let c42 = [
            0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
        ];
        let mut rewriter = BlockRewriter::new();
        let first = rewriter.rewrite(&c41).unwrap();
        let second = rewriter.rewrite(&c42).unwrap();
        let authority = (b":authority".to_vec(), b"www.example.com".to_vec());
        assert!(decode_all(&first.block).contains(&authority));
        let second = decode_all(&second.block);
        assert!(second.contains(&authority));
        assert!(second.contains(&(b"cache-control".to_vec(), b"no-cache".to_vec())));
    }

    #[test]
    fn refuses_garbage_and_oversized_table_updates() {
        assert!(BlockRewriter::new().rewrite(&[0xff, 0xff, 0xff]).is_err());
        // Dynamic table size update to 8192 (0x3f e1 3f), above what h2 allows.
        assert!(
            BlockRewriter::new()
                .rewrite(&[0x3f, 0xe1, 0x3f, 0x82])
                .is_err()
        );
        // Indexed field 70: nothing in the dynamic table.
        assert!(BlockRewriter::new().rewrite(&[0xc6]).is_err());
        // A size update after a field.
        assert!(BlockRewriter::new().rewrite(&[0x82, 0x20]).is_err());
        // A string longer than the block, and bad Huffman padding.
        assert!(BlockRewriter::new().rewrite(&[0x00, 0x05, b'a']).is_err());
        assert!(
            BlockRewriter::new()
                .rewrite(&[0x00, 0x81, 0xff, 0x00])
                .is_err()
        );
    }
}
