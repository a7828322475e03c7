//! The berth-monitor protocol (`proto/monitor/v1/monitor.proto`), berthd's blocking client and,
//! with the `async` feature, its tokio client for exec, attach and close_stdin.
//!
//! A monitor is identified by its directory (berthd uses `/run/berth/monitors/<sandbox id>`), which
//! holds [`SOCKET`], [`PID_FILE`], the exit files under [`EXITS_DIR`] and per-container runtime
//! files. Frames on the socket are a 4-byte big-endian length followed by one prost message of at
//! most [`MAX_FRAME`] bytes.
//!
//! Everything but the `async` feature is blocking std code: berthd calls it from `spawn_blocking`,
//! and the monitor binary uses the types, the framing and the exit-file functions (it never enables
//! `async`, so it never links tokio).

#[cfg(feature = "async")]
mod aio;
// Command::pre_exec (setsid, prctl) to start the monitor.
#[allow(unsafe_code)]
mod client;
mod stream;
// pipe2, poll, read, socket, connect, recvmsg with SCM_RIGHTS: what std lacks.
#[allow(unsafe_code)]
mod sys;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[cfg(feature = "async")]
pub use aio::{Attachment, ExecWait, attach, close_stdin, exec};
pub use client::{ContainerInfo, CreateRequest, Monitor};
pub use stream::{AttachEvent, ExecRequest, ExecStarted};

/// The generated protocol types, package `berth.monitor.v1`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/berth.monitor.v1.rs"));
}

/// The monitor's socket, inside its directory.
pub const SOCKET: &str = "monitor.sock";
/// The monitor's pid, inside its directory (written atomically at startup).
pub const PID_FILE: &str = "monitor.pid";
/// The directory (inside the monitor's) holding one exit file per exited container.
pub const EXITS_DIR: &str = "exits";
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// How a container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// The exit status, or 128 + signal for a container killed by a signal.
    pub exit_code: i32,
    /// The signal that killed it; 0 if it exited.
    pub signal: i32,
    /// Unix nanoseconds.
    pub finished_at_ns: i64,
    pub oom_killed: bool,
    /// CRI log bytes written for the container over its life.
    pub log_bytes: u64,
}

impl Exit {
    pub fn to_proto(&self, container_id: &str) -> proto::Exit {
        proto::Exit {
            container_id: container_id.to_string(),
            exit_code: self.exit_code,
            signal: self.signal,
            finished_at_ns: self.finished_at_ns,
            oom_killed: self.oom_killed,
            log_bytes: self.log_bytes,
        }
    }
}

impl From<&proto::Exit> for Exit {
    fn from(e: &proto::Exit) -> Self {
        Exit {
            exit_code: e.exit_code,
            signal: e.signal,
            finished_at_ns: e.finished_at_ns,
            oom_killed: e.oom_killed,
            log_bytes: e.log_bytes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("monitor protocol: {0}")]
    Protocol(String),
    /// The OCI runtime failed; the message is the runtime's own error text, trimmed.
    #[error("{0}")]
    Runtime(String),
    #[error("no berth-monitor is running for {}", .0.display())]
    NotRunning(PathBuf),
    #[error("container {0} is not known to the monitor")]
    UnknownContainer(String),
    /// The container is known but not running (exited, or still being created), so an exec or
    /// attach cannot be served: CRI's FAILED_PRECONDITION. The monitor's message.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("timed out {0}")]
    Timeout(String),
}

impl MonitorError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        MonitorError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Writes one frame: the 4-byte big-endian length, then the message, in a single write.
pub fn write_frame(w: &mut impl Write, msg: &impl prost::Message) -> io::Result<()> {
    let frame = encode_frame(msg)?;
    w.write_all(&frame)?;
    w.flush()
}

/// Encodes one frame (length prefix included) into a buffer, for callers that write it themselves.
pub fn encode_frame(msg: &impl prost::Message) -> io::Result<Vec<u8>> {
    let len = msg.encoded_len();
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit"),
        ));
    }
    let mut frame = Vec::with_capacity(4 + len);
    // len <= MAX_FRAME, so it fits in u32.
    #[allow(clippy::cast_possible_truncation)]
    let prefix = len as u32;
    frame.extend_from_slice(&prefix.to_be_bytes());
    msg.encode(&mut frame)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(frame)
}

/// Parses the length prefix of a frame; an error for lengths beyond [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, MonitorError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(MonitorError::Protocol(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        )));
    }
    Ok(len)
}

/// Reads one frame and decodes it. A clean EOF before the prefix is an `Io` error of kind
/// `UnexpectedEof`, like a truncated frame.
pub fn read_frame<M: prost::Message + Default>(r: &mut impl Read) -> Result<M, MonitorError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)
        .map_err(|e| MonitorError::io("reading a frame's length", e))?;
    let len = frame_len(prefix)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .map_err(|e| MonitorError::io("reading a frame", e))?;
    M::decode(body.as_slice()).map_err(|e| MonitorError::Protocol(format!("bad message: {e}")))
}

/// Container IDs name files in the monitor's directory: refuse anything that is not a plain name.
pub fn check_container_id(id: &str) -> Result<(), String> {
    let plain = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if plain {
        Ok(())
    } else {
        Err(format!("invalid container id {id:?}"))
    }
}

/// The exit file of `container_id` in the monitor directory `dir`.
pub fn exit_file(dir: &Path, container_id: &str) -> PathBuf {
    dir.join(EXITS_DIR).join(container_id)
}

/// The exit file the monitor wrote, read directly (monitor gone, berthd restarted). `None` if the
/// container has no exit file (still running, never created, or forgotten).
pub fn read_exit_file(dir: &Path, container_id: &str) -> Result<Option<Exit>, MonitorError> {
    check_container_id(container_id).map_err(MonitorError::Protocol)?;
    let path = exit_file(dir, container_id);
    let raw = match fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(MonitorError::io(format!("reading {}", path.display()), e)),
    };
    let exit = <proto::Exit as prost::Message>::decode(raw.as_slice())
        .map_err(|e| MonitorError::Protocol(format!("bad exit file {}: {e}", path.display())))?;
    Ok(Some(Exit::from(&exit)))
}

/// Writes the exit file durably: a temp file, fsync, rename, fsync of the directory, so a reader
/// sees either no file or the whole record, also after a crash.
pub fn write_exit_file(dir: &Path, container_id: &str, exit: &Exit) -> io::Result<()> {
    check_container_id(container_id).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let exits = dir.join(EXITS_DIR);
    let tmp = exits.join(format!(".{container_id}.tmp"));
    let body = prost::Message::encode_to_vec(&exit.to_proto(container_id));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&body)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, exits.join(container_id))?;
    fs::File::open(&exits)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frame_round_trip() {
        let req = proto::Request {
            kind: Some(proto::request::Kind::Wait(proto::Wait {
                container_id: "abc".into(),
                timeout_ms: 1500,
            })),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(
            &buf[..4],
            &(u32::try_from(buf.len()).unwrap() - 4).to_be_bytes()
        );
        // Two frames back to back come out one by one.
        write_frame(&mut buf, &proto::Request::default()).unwrap();
        let mut r = Cursor::new(buf);
        assert_eq!(read_frame::<proto::Request>(&mut r).unwrap(), req);
        assert_eq!(
            read_frame::<proto::Request>(&mut r).unwrap(),
            proto::Request::default()
        );
        let err = read_frame::<proto::Request>(&mut r).unwrap_err();
        assert!(
            matches!(err, MonitorError::Io { ref source, .. } if source.kind() == io::ErrorKind::UnexpectedEof)
        );
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut big = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 16]);
        let err = read_frame::<proto::Request>(&mut Cursor::new(big)).unwrap_err();
        assert!(matches!(err, MonitorError::Protocol(_)), "{err}");

        let mut short = 10u32.to_be_bytes().to_vec();
        short.extend_from_slice(&[0; 3]);
        let err = read_frame::<proto::Request>(&mut Cursor::new(short)).unwrap_err();
        assert!(matches!(err, MonitorError::Io { .. }), "{err}");

        // Garbage of the announced length is a protocol error, not a panic.
        let mut garbage = 3u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<proto::Request>(&mut Cursor::new(garbage)).unwrap_err();
        assert!(matches!(err, MonitorError::Protocol(_)), "{err}");

        let huge = proto::Error {
            message: "x".repeat(MAX_FRAME + 1),
            ..Default::default()
        };
        assert!(write_frame(&mut Vec::new(), &huge).is_err());
    }

    #[test]
    fn exit_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(EXITS_DIR)).unwrap();
        assert_eq!(read_exit_file(dir.path(), "c1").unwrap(), None);
        let exit = Exit {
            exit_code: 137,
            signal: 9,
            finished_at_ns: 1_790_000_000_123_456_789,
            oom_killed: true,
            log_bytes: 42,
        };
        write_exit_file(dir.path(), "c1", &exit).unwrap();
        assert_eq!(read_exit_file(dir.path(), "c1").unwrap(), Some(exit));
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join(EXITS_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["c1"]);

        fs::write(exit_file(dir.path(), "bad"), [0xff, 0xff]).unwrap();
        assert!(matches!(
            read_exit_file(dir.path(), "bad"),
            Err(MonitorError::Protocol(_))
        ));
    }

    #[test]
    fn container_ids_must_be_plain_names() {
        assert!(check_container_id("4f2a9c").is_ok());
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", "x\0"] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
        assert!(read_exit_file(Path::new("/tmp"), "../etc").is_err());
    }
}
