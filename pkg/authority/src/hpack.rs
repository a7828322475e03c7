//! Decoding a client's header block and re-encoding it without the `:authority` h2 would refuse.

use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use loona_hpack::encoder::encode_integer_into;

/// The dynamic table size h2 allows its peers (SETTINGS_HEADER_TABLE_SIZE's initial value, which
/// tonic and hyper leave unchanged): a client's size update above it is an error for h2 and for us.
pub(crate) const HEADER_TABLE_SIZE: usize = 4096;

/// Tracks the client's HPACK dynamic table across the header blocks of one connection.
pub(crate) struct BlockRewriter {
    decoder: Decoder<'static>,
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
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        BlockRewriter { decoder }
    }

    /// Decodes a complete header block (HEADERS plus its CONTINUATIONs, padding and priority
    /// removed). An error leaves the decoder's table in an unknown state: the connection cannot be
    /// rewritten past it.
    pub(crate) fn rewrite(&mut self, fragment: &[u8]) -> Result<Rewritten, DecoderError> {
        let mut out = Rewritten {
            block: Vec::with_capacity(fragment.len() * 2),
            dropped_authority: None,
        };
        self.decoder.decode_with_cb(fragment, |name, value| {
            if name.as_ref() == b":authority" && !acceptable_authority(&value) {
                out.dropped_authority = Some(value.into_owned());
                return;
            }
            encode_literal(&mut out.block, &name, &value);
        })?;
        Ok(out)
    }
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
    // Writing into a Vec cannot fail.
    let _ = encode_integer_into(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;

    fn decode_all(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        Decoder::new().decode(block).expect("our output decodes")
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
    }
}
