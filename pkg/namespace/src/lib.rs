//! Pod namespaces without a pause container.
//!
//! Berth creates a pod's network, IPC and UTS namespaces itself (like CRI-O's `pinns`) and keeps
//! them alive by bind-mounting their nsfs files onto regular files under berthd's state dir.
//! Containers created later by runc join them by path; CNI plugins get the net namespace path.
//!
//! # Why a dedicated thread
//!
//! `unshare(2)` with `CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS` only moves the *calling thread*
//! into the new namespaces, and it does so for good (there is no way back short of `setns` into
//! saved host namespaces). Doing that on a tokio worker or any pooled thread would silently move
//! unrelated later work into a pod's namespaces. So [`pin`] and [`run_in_netns`] always run their
//! namespace work on a fresh, short-lived OS thread that exits when done. Spawning a thread costs
//! tens of microseconds; forking/exec'ing a helper binary (what `pinns` does) costs milliseconds.
//!
//! # Which namespace `/proc` paths follow
//!
//! * `/proc/sys/net/*` is resolved by the kernel against the network namespace of the *thread*
//!   doing the lookup (`current->nsproxy->net_ns`), and the IPC sysctls (`kernel.shm*`,
//!   `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`) against the *thread's* IPC namespace; dentries
//!   from another namespace's set are not matched, so the process-wide dcache does not leak host
//!   values. Writing through `/proc/sys` from the pinning thread therefore hits the new
//!   namespaces (the integration tests prove it with nsenter and from inside [`run_in_netns`]).
//! * `/proc/self/net/*` (and thus `/proc/net`) follows the thread-group *leader's* netns, i.e.
//!   usually the host's. From a thread inside a netns use `/proc/thread-self/net/*`.
//! * `/sys/class/net` follows the netns of whoever mounted that sysfs, not the caller's.
//! * Namespaces are pinned from `/proc/thread-self/ns/<kind>`: `/proc/self/ns/<kind>` would be
//!   the main thread's (host) namespace.
//!
//! # User namespaces
//!
//! With [`PinRequest::userns`] the pod also gets a user namespace with the given id mappings,
//! and its network, IPC and UTS namespaces are owned by it (so the pod's root can mount /proc,
//! /sys and mqueue in them). A multithreaded process may not create or enter a user namespace,
//! so these are created by a short-lived child process instead of a thread; see `userns.rs`.
//! [`mount_idmapped`] makes the idmapped mounts that show the pod's files with its ids.
//!
//! # Mount propagation
//!
//! A bind mount created under a *shared* mount is copied into every peer of that mount; if the
//! state dir is a peer of some other mount in the same mount namespace (for example a directory
//! bind-mounted onto itself while its parent is shared, which is what a naive
//! `mount --bind dir dir` on a systemd host produces) every pinned file shows up twice. The
//! pinned mounts themselves are left with the propagation they inherit (so that an unmount
//! propagates exactly like the mount did). Instead, call [`prepare_ns_root`] once at startup on
//! the directory holding all sandboxes' namespace dirs: it makes that directory a mount point of
//! its own, in its *own* shared peer group (make-private, then make-shared). Pinned namespaces
//! then propagate to copies of that directory made later (node agents mounting it with
//! `HostToContainer`/rslave propagation see pod netns files, as with containerd's and
//! iproute2's `/run/netns`), but never back into the parent's peers, so there are no duplicates.

mod error;
// open_tree, mount_setattr, move_mount: idmapped mounts have no std or nix wrapper.
#[allow(unsafe_code)]
mod idmap;
// socket and ioctl(SIOCGIFFLAGS/SIOCSIFFLAGS) to bring lo up.
#[allow(unsafe_code)]
mod loopback;
mod mounts;
mod netns;
mod pin;
mod rro;
mod sysctl;
// raw clone into new namespaces, close_range, prctl, kill and waitpid of the holder child.
#[allow(unsafe_code)]
mod userns;

use std::fmt;

pub use error::NamespaceError;
pub use idmap::{mount_idmapped, open_user_namespace, probe_idmapped_mounts, unmount_all};
pub use mounts::prepare_ns_root;
pub use netns::run_in_netns;
pub use pin::{PinRequest, Pinned, USER_NS_FILE, is_pinned, pin, unpin};
pub use rro::{mount_recursive_readonly, probe_recursive_read_only};
pub use sysctl::{normalize_sysctl_name, validate_sysctls};
pub use userns::{
    IdMapping, MAX_ID_RANGES, UserNamespaceMappings, map_file_contents, new_user_namespace,
    read_id_map, validate_id_mappings,
};

/// A namespace kind Berth creates per pod. The others (mount, PID, cgroup) are created by runc
/// per container or are the host's; a pod's user namespace, when it has one, is pinned beside
/// these as [`USER_NS_FILE`] (see [`PinRequest::userns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsKind {
    /// Network namespace (`CLONE_NEWNET`), file name `net`.
    Net,
    /// System V IPC and POSIX message queue namespace (`CLONE_NEWIPC`), file name `ipc`.
    Ipc,
    /// Hostname/domain name namespace (`CLONE_NEWUTS`), file name `uts`.
    Uts,
}

impl NsKind {
    /// All kinds, in the order they are pinned.
    pub const ALL: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];

    /// The file name used both under `/proc/<pid>/ns/` and in a pin dir.
    pub const fn file_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }

    pub(crate) const fn clone_flag(self) -> nix::sched::CloneFlags {
        use nix::sched::CloneFlags;
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }

    /// The calling thread's own namespace file; the source of the pin bind mount.
    pub(crate) const fn thread_self_path(self) -> &'static str {
        match self {
            NsKind::Net => "/proc/thread-self/ns/net",
            NsKind::Ipc => "/proc/thread-self/ns/ipc",
            NsKind::Uts => "/proc/thread-self/ns/uts",
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}
