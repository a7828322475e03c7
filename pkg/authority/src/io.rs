//! [`AuthorityFilter`]: the connection wrapper that runs a [`Rewriter`] over what the client sends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use crate::rewrite::Rewriter;

/// How much is read from the socket at a time while header blocks are being parsed.
const READ_CHUNK: usize = 16 * 1024;

/// A server-side connection whose client header blocks are rewritten by a [`Rewriter`]; writes,
/// and frame payloads outside header blocks, go straight through.
pub struct AuthorityFilter<IO> {
    io: IO,
    rewriter: Rewriter,
    scratch: Vec<u8>,
    /// Rewritten bytes not yet read by the server.
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<IO> AuthorityFilter<IO> {
    pub fn new(io: IO) -> Self {
        AuthorityFilter {
            io,
            rewriter: Rewriter::default(),
            scratch: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        }
    }

    /// How many `:authority` fields this connection's requests had that h2 would have refused.
    pub fn dropped_authorities(&self) -> u64 {
        self.rewriter.dropped_authorities()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFilter<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if let Some(verbatim) = this.rewriter.forwardable() {
                // Frame payloads (DATA above all) are read straight into the server's buffer.
                let limit = verbatim.min(buf.remaining());
                let dst = buf.initialize_unfilled_to(limit);
                let mut direct = ReadBuf::new(dst);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut direct))?;
                let n = direct.filled().len();
                if n == 0 {
                    this.eof = true;
                    continue;
                }
                buf.advance(n);
                this.rewriter.forwarded(n);
                return Poll::Ready(Ok(()));
            }
            if this.scratch.is_empty() {
                this.scratch = vec![0; READ_CHUNK];
            }
            let mut chunk = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk))?;
            let n = chunk.filled().len();
            if n == 0 {
                this.eof = true;
                this.rewriter.finish(&mut this.out);
            } else {
                this.rewriter.feed(&this.scratch[..n], &mut this.out);
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFilter<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for AuthorityFilter<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
