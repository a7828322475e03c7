//! A server session fed by a scripted peer: the input is a sequence of operations that become
//! frames (with properly compressed header blocks, so the fuzzer gets past zlib) or raw bytes.
//! The server application replies to, echoes and sometimes resets or drops streams. Properties:
//! no panic, no hang (the clock is paused, so the session's timers cost nothing), the session
//! ends once the peer's bytes are consumed and its end is closed.
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_spdy::frame::{Frame, GoAwayStatus, RstStatus, Setting};
use berth_spdy::headers::Encoder;
use berth_spdy::{Session, SessionConfig};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

fn script(data: &[u8]) -> Vec<u8> {
    let mut input = Input(data);
    let mut enc = Encoder::new();
    let mut wire = BytesMut::new();
    while let Some(op) = input.u8() {
        let id = u32::from(input.u8().unwrap_or(1));
        let frame = match op % 12 {
            0 | 1 => {
                let kinds = ["stdin", "stdout", "stderr", "error", "resize", "data"];
                let t = kinds[usize::from(input.u8().unwrap_or(0)) % kinds.len()];
                let headers = vec![
                    ("streamtype".to_string(), t.to_string()),
                    ("requestid".to_string(), "0".to_string()),
                ];
                let Ok(block) = enc.encode(&headers) else {
                    continue;
                };
                Frame::SynStream {
                    stream_id: id,
                    associated_stream_id: 0,
                    priority: 0,
                    slot: 0,
                    fin: op & 0x10 != 0,
                    unidirectional: op & 0x20 != 0,
                    header_block: block.into(),
                }
            }
            2..=4 => {
                let n = usize::from(input.u8().unwrap_or(0)) * 64;
                Frame::Data {
                    stream_id: id,
                    fin: op & 0x10 != 0,
                    data: Bytes::copy_from_slice(input.bytes(n)),
                }
            }
            5 => Frame::RstStream {
                stream_id: id,
                status: RstStatus::from_code(u32::from(input.u8().unwrap_or(5)).max(1)),
            },
            6 => Frame::WindowUpdate {
                stream_id: id % 4,
                delta: input.u32().unwrap_or(1),
            },
            7 => Frame::Settings {
                clear: false,
                entries: vec![Setting {
                    flags: 0,
                    id: u32::from(input.u8().unwrap_or(7) % 9),
                    value: input.u32().unwrap_or(0),
                }],
            },
            8 => Frame::Ping { id: id.max(1) },
            9 => Frame::GoAway {
                last_good_stream_id: id,
                status: GoAwayStatus::Ok,
            },
            10 => {
                let Ok(block) = enc.encode(&[("x".to_string(), "y".to_string())]) else {
                    continue;
                };
                if op & 0x10 != 0 {
                    Frame::Headers {
                        stream_id: id,
                        fin: op & 0x20 != 0,
                        header_block: block.into(),
                    }
                } else {
                    Frame::SynReply {
                        stream_id: id,
                        fin: op & 0x20 != 0,
                        header_block: block.into(),
                    }
                }
            }
            _ => {
                // Raw bytes, possibly garbage.
                let n = usize::from(input.u8().unwrap_or(0));
                wire.extend_from_slice(input.bytes(n));
                continue;
            }
        };
        let _ = frame.encode(&mut wire);
    }
    wire.to_vec()
}

fuzz_target!(|data: &[u8]| {
    let wire = script(data);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (a, b) = tokio::io::duplex(16 * 1024);
        let config = SessionConfig {
            initial_window: 4096,
            max_streams: 8,
            max_frame_len: 64 * 1024,
        };
        let (session, mut incoming) = Session::server(a, config);
        let app = tokio::spawn(async move {
            let mut n = 0u32;
            while let Some(stream) = incoming.recv().await {
                n += 1;
                match n % 4 {
                    0 => drop(stream),
                    1 => stream.reset(RstStatus::Cancel),
                    _ => {
                        tokio::spawn(async move {
                            let _ = stream.reply(Vec::new(), false).await;
                            let (mut r, mut w) = stream.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                            let _ = w.finish().await;
                        });
                    }
                }
            }
        });
        let (mut rd, mut wr) = tokio::io::split(b);
        let drain = tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * 1024];
            while let Ok(n) = rd.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        let _ = wr.write_all(&wire).await;
        let _ = wr.shutdown().await;
        let ended = tokio::time::timeout(Duration::from_secs(600), session.closed()).await;
        assert!(ended.is_ok(), "session did not end after the peer closed");
        drop(session);
        let _ = app.await;
        drain.abort();
    });
});
