//! Lexical cleaning of tar entry paths and OCI whiteout recognition.
//!
//! Cleaning is only the first line of defence: it rejects `..` climbing above the root and gives
//! a canonical `a/b/c` form. A leading `/` means the layer root, as it does for docker,
//! containerd and CRI-O (umoci writes `/` and `/bin/sh`): every name is relative to the root. Symlinks inside the layer are handled by
//! the kernel when the parent directory is opened with `RESOLVE_BENEATH` (see `sys`).

/// OCI whiteout prefix: `dir/.wh.name` deletes `dir/name` from lower layers.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS metadata entries (`.wh..wh.plnk`, `.wh..wh.aufs`), which carry no content.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// OCI opaque marker: `dir/.wh..wh..opq` hides everything lower layers have in `dir`.
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// A cleaned entry path: components joined by `/`, none empty, `.` or `..`; empty for the layer
/// root itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CleanPath {
    path: Vec<u8>,
    /// Index of the last component's first byte (0 if there is a single component).
    name_start: usize,
}

impl CleanPath {
    /// Cleans `raw` like Go's `filepath.Clean` relative to the layer root: a leading `/` or `./`
    /// is dropped (`/`, `./` and `.` are the root itself), and `..` that climbs above the root
    /// is refused. containerd instead joins `/../x` to `/x`; refusing is stricter, and no tool
    /// writes such names in a genuine layer. `./foo`, `/foo`, `foo/` and `a/../b` are fine.
    pub(crate) fn new(raw: &[u8]) -> Result<CleanPath, &'static str> {
        if raw.is_empty() {
            return Err("empty path");
        }
        if raw.contains(&0) {
            return Err("path contains a NUL byte");
        }
        let mut parts: Vec<&[u8]> = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    if parts.pop().is_none() {
                        return Err("path climbs above the layer root with ..");
                    }
                }
                _ => parts.push(part),
            }
        }
        let mut path = Vec::with_capacity(raw.len());
        let mut name_start = 0;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                path.push(b'/');
            }
            name_start = path.len();
            path.extend_from_slice(part);
        }
        Ok(CleanPath { path, name_start })
    }

    /// True for the layer root itself (`.`, `./`, `/`).
    pub(crate) fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The whole cleaned path.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.path
    }

    /// The parent directory's path (empty for entries directly in the root).
    pub(crate) fn parent(&self) -> &[u8] {
        if self.name_start == 0 {
            &[]
        } else {
            &self.path[..self.name_start - 1]
        }
    }

    /// The last component (empty for the root).
    pub(crate) fn name(&self) -> &[u8] {
        &self.path[self.name_start..]
    }
}

/// What an entry's name means for overlayfs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// `.wh..wh..opq`: mark the parent directory opaque.
    Opaque,
    /// `.wh.<name>`: hide `<name>` (the returned bytes) in the parent directory.
    Name(&'a [u8]),
    /// `.wh..wh.*` AUFS bookkeeping: skip.
    Meta,
}

/// Classifies an entry's last component.
pub(crate) fn whiteout(name: &[u8]) -> Result<Whiteout<'_>, &'static str> {
    if name == WHITEOUT_OPAQUE {
        return Ok(Whiteout::Opaque);
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(Whiteout::Meta);
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Whiteout::None),
        Some(b"" | b"." | b"..") => Err("whiteout names no file"),
        Some(hidden) => Ok(Whiteout::Name(hidden)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(raw: &str) -> Result<String, &'static str> {
        CleanPath::new(raw.as_bytes()).map(|p| String::from_utf8(p.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn cleans_normal_paths() {
        assert_eq!(clean("./foo").unwrap(), "foo");
        assert_eq!(clean("foo/").unwrap(), "foo");
        assert_eq!(clean("./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(clean("a/../b").unwrap(), "b");
        assert_eq!(clean("./").unwrap(), "");
        assert_eq!(clean(".").unwrap(), "");
    }

    #[test]
    fn leading_slash_is_the_layer_root() {
        assert_eq!(clean("/").unwrap(), "");
        assert_eq!(clean("//").unwrap(), "");
        assert_eq!(clean("/bin/sh").unwrap(), "bin/sh");
        assert_eq!(clean("//etc//passwd").unwrap(), "etc/passwd");
        assert_eq!(clean("/./a/../b").unwrap(), "b");
        assert_eq!(clean("/.wh.gone").unwrap(), ".wh.gone");
        assert!(CleanPath::new(b"/").unwrap().is_root());
    }

    #[test]
    fn refuses_escapes() {
        assert!(clean("../escape").is_err());
        assert!(clean("/../x").is_err());
        assert!(clean("./../x").is_err());
        assert!(clean("/a/../../x").is_err());
        assert!(clean("/..").is_err());
        assert!(clean("a/../../escape").is_err());
        assert!(clean("./..").is_err());
        assert!(clean("").is_err());
        assert!(clean("a\0b").is_err());
    }

    #[test]
    fn splits_parent_and_name() {
        let p = CleanPath::new(b"./usr/lib/libc.so").unwrap();
        assert_eq!(p.parent(), b"usr/lib");
        assert_eq!(p.name(), b"libc.so");
        let p = CleanPath::new(b"etc").unwrap();
        assert_eq!(p.parent(), b"");
        assert_eq!(p.name(), b"etc");
        assert!(CleanPath::new(b"./").unwrap().is_root());
    }

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(whiteout(b"file").unwrap(), Whiteout::None);
        assert_eq!(whiteout(b".wh.file").unwrap(), Whiteout::Name(b"file"));
        assert_eq!(whiteout(b".wh..wh..opq").unwrap(), Whiteout::Opaque);
        assert_eq!(whiteout(b".wh..wh.plnk").unwrap(), Whiteout::Meta);
        assert!(whiteout(b".wh.").is_err());
        assert!(whiteout(b".wh..").is_err());
    }
}
