//! A real h2 server (the one under tonic) behind [`AuthorityFilter`], fed by a hand-framed client
//! so that the test controls every byte: authorities h2 refuses on its own, CONTINUATIONs, padding,
//! priority, indexed fields, and requests h2 must still refuse.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_authority::{AuthorityFilter, Rewriter};
use bytes::Bytes;
use loona_hpack::Encoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn request<'a>(
    authority: Option<&'a [u8]>,
    extra: &[(&'a [u8], &'a [u8])],
) -> Vec<(&'a [u8], &'a [u8])> {
    let mut h: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/runtime.v1.RuntimeService/Version"),
    ];
    if let Some(a) = authority {
        h.push((b":authority", a));
    }
    h.push((b"content-type", b"application/grpc"));
    h.extend_from_slice(extra);
    h
}

/// What the server saw of one request.
#[derive(Debug)]
struct Seen {
    stream: u32,
    authority: Option<String>,
    body: Vec<u8>,
    custom: Option<usize>,
}

/// Serves on the filtered end until the client goes away; returns what it saw, in order.
async fn serve(io: DuplexStream) -> Vec<Seen> {
    let mut conn = h2::server::handshake(AuthorityFilter::new(io))
        .await
        .expect("handshake");
    let mut seen = Vec::new();
    while let Some(accepted) = conn.accept().await {
        let Ok((req, mut respond)) = accepted else {
            break;
        };
        let stream = u32::from(respond.stream_id());
        let authority = req.uri().authority().map(|a| a.to_string());
        let custom = req.headers().get("x-big").map(|v| v.len());
        let mut body = req.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let response = http::Response::builder().status(200).body(()).unwrap();
        let mut send = respond.send_response(response, false).expect("respond");
        send.send_data(Bytes::from_static(b"ok"), true)
            .expect("data");
        seen.push(Seen {
            stream,
            authority,
            body: data,
            custom,
        });
    }
    seen
}

/// Frames the server sent, as (type, stream, payload), until it stops or `until` streams answered.
async fn read_frames(io: &mut DuplexStream, answered: usize) -> Vec<(u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut ends = 0;
    loop {
        let mut head = [0u8; 9];
        if io.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await.expect("payload");
        let stream = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
        if head[3] == 0x4 && head[4] & 0x1 == 0 {
            // SETTINGS: acknowledge, as a client must.
            // The server may already have closed the connection (GOAWAY): nothing to ack then.
            let _ = io.write_all(&frame(0x4, 0x1, 0, &[])).await;
        }
        let end_stream = (head[3] == 0x0 && head[4] & 0x1 != 0) || head[3] == 0x3;
        frames.push((head[3], stream, payload));
        if end_stream {
            ends += 1;
            if ends == answered {
                break;
            }
        }
    }
    frames
}

async fn run(client_bytes: Vec<u8>, answered: usize) -> (Vec<Seen>, Vec<(u8, u32, Vec<u8>)>) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(serve(server));
    client.write_all(&client_bytes).await.unwrap();
    let frames = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        read_frames(&mut client, answered),
    )
    .await
    .expect("server answers");
    drop(client);
    (server.await.unwrap(), frames)
}

fn rst_streams(frames: &[(u8, u32, Vec<u8>)]) -> Vec<(u32, u32)> {
    frames
        .iter()
        .filter(|(kind, _, _)| *kind == 0x3)
        .map(|(_, stream, p)| (*stream, u32::from_be_bytes([p[0], p[1], p[2], p[3]])))
        .collect()
}

#[tokio::test]
async fn every_authority_form_reaches_the_server() {
    let mut enc = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    let forms: [Option<&[u8]>; 6] = [
        Some(b"/run/berth/berth.sock"),
        Some(b"%2Frun%2Fberth%2Fberth.sock"),
        Some(b""),
        Some(b"localhost"),
        None,
        // The same path again: the encoder now refers to its dynamic table entry by index.
        Some(b"/run/berth/berth.sock"),
    ];
    for (i, authority) in forms.iter().enumerate() {
        let block = enc.encode(request(*authority, &[]));
        bytes.extend(frame(
            0x1,
            0x4 | 0x1,
            1 + 2 * u32::try_from(i).unwrap(),
            &block,
        ));
    }
    let (seen, frames) = run(bytes, forms.len()).await;
    assert_eq!(rst_streams(&frames), vec![], "no stream refused");
    let authorities: Vec<_> = seen.iter().map(|s| s.authority.as_deref()).collect();
    assert_eq!(
        authorities,
        [None, None, None, Some("localhost"), None, None]
    );
}

#[tokio::test]
async fn continuation_padding_priority_and_bodies_survive() {
    let mut enc = Encoder::new();
    let big = vec![b'x'; 40_000];
    let block = enc.encode(request(Some(b"/run/berth/berth.sock"), &[(b"x-big", &big)]));
    // HEADERS with PADDED and PRIORITY, then two CONTINUATIONs.
    let (a, rest) = block.split_at(10_000);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut headers = vec![3u8]; // pad length
    headers.extend([0, 0, 0, 0, 16]); // priority: no dependency, weight 16
    headers.extend_from_slice(a);
    headers.extend([0, 0, 0]);
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    bytes.extend(frame(0x1, 0x8 | 0x20, 1, &headers));
    bytes.extend(frame(0x9, 0, 1, b));
    bytes.extend(frame(0x9, 0x4, 1, c));
    bytes.extend(frame(0x0, 0, 1, b"hello "));
    bytes.extend(frame(0x0, 0x1, 1, b"world"));
    let (seen, frames) = run(bytes, 1).await;
    assert_eq!(rst_streams(&frames), vec![]);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authority, None);
    assert_eq!(seen[0].custom, Some(big.len()));
    assert_eq!(seen[0].body, b"hello world");
    assert_eq!(seen[0].stream, 1);
}

#[tokio::test]
async fn what_h2_refuses_besides_the_authority_is_still_refused() {
    let mut enc = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    // A connection-specific header: malformed in HTTP/2 (RFC 9113 §8.2.2), a stream error.
    let connection = enc.encode(request(
        Some(b"/run/berth/berth.sock"),
        &[(b"connection", b"close")],
    ));
    bytes.extend(frame(0x1, 0x5, 1, &connection));
    // No :method.
    let no_method: Vec<(&[u8], &[u8])> = vec![
        (b":scheme", b"http"),
        (b":path", b"/"),
        (b":authority", b"/x"),
    ];
    bytes.extend(frame(0x1, 0x5, 3, &enc.encode(no_method)));
    // A good one after them: the connection is still usable.
    bytes.extend(frame(
        0x1,
        0x5,
        5,
        &enc.encode(request(Some(b"/x.sock"), &[])),
    ));
    let (seen, frames) = run(bytes, 3).await;
    let resets = rst_streams(&frames);
    assert_eq!(
        resets,
        vec![(1, 0x1), (3, 0x1)],
        "PROTOCOL_ERROR for both malformed requests"
    );
    assert_eq!(seen.iter().map(|s| s.stream).collect::<Vec<_>>(), [5]);
}

#[test]
fn byte_at_a_time_feeding_gives_the_same_output() {
    let mut enc = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
    for i in 0..3u32 {
        let block = enc.encode(request(Some(b"/run/berth/berth.sock"), &[]));
        bytes.extend(frame(0x1, 0x4, 1 + 2 * i, &block));
        bytes.extend(frame(0x0, 0x1, 1 + 2 * i, &[7; 300]));
    }
    let mut whole = Vec::new();
    let mut r = Rewriter::default();
    r.feed(&bytes, &mut whole);
    assert_eq!(r.dropped_authorities(), 3);
    let mut piecewise = Vec::new();
    let mut r = Rewriter::default();
    for b in &bytes {
        r.feed(std::slice::from_ref(b), &mut piecewise);
    }
    assert_eq!(whole, piecewise);
    assert!(whole.len() > PREFACE.len());
}

#[test]
fn not_http2_passes_through_unchanged() {
    let input = b"GET / HTTP/1.1\r\nHost: /run/berth.sock\r\n\r\n";
    let mut out = Vec::new();
    let mut r = Rewriter::default();
    r.feed(input, &mut out);
    r.finish(&mut out);
    assert_eq!(out, input);
    assert_eq!(r.forwardable(), Some(usize::MAX));
}

#[test]
fn a_truncated_header_block_is_handed_over_as_sent() {
    let mut enc = Encoder::new();
    let mut bytes = PREFACE.to_vec();
    let block = enc.encode(request(Some(b"/x"), &[]));
    let full = frame(0x1, 0x4, 1, &block);
    bytes.extend_from_slice(&full[..full.len() - 3]);
    let mut out = Vec::new();
    let mut r = Rewriter::default();
    r.feed(&bytes, &mut out);
    assert_eq!(out, PREFACE, "the incomplete frame is held back");
    r.finish(&mut out);
    assert_eq!(out, bytes, "at EOF it goes to h2 unchanged");
}
