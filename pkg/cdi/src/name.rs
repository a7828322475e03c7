//! Fully qualified device names (`vendor.com/class=name`) and the `cdi.k8s.io/` annotations.

use std::collections::BTreeMap;
use std::fmt;

use crate::CdiError;

/// Annotations whose key starts with this carry comma-separated qualified device names (the form
/// CDI devices were requested in before CRI had `CDI_devices`).
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// A parsed `vendor/class=name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    pub vendor: String,
    pub class: String,
    pub name: String,
}

impl QualifiedName {
    pub fn parse(s: &str) -> Result<Self, CdiError> {
        let invalid = |reason: &str| CdiError::InvalidName {
            name: s.to_string(),
            reason: reason.to_string(),
        };
        let (kind, name) = s
            .split_once('=')
            .ok_or_else(|| invalid("expected vendor.com/class=name"))?;
        let (vendor, class) = kind
            .split_once('/')
            .ok_or_else(|| invalid("expected vendor.com/class=name"))?;
        check_vendor(vendor).map_err(|r| invalid(&r))?;
        check_class(class).map_err(|r| invalid(&r))?;
        check_device(name).map_err(|r| invalid(&r))?;
        Ok(QualifiedName {
            vendor: vendor.into(),
            class: class.into(),
            name: name.into(),
        })
    }

    /// `vendor/class`.
    pub fn kind(&self) -> String {
        format!("{}/{}", self.vendor, self.class)
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}={}", self.vendor, self.class, self.name)
    }
}

/// Checks a spec's `kind` (`vendor/class`), returning (vendor, class).
pub(crate) fn parse_kind(kind: &str) -> Result<(&str, &str), String> {
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("kind {kind:?} is not vendor.com/class"))?;
    check_vendor(vendor)
        .and_then(|()| check_class(class))
        .map_err(|e| format!("kind {kind:?}: {e}"))?;
    Ok((vendor, class))
}

/// Shared shape of all three parts: non-empty, a first and a last character of the given kinds,
/// only allowed characters in between.
fn check(what: &str, s: &str, first_ok: fn(char) -> bool, extra: &[char]) -> Result<(), String> {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return Err(format!("empty {what}"));
    };
    if !first_ok(first) {
        return Err(format!(
            "{what} {s:?} must start with a letter{}",
            if first_ok('0') { " or digit" } else { "" }
        ));
    }
    if !last.is_ascii_alphanumeric() {
        return Err(format!("{what} {s:?} must end with a letter or digit"));
    }
    match s
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !extra.contains(c))
    {
        Some(c) => Err(format!("{what} {s:?} contains the invalid character {c:?}")),
        None => Ok(()),
    }
}

fn check_vendor(s: &str) -> Result<(), String> {
    check("vendor", s, |c| c.is_ascii_alphabetic(), &['-', '_', '.'])
}

fn check_class(s: &str) -> Result<(), String> {
    check("class", s, |c| c.is_ascii_alphabetic(), &['-', '_'])
}

pub(crate) fn check_device(s: &str) -> Result<(), String> {
    check(
        "device name",
        s,
        |c| c.is_ascii_alphanumeric(),
        &['-', '_', '.', ':'],
    )
}

/// The device names of the `cdi.k8s.io/` annotations, in key order, each validated.
pub fn names_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Vec<String>, CdiError> {
    let mut names = Vec::new();
    for (key, value) in annotations {
        if !key.starts_with(ANNOTATION_PREFIX) {
            continue;
        }
        for name in value.split(',') {
            QualifiedName::parse(name).map_err(|e| CdiError::InvalidAnnotation {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            names.push(name.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        let q = QualifiedName::parse("vendor.com/gpu=0").unwrap();
        assert_eq!(
            (q.vendor.as_str(), q.class.as_str(), q.name.as_str()),
            ("vendor.com", "gpu", "0")
        );
        assert_eq!(q.kind(), "vendor.com/gpu");
        assert_eq!(q.to_string(), "vendor.com/gpu=0");
        for ok in [
            "a/b=c",
            "nvidia.com/gpu=GPU-1a:2.b_c",
            "foo.bar_baz/x-y=all",
        ] {
            QualifiedName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "gpu0",
            "vendor.com/gpu",
            "vendor.com=gpu0",
            "/gpu=0",
            "vendor.com/=0",
            "vendor.com/gpu=",
            "1vendor.com/gpu=0",
            "vendor.com/gpu.x=0",
            "vendor.com/gpu=-0",
            "vendor.com/gpu=0-",
            "vendor.com/a/b=0",
            "vendor.com/gpu=a b",
        ] {
            assert!(
                matches!(QualifiedName::parse(bad), Err(CdiError::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn annotations() {
        let a = BTreeMap::from([
            (
                "cdi.k8s.io/b".to_string(),
                "v.com/c=1,v.com/c=2".to_string(),
            ),
            ("cdi.k8s.io/a".to_string(), "v.com/c=0".to_string()),
            ("other".to_string(), "not a name".to_string()),
        ]);
        assert_eq!(
            names_from_annotations(&a).unwrap(),
            ["v.com/c=0", "v.com/c=1", "v.com/c=2"]
        );
        let bad = BTreeMap::from([("cdi.k8s.io/x".to_string(), "v.com/c=1,gpu".to_string())]);
        let e = names_from_annotations(&bad).unwrap_err();
        assert!(e.to_string().contains("cdi.k8s.io/x"), "{e}");
    }
}
