//! The CRI socket: one berthd per socket, enforced by a lock file; a stale socket left by a dead berthd
//! is replaced; the socket is mode 0660.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Holds the lock for as long as berthd serves; removes the socket on drop.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    _lock: File,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        // The lock file stays: removing it while others may be opening it would let two daemons lock
        // two different files. The socket goes, so clients see "no such file" rather than a dead socket.
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "removing socket");
        }
    }
}

/// Takes the socket's lock, replaces a stale socket and binds.
pub fn bind(
    path: &Path,
    gid: Option<u32>,
) -> anyhow::Result<(std::os::unix::net::UnixListener, SocketGuard)> {
    let dir = path
        .parent()
        .with_context(|| format!("socket path {} has no parent directory", path.display()))?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .with_context(|| format!("creating socket directory {}", dir.display()))?;

    let lock = lock(&lock_path(path))?;

    // We hold the lock, so whatever sits at the path was left by a berthd that is gone.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::info!(path = %path.display(), "replacing stale socket");
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    }

    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        _lock: lock,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting mode 0660 on {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("setting group {gid} on {}", path.display()))?;
    }
    listener.set_nonblocking(true)?;
    Ok((listener, guard))
}

fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// How long the lock of a berthd that is no longer running may stay held (see [`lock`]).
const DEAD_HOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Locks `path` exclusively and records our pid in it. Held by a live berthd: refused at once.
fn lock(path: &Path) -> anyhow::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    let deadline = std::time::Instant::now() + DEAD_HOLDER_WAIT;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        let mut holder = String::new();
        file.rewind()?;
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        // A berthd killed while it was starting a process leaves the lock with that child
        // until it execs (the descriptor is close-on-exec); on a loaded machine that can take a
        // moment. The lock of a berthd that is gone is waited for briefly, a live one's never.
        let gone = holder
            .parse::<i32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        if gone && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        {
            let who = if holder.is_empty() {
                "another berthd".to_string()
            } else {
                format!("another berthd (pid {holder})")
            };
            bail!(
                "{who} is already serving this socket (lock {} is held)",
                path.display()
            );
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_bind_is_refused_and_stale_socket_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/berth.sock");
        let (_listener, guard) = bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let err = bind(&path, None).unwrap_err().to_string();
        assert!(err.contains("already serving"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        // Leak the guard's lock but keep the socket file: a dead daemon's leftovers.
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("other.sock")).unwrap();
        drop(stale);
        drop(guard);
        assert!(!path.exists());
        let (_l, _g) = bind(&dir.path().join("other.sock"), None).unwrap();
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        std::fs::write(&path, "not a socket").unwrap();
        let err = bind(&path, None).unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
    }
}
