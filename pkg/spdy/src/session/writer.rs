//! The writer task: drains the outgoing queue in order, compresses header blocks with the
//! session's single compression context (so blocks hit the wire in the order they were
//! compressed), batches frames into one buffer per write, and flushes when the queue is empty.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::SpdyError;
use crate::frame::Frame;
use crate::headers::Encoder;
use crate::session::state::{Outgoing, QUEUE_HIGH_WATER, Shared};

/// Bytes gathered before a write is issued.
const BATCH: usize = 64 * 1024;

pub(crate) async fn run<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut io: W) {
    let result = write_loop(&shared, &mut io).await;
    let err = match result {
        Ok(()) => SpdyError::ConnectionClosed,
        Err(e) => e,
    };
    // Best effort: let the peer see EOF.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), io.shutdown()).await;
    shared.kill(err);
}

async fn write_loop<W: AsyncWrite + Unpin>(shared: &Shared, io: &mut W) -> Result<(), SpdyError> {
    let mut encoder = Encoder::new();
    let mut buf = BytesMut::with_capacity(BATCH + 16 * 1024);
    loop {
        let mut close = false;
        let mut data_bytes = 0usize;
        let more = {
            let mut st = shared.lock();
            if let Some(err) = st.dead_err() {
                return Err(err);
            }
            while buf.len() < BATCH {
                let Some(out) = st.queue.pop_front() else {
                    break;
                };
                let frame = match out {
                    Outgoing::Frame(f) => f,
                    Outgoing::SynStream {
                        stream_id,
                        fin,
                        headers,
                    } => Frame::SynStream {
                        stream_id,
                        associated_stream_id: 0,
                        priority: 0,
                        slot: 0,
                        fin,
                        unidirectional: false,
                        header_block: encoder.encode(&headers)?.into(),
                    },
                    Outgoing::SynReply {
                        stream_id,
                        fin,
                        headers,
                    } => Frame::SynReply {
                        stream_id,
                        fin,
                        header_block: encoder.encode(&headers)?.into(),
                    },
                    Outgoing::Close => {
                        close = true;
                        break;
                    }
                };
                if let Frame::Data { data, .. } = &frame {
                    data_bytes += data.len();
                }
                frame.encode(&mut buf)?;
            }
            if data_bytes > 0 {
                st.queued_data = st.queued_data.saturating_sub(data_bytes);
                if st.queued_data < QUEUE_HIGH_WATER {
                    for w in st.queue_waiters.drain(..) {
                        w.wake();
                    }
                }
            }
            !st.queue.is_empty()
        };
        if !buf.is_empty() {
            io.write_all(&buf).await?;
            buf.clear();
        }
        if close {
            io.flush().await?;
            return Ok(());
        }
        if !more {
            io.flush().await?;
            shared.write_wake.notified().await;
        }
    }
}
