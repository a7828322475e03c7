use super::*;
use bytes::BytesMut;

const MAX: usize = MAX_PAYLOAD_LEN;

fn all_frames() -> Vec<Frame> {
    vec![
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: MAX_STREAM_ID,
            fin: true,
            data: Bytes::new(),
        },
        Frame::SynStream {
            stream_id: 3,
            associated_stream_id: 1,
            priority: 7,
            slot: 2,
            fin: true,
            unidirectional: true,
            header_block: Bytes::from_static(b"\x78\xbb"),
        },
        Frame::SynStream {
            stream_id: 5,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: Bytes::new(),
        },
        Frame::SynReply {
            stream_id: 3,
            fin: true,
            header_block: Bytes::from_static(b"abc"),
        },
        Frame::RstStream {
            stream_id: 3,
            status: RstStatus::Cancel,
        },
        Frame::RstStream {
            stream_id: 3,
            status: RstStatus::Other(99),
        },
        Frame::Settings {
            clear: true,
            entries: vec![
                Setting {
                    flags: 1,
                    id: setting::INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                },
                Setting {
                    flags: 0,
                    id: setting::MAX_CONCURRENT_STREAMS,
                    value: 100,
                },
            ],
        },
        Frame::Settings {
            clear: false,
            entries: vec![],
        },
        Frame::Ping { id: 0xffff_ffff },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: GoAwayStatus::ProtocolError,
        },
        Frame::Headers {
            stream_id: 9,
            fin: false,
            header_block: Bytes::from_static(b"x"),
        },
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 0x7fff_ffff,
        },
        Frame::Unknown {
            frame_type: 10,
            flags: 3,
            length: 5,
        },
    ]
}

#[test]
fn every_frame_round_trips() {
    for f in all_frames() {
        let mut out = BytesMut::new();
        f.encode(&mut out).unwrap();
        let (back, used) = parse(&out, MAX).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(back, f);
    }
}

#[test]
fn incremental_parse_waits_for_whole_frames() {
    let mut wire = BytesMut::new();
    for f in all_frames() {
        f.encode(&mut wire).unwrap();
    }
    let frames = all_frames();
    // Feed one byte at a time.
    let mut got = Vec::new();
    let mut start = 0;
    for end in 0..=wire.len() {
        if let Some((f, n)) = parse(&wire[start..end], MAX).unwrap() {
            got.push(f);
            start += n;
        }
    }
    assert_eq!(start, wire.len());
    assert_eq!(got, frames);
}

#[test]
fn wire_layout_matches_the_spec() {
    let mut out = BytesMut::new();
    Frame::Ping { id: 1 }.encode(&mut out).unwrap();
    assert_eq!(
        &out[..],
        &[0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]
    );
    out.clear();
    Frame::Data {
        stream_id: 3,
        fin: true,
        data: Bytes::from_static(b"ab"),
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(&out[..], &[0, 0, 0, 3, 0x01, 0, 0, 2, b'a', b'b']);
    out.clear();
    Frame::WindowUpdate {
        stream_id: 5,
        delta: 10,
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(
        &out[..],
        &[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 10]
    );
    out.clear();
    Frame::GoAway {
        last_good_stream_id: 1,
        status: GoAwayStatus::Ok,
    }
    .encode(&mut out)
    .unwrap();
    assert_eq!(
        &out[..],
        &[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0]
    );
}

fn control(frame_type: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 0x03];
    v.extend_from_slice(&frame_type.to_be_bytes());
    v.push(flags);
    v.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes()[1..]);
    v.extend_from_slice(payload);
    v
}

#[test]
fn parse_error_paths() {
    let err = |b: &[u8]| parse(b, MAX).unwrap_err();
    // Frame too large: reported from the header alone.
    assert_eq!(
        parse(&[0, 0, 0, 1, 0, 0x10, 0, 0], 4096).unwrap_err(),
        FrameError::TooLarge {
            len: 0x10_0000,
            max: 4096
        }
    );
    assert_eq!(
        err(&[0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]),
        FrameError::UnsupportedVersion(2)
    );
    assert_eq!(
        err(&[0, 0, 0, 0, 0, 0, 0, 0]),
        FrameError::ZeroStreamId("DATA")
    );
    assert!(matches!(
        err(&control(kind::SYN_STREAM, 0, &[0; 9])),
        FrameError::InvalidLength { .. }
    ));
    assert_eq!(
        err(&control(kind::SYN_STREAM, 0, &[0; 10])),
        FrameError::ZeroStreamId("SYN_STREAM")
    );
    assert!(matches!(
        err(&control(kind::SYN_REPLY, 0, &[0; 3])),
        FrameError::InvalidLength { .. }
    ));
    assert_eq!(
        err(&control(kind::SYN_REPLY, 0, &[0; 4])),
        FrameError::ZeroStreamId("SYN_REPLY")
    );
    assert!(matches!(
        err(&control(kind::RST_STREAM, 0, &[0; 7])),
        FrameError::InvalidLength { .. }
    ));
    assert_eq!(
        err(&control(kind::RST_STREAM, 0, &[0; 8])),
        FrameError::ZeroStreamId("RST_STREAM")
    );
    assert_eq!(
        err(&control(kind::RST_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0])),
        FrameError::ZeroRstStatus
    );
    assert!(matches!(
        err(&control(kind::SETTINGS, 0, &[0; 3])),
        FrameError::InvalidLength { .. }
    ));
    assert_eq!(
        err(&control(
            kind::SETTINGS,
            0,
            &[0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 1]
        )),
        FrameError::SettingsCount { count: 2, len: 12 }
    );
    assert_eq!(
        err(&control(kind::SETTINGS, 0, &[0, 0, 0, 1, 0, 0, 0, 7, 0])),
        FrameError::SettingsCount { count: 1, len: 9 }
    );
    assert!(matches!(
        err(&control(kind::PING, 0, &[0; 5])),
        FrameError::InvalidLength { .. }
    ));
    assert_eq!(
        err(&control(kind::PING, 0, &[0; 4])),
        FrameError::ZeroPingId
    );
    assert!(matches!(
        err(&control(kind::GOAWAY, 0, &[0; 4])),
        FrameError::InvalidLength { .. }
    ));
    assert!(matches!(
        err(&control(kind::HEADERS, 0, &[0; 2])),
        FrameError::InvalidLength { .. }
    ));
    assert_eq!(
        err(&control(kind::HEADERS, 0, &[0; 4])),
        FrameError::ZeroStreamId("HEADERS")
    );
    assert!(matches!(
        err(&control(kind::WINDOW_UPDATE, 0, &[0; 9])),
        FrameError::InvalidLength { .. }
    ));
}

#[test]
fn reserved_bits_are_ignored() {
    // X bit set on the stream id of a SYN_REPLY, on a WINDOW_UPDATE delta.
    let (f, _) = parse(&control(kind::SYN_REPLY, 0, &[0x80, 0, 0, 1]), MAX)
        .unwrap()
        .unwrap();
    assert_eq!(f.stream_id(), 1);
    let (f, _) = parse(
        &control(
            kind::WINDOW_UPDATE,
            0,
            &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff],
        ),
        MAX,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        f,
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 0x7fff_ffff
        }
    );
}

#[test]
fn unknown_control_frames_are_skipped() {
    let mut wire = control(10, 0, &[1, 2, 3, 4, 5]);
    wire.extend_from_slice(&control(kind::PING, 0, &[0, 0, 0, 2]));
    let (f, n) = parse(&wire, MAX).unwrap().unwrap();
    assert_eq!(
        f,
        Frame::Unknown {
            frame_type: 10,
            flags: 0,
            length: 5
        }
    );
    let (f, _) = parse(&wire[n..], MAX).unwrap().unwrap();
    assert_eq!(f, Frame::Ping { id: 2 });
}

#[test]
fn encode_error_paths() {
    let mut out = BytesMut::new();
    let cases = [
        (
            Frame::Data {
                stream_id: 0,
                fin: false,
                data: Bytes::new(),
            },
            FrameError::ZeroStreamId("DATA"),
        ),
        (
            Frame::Data {
                stream_id: 1 << 31,
                fin: false,
                data: Bytes::new(),
            },
            FrameError::InvalidStreamId(1 << 31),
        ),
        (
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from(vec![0; MAX_PAYLOAD_LEN + 1]),
            },
            FrameError::TooLarge {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN,
            },
        ),
        (Frame::Ping { id: 0 }, FrameError::ZeroPingId),
        (
            Frame::RstStream {
                stream_id: 1,
                status: RstStatus::Other(0),
            },
            FrameError::ZeroRstStatus,
        ),
        (
            Frame::SynReply {
                stream_id: u32::MAX,
                fin: false,
                header_block: Bytes::new(),
            },
            FrameError::InvalidStreamId(u32::MAX),
        ),
    ];
    for (f, want) in cases {
        assert_eq!(f.encode(&mut out), Err(want));
        assert!(out.is_empty(), "nothing written on error");
    }
}

#[test]
fn status_codes_round_trip() {
    for code in 1..=12 {
        assert_eq!(RstStatus::from_code(code).code(), code);
    }
    for code in 0..=3 {
        assert_eq!(GoAwayStatus::from_code(code).code(), code);
    }
}
