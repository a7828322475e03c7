//! Bridges an async download to the blocking unpacker: chunks arrive on a bounded channel (so a slow
//! disk applies back-pressure to the network) and are read through `std::io::Read`.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

pub(crate) type Chunk = Result<Bytes, io::Error>;

pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    done: bool,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<Chunk>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }

    /// Reads and discards the rest; surfaces an error the sender reports after the data (a digest
    /// mismatch is only known once the whole blob has arrived).
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 64 * 1024];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            // Only ever called from a blocking thread (spawn_blocking).
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_chunks_then_reports_a_late_error() {
        let (tx, rx) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader::new(rx);
            let mut first = [0u8; 5];
            reader.read_exact(&mut first).unwrap();
            (first, reader.drain())
        });
        tx.send(Ok(Bytes::from_static(b"he"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"llo world"))).await.unwrap();
        tx.send(Err(io::Error::other("digest mismatch")))
            .await
            .unwrap();
        drop(tx);
        let (first, rest) = reader.await.unwrap();
        assert_eq!(&first, b"hello");
        assert_eq!(rest.unwrap_err().to_string(), "digest mismatch");
    }
}
