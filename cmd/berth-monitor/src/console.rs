//! The console socket of a tty create: the runtime connects to `<dir>/<id>.console` and passes the
//! pty master over SCM_RIGHTS; the master then carries the container's output.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use crate::sys;

pub struct Console {
    path: PathBuf,
    listener: UnixListener,
    conn: Option<UnixStream>,
    master: Option<OwnedFd>,
    /// The runtime connected and hung up without a descriptor.
    failed: bool,
}

impl Console {
    pub fn listen(path: PathBuf) -> io::Result<Console> {
        // A stale socket from an earlier, failed attempt would make bind fail.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;
        listener.set_nonblocking(true)?;
        Ok(Console {
            path,
            listener,
            conn: None,
            master: None,
            failed: false,
        })
    }

    /// The descriptor to poll while the master has not arrived, `None` once it has (or never will).
    pub fn poll_fd(&self) -> Option<RawFd> {
        if self.master.is_some() || self.failed {
            return None;
        }
        Some(match &self.conn {
            Some(conn) => conn.as_raw_fd(),
            None => self.listener.as_raw_fd(),
        })
    }

    /// Makes what progress is possible without blocking: accept the runtime, receive the master.
    pub fn progress(&mut self) {
        if self.master.is_some() || self.failed {
            return;
        }
        if self.conn.is_none() {
            match self.listener.accept() {
                // Accepted sockets do not inherit O_NONBLOCK.
                Ok((conn, _)) if conn.set_nonblocking(true).is_ok() => self.conn = Some(conn),
                Ok(_) | Err(_) => return,
            }
        }
        let Some(conn) = &self.conn else {
            return;
        };
        match sys::recv_fd(conn.as_fd()) {
            Ok(Some(master)) => {
                self.master = Some(master);
                self.conn = None;
            }
            Ok(None) => {
                self.failed = true;
                self.conn = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                crate::note(format_args!("console socket {}: {e}", self.path.display()));
                self.failed = true;
                self.conn = None;
            }
        }
    }

    /// The runtime has exited: whatever it sent is queued, so one last non-blocking attempt, then the
    /// socket goes away.
    pub fn finish(mut self) -> Option<OwnedFd> {
        self.progress();
        let _ = std::fs::remove_file(&self.path);
        self.master.take()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
