//! Looking at paths inside the container's root filesystem from the host, without letting a
//! symlink in the image lead outside it: absolute link targets are taken relative to the rootfs
//! and `..` stops at its root, as they would inside the container (like Go's
//! filepath-securejoin, which containerd and runc use).
//!
//! The resolution is done in userspace, component by component. That is race-free enough here:
//! the rootfs is a fresh overlay no container process runs in yet.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use crate::SpecError;

/// Linux's limit on symlinks followed in one lookup (MAXSYMLINKS is 40; runc's securejoin
/// allows 255). Past it the lookup fails with ELOOP.
const MAX_SYMLINKS: u32 = 255;

/// The host path of `path` (taken as absolute inside `root`), with every symlink that exists on
/// the way resolved inside `root`. Components that don't exist are appended as they are.
pub(crate) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = components(path);
    let mut links = 0u32;

    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = join(root, &resolved).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for (i, c) in components(&target).into_iter().enumerate() {
                    pending.insert(i, c);
                }
            }
            // A regular entry, or one that doesn't exist (yet): take the name literally.
            Ok(_) => resolved.push(part),
            Err(e) if is_missing(&e) => resolved.push(part),
            Err(e) => return Err(e),
        }
    }
    Ok(join(root, &resolved))
}

/// Reads `path` (absolute inside `root`) after resolving it inside `root`. None if it doesn't
/// exist.
pub(crate) fn read_in_root(root: &Path, path: &str) -> Result<Option<String>, SpecError> {
    let host = resolve_in_root(root, Path::new(path))
        .map_err(|e| SpecError::io(format!("resolving {path} in {}", root.display()), e))?;
    match fs::read(&host) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(SpecError::io(format!("reading {}", host.display()), e)),
    }
}

/// `mkdir -p` of `path` (absolute inside `root`), resolved inside `root`; the directories it
/// creates get mode 0755 and owner `uid:gid`. Existing directories are left as they are.
/// Returns the host path.
pub(crate) fn mkdir_all_in_root(
    root: &Path,
    path: &Path,
    uid: u32,
    gid: u32,
) -> Result<PathBuf, SpecError> {
    let host = resolve_in_root(root, path).map_err(|e| {
        SpecError::io(
            format!("resolving {} in {}", path.display(), root.display()),
            e,
        )
    })?;
    // `host` is `root` plus plain names: walk down it, creating what is missing. After the first
    // missing component there can be no symlinks (we just created the parents).
    let rel = host.strip_prefix(root).unwrap_or(Path::new(""));
    let mut current = root.to_path_buf();
    for part in rel.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => {
                return Err(SpecError::InvalidMount(format!(
                    "{} exists in the image and is not a directory",
                    path.display()
                )));
            }
            Err(e) if is_missing(&e) => {}
            Err(e) => {
                return Err(SpecError::io(
                    format!("inspecting {}", current.display()),
                    e,
                ));
            }
        }
        match fs::DirBuilder::new().mode(0o755).create(&current) {
            Ok(()) => {}
            // Created concurrently: fine, it is a directory now or the next stat says otherwise.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(SpecError::io(format!("creating {}", current.display()), e)),
        }
        std::os::unix::fs::lchown(&current, Some(uid), Some(gid))
            .map_err(|e| SpecError::io(format!("chowning {}", current.display()), e))?;
    }
    Ok(host)
}

/// ENOENT, or ENOTDIR (a path component is a file): either way nothing is there.
pub(crate) fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

/// `path` made absolute and lexically clean (`filepath.Clean` of an absolute path): no `.`, no
/// `..` above the root, no double or trailing slashes. None if `path` is not absolute.
pub(crate) fn clean_absolute(path: &str) -> Option<PathBuf> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut p = PathBuf::from("/");
    p.extend(parts);
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("real")).unwrap();
        fs::write(r.join("real/passwd"), "inside").unwrap();
        // Absolute target: must resolve to <root>/real/passwd, not the host's /real/passwd.
        symlink("/real/passwd", r.join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/etc/passwd")).unwrap(),
            r.join("real/passwd")
        );
        assert_eq!(
            read_in_root(r, "/etc/passwd").unwrap().as_deref(),
            Some("inside")
        );
        // `..` is clamped at the root.
        symlink("../../../../real", r.join("up")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/up/passwd")).unwrap(),
            r.join("real/passwd")
        );
        // A link to the host's /etc stays in the root.
        symlink("/etc", r.join("hostetc")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/hostetc/shadow")).unwrap(),
            r.join("etc/shadow")
        );
        assert_eq!(read_in_root(r, "/etc/group").unwrap(), None);
    }

    #[test]
    fn symlink_loops_fail() {
        let root = tempfile::tempdir().unwrap();
        symlink("/b", root.path().join("a")).unwrap();
        symlink("/a", root.path().join("b")).unwrap();
        let err = resolve_in_root(root.path(), Path::new("/a/x")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn mkdir_all_creates_owned_dirs_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("srv")).unwrap();
        symlink("/srv", r.join("work")).unwrap();
        let host = mkdir_all_in_root(r, Path::new("/work/a/b"), 1000, 1000).unwrap();
        assert_eq!(host, r.join("srv/a/b"));
        let meta = fs::metadata(r.join("srv/a/b")).unwrap();
        assert!(meta.is_dir());
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
        assert_eq!(meta.mode() & 0o7777, 0o755);
        // The existing directory keeps its owner.
        assert_eq!(fs::metadata(r.join("srv")).unwrap().uid(), 0);
        // Idempotent.
        mkdir_all_in_root(r, Path::new("/work/a/b"), 1000, 1000).unwrap();
        // A file in the way is the image's fault.
        fs::write(r.join("file"), "").unwrap();
        let err = mkdir_all_in_root(r, Path::new("/file/x"), 0, 0).unwrap_err();
        assert!(matches!(err, SpecError::InvalidMount(_)), "{err}");
    }

    #[test]
    fn cleans_absolute_paths() {
        assert_eq!(clean_absolute("/a//b/./c/"), Some(PathBuf::from("/a/b/c")));
        assert_eq!(clean_absolute("/../a/../b"), Some(PathBuf::from("/b")));
        assert_eq!(clean_absolute("/"), Some(PathBuf::from("/")));
        assert_eq!(clean_absolute("a/b"), None);
        assert_eq!(clean_absolute(""), None);
    }
}
