use super::*;

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

// Three blocks compressed by python3's zlib (compressobj(zdict=DICTIONARY) + Z_SYNC_FLUSH per
// block, one context): an independent zlib implementation.
const PY_BLOCK_0: &[u8] = &[
    0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xe5, 0x0e, 0x70, 0x3a, 0x2b, 0x29, 0x4a, 0x4d, 0xcc,
    0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x06, 0x32, 0x38, 0x8b, 0x20, 0xd1, 0x96, 0x09, 0x4a,
    0xce, 0x8c, 0x06, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
];
const PY_BLOCK_1: &[u8] = &[
    0xc2, 0xaa, 0x18, 0x98, 0xbc, 0x53, 0xf2, 0xc1, 0xa5, 0x36, 0x9a, 0x6a, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff,
];
const PY_BLOCK_2: &[u8] = &[
    0x02, 0xe5, 0x1c, 0x0c, 0xd5, 0xa0, 0x52, 0x2a, 0x11, 0x52, 0xe0, 0x17, 0x81, 0xf3, 0x96, 0x85,
    0x81, 0x85, 0x01, 0x86, 0x5e, 0x50, 0x5e, 0x60, 0xcd, 0x2d, 0xcd, 0x29, 0xc9, 0x04, 0x17, 0xd3,
    0x0c, 0x49, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
];

#[test]
fn dictionary_is_the_spdy3_one() {
    assert_eq!(DICTIONARY.len(), 1423);
    let mut adler_a: u32 = 1;
    let mut adler_b: u32 = 0;
    for &b in DICTIONARY {
        adler_a = (adler_a + b as u32) % 65521;
        adler_b = (adler_b + adler_a) % 65521;
    }
    assert_eq!((adler_b << 16) | adler_a, DICTIONARY_ID);
    assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
    assert!(DICTIONARY.ends_with(b"enq=0."));
}

#[test]
fn decodes_blocks_from_python_zlib_sharing_one_context() {
    let mut d = Decoder::new();
    assert_eq!(
        d.decode(PY_BLOCK_0).unwrap(),
        h(&[("streamtype", "error"), ("requestid", "0")])
    );
    assert_eq!(
        d.decode(PY_BLOCK_1).unwrap(),
        h(&[("streamtype", "stdout"), ("requestid", "0")])
    );
    assert_eq!(
        d.decode(PY_BLOCK_2).unwrap(),
        h(&[
            ("streamtype", "data"),
            ("port", "8080"),
            ("requestid", "1"),
            ("multi", "a"),
            ("multi", "b")
        ])
    );
}

#[test]
fn later_block_needs_the_shared_context() {
    // Block 1 refers back into block 0's window: a fresh context cannot decode it.
    let mut d = Decoder::new();
    assert!(d.decode(PY_BLOCK_1).is_err());
}

#[test]
fn decodes_a_firefox_syn_stream() {
    // A SYN_STREAM Firefox sent (from proxygen's SPDY codec tests), parsed and inflated.
    let wire = include_bytes!("../tests/data/firefox_syn_stream.bin");
    let (frame, used) = crate::frame::parse(wire, crate::frame::MAX_PAYLOAD_LEN)
        .unwrap()
        .unwrap();
    assert_eq!(used, wire.len());
    let crate::frame::Frame::SynStream {
        stream_id,
        fin,
        header_block,
        ..
    } = frame
    else {
        panic!("not a SYN_STREAM: {frame:?}");
    };
    assert_eq!((stream_id, fin), (1, true));
    let headers = Decoder::new().decode(&header_block).unwrap();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get(":method"), Some("GET"));
    assert_eq!(get(":host"), Some("www.afrind.sb.facebook.com"));
    assert_eq!(get(":path"), Some("/status.php"));
    assert_eq!(get("accept-encoding"), Some("gzip, deflate, sdch"));
    assert_eq!(headers.len(), 13);
}

#[test]
fn round_trip_across_blocks() {
    let mut e = Encoder::new();
    let mut d = Decoder::new();
    let blocks = [
        h(&[("streamtype", "error"), ("requestid", "0")]),
        h(&[("streamtype", "stdin"), ("requestid", "0")]),
        h(&[]),
        h(&[
            ("streamtype", "stdout"),
            ("requestid", "0"),
            ("x", &"v".repeat(5000)),
        ]),
        h(&[("streamtype", "stderr"), ("requestid", "0")]),
    ];
    let mut sizes = Vec::new();
    for b in &blocks {
        let wire = e.encode(b).unwrap();
        sizes.push(wire.len());
        assert_eq!(&d.decode(&wire).unwrap(), b);
    }
    // The shared context makes a repeated block much smaller than the first.
    assert!(sizes[1] < sizes[0], "{sizes:?}");
}

#[test]
fn encoder_lowercases_and_merges_names() {
    let mut e = Encoder::new();
    let wire = e
        .encode(&h(&[
            ("StreamType", "a"),
            ("streamtype", "b"),
            ("Port", "1"),
        ]))
        .unwrap();
    let raw = Decoder::new().inflate(&wire).unwrap();
    assert_eq!(
        raw,
        serialize(&h(&[("streamtype", "a\0b"), ("port", "1")])).unwrap()
    );
    let mut d = Decoder::new();
    let mut e = Encoder::new();
    let back = d
        .decode(&e.encode(&h(&[("A", "1"), ("a", "2")])).unwrap())
        .unwrap();
    assert_eq!(back, h(&[("a", "1"), ("a", "2")]));
}

#[test]
fn encoder_rejects_empty_names() {
    assert_eq!(
        Encoder::new().encode(&h(&[("", "x")])),
        Err(HeaderError::EmptyName)
    );
}

#[test]
fn encoder_output_inflates_in_python_zlib() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut e = Encoder::new();
    let a = e.encode(&h(&[("streamtype", "error")])).unwrap();
    let b = e
        .encode(&h(&[("streamtype", "stdout"), ("requestid", "7")]))
        .unwrap();
    let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let dict = hex(DICTIONARY);
    let script = "import sys,zlib\nd,a,b=sys.stdin.read().split()\nz=zlib.decompressobj(zdict=bytes.fromhex(d))\nsys.stdout.write(z.decompress(bytes.fromhex(a)).hex()+' '+z.decompress(bytes.fromhex(b)).hex())";
    let Ok(mut child) = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    else {
        eprintln!("python3 not available; skipping");
        return;
    };
    let input = format!("{dict} {} {}", hex(&a), hex(&b));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let want = format!(
        "{} {}",
        hex(&serialize(&h(&[("streamtype", "error")])).unwrap()),
        hex(&serialize(&h(&[("streamtype", "stdout"), ("requestid", "7")])).unwrap())
    );
    assert_eq!(text, want);
}

#[test]
fn zlib_bomb_is_bounded() {
    // One header with a 1 MiB value of zeros compresses to ~1 KiB.
    let mut e = Encoder::new();
    let wire = e.encode(&h(&[("x", &"\u{1}".repeat(1 << 20))])).unwrap();
    assert!(wire.len() < 8 * 1024);
    let mut d = Decoder::with_limit(64 * 1024);
    assert_eq!(d.decode(&wire), Err(HeaderError::TooLarge(64 * 1024)));
    // The default limit also stops it.
    assert_eq!(
        Decoder::new().decode(&wire),
        Err(HeaderError::TooLarge(MAX_DECOMPRESSED))
    );
}

#[test]
fn garbage_and_truncation_are_errors() {
    assert!(matches!(
        Decoder::new().decode(b"not zlib at all"),
        Err(HeaderError::Zlib(_))
    ));
    // A zlib stream with a different preset dictionary.
    let mut wrong = vec![0x78, 0xbb, 0xde, 0xad, 0xbe, 0xef];
    wrong.extend_from_slice(&[0u8; 8]);
    assert!(Decoder::new().decode(&wrong).is_err());
    assert!(Decoder::new().decode(&[]).is_err());
    let wire = Encoder::new()
        .encode(&h(&[("streamtype", "error")]))
        .unwrap();
    // Cut inside the deflate data: what inflates is an incomplete block.
    assert!(Decoder::new().decode(&wire[..wire.len() / 2]).is_err());
}

#[test]
fn parse_errors() {
    assert_eq!(parse(&[0, 0]), Err(HeaderError::Truncated));
    assert_eq!(parse(&[0, 0, 0, 9]), Err(HeaderError::TooManyEntries(9)));
    // Entry with an empty name.
    assert_eq!(
        parse(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(HeaderError::EmptyName)
    );
    // Name length past the end.
    assert_eq!(
        parse(&[0, 0, 0, 1, 0, 0, 0, 9, b'a', 0, 0, 0, 0]),
        Err(HeaderError::Truncated)
    );
    // Huge value length.
    assert_eq!(
        parse(&[0, 0, 0, 1, 0, 0, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff]),
        Err(HeaderError::Truncated)
    );
    assert_eq!(parse(&[0, 0, 0, 0, 1]), Err(HeaderError::TrailingBytes(1)));
    assert_eq!(parse(&[0, 0, 0, 0]), Ok(Headers::new()));
    // Upper-case names are accepted and lower-cased.
    assert_eq!(
        parse(&[0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 1, b'v']),
        Ok(h(&[("a", "v")]))
    );
}
