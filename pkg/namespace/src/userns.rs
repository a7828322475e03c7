//! User namespaces for pods: id mappings, their validation, and creating a user namespace that
//! owns the pod's other namespaces.
//!
//! `unshare(CLONE_NEWUSER)` and `setns` into a user namespace are refused in a multithreaded
//! process, and berthd is one. So the namespaces are created by a short-lived child: a raw
//! `clone(CLONE_NEWUSER | CLONE_NEWNET | ...)` (fork semantics, the child has only the calling
//! thread) that does nothing but wait to be killed. Its other namespaces are owned by its new user
//! namespace, which is what lets the container's root mount /proc, /sys and mqueue in them. The
//! parent writes the maps, configures the namespaces from a thread that `setns`es into net, IPC
//! and UTS (allowed: root of the initial user namespace has every capability in a child user
//! namespace it created), bind-mounts the child's `/proc/<pid>/ns/*` files and then kills and
//! reaps the child.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use serde::{Deserialize, Serialize};

use crate::sysctl::{self, Sysctl};
use crate::{NamespaceError, NsKind};

/// The kernel accepts at most this many lines in a `uid_map` / `gid_map`.
pub const MAX_ID_RANGES: usize = 340;
/// `(uid_t)-1` is never a valid id.
const INVALID_ID: u64 = u32::MAX as u64;

/// One range of ids: `container_id..container_id+length` inside the namespace are
/// `host_id..host_id+length` outside (CRI `IDMapping`, a line of `/proc/<pid>/uid_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// The uid and gid mappings of a pod's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct UserNamespaceMappings {
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

impl UserNamespaceMappings {
    /// One range of `length` ids from `host_id` for both uids and gids, container ids from 0
    /// (what kubelet sends).
    pub fn single(host_id: u32, length: u32) -> Self {
        let m = IdMapping {
            container_id: 0,
            host_id,
            length,
        };
        UserNamespaceMappings {
            uids: vec![m],
            gids: vec![m],
        }
    }

    /// Checks the mappings; see [`validate_id_mappings`].
    pub fn validate(&self) -> Result<(), NamespaceError> {
        validate_id_mappings("uid", &self.uids)?;
        validate_id_mappings("gid", &self.gids)
    }

    /// The host uid that container uid `id` is, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        to_host(&self.uids, id)
    }

    /// The host gid that container gid `id` is, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        to_host(&self.gids, id)
    }
}

fn to_host(ranges: &[IdMapping], id: u32) -> Option<u32> {
    ranges.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id)?;
        (off < m.length).then(|| m.host_id + off)
    })
}

/// Checks one list of mappings the way the kernel will, plus Berth's own rules, so that a bad
/// request is refused before anything is created:
/// * 1..=340 ranges ([`MAX_ID_RANGES`], the kernel's limit), none of length 0;
/// * no range runs past id 4294967294 on either side (`(uid_t)-1` is invalid), and ranges
///   overlap neither inside nor outside the namespace (the kernel refuses both);
/// * id 0 inside is mapped: a pod without a root is not something kubelet sends, and runc and
///   images assume one;
/// * host id 0 is not mapped: a pod user namespace containing host root would be no isolation.
pub fn validate_id_mappings(what: &str, ranges: &[IdMapping]) -> Result<(), NamespaceError> {
    let bad = |reason: String| {
        Err(NamespaceError::InvalidIdMappings {
            what: what.to_string(),
            reason,
        })
    };
    if ranges.is_empty() {
        return bad("a pod user namespace needs at least one range".into());
    }
    if ranges.len() > MAX_ID_RANGES {
        return bad(format!(
            "{} ranges, the kernel accepts at most {MAX_ID_RANGES}",
            ranges.len()
        ));
    }
    for m in ranges {
        if m.length == 0 {
            return bad(format!("range {m:?} has length 0"));
        }
        for (side, start) in [("container", m.container_id), ("host", m.host_id)] {
            if u64::from(start) + u64::from(m.length) > INVALID_ID {
                return bad(format!("{side} range of {m:?} runs past id 4294967294"));
            }
        }
        if m.host_id == 0 {
            return bad(format!("range {m:?} maps host id 0 (root) into the pod"));
        }
    }
    let overlap = |a: u32, b: u32, la: u32, lb: u32| {
        let (a, b, la, lb) = (u64::from(a), u64::from(b), u64::from(la), u64::from(lb));
        a < b + lb && b < a + la
    };
    for (i, x) in ranges.iter().enumerate() {
        for y in &ranges[i + 1..] {
            if overlap(x.container_id, y.container_id, x.length, y.length) {
                return bad(format!("container ranges of {x:?} and {y:?} overlap"));
            }
            if overlap(x.host_id, y.host_id, x.length, y.length) {
                return bad(format!("host ranges of {x:?} and {y:?} overlap"));
            }
        }
    }
    if to_host(ranges, 0).is_none() {
        return bad("id 0 (the container's root) is not mapped".into());
    }
    Ok(())
}

/// The text of a `uid_map` / `gid_map`: one `inside outside length` line per range, written in
/// one `write(2)` as the kernel requires.
pub fn map_file_contents(ranges: &[IdMapping]) -> String {
    ranges
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// A child parked in `pause()`, in new namespaces. Dropping it (or [`Holder::finish`]) kills
/// and reaps it.
///
/// Why no pipe to release it: the clone copies the whole fd table, so a holder cloned while
/// another thread's holder exists would keep that one's release pipe open; two concurrent pods
/// then keep each other's children alive and both creators block in `waitpid` for ever (seen as a
/// hang of two concurrent tests). A signal has no such sharing. The child also closes every
/// inherited fd so that it keeps no other socket or file of berthd's open while it lives.
struct Holder {
    pid: libc::pid_t,
}

impl Holder {
    /// Clones a child into new namespaces (`flags` plus `CLONE_NEWUSER`).
    fn spawn(flags: CloneFlags, what: &str) -> Result<Holder, NamespaceError> {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let clone_flags = (flags | CloneFlags::CLONE_NEWUSER).bits() as libc::c_long
            | libc::c_long::from(libc::SIGCHLD);
        // SAFETY: a raw clone without CLONE_VM has fork semantics (zero stack and tid arguments:
        // the child runs on a copy of this stack). The child only makes raw system calls, which
        // are async-signal-safe, and never returns into Rust code.
        let pid =
            unsafe { libc::syscall(libc::SYS_clone, clone_flags, 0usize, 0usize, 0usize, 0usize) };
        if pid == 0 {
            // SAFETY: in the child: async-signal-safe calls only. close_range failing (a kernel
            // before 5.9) only means the inherited fds stay open until the child is killed.
            unsafe {
                libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
                // Dies with its creator, so a berthd killed mid-way leaves no holder behind.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(0);
                }
                loop {
                    libc::pause();
                }
            }
        }
        if pid < 0 {
            return Err(NamespaceError::Unshare {
                kinds: what.into(),
                source: Errno::last(),
            });
        }
        // A pid from clone(2), widened to long by syscall(2); pid_max is at most 2^22.
        #[allow(clippy::cast_possible_truncation)]
        let pid = pid as libc::pid_t;
        Ok(Holder { pid })
    }

    fn proc_path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    fn write_maps(&self, maps: &UserNamespaceMappings) -> Result<(), NamespaceError> {
        for (file, ranges) in [("uid_map", &maps.uids), ("gid_map", &maps.gids)] {
            let path = self.proc_path(file);
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| NamespaceError::io("open", &path, e))?;
            f.write_all(map_file_contents(ranges).as_bytes())
                .map_err(|e| NamespaceError::io("write", &path, e))?;
        }
        Ok(())
    }

    /// Kills and reaps the child; the namespaces live on in whatever the caller opened or bound.
    fn finish(self) {
        drop(self);
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.pid <= 0 {
            return;
        }
        // SAFETY: signalling our own, not yet reaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            break;
        }
        self.pid = 0;
    }
}

/// Creates a user namespace with `maps` (and no other namespace) and returns an fd for it, e.g.
/// for `mount_setattr(MOUNT_ATTR_IDMAP)`. The fd keeps it alive; no process stays in it.
pub fn new_user_namespace(maps: &UserNamespaceMappings) -> Result<File, NamespaceError> {
    maps.validate()?;
    let holder = Holder::spawn(CloneFlags::empty(), "user")?;
    holder.write_maps(maps)?;
    let path = holder.proc_path("ns/user");
    let file = File::open(&path).map_err(|e| NamespaceError::io("open", &path, e))?;
    holder.finish();
    Ok(file)
}

/// The user-namespace path of [`crate::pin`]: creates the user namespace and `kinds` in a child,
/// configures them, pins them (`user_target` for the user namespace) and lets the child go.
/// The caller unmounts the targets on error.
pub(crate) fn create_and_pin(
    maps: &UserNamespaceMappings,
    kinds: &[NsKind],
    targets: &[(NsKind, PathBuf)],
    user_target: &Path,
    hostname: Option<&str>,
    sysctls: &[Sysctl],
) -> Result<(), NamespaceError> {
    let flags = kinds
        .iter()
        .fold(CloneFlags::empty(), |f, k| f | k.clone_flag());
    let names: Vec<&str> = std::iter::once("user")
        .chain(kinds.iter().map(|k| k.file_name()))
        .collect();
    let holder = Holder::spawn(flags, &names.join(","))?;
    holder.write_maps(maps)?;

    // Loopback, hostname and sysctls from a thread that joins the child's namespaces (it never
    // joins the user namespace, which a multithreaded process may not).
    let ns_files: Vec<(NsKind, File)> = kinds
        .iter()
        .map(|&k| {
            let p = holder.proc_path(&format!("ns/{}", k.file_name()));
            File::open(&p)
                .map(|f| (k, f))
                .map_err(|e| NamespaceError::io("open", &p, e))
        })
        .collect::<Result<_, _>>()?;
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("berth-userns".into())
            .spawn_scoped(s, || configure(&ns_files, hostname, sysctls));
        match spawned {
            Ok(h) => h.join().unwrap_or(Err(NamespaceError::ThreadPanicked {
                thread: "berth-userns",
            })),
            Err(source) => Err(NamespaceError::SpawnThread {
                thread: "berth-userns",
                source,
            }),
        }
    })?;

    let all = targets
        .iter()
        .map(|(k, t)| (k.file_name(), t.as_path()))
        .chain(std::iter::once(("user", user_target)));
    for (name, target) in all {
        crate::pin::bind_ns_file(&holder.proc_path(&format!("ns/{name}")), target)?;
    }
    holder.finish();
    Ok(())
}

/// Body of the configuring thread: setns into the child's namespaces, then as `pin` does.
fn configure(
    ns_files: &[(NsKind, File)],
    hostname: Option<&str>,
    sysctls: &[Sysctl],
) -> Result<(), NamespaceError> {
    for (kind, file) in ns_files {
        setns(file, kind.clone_flag()).map_err(|source| NamespaceError::Setns {
            path: PathBuf::from(format!("<child>/ns/{}", kind.file_name())),
            source,
        })?;
    }
    if ns_files.iter().any(|(k, _)| *k == NsKind::Net) {
        crate::loopback::up()?;
    }
    if let Some(h) = hostname {
        nix::unistd::sethostname(h).map_err(|source| NamespaceError::Hostname {
            hostname: h.to_owned(),
            source,
        })?;
    }
    sysctl::apply(sysctls)
}

/// Reads a process's `uid_map` back into mappings (for checks and tests).
pub fn read_id_map(path: &Path) -> Result<Vec<IdMapping>, NamespaceError> {
    let text = fs::read_to_string(path).map_err(|e| NamespaceError::io("read", path, e))?;
    let parse = |s: &str| s.parse::<u32>().ok();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let parsed = match f.as_slice() {
                [c, h, n] => parse(c)
                    .zip(parse(h))
                    .zip(parse(n))
                    .map(|((c, h), n)| IdMapping {
                        container_id: c,
                        host_id: h,
                        length: n,
                    }),
                _ => None,
            };
            parsed.ok_or_else(|| {
                NamespaceError::io(
                    "parse",
                    path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, l.to_owned()),
                )
            })
        })
        .collect()
}

/// For [`crate::idmap`]: a C string of a path.
pub(crate) fn cpath(path: &Path) -> Result<CString, NamespaceError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| NamespaceError::PathWithNul {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    #[test]
    fn kubelet_mappings_are_valid() {
        let maps = UserNamespaceMappings::single(65536 * 3, 65536);
        maps.validate().unwrap();
        assert_eq!(map_file_contents(&maps.uids), "0 196608 65536\n");
        assert_eq!(maps.host_uid(0), Some(196608));
        assert_eq!(maps.host_gid(65535), Some(196608 + 65535));
        assert_eq!(maps.host_uid(65536), None);
    }

    #[test]
    fn bad_mappings_are_refused() {
        let cases: Vec<(&str, Vec<IdMapping>)> = vec![
            ("at least one", vec![]),
            ("length 0", vec![m(0, 65536, 0)]),
            ("runs past", vec![m(0, u32::MAX - 10, 65536)]),
            (
                "runs past",
                vec![m(0, 1 << 20, 1), m(u32::MAX - 1, 65536, 2)],
            ),
            ("host id 0", vec![m(0, 0, 65536)]),
            ("container ranges", vec![m(0, 65536, 10), m(5, 1 << 20, 10)]),
            ("host ranges", vec![m(0, 65536, 10), m(100, 65540, 10)]),
            ("not mapped", vec![m(1, 65536, 10)]),
            (
                "at most 340",
                (0..341).map(|i| m(i, 65536 + i, 1)).collect(),
            ),
        ];
        for (want, ranges) in cases {
            let err = validate_id_mappings("uid", &ranges).unwrap_err();
            assert!(
                matches!(err, NamespaceError::InvalidIdMappings { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
        // Several ranges are fine.
        validate_id_mappings("gid", &[m(0, 65536, 1000), m(1000, 200_000, 10)]).unwrap();
    }
}
