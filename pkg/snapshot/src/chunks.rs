//! A blocking `std::io::Write` that hands what is written to an async receiver in fixed-size
//! chunks: tar writers (image save, container copy-out) run on blocking threads and stream to a
//! gRPC response through a bounded tokio channel, which applies back-pressure to the writer.

use std::io::{self, Write};
use std::marker::PhantomData;

use tokio::sync::mpsc;

/// Buffers writes into chunks of `chunk_size` bytes and `blocking_send`s each full one as
/// `Ok(T)`. A receiver that went away fails the write with [`io::ErrorKind::BrokenPipe`], which
/// stops the writer. `flush` sends the partial last chunk. Must be used from a blocking thread
/// (`spawn_blocking`), never from an async task: `blocking_send` panics there.
pub struct ChunkWriter<T, E> {
    tx: mpsc::Sender<Result<T, E>>,
    buf: Vec<u8>,
    chunk_size: usize,
    _chunk: PhantomData<fn() -> T>,
}

impl<T: From<Vec<u8>>, E> ChunkWriter<T, E> {
    /// A writer sending chunks of `chunk_size` bytes (at least 1) on `tx`.
    pub fn new(tx: mpsc::Sender<Result<T, E>>, chunk_size: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(chunk_size),
            chunk_size,
            _chunk: PhantomData,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_size));
        self.tx
            .blocking_send(Ok(T::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the receiver went away"))
    }
}

impl<T: From<Vec<u8>>, E> Write for ChunkWriter<T, E> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(self.chunk_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= self.chunk_size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_arrive_in_fixed_chunks_and_flush_sends_the_rest() {
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, String>>(16);
        let mut w = ChunkWriter::new(tx, 4);
        w.write_all(b"hello world").unwrap();
        w.flush().unwrap();
        // Flushing with nothing buffered sends no empty chunk.
        w.flush().unwrap();
        drop(w);
        let mut chunks = Vec::new();
        while let Some(chunk) = rx.blocking_recv() {
            chunks.push(chunk.unwrap());
        }
        assert_eq!(chunks, [&b"hell"[..], b"o wo", b"rld"]);
    }

    /// A chunk type other than `Vec<u8>` (the image store sends `bytes::Bytes`).
    struct Discarded;

    impl From<Vec<u8>> for Discarded {
        fn from(_: Vec<u8>) -> Self {
            Discarded
        }
    }

    #[test]
    fn a_receiver_gone_is_a_broken_pipe() {
        let (tx, rx) = mpsc::channel::<Result<Discarded, ()>>(1);
        drop(rx);
        let mut w = ChunkWriter::new(tx, 2);
        // The first byte only fills the buffer; the second completes a chunk nobody takes.
        assert_eq!(w.write(b"a").unwrap(), 1);
        let e = w.write_all(b"bc").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
