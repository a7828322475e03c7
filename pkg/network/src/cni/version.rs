//! CNI spec versions: which ones Berth speaks, and what plugins say they speak.

use std::cmp::Ordering;
use std::fmt;

use serde::Deserialize;

/// Versions of the spec whose configuration and result formats Berth implements. 0.1.0 and 0.2.0 use
/// a different result format (`ip4`/`ip6`) that no maintained plugin emits any more.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A spec version, ordered numerically so that "0.10.0" sorts after "0.4.0".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// CHECK exists from this version on.
    pub const CHECK: Version = Version::new(0, 4, 0);

    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `major.minor.patch`; anything else is not a version (the spec allows no suffixes).
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.').map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse::<u32>().ok()
            }
        });
        let version = Version::new(parts.next()??, parts.next()??, parts.next()??);
        match parts.next() {
            None => Some(version),
            Some(_) => None,
        }
    }

    pub fn is_supported(text: &str) -> bool {
        SUPPORTED_VERSIONS.contains(&text)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Compares two version strings; unparsable ones sort first so they never win a "highest" choice.
pub(crate) fn compare(a: &str, b: &str) -> Ordering {
    Version::parse(a).cmp(&Version::parse(b))
}

/// What a plugin answers to VERSION.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginVersions {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Plugins from before 0.3.0 omit the list; the spec says to assume 0.1.0 and 0.2.0 then.
    #[serde(rename = "supportedVersions", default = "pre_0_3_versions")]
    pub supported_versions: Vec<String>,
}

fn pre_0_3_versions() -> Vec<String> {
    vec!["0.1.0".to_string(), "0.2.0".to_string()]
}

impl PluginVersions {
    pub fn supports(&self, version: &str) -> bool {
        self.supported_versions.iter().any(|v| v == version)
    }

    /// The highest version both sides speak: what a config listing several `cniVersions` could use.
    pub fn highest_common(&self) -> Option<&str> {
        self.supported_versions
            .iter()
            .filter(|v| Version::is_supported(v))
            .max_by(|a, b| compare(a, b))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert_eq!(Version::parse("1.0.0"), Some(Version::new(1, 0, 0)));
        assert!(Version::parse("0.10.0") > Version::parse("0.4.0"));
        for bad in [
            "",
            "1",
            "1.0",
            "1.0.0.0",
            "1.0.0-rc1",
            "a.b.c",
            "1..0",
            "+1.0.0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert!(Version::parse("0.3.1") < Some(Version::CHECK));
    }

    #[test]
    fn version_output() {
        let v: PluginVersions = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]}"#,
        )
        .unwrap();
        assert!(v.supports("0.4.0"));
        assert!(!v.supports("1.1.0"));
        assert_eq!(v.highest_common(), Some("1.0.0"));
        let old: PluginVersions = serde_json::from_str(r#"{"cniVersion":"0.2.0"}"#).unwrap();
        assert_eq!(old.supported_versions, ["0.1.0", "0.2.0"]);
        assert_eq!(old.highest_common(), None);
    }
}
