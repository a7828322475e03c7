//! Creating namespaces on a dedicated thread and pinning them with nsfs bind mounts.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::idmap::unmount_all;
use crate::sysctl::{self, Sysctl};
use crate::{NamespaceError, NsKind, UserNamespaceMappings};

/// Longest hostname the kernel accepts (`HOST_NAME_MAX`).
const HOST_NAME_MAX: usize = 64;
/// The pin thread does little; a small stack keeps the mmap cheap.
const PIN_THREAD_STACK: usize = 256 * 1024;

/// What to create and where to pin it.
#[derive(Debug, Clone, Copy)]
pub struct PinRequest<'a> {
    /// Directory for the pinned files, e.g. `<state>/sandboxes/<id>/ns`; created (0o700, with
    /// parents) if missing. It should be dedicated to the pins: [`unpin`] removes it.
    pub dir: &'a Path,
    /// Which namespaces to create; the others stay the host's. Duplicates are ignored.
    pub kinds: &'a [NsKind],
    /// Hostname set in the new UTS namespace; an error if `kinds` lacks [`NsKind::Uts`].
    pub hostname: Option<&'a str>,
    /// Sysctls written inside the new namespaces, checked with [`crate::validate_sysctls`].
    pub sysctls: &'a BTreeMap<String, String>,
    /// A new user namespace with these mappings, owning the new namespaces, pinned as
    /// `dir/user`. Needs at least one of `kinds`; see [`crate::userns`]'s docs for how.
    pub userns: Option<&'a UserNamespaceMappings>,
}

/// File name of the pinned user namespace in a pin dir.
pub const USER_NS_FILE: &str = "user";

/// The pinned namespace files of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    dir: PathBuf,
    paths: Vec<(NsKind, PathBuf)>,
    user: Option<PathBuf>,
}

impl Pinned {
    /// The pinned file for `kind`, or `None` when the pod uses the host's namespace of that kind.
    pub fn path(&self, kind: NsKind) -> Option<&Path> {
        self.paths
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.as_path())
    }

    /// The directory holding the pinned files (what to pass to [`unpin`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pinned user namespace, if the request asked for one.
    pub fn user(&self) -> Option<&Path> {
        self.user.as_deref()
    }

    /// The pinned kinds, in [`NsKind`] order.
    pub fn kinds(&self) -> impl Iterator<Item = NsKind> + '_ {
        self.paths.iter().map(|(k, _)| *k)
    }
}

/// True if `path` is an nsfs mount, i.e. a pinned namespace (statfs `f_type == NSFS_MAGIC`).
/// Also true for `/proc/<pid>/ns/*` (statfs follows the magic link). False on any error.
pub fn is_pinned(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates the requested namespaces and pins them under `req.dir/<kind>`.
///
/// On a fresh OS thread: `unshare` the kinds, set the hostname, write the sysctls through
/// `/proc/sys` (which the kernel resolves against that thread's namespaces) and bind-mount
/// `/proc/thread-self/ns/<kind>` onto each target; then the thread exits and only the mounts keep
/// the namespaces alive. No process is spawned. In a new network namespace `lo` is brought
/// up too, which spares a CNI loopback plugin call per pod.
///
/// With [`PinRequest::userns`] a short-lived child process creates the namespaces instead,
/// inside a new user namespace with the given mappings that then owns them; it is configured
/// the same way (from a thread that `setns`es into the child's net/IPC/UTS namespaces) and
/// pinned as `dir/user` too (see `userns.rs`).
///
/// Everything or nothing: on failure, whatever was mounted is unmounted and the files (and
/// `dir`, if this call created it) are removed. If even that cleanup fails it is logged, and
/// [`unpin`] on `dir` finishes it. Pinning onto a file that already holds a namespace is refused
/// with [`NamespaceError::AlreadyPinned`] and leaves the existing pins alone. With empty `kinds`
/// (all host namespaces) nothing is touched and an empty [`Pinned`] is returned.
pub fn pin(req: &PinRequest<'_>) -> Result<Pinned, NamespaceError> {
    let mut kinds = req.kinds.to_vec();
    kinds.sort_unstable();
    kinds.dedup();
    let has = |k| kinds.contains(&k);
    if let Some(h) = req.hostname {
        if !has(NsKind::Uts) {
            return Err(NamespaceError::InconsistentNamespaces(
                "a hostname needs a new UTS namespace",
            ));
        }
        validate_hostname(h)?;
    }
    let sysctls = sysctl::prepare(req.sysctls, has(NsKind::Net), has(NsKind::Ipc))?;
    if let Some(maps) = req.userns {
        maps.validate()?;
        if kinds.is_empty() {
            return Err(NamespaceError::InconsistentNamespaces(
                "a user namespace for the pod needs new network, IPC or UTS namespaces",
            ));
        }
    }
    let dir = req.dir.to_path_buf();
    if kinds.is_empty() {
        return Ok(Pinned {
            dir,
            paths: Vec::new(),
            user: None,
        });
    }

    let dir_created = ensure_dir(&dir)?;
    let paths: Vec<(NsKind, PathBuf)> = kinds
        .iter()
        .map(|&k| (k, dir.join(k.file_name())))
        .collect();
    let user = req.userns.map(|_| dir.join(USER_NS_FILE));

    // Phase 1: target files. Nothing is mounted yet, so undo = remove what we created.
    let mut created: Vec<&Path> = Vec::with_capacity(paths.len() + 1);
    for target in paths.iter().map(|(_, p)| p).chain(user.as_ref()) {
        match prepare_target(target) {
            Ok(true) => created.push(target),
            Ok(false) => {}
            Err(e) => {
                remove_files(&created);
                remove_dir_if(&dir, dir_created);
                return Err(e);
            }
        }
    }

    // Phase 2: the namespace thread (or, with a user namespace, the child). No target was an
    // nsfs mount before (checked above), so on failure every target that is one now was mounted
    // by us and is unmounted.
    let result = match (req.userns, &user) {
        (Some(maps), Some(user_target)) => {
            crate::userns::create_and_pin(maps, &kinds, &paths, user_target, req.hostname, &sysctls)
        }
        _ => in_thread(&kinds, &paths, req.hostname, &sysctls),
    };
    if let Err(e) = result {
        let targets: Vec<&Path> = paths
            .iter()
            .map(|(_, p)| p.as_path())
            .chain(user.as_deref())
            .collect();
        for t in &targets {
            if let Err(ue) = unmount_all(t) {
                tracing::error!(path = %t.display(), error = %ue, "pin rollback: unmount failed");
            }
        }
        remove_files(&targets);
        remove_dir_if(&dir, dir_created);
        return Err(e);
    }
    tracing::debug!(dir = %dir.display(), ?kinds, userns = user.is_some(), "pinned pod namespaces");
    Ok(Pinned { dir, paths, user })
}

/// Runs [`in_new_namespaces`] on a fresh thread.
fn in_thread(
    kinds: &[NsKind],
    paths: &[(NsKind, PathBuf)],
    hostname: Option<&str>,
    sysctls: &[Sysctl],
) -> Result<(), NamespaceError> {
    thread::scope(|s| {
        let spawned = thread::Builder::new()
            .name("berth-pin".into())
            .stack_size(PIN_THREAD_STACK)
            .spawn_scoped(s, || in_new_namespaces(kinds, paths, hostname, sysctls));
        match spawned {
            Ok(handle) => handle.join().unwrap_or(Err(NamespaceError::ThreadPanicked {
                thread: "berth-pin",
            })),
            Err(source) => Err(NamespaceError::SpawnThread {
                thread: "berth-pin",
                source,
            }),
        }
    })
}

/// Body of the pin thread. After `unshare` this thread is in the pod's namespaces for good; it
/// must not do anything else and exits right after.
fn in_new_namespaces(
    kinds: &[NsKind],
    targets: &[(NsKind, PathBuf)],
    hostname: Option<&str>,
    sysctls: &[Sysctl],
) -> Result<(), NamespaceError> {
    let flags = kinds
        .iter()
        .fold(CloneFlags::empty(), |f, k| f | k.clone_flag());
    unshare(flags).map_err(|source| NamespaceError::Unshare {
        kinds: kinds
            .iter()
            .map(|k| k.file_name())
            .collect::<Vec<_>>()
            .join(","),
        source,
    })?;
    if kinds.contains(&NsKind::Net) {
        crate::loopback::up()?;
    }
    if let Some(h) = hostname {
        nix::unistd::sethostname(h).map_err(|source| NamespaceError::Hostname {
            hostname: h.to_owned(),
            source,
        })?;
    }
    sysctl::apply(sysctls)?;
    for (kind, target) in targets {
        #[cfg(test)]
        tests::maybe_fail(target)?;
        bind_ns_file(Path::new(kind.thread_self_path()), target)?;
    }
    Ok(())
}

/// Pins the namespace file `source` (`/proc/.../ns/<kind>`) onto `target`. Plain MS_BIND: the
/// mount inherits the propagation of the mount it lands on (see the crate docs and
/// `prepare_ns_root`), so its unmount propagates the same way.
pub(crate) fn bind_ns_file(source: &Path, target: &Path) -> Result<(), NamespaceError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| NamespaceError::Mount {
        path: target.to_path_buf(),
        source,
    })
}

/// Undoes [`pin`]: lazily unmounts (`MNT_DETACH`) every pinned file in `dir`, removes the files
/// and `dir` itself.
///
/// Idempotent: `Ok` when `dir` is missing, and `Ok` when a file is there but no longer a mount
/// (crash half-way, reboot emptied `/run`). A namespace lives on while a process is still in it
/// or another mount/fd refers to it; unpinning only drops Berth's reference. Fails if `dir`
/// holds files other than `net`, `ipc`, `uts` and `user`. The user namespace goes last: it owns
/// the others.
pub fn unpin(dir: &Path) -> Result<(), NamespaceError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(NamespaceError::io("stat", dir, e)),
        Ok(md) if !md.is_dir() => {
            return Err(NamespaceError::io(
                "unpin",
                dir,
                std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(_) => {}
    }
    let names = NsKind::ALL
        .iter()
        .map(|k| k.file_name())
        .chain(std::iter::once(USER_NS_FILE));
    for name in names {
        let path = dir.join(name);
        unmount_all(&path)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(NamespaceError::io("remove", path, e));
            }
            _ => {}
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(NamespaceError::io("remove dir", dir, e)),
        _ => Ok(()),
    }
}

fn validate_hostname(h: &str) -> Result<(), NamespaceError> {
    if h.is_empty() || h.len() > HOST_NAME_MAX || h.contains('\0') {
        return Err(NamespaceError::InvalidHostname {
            hostname: h.to_string(),
            max: HOST_NAME_MAX,
        });
    }
    Ok(())
}

/// Creates `dir` (0o700, with parents) if missing; returns whether the leaf was created here.
fn ensure_dir(dir: &Path) -> Result<bool, NamespaceError> {
    match fs::symlink_metadata(dir) {
        Ok(md) if md.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(NamespaceError::io(
                "use as pin dir",
                dir,
                std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(NamespaceError::io("stat", dir, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| NamespaceError::io("create dir", dir, e))?;
    Ok(true)
}

/// Makes sure `target` is a regular file that is not a mount yet; returns whether it was created.
/// A leftover regular file (not a mount) from a crash is reused.
fn prepare_target(target: &Path) -> Result<bool, NamespaceError> {
    match fs::symlink_metadata(target) {
        Ok(md) if md.is_file() => {
            if is_pinned(target) {
                return Err(NamespaceError::AlreadyPinned {
                    path: target.to_path_buf(),
                });
            }
            Ok(false)
        }
        // nsfs mounts report as regular files, so this is a symlink, dir, fifo...
        Ok(_) => Err(NamespaceError::io(
            "use as pin target",
            target,
            std::io::Error::new(ErrorKind::AlreadyExists, "exists and is not a regular file"),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .custom_flags(libc::O_CLOEXEC)
                .open(target)
                .map_err(|e| NamespaceError::io("create", target, e))?;
            Ok(true)
        }
        Err(e) => Err(NamespaceError::io("stat", target, e)),
    }
}

fn remove_files(files: &[&Path]) {
    for f in files {
        if let Err(e) = fs::remove_file(f)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::error!(path = %f.display(), error = %e, "pin rollback: remove failed");
        }
    }
}

fn remove_dir_if(dir: &Path, created: bool) {
    if created && let Err(e) = fs::remove_dir(dir) {
        tracing::error!(path = %dir.display(), error = %e, "pin rollback: remove dir failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;
    use std::sync::Mutex;

    /// Failure injection: a mount onto a target whose file name is listed here fails.
    static FAIL_ON: Mutex<Option<PathBuf>> = Mutex::new(None);

    pub(super) fn maybe_fail(target: &Path) -> Result<(), NamespaceError> {
        let fail = FAIL_ON.lock().is_ok_and(|f| f.as_deref() == Some(target));
        if fail {
            return Err(NamespaceError::Mount {
                path: target.to_path_buf(),
                source: Errno::EIO,
            });
        }
        Ok(())
    }

    #[test]
    fn failure_after_some_mounts_unmounts_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ns");
        *FAIL_ON.lock().unwrap() = Some(dir.join("uts"));
        let err = pin(&PinRequest {
            dir: &dir,
            kinds: &NsKind::ALL,
            hostname: Some("x"),
            sysctls: &BTreeMap::new(),
            userns: None,
        })
        .expect_err("injected failure");
        *FAIL_ON.lock().unwrap() = None;
        assert!(
            matches!(
                err,
                NamespaceError::Mount {
                    source: Errno::EIO,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!dir.exists(), "files and dir must be gone");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let tmp_str = tmp.path().to_str().unwrap();
        assert!(!mountinfo.contains(tmp_str), "{mountinfo}");
    }
}
