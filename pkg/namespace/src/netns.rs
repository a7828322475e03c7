//! Running code inside a pinned network namespace.

use std::fs::File;
use std::path::Path;
use std::thread;

use nix::sched::{CloneFlags, setns};

use crate::NamespaceError;

/// Runs `f` on a fresh OS thread that first `setns`es into the network namespace at `netns`
/// (a pinned file or `/proc/<pid>/ns/net`); returns `f`'s result. The thread exits afterwards,
/// so no pooled thread is ever left in a pod's namespace.
///
/// Blocks the caller until `f` returns: call it from `tokio::task::spawn_blocking` in async code.
/// Sockets created inside `f` stay in the pod's netns even after they are handed back. Inside
/// `f`, read per-namespace files via `/proc/thread-self/net/...`: `/proc/self/net` and
/// `/proc/net` show the thread-group leader's (host) netns, and `/sys/class/net` the netns of
/// the sysfs mount. If `f` panics, the panic is resumed on the caller.
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> Result<T, NamespaceError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    // Opened on the caller so a bad path fails before a thread is spawned; O_CLOEXEC by default.
    let fd = File::open(netns).map_err(|e| NamespaceError::io("open namespace", netns, e))?;
    thread::scope(|s| {
        let handle = thread::Builder::new()
            .name("berth-netns".into())
            .spawn_scoped(s, move || -> Result<T, NamespaceError> {
                setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|source| NamespaceError::Setns {
                    path: netns.to_path_buf(),
                    source,
                })?;
                drop(fd);
                Ok(f())
            })
            .map_err(|source| NamespaceError::SpawnThread {
                thread: "berth-netns",
                source,
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
