//! Arbitrary bytes through the frame parser and the header decompressor.
//!
//! Properties: nothing panics; every frame the parser returns re-encodes to bytes that parse back
//! to the same frame; header blocks of parsed frames go through one shared decoder (as in a
//! session), and the raw input also goes through a fresh decoder and the block parser.
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_spdy::frame::{self, Frame};
use berth_spdy::headers::{self, Decoder, Encoder};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = match data.first() {
        Some(b) if b % 2 == 0 => 4096,
        _ => frame::MAX_PAYLOAD_LEN,
    };
    let mut shared = Decoder::with_limit(64 * 1024);
    let mut rest = data;
    while let Ok(Some((f, n))) = frame::parse(rest, max) {
        assert!(n >= frame::HEADER_LEN && n <= rest.len());
        rest = &rest[n..];
        if !matches!(f, Frame::Unknown { .. }) {
            let mut out = BytesMut::new();
            f.encode(&mut out).expect("a parsed frame encodes");
            let (back, used) = frame::parse(&out, max)
                .expect("re-parse")
                .expect("whole frame");
            assert_eq!(used, out.len());
            assert_eq!(back, f);
        }
        if let Frame::SynStream { header_block, .. }
        | Frame::SynReply { header_block, .. }
        | Frame::Headers { header_block, .. } = &f
            && let Ok(h) = shared.decode(header_block)
        {
            // Whatever decodes survives an encode/decode round trip, up to order: names are
            // lower-case already, and repeated names are merged then split again.
            let mut enc = Encoder::new();
            let mut dec = Decoder::new();
            let wire = enc.encode(&h).expect("decoded headers encode");
            let mut again = dec.decode(&wire).expect("own output decodes");
            let mut h = h;
            again.sort();
            h.sort();
            assert_eq!(again, h);
        }
    }
    let _ = Decoder::with_limit(64 * 1024).decode(data);
    let _ = headers::parse(data);
});
