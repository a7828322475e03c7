//! The types of exec and attach (the async client that uses them is behind the `async` feature),
//! and reading answers together with the descriptors the monitor passes with them.

use std::os::fd::OwnedFd;
#[cfg(feature = "async")]
use std::os::fd::RawFd;

use crate::Exit;
#[cfg(feature = "async")]
use crate::{MonitorError, frame_len, proto, sys};

/// An additional process in a running container (CRI Exec), run by the pod's monitor.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub container_id: String,
    pub runtime_path: String,
    /// Global runtime options (before the subcommand), e.g. `--root /run/berth/runtime/runc`.
    pub runtime_args: Vec<String>,
    /// The OCI `process` object as JSON; its `terminal` must match `tty`.
    pub process_json: Vec<u8>,
    /// A pty instead of pipes (then `stdin`/`stdout`/`stderr` do not matter).
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// How long the runtime may take; 0 means the monitor's default (60 s).
    pub timeout_ms: u64,
}

/// A started exec and its stdio: for a tty exec only `pty` (the master: write input to it, read
/// the output from it, resize with TIOCSWINSZ), otherwise the requested pipes' ends: `stdin` to
/// write, `stdout` and `stderr` to read. All close-on-exec and in blocking mode.
#[derive(Debug)]
pub struct ExecStarted {
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub pty: Option<OwnedFd>,
}

#[cfg(feature = "async")]
impl ExecStarted {
    /// Pairs the answer with the descriptors that came with it, in the order the protocol fixes.
    pub(crate) fn from_answer(
        answer: &proto::ExecStarted,
        fds: Vec<OwnedFd>,
    ) -> Result<ExecStarted, MonitorError> {
        let mut started = ExecStarted {
            pid: answer.pid,
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
        };
        let slots: Vec<&mut Option<OwnedFd>> = if answer.pty {
            vec![&mut started.pty]
        } else {
            [
                (answer.stdin, &mut started.stdin),
                (answer.stdout, &mut started.stdout),
                (answer.stderr, &mut started.stderr),
            ]
            .into_iter()
            .filter_map(|(sent, slot)| sent.then_some(slot))
            .collect()
        };
        if slots.len() != fds.len() {
            return Err(MonitorError::Protocol(format!(
                "the exec answer announces {} descriptors but {} came with it",
                slots.len(),
                fds.len()
            )));
        }
        for (slot, fd) in slots.into_iter().zip(fds) {
            *slot = Some(fd);
        }
        if answer.pid <= 0 {
            return Err(MonitorError::Protocol(format!(
                "the exec answer has pid {}",
                answer.pid
            )));
        }
        Ok(started)
    }
}

/// What an attach connection delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum AttachEvent {
    /// Container output on stdout (for a tty container, the terminal's output).
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The container exited; nothing follows.
    Exit(Exit),
}

#[cfg(feature = "async")]
impl AttachEvent {
    pub(crate) fn from_output(output: proto::Output) -> Result<AttachEvent, MonitorError> {
        match output.stream {
            1 => Ok(AttachEvent::Stdout(output.data)),
            2 => Ok(AttachEvent::Stderr(output.data)),
            n => Err(MonitorError::Protocol(format!(
                "output on unknown stream {n}"
            ))),
        }
    }
}

#[cfg(feature = "async")]
/// How much one read asks for: an attach output frame (16 KiB of data) and then some.
const READ_CHUNK: usize = 64 * 1024;

/// Frames read from a connection with recvmsg, so the descriptors the monitor attaches arrive with
/// the bytes of their frame: every descriptor received up to the end of a frame belongs to it
/// (the monitor sends them with a frame's first byte, and only with the first answer).
#[cfg(feature = "async")]
#[derive(Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

#[cfg(feature = "async")]
impl FrameReader {
    /// The next complete frame in the buffer and the descriptors received up to it.
    pub(crate) fn next_frame(
        &mut self,
    ) -> Result<Option<(proto::Response, Vec<OwnedFd>)>, MonitorError> {
        let Some(prefix) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = frame_len([prefix[0], prefix[1], prefix[2], prefix[3]])?;
        let Some(body) = self.buf.get(4..4 + len) else {
            return Ok(None);
        };
        let response = <proto::Response as prost::Message>::decode(body)
            .map_err(|e| MonitorError::Protocol(format!("bad message: {e}")))?;
        self.buf.drain(..4 + len);
        Ok(Some((response, std::mem::take(&mut self.fds))))
    }

    /// One recvmsg on `sock` into the buffer; `Ok(0)` at EOF.
    pub(crate) fn recv(&mut self, sock: RawFd) -> std::io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let result = sys::recv_with_fds(sock, &mut self.buf[len..], &mut self.fds);
        self.buf.truncate(len + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Bytes of a frame not yet complete are buffered.
    pub(crate) fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(all(test, feature = "async"))]
// sendmsg with SCM_RIGHTS, to hand the reader a descriptor.
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn exec_answer_descriptors_in_protocol_order() {
        let (a, b) = sys::pipe().unwrap();
        let (raw_a, raw_b) = (a.as_raw_fd(), b.as_raw_fd());
        let answer = proto::ExecStarted {
            pid: 7,
            pty: false,
            stdin: true,
            stdout: false,
            stderr: true,
        };
        let started = ExecStarted::from_answer(&answer, vec![a, b]).unwrap();
        assert_eq!(started.stdin.as_ref().map(|f| f.as_raw_fd()), Some(raw_a));
        assert_eq!(started.stderr.as_ref().map(|f| f.as_raw_fd()), Some(raw_b));
        assert!(started.stdout.is_none() && started.pty.is_none());

        // A count that does not match the flags is refused (and the descriptors closed).
        let (c, _d) = sys::pipe().unwrap();
        let tty = proto::ExecStarted {
            pid: 7,
            pty: true,
            ..Default::default()
        };
        assert!(ExecStarted::from_answer(&tty, Vec::new()).is_err());
        assert!(ExecStarted::from_answer(&answer, vec![c]).is_err());
    }

    #[test]
    fn descriptors_arrive_with_their_frame() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let answer = proto::Response {
            kind: Some(proto::response::Kind::Attached(proto::Attached {
                pty: false,
                stdin: true,
            })),
        };
        let frame = crate::encode_frame(&answer).unwrap();
        let (r, _w) = sys::pipe().unwrap();
        send_fd(&tx, &frame[..3], r.as_raw_fd());
        let mut reader = FrameReader::default();
        reader.recv(rx.as_raw_fd()).unwrap();
        // Only part of the frame: nothing yet, the descriptor waits with the bytes.
        assert!(reader.next_frame().unwrap().is_none() && reader.has_partial());
        let output = proto::Response {
            kind: Some(proto::response::Kind::Output(proto::Output {
                stream: 2,
                data: b"x".to_vec(),
            })),
        };
        tx.write_all(&frame[3..]).unwrap();
        tx.write_all(&crate::encode_frame(&output).unwrap())
            .unwrap();
        let mut frames = Vec::new();
        while frames.len() < 2 {
            match reader.next_frame().unwrap() {
                Some(frame) => frames.push(frame),
                None => assert!(reader.recv(rx.as_raw_fd()).unwrap() > 0),
            }
        }
        assert_eq!(frames[0].0, answer);
        assert_eq!(frames[0].1.len(), 1);
        assert_eq!(frames[1].0, output);
        assert!(frames[1].1.is_empty());
        assert!(!reader.has_partial());
    }

    fn send_fd(sock: &std::os::unix::net::UnixStream, data: &[u8], fd: RawFd) {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        };
        let mut control = [0u64; 4];
        // SAFETY: test-only sendmsg with one descriptor, buffers outlive the call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
            assert_eq!(
                libc::sendmsg(sock.as_raw_fd(), &msg, 0),
                data.len() as isize
            );
        }
    }
}
