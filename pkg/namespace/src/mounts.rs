//! Mount propagation set-up for the directory that holds all pinned namespaces.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::NamespaceError;

/// One line of `/proc/self/mountinfo`, the parts used here.
struct MountInfo {
    mount_point: PathBuf,
    /// Peer group id from the `shared:N` optional field.
    shared: Option<u64>,
}

/// Makes `root` (created 0o700 if missing) a mount point of its own in its own shared peer group.
///
/// Call once at startup on the directory under which all sandboxes' pin dirs live (e.g.
/// `<state>/sandboxes`). Afterwards nsfs mounts created below `root`:
/// * are not copied into the peers of `root`'s parent mount, so a state dir on a shared mount
///   (systemd makes `/` and `/run` shared) does not get every pin twice, and the host's other
///   mount namespaces do not collect copies;
/// * still propagate to copies of `root` made later, e.g. a node agent that mounts the state dir
///   with `HostToContainer` (rslave) propagation sees the pods' netns files, like containerd's
///   and iproute2's `/run/netns` (which those make a shared mount of itself).
///
/// Idempotent: when `root` already is a mount point that is shared and whose peer group no other
/// mount in this mount namespace is in, nothing is changed (re-running make-private would cut
/// existing slaves off). Otherwise `root` is bind-mounted onto itself if needed (`MS_REC`, so
/// pins that survived a restart stay visible), made private (leaving any inherited peer group)
/// and then shared (a fresh group).
pub fn prepare_ns_root(root: &Path) -> Result<(), NamespaceError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| NamespaceError::io("create dir", root, e))?;
    // mountinfo shows canonical paths.
    let root = fs::canonicalize(root).map_err(|e| NamespaceError::io("canonicalize", root, e))?;
    let mounts = read_mountinfo()?;
    // The last entry for a mount point is the one on top, the one path lookups see.
    let own = mounts.iter().rev().find(|m| m.mount_point == root);
    if let Some(MountInfo {
        shared: Some(group),
        ..
    }) = own
    {
        let peers_here = mounts.iter().filter(|m| m.shared == Some(*group)).count();
        if peers_here == 1 {
            return Ok(());
        }
    }
    let mnt = |source: Option<&Path>, flags: MsFlags| {
        mount(source, root.as_path(), None::<&str>, flags, None::<&str>).map_err(|source| {
            NamespaceError::Mount {
                path: root.clone(),
                source,
            }
        })
    };
    if own.is_none() {
        mnt(Some(root.as_path()), MsFlags::MS_BIND | MsFlags::MS_REC)?;
    }
    // Not recursive: only root's own propagation changes, pins below it keep theirs.
    mnt(None, MsFlags::MS_PRIVATE)?;
    mnt(None, MsFlags::MS_SHARED)?;
    tracing::info!(root = %root.display(), "namespace root is a shared mount of its own");
    Ok(())
}

fn read_mountinfo() -> Result<Vec<MountInfo>, NamespaceError> {
    let path = "/proc/thread-self/mountinfo";
    let text = fs::read_to_string(path).map_err(|e| NamespaceError::io("read", path, e))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw`
fn parse_line(line: &str) -> Option<MountInfo> {
    let mut fields = line.split(' ');
    let mount_point = unescape(fields.nth(4)?);
    let shared = fields
        .skip(1) // mount options
        .take_while(|f| *f != "-")
        .find_map(|f| f.strip_prefix("shared:")?.parse().ok());
    Some(MountInfo {
        mount_point: PathBuf::from(mount_point),
        shared,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let m = parse_line(
            "36 35 98:0 /mnt1 /a\\040b rw,noatime master:1 shared:2 - ext3 /dev/root rw",
        )
        .unwrap();
        assert_eq!(m.mount_point, Path::new("/a b"));
        assert_eq!(m.shared, Some(2));
        let m = parse_line("21 45 0:4 / /proc rw - proc proc rw").unwrap();
        assert_eq!(m.shared, None);
        assert_eq!(unescape("x\\134y\\0"), "x\\y\\0");
    }
}
