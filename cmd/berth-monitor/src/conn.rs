//! One client connection: non-blocking, with small buffers for the frames in each direction, so a
//! slow or misbehaving client never stalls the loop.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use berth_monitor_api::{MAX_FRAME, encode_frame, frame_len, proto};

pub struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// A response is outstanding (a create in flight, a held Wait): no further request is read
    /// until it is sent, so responses stay in request order.
    pub busy: bool,
}

pub enum ReadOutcome {
    Open,
    /// EOF, a reset, or a malformed frame: drop the connection.
    Closed,
}

impl Conn {
    pub fn new(stream: UnixStream) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            busy: false,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// What to poll for. A busy connection asks for nothing, but poll still reports its hang-up.
    pub fn events(&self) -> i16 {
        let mut events = 0;
        if !self.busy {
            events |= libc::POLLIN;
        }
        if !self.wbuf.is_empty() {
            events |= libc::POLLOUT;
        }
        events
    }

    /// Reads what is available, up to one frame beyond what is buffered.
    pub fn read_ready(&mut self) -> ReadOutcome {
        let mut chunk = [0u8; 4096];
        loop {
            // Never buffer more than one maximal frame.
            if self.rbuf.len() >= 4 + MAX_FRAME {
                return ReadOutcome::Open;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        return ReadOutcome::Open;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// The next complete request, if one is buffered; `Err` for a malformed frame.
    pub fn next_request(&mut self) -> Result<Option<proto::Request>, String> {
        let Some(prefix) = self.rbuf.get(..4) else {
            return Ok(None);
        };
        let prefix: [u8; 4] = [prefix[0], prefix[1], prefix[2], prefix[3]];
        let len = frame_len(prefix).map_err(|e| e.to_string())?;
        let Some(body) = self.rbuf.get(4..4 + len) else {
            return Ok(None);
        };
        let req = <proto::Request as prost::Message>::decode(body)
            .map_err(|e| format!("bad request: {e}"))?;
        self.rbuf.drain(..4 + len);
        if self.rbuf.is_empty() && self.rbuf.capacity() > 8192 {
            self.rbuf = Vec::new();
        }
        Ok(Some(req))
    }

    pub fn has_request(&self) -> bool {
        match self.rbuf.get(..4) {
            Some(p) => {
                frame_len([p[0], p[1], p[2], p[3]]).map_or(true, |len| self.rbuf.len() >= 4 + len)
            }
            None => false,
        }
    }

    /// Queues a response and sends what the socket takes; `false` if the connection is dead.
    pub fn respond(&mut self, kind: proto::response::Kind) -> bool {
        self.busy = false;
        let response = proto::Response { kind: Some(kind) };
        match encode_frame(&response) {
            Ok(frame) => self.wbuf.extend_from_slice(&frame),
            Err(e) => {
                // Only an oversized response (a huge List) gets here: tell the client.
                let err = proto::Response {
                    kind: Some(proto::response::Kind::Error(proto::Error {
                        message: e.to_string(),
                        not_found: false,
                    })),
                };
                if let Ok(frame) = encode_frame(&err) {
                    self.wbuf.extend_from_slice(&frame);
                }
            }
        }
        self.flush()
    }

    /// Sends buffered output; `false` if the connection is dead.
    pub fn flush(&mut self) -> bool {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.wbuf.capacity() > 8192 {
            self.wbuf = Vec::new();
        }
        true
    }

    pub fn pending_output(&self) -> bool {
        !self.wbuf.is_empty()
    }
}
