//! The session-level error type.

use std::sync::Arc;

use thiserror::Error;

use crate::frame::{FrameError, RstStatus};
use crate::headers::HeaderError;

/// Errors of [`crate::Session`] and its streams. Cheap to clone: when the connection dies, every
/// stream handle reports the same error.
#[derive(Debug, Clone, Error)]
pub enum SpdyError {
    /// The connection ended (EOF, GOAWAY followed by close, or the session shut down).
    #[error("SPDY connection closed")]
    ConnectionClosed,
    /// Reading or writing the underlying connection failed.
    #[error("SPDY connection i/o: {0}")]
    Io(Arc<std::io::Error>),
    /// The peer broke the protocol; the session was torn down.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY frame: {0}")]
    Frame(#[from] FrameError),
    #[error("SPDY header block: {0}")]
    Header(#[from] HeaderError),
    /// The stream was reset (RST_STREAM), by either side.
    #[error("SPDY stream reset: {0}")]
    StreamReset(RstStatus),
    /// Data after `finish()` (or after a reply/open with `fin`).
    #[error("SPDY stream already finished")]
    StreamFinished,
    /// GOAWAY was sent or received: no new streams.
    #[error("SPDY session is going away")]
    GoingAway,
    #[error("SPDY stream ids exhausted")]
    StreamIdsExhausted,
    /// An API call that makes no sense in the stream's state (e.g. replying twice).
    #[error("SPDY: {0}")]
    InvalidState(&'static str),
}

impl From<std::io::Error> for SpdyError {
    fn from(e: std::io::Error) -> Self {
        SpdyError::Io(Arc::new(e))
    }
}

impl SpdyError {
    /// The matching `std::io::Error`, for the AsyncRead/AsyncWrite implementations.
    pub fn to_io(&self) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match self {
            SpdyError::StreamReset(_) => ErrorKind::ConnectionReset,
            SpdyError::StreamFinished => ErrorKind::BrokenPipe,
            SpdyError::ConnectionClosed | SpdyError::GoingAway => ErrorKind::ConnectionAborted,
            SpdyError::Io(e) => e.kind(),
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, self.clone())
    }
}
