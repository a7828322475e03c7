//! HPACK's Huffman code (RFC 7541 Appendix B), decoded bit by bit against per-length code lists.
//!
//! The code table comes from `httlib-huffman`; the lists are built once per process. (loona-hpack,
//! which we used first, rebuilds a hash map of the whole code for every string it decodes: about
//! 10 µs a string, 70 µs per gRPC request.)

use std::sync::OnceLock;

/// The longest code (RFC 7541 Appendix B).
const MAX_CODE_LEN: usize = 30;
const EOS: u16 = 256;

/// Per code length, the codes of that length, sorted, with their symbols.
struct Codes {
    by_len: Vec<Vec<(u32, u16)>>,
}

fn codes() -> &'static Codes {
    static CODES: OnceLock<Codes> = OnceLock::new();
    CODES.get_or_init(|| {
        let mut by_len = vec![Vec::new(); MAX_CODE_LEN + 1];
        for (symbol, &(len, code)) in httlib_huffman::encoder::table::ENCODE_TABLE
            .iter()
            .enumerate()
        {
            if let (Some(list), Ok(symbol)) =
                (by_len.get_mut(usize::from(len)), u16::try_from(symbol))
            {
                list.push((code, symbol));
            }
        }
        for list in &mut by_len {
            list.sort_unstable();
        }
        Codes { by_len }
    })
}

/// Why a Huffman string does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HuffmanError {
    /// A bit sequence longer than any code, or the EOS symbol inside the string.
    InvalidCode,
    /// Padding longer than 7 bits or not the EOS code's leading ones (RFC 7541 §5.2).
    InvalidPadding,
}

/// Decodes `src` and appends the octets to `dst`.
pub(crate) fn decode(src: &[u8], dst: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let codes = codes();
    let mut code: u32 = 0;
    let mut len: usize = 0;
    for byte in src {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let list = codes.by_len.get(len).ok_or(HuffmanError::InvalidCode)?;
            if let Ok(i) = list.binary_search_by_key(&code, |&(c, _)| c) {
                let symbol = list[i].1;
                if symbol == EOS {
                    return Err(HuffmanError::InvalidCode);
                }
                // Every symbol but EOS is an octet.
                dst.push(u8::try_from(symbol).map_err(|_| HuffmanError::InvalidCode)?);
                code = 0;
                len = 0;
            }
        }
    }
    // What is left must be at most 7 bits, all ones: the start of the EOS code.
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::InvalidPadding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut encoded = Vec::new();
        httlib_huffman::encode(&all, &mut encoded).unwrap();
        let mut decoded = Vec::new();
        decode(&encoded, &mut decoded).unwrap();
        assert_eq!(decoded, all);
    }

    #[test]
    fn agrees_with_loona_hpack_on_many_strings() {
        let mut seed = 0x2545_f491_u32;
        for n in 0..2000 {
            let s: Vec<u8> = (0..(n % 97))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    u8::try_from(seed % 256).unwrap()
                })
                .collect();
            let mut encoded = Vec::new();
            httlib_huffman::encode(&s, &mut encoded).unwrap();
            let mut ours = Vec::new();
            decode(&encoded, &mut ours).unwrap();
            let theirs = loona_hpack::huffman::HuffmanDecoder::new()
                .decode(&encoded)
                .unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(ours, s);
        }
    }

    #[test]
    fn rfc7541_example_and_bad_padding() {
        // C.4.1: "www.example.com".
        let src = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        let mut out = Vec::new();
        decode(&src, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        // A whole byte of padding (8 ones), and padding that is not all ones.
        assert_eq!(
            decode(&[0xff], &mut Vec::new()),
            Err(HuffmanError::InvalidPadding)
        );
        assert_eq!(
            decode(&[0x00], &mut Vec::new()),
            Err(HuffmanError::InvalidPadding)
        );
        // EOS itself (30 ones) inside a string.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc], &mut Vec::new()),
            Err(HuffmanError::InvalidCode)
        );
    }
}
