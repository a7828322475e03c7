//! Disk usage of the snapshot root (CRI `ImageFsInfo`) and of containers' writable layers.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::SnapshotError;

/// Space and inodes used under the snapshot root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of disk actually allocated (`st_blocks * 512`: sparse holes are free, metadata
    /// blocks of directories count).
    pub bytes: u64,
    /// Inodes, each hardlinked inode counted once.
    pub inodes: u64,
}

/// Walks `root` without following symlinks or crossing into other filesystems. Entries that
/// vanish during the walk (a concurrent unpack or removal) are skipped, not errors.
pub fn dir_usage(root: &Path) -> Result<Usage, SnapshotError> {
    let root_md = fs::symlink_metadata(root).map_err(|e| SnapshotError::io("stat", root, e))?;
    let dev = root_md.dev();
    let mut usage = Usage {
        bytes: root_md.blocks() * 512,
        inodes: 1,
    };
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SnapshotError::io("read directory", &dir, e)),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SnapshotError::io("read directory", &dir, e)),
            };
            // DirEntry::metadata does not follow symlinks.
            let md = match entry.metadata() {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SnapshotError::io("stat", entry.path(), e)),
            };
            if md.dev() != dev {
                continue;
            }
            if md.nlink() > 1 && !md.is_dir() && !seen.insert(md.ino()) {
                continue;
            }
            usage.bytes += md.blocks() * 512;
            usage.inodes += 1;
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}
