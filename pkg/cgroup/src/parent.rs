//! Turning kubelet's `cgroup_parent` (or Berth's default) into a cgroup path.
//!
//! kubelet's cgroupfs driver passes absolute paths (`/kubepods/burstable/pod<uid>`); its systemd
//! driver passes slice names (`kubepods-burstable-pod<uid>.slice`) that systemd, and runc's
//! `ExpandSlice`, turn into a nested path: every `-` opens a new parent slice. libcgroups only
//! does that expansion inside its D-Bus based systemd manager, which we do not build, so it is
//! done here.

use crate::CgroupError;

const SLICE_SUFFIX: &str = ".slice";
/// Linux NAME_MAX: longer components fail `mkdir` with ENAMETOOLONG; say so up front instead.
const NAME_MAX: usize = 255;

fn invalid(value: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidParent {
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// Validates a cgroupfs-driver parent and returns it normalised (one trailing `/` dropped).
///
/// Refused: relative paths, the root cgroup itself, empty, `.` or `..` components (no escaping
/// the hierarchy through a crafted parent), NUL and other control characters, over-long names.
pub fn validate_cgroupfs_path(value: &str) -> Result<String, CgroupError> {
    if !value.starts_with('/') {
        return Err(invalid(value, "the cgroupfs driver needs an absolute path"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(value, "contains NUL or control characters"));
    }
    let trimmed = value.strip_suffix('/').unwrap_or(value);
    if trimmed.is_empty() {
        return Err(invalid(value, "the root cgroup cannot be a pod cgroup"));
    }
    for component in trimmed[1..].split('/') {
        match component {
            "" => return Err(invalid(value, "empty path component")),
            "." | ".." => return Err(invalid(value, "`.` and `..` components are not allowed")),
            c if c.len() > NAME_MAX => return Err(invalid(value, "path component too long")),
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// Expands a systemd slice name into its cgroup path the way systemd and runc do:
/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`, and `-.slice` (the root slice) → `/`.
///
/// Refused: names without the `.slice` suffix, with `/`, with empty dash-separated components
/// (`a--b.slice`, `-a.slice`, `a-.slice`), or with characters systemd does not allow in unit
/// names.
pub fn expand_slice(slice: &str) -> Result<String, CgroupError> {
    let Some(name) = slice.strip_suffix(SLICE_SUFFIX) else {
        return Err(invalid(
            slice,
            "the systemd driver needs a name ending in .slice",
        ));
    };
    if slice.contains('/') {
        return Err(invalid(slice, "a slice name cannot contain '/'"));
    }
    if slice.len() > NAME_MAX {
        return Err(invalid(slice, "slice name too long"));
    }
    if let Some(bad) = slice
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '\\')))
    {
        return Err(invalid(
            slice,
            format!("character {bad:?} is not allowed in a systemd unit name"),
        ));
    }
    if name == "-" {
        return Ok("/".to_owned());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for component in name.split('-') {
        if component.is_empty() {
            return Err(invalid(slice, "empty component between '-' separators"));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(component);
        path.push_str(SLICE_SUFFIX);
        prefix.push_str(component);
        prefix.push('-');
    }
    Ok(path)
}

/// Validates a systemd-driver parent: a slice name that expands to something below the root.
pub fn validate_slice(value: &str) -> Result<String, CgroupError> {
    let path = expand_slice(value)?;
    if path == "/" {
        return Err(invalid(value, "the root slice cannot be a pod cgroup"));
    }
    Ok(path)
}

/// Checks that a sandbox id can name a cgroup directory.
pub fn validate_sandbox_id(id: &str) -> Result<(), CgroupError> {
    let err = |reason: &str| CgroupError::InvalidSandboxId {
        value: id.to_owned(),
        reason: reason.to_owned(),
    };
    if id.is_empty() {
        return Err(err("empty"));
    }
    if id == "." || id == ".." {
        return Err(err("`.` and `..` are not names"));
    }
    if id.contains('/') || id.chars().any(char::is_control) {
        return Err(err("contains '/', NUL or control characters"));
    }
    // Leave room for a `prefix-` and `.slice`/`.scope` around it.
    if id.len() > 128 {
        return Err(err("longer than 128 bytes"));
    }
    Ok(())
}

/// Escapes a string for use inside a systemd unit name like `systemd-escape` does: bytes outside
/// `[A-Za-z0-9:_.]` (and a leading `.`) become `\xNN`. This matters for `-`, which would
/// otherwise be read as a slice separator and nest the pod one level deeper per dash.
pub fn escape_unit_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The slice Berth names for a sandbox under `parent_slice`: `berth.slice` + `abc` →
/// `berth-abc.slice`; under the root slice `-.slice` it is just `abc.slice`.
pub fn child_slice(parent_slice: &str, sandbox_id: &str) -> Result<String, CgroupError> {
    expand_slice(parent_slice)?;
    validate_sandbox_id(sandbox_id)?;
    let escaped = escape_unit_component(sandbox_id);
    Ok(match parent_slice.strip_suffix(SLICE_SUFFIX) {
        Some("-") | None => format!("{escaped}{SLICE_SUFFIX}"),
        Some(prefix) => format!("{prefix}-{escaped}{SLICE_SUFFIX}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_slice_table() {
        let ok = [
            ("-.slice", "/"),
            ("system.slice", "/system.slice"),
            ("berth-abc.slice", "/berth.slice/berth-abc.slice"),
            (
                "kubepods-burstable-pod1.slice",
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
            ),
            (
                "kubepods-pod0a1b_c2.slice",
                "/kubepods.slice/kubepods-pod0a1b_c2.slice",
            ),
            ("a-b\\x2dc.slice", "/a.slice/a-b\\x2dc.slice"),
        ];
        for (input, want) in ok {
            assert_eq!(expand_slice(input).expect(input), want, "{input}");
        }
        let bad = [
            "",
            ".slice",
            "kubepods",
            "kubepods.scope",
            "kubepods--a.slice",
            "-kubepods.slice",
            "kubepods-.slice",
            "kube/pods.slice",
            "kube pods.slice",
            "kube\0pods.slice",
            "/kubepods.slice",
        ];
        for input in bad {
            let err = expand_slice(input).expect_err(input);
            assert!(
                matches!(err, CgroupError::InvalidParent { .. }),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn validate_slice_refuses_root() {
        assert!(validate_slice("-.slice").is_err());
        assert_eq!(validate_slice("a.slice").unwrap(), "/a.slice");
    }

    #[test]
    fn cgroupfs_table() {
        let ok = [
            ("/kubepods/burstable/pod123", "/kubepods/burstable/pod123"),
            ("/kubepods/", "/kubepods"),
            ("/a", "/a"),
            ("/kubepods.slice/x.slice", "/kubepods.slice/x.slice"),
        ];
        for (input, want) in ok {
            assert_eq!(validate_cgroupfs_path(input).expect(input), want);
        }
        let long = format!("/{}", "a".repeat(300));
        let bad = [
            "",
            "/",
            "//",
            "kubepods/pod1",
            "kubepods-pod1.slice",
            "/kubepods//pod1",
            "/kubepods/../etc",
            "/kubepods/..",
            "/./kubepods",
            "/kube\0pods",
            "/kube\npods",
            long.as_str(),
        ];
        for input in bad {
            let err = validate_cgroupfs_path(input).expect_err(input);
            assert!(
                matches!(err, CgroupError::InvalidParent { .. }),
                "{input:?}: {err}"
            );
        }
    }

    #[test]
    fn sandbox_ids() {
        validate_sandbox_id("0123abcdef").unwrap();
        validate_sandbox_id("with-dash_and.dot").unwrap();
        for bad in ["", ".", "..", "a/b", "a\0b", &"x".repeat(129)] {
            assert!(validate_sandbox_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaping_and_child_slices() {
        assert_eq!(escape_unit_component("abc123"), "abc123");
        assert_eq!(escape_unit_component("a-b"), "a\\x2db");
        assert_eq!(escape_unit_component(".a.b"), "\\x2ea.b");
        assert_eq!(
            child_slice("berth.slice", "abc").unwrap(),
            "berth-abc.slice"
        );
        assert_eq!(child_slice("-.slice", "abc").unwrap(), "abc.slice");
        assert_eq!(
            child_slice("kubepods-besteffort.slice", "a-b").unwrap(),
            "kubepods-besteffort-a\\x2db.slice"
        );
        // The escaped dash does not nest the pod deeper.
        assert_eq!(
            expand_slice(&child_slice("berth.slice", "a-b").unwrap()).unwrap(),
            "/berth.slice/berth-a\\x2db.slice"
        );
        assert!(child_slice("berth", "abc").is_err());
        assert!(child_slice("berth.slice", "").is_err());
    }
}
