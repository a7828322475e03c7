//! Berth's overlayfs snapshotter: turns OCI image layers into overlay lowerdirs keyed by chain
//! ID, and stacks them into container rootfs mounts.
//!
//! ```no_run
//! use berth_snapshot::{Snapshotter, chain_id, unmount};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), berth_snapshot::SnapshotError> {
//! # let (diff_ids, layers): (Vec<String>, Vec<std::fs::File>) = (vec![], vec![]);
//! let snapshotter = Snapshotter::open(Path::new("/var/lib/berth/snapshots"))?;
//! let mut parent: Option<String> = None;
//! for (diff_id, tar) in diff_ids.iter().zip(layers) {
//!     let chain = chain_id(parent.as_deref(), diff_id);
//!     snapshotter.apply_layer(&chain, parent.as_deref(), diff_id, tar)?; // uncompressed tar
//!     parent = Some(chain);
//! }
//! let top = parent.expect("image has layers");
//! let rootfs = snapshotter.prepare_rootfs(&top, Path::new("/var/lib/berth/containers/c1"))?;
//! rootfs.mount(Path::new("/run/berth/c1/rootfs"), false)?;
//! // ... run the container ...
//! unmount(Path::new("/run/berth/c1/rootfs"))?;
//! # Ok(())
//! # }
//! ```
//!
//! On-disk layout (like containerd's overlayfs snapshotter, with short numeric dir names so a
//! 100-layer lowerdir list fits in the one-page mount option limit):
//!
//! ```text
//! <root>/                  mode 0700: layers hold setuid binaries
//!   lock                   flock'd by the open Snapshotter
//!   snapshots/<id>/fs/     the layer's own diff only (OCI whiteouts already converted to
//!                          overlayfs ones: 0:0 char devices, trusted.overlay.opaque=y)
//!   snapshots/<id>/info.json   {chain_id, parent, diff_id, size, ...}
//!   tmp/                   in-progress unpacks and removals; emptied on open
//! ```
//!
//! Guarantees:
//! - a hostile layer cannot create, modify or link anything outside its own extraction dir:
//!   every parent directory is opened with openat2(`RESOLVE_BENEATH`), every entry created
//!   relative to that fd without following its last component; escapes are refused with
//!   [`SnapshotError::UnsafePath`], never silently re-rooted (see `unpack`);
//! - a snapshot appears atomically (rename) only after its content matched the diff ID and
//!   was synced; a failed or interrupted unpack leaves nothing (or only `tmp/`, cleaned on
//!   the next open);
//! - `trusted.overlay.*` xattrs in a layer are dropped, so layer content cannot steer overlayfs
//!   (redirects, metacopy, opaque) except through OCI whiteouts.
//!
//! Requires root (ownership, device nodes, trusted xattrs, mounts) and Linux 5.6+ (openat2).

mod chunks;
mod create;
mod digest;
mod error;
// raw syscalls: flistxattr, fgetxattr on entries read back for layer tars
#[allow(unsafe_code)]
mod layer_tar;
mod meta;
mod mount;
mod path;
mod readonly;
mod snapshotter;
// raw syscalls: openat2, mknodat, fsetxattr, mount and friends relative to verified fds
#[allow(unsafe_code)]
mod sys;
mod unpack;
mod usage;

pub use chunks::ChunkWriter;
pub use digest::{chain_id, validate_digest};
pub use error::SnapshotError;
pub use layer_tar::{IdMap, IdRange, LayerTarStats, write_layer_tar, write_layer_tar_mapped};
pub use mount::{RootfsMount, unmount};
pub use readonly::{ReadOnlyRootfs, SubPathError, resolve_sub_dir};
pub use snapshotter::{
    DEFAULT_MAX_UNPACKED_BYTES, Options, SnapshotInfo, Snapshotter, UnpackedLayer, upper_dir,
};
pub use usage::{Usage, dir_usage};
