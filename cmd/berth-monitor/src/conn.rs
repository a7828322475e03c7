//! One client connection: non-blocking, with small buffers for the frames in each direction, so a
//! slow or misbehaving client never stalls the loop. Answers may carry descriptors (SCM_RIGHTS),
//! which go out with the first byte of their frame.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use berth_monitor_api::{MAX_FRAME, encode_frame, frame_len, proto};

use crate::sys;

pub struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Descriptors to pass with the byte at this offset of `wbuf` (the first of their frame), in
    /// offset order. Ours are closed once sent (or with the connection).
    fds: Vec<(usize, Vec<OwnedFd>)>,
    /// A response is outstanding (a create in flight, a held Wait, a running exec, an attach): no
    /// further request is read until it is sent, so responses stay in request order.
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
            fds: Vec::new(),
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

    /// Queues a final response (the connection takes requests again) and sends what the socket
    /// takes; `false` if the connection is dead.
    pub fn respond(&mut self, kind: proto::response::Kind) -> bool {
        self.busy = false;
        self.send(kind, Vec::new())
    }

    /// Queues a response with `fds` attached to its first byte, leaving `busy` as it is (more
    /// answers follow: an exec's Exit, an attach's output); `false` if the connection is dead.
    pub fn send(&mut self, kind: proto::response::Kind, fds: Vec<OwnedFd>) -> bool {
        let response = proto::Response { kind: Some(kind) };
        let frame = match encode_frame(&response) {
            Ok(frame) => frame,
            Err(e) => {
                // Only an oversized response (a huge List) gets here: tell the client. Descriptors
                // of a failed answer are closed, which the requester sees as EOF.
                let err = proto::Response {
                    kind: Some(proto::response::Kind::Error(proto::Error {
                        message: e.to_string(),
                        ..Default::default()
                    })),
                };
                match encode_frame(&err) {
                    Ok(frame) => frame,
                    Err(_) => return false,
                }
            }
        };
        if !fds.is_empty() {
            self.fds.push((self.wbuf.len(), fds));
        }
        self.wbuf.extend_from_slice(&frame);
        self.flush()
    }

    /// Queues an already encoded frame (attach output) unless that would make more than `limit`
    /// bytes wait for the client; `false` if it would, or the connection is dead.
    pub fn queue_frame(&mut self, frame: &[u8], limit: usize) -> bool {
        if self.wbuf.len() + frame.len() > limit {
            return false;
        }
        self.wbuf.extend_from_slice(frame);
        self.flush()
    }

    /// Sends buffered output; `false` if the connection is dead. A frame with descriptors starts a
    /// sendmsg of its own, and nothing after the next such frame goes with it, so each set of
    /// descriptors arrives with the read that gets its frame's first byte.
    pub fn flush(&mut self) -> bool {
        while !self.wbuf.is_empty() {
            let with_fds = self.fds.first().is_some_and(|(at, _)| *at == 0);
            // Up to the next frame with descriptors (not counting one that starts here).
            let skip = usize::from(with_fds);
            let end = self.fds.get(skip).map_or(self.wbuf.len(), |(at, _)| *at);
            let result = if with_fds {
                let raw: Vec<RawFd> = self.fds[0].1.iter().map(|f| f.as_raw_fd()).collect();
                sys::send_with_fds(self.stream.as_fd(), &self.wbuf[..end], &raw)
            } else {
                self.stream.write(&self.wbuf[..end])
            };
            if with_fds && matches!(result, Ok(n) if n > 0) {
                // Passed: the client holds its own copies now, ours are closed.
                self.fds.remove(0);
            }
            match result {
                Ok(0) => return false,
                Ok(n) => {
                    self.wbuf.drain(..n);
                    for (at, _) in &mut self.fds {
                        *at -= n;
                    }
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

#[cfg(test)]
// recvmsg with SCM_RIGHTS and setsockopt(SO_SNDBUF) on the test's socket pair.
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// One non-blocking recvmsg: (bytes, descriptors received), `None` when nothing is there.
    fn recv(sock: &UnixStream, buf: &mut Vec<u8>) -> Option<Vec<OwnedFd>> {
        let mut data = [0u8; 8192];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; the buffers outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n <= 0 {
            return None;
        }
        buf.extend_from_slice(&data[..n as usize]);
        let mut fds = Vec::new();
        // SAFETY: walking the control messages the kernel filled in.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                let p = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Some(fds)
    }

    fn output(len: usize) -> Vec<u8> {
        encode_frame(&proto::Response {
            kind: Some(proto::response::Kind::Output(proto::Output {
                stream: 1,
                data: vec![b'x'; len],
            })),
        })
        .unwrap()
    }

    #[test]
    fn descriptors_go_with_the_first_byte_of_their_frame() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // A small send buffer makes every large frame go out in several writes.
        let size: libc::c_int = 4096;
        // SAFETY: setsockopt with an int.
        unsafe {
            libc::setsockopt(
                ours.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                4,
            )
        };
        let mut conn = Conn::new(ours).unwrap();
        let attached = proto::response::Kind::Attached(proto::Attached {
            pty: false,
            stdin: true,
        });
        let (r1, _w1) = sys::pipe().unwrap();
        let (r2, _w2) = sys::pipe().unwrap();
        // Output before and after each frame with a descriptor; the frames' start offsets.
        let big = output(100_000);
        let small = encode_frame(&proto::Response {
            kind: Some(attached.clone()),
        })
        .unwrap();
        let mut starts = Vec::new();
        let mut offset = 0;
        assert!(conn.queue_frame(&big, usize::MAX));
        offset += big.len();
        starts.push(offset);
        assert!(conn.send(attached.clone(), vec![r1]));
        offset += small.len();
        assert!(conn.queue_frame(&big, usize::MAX));
        offset += big.len();
        starts.push(offset);
        assert!(conn.send(attached, vec![r2]));
        offset += small.len();
        // The backlog limit refuses a frame that cannot fit under it.
        assert!(!conn.queue_frame(&big, big.len() - 1));

        let mut received = Vec::new();
        let mut arrivals = Vec::new();
        while received.len() < offset {
            let before = received.len();
            match recv(&theirs, &mut received) {
                Some(fds) => {
                    for _ in fds {
                        arrivals.push((before, received.len()));
                    }
                }
                None => assert!(conn.flush()),
            }
        }
        assert!(!conn.pending_output());
        assert_eq!(arrivals.len(), 2);
        for (&(before, after), &start) in arrivals.iter().zip(&starts) {
            assert!(
                before <= start && start < after,
                "frame at {start}, descriptor with bytes {before}..{after}"
            );
        }
        assert_eq!(received.len(), offset);
    }
}
