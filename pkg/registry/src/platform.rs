//! Choosing the right manifest from an index.
//!
//! Matching follows containerd's platform matcher in spirit: OS and
//! architecture must match exactly (after normalising aliases such as
//! `x86_64` → `amd64`), and variants are compared by level, so an `arm/v7`
//! host can run `arm/v6` images, `arm64` without a variant means `v8`, and
//! an `amd64` host (v1 unless asked otherwise) takes entries with no
//! variant. The best match wins, ties going to the earlier entry. We never
//! fall back to "the first entry": pulling the wrong architecture gives an
//! `exec format error` much later and much less clearly.

use std::fmt;

use crate::error::RegistryError;
use crate::manifest::{Descriptor, ImageIndex, Platform};

impl Platform {
    /// A platform with os, architecture and optional variant.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
            ..Platform::default()
        }
    }
}

/// `os/arch[/variant]`, the form used in error messages and by Docker.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref() {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

/// The platform this binary was built for, in Go/OCI naming.
pub fn host_platform() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform::new("linux", arch, variant)
}

/// Normalises architecture aliases and returns the canonical
/// `(architecture, variant)`; the variant is `None` when absent.
fn normalize(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant
        .filter(|v| !v.is_empty())
        .map(|v| v.to_ascii_lowercase());
    match arch.as_str() {
        "x86_64" | "x86-64" => ("amd64".into(), variant),
        "aarch64" => ("arm64".into(), variant),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "i686" => ("386".into(), variant),
        _ => (arch, variant),
    }
}

/// The level of a variant for architectures whose variants are ordered
/// (a CPU of level N runs code for any level <= N). `None` = unordered.
fn variant_level(arch: &str, variant: Option<&str>) -> Option<u32> {
    let default = match arch {
        "arm64" => 80,
        "arm" => 70,
        "amd64" => 10,
        _ => return None,
    };
    let Some(v) = variant else {
        return Some(default);
    };
    // "v8", "8", "v8.2" -> 80, 80, 82.
    let v = v.strip_prefix('v').unwrap_or(v);
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let major: u32 = major.parse().ok()?;
    let minor: u32 = minor.parse().ok()?;
    major.checked_mul(10)?.checked_add(minor.min(9))
}

/// How well `have` serves `want`: higher is better, `None` = unusable.
fn score(want_arch: &str, want_variant: Option<&str>, have: &Platform) -> Option<u32> {
    let (arch, variant) = normalize(&have.architecture, have.variant.as_deref());
    if arch != want_arch {
        return None;
    }
    match (
        variant_level(want_arch, want_variant),
        variant_level(&arch, variant.as_deref()),
    ) {
        (Some(w), Some(h)) => (h <= w).then_some(h + 1),
        // Unordered variants: exact match best, no variant still usable,
        // and a request without variant takes any.
        _ => match (want_variant, variant.as_deref()) {
            (w, h) if w == h => Some(3),
            (_, None) => Some(2),
            (None, Some(_)) => Some(1),
            _ => None,
        },
    }
}

/// Picks the manifest of `index` for `os`/`arch`/`variant` (see the module
/// docs for the rules). Entries without a platform are never chosen.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> Result<&'a Descriptor, RegistryError> {
    let os = os.to_ascii_lowercase();
    let (want_arch, want_variant) = normalize(arch, variant);
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in &index.manifests {
        let Some(p) = &d.platform else { continue };
        if p.os.to_ascii_lowercase() != os {
            continue;
        }
        if let Some(s) = score(&want_arch, want_variant.as_deref(), p)
            && best.is_none_or(|(b, _)| s > b)
        {
            best = Some((s, d));
        }
    }
    if let Some((_, d)) = best {
        return Ok(d);
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    let without = index.manifests.len() - available.len();
    if without > 0 {
        available.push(format!("{without} entries without platform"));
    }
    if available.is_empty() {
        available.push("none: the index is empty".into());
    }
    Err(RegistryError::NoMatchingPlatform {
        wanted: Platform::new(&os, &want_arch, want_variant.as_deref()).to_string(),
        available: available.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, v))| Descriptor {
                media_type: crate::manifest::media_type::OCI_MANIFEST.into(),
                digest: format!("sha256:{i:064}"),
                size: 1,
                urls: vec![],
                annotations: Default::default(),
                platform: Some(Platform::new(os, arch, *v)),
                artifact_type: None,
            })
            .collect();
        ImageIndex {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            manifests,
            subject: None,
            annotations: Default::default(),
        }
    }

    /// Index position of the selected entry.
    fn pick(idx: &ImageIndex, os: &str, arch: &str, v: Option<&str>) -> Option<usize> {
        let d = select_platform(idx, os, arch, v).ok()?;
        idx.manifests.iter().position(|m| std::ptr::eq(m, d))
    }

    #[test]
    fn picks_amd64_even_when_arm64_is_first() {
        let idx = index(&[("linux", "arm64", None), ("linux", "amd64", None)]);
        assert_eq!(pick(&idx, "linux", "amd64", None), Some(1));
        assert_eq!(pick(&idx, "linux", "x86_64", None), Some(1));
        assert_eq!(pick(&idx, "linux", "arm64", None), Some(0));
        assert_eq!(pick(&idx, "linux", "aarch64", Some("v8")), Some(0));
    }

    #[test]
    fn variant_rules() {
        let idx = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", Some("v3")),
            ("linux", "amd64", None),
            ("windows", "amd64", None),
            ("linux", "riscv64", Some("rva22")),
        ]);
        // arm64: "" == v8.
        assert_eq!(pick(&idx, "linux", "arm64", None), Some(2));
        assert_eq!(pick(&idx, "linux", "arm64", Some("8")), Some(2));
        // arm: default v7; v6 host can't run v7; v8 host prefers v7 over v6.
        assert_eq!(pick(&idx, "linux", "arm", None), Some(1));
        assert_eq!(pick(&idx, "linux", "arm", Some("v6")), Some(0));
        assert_eq!(pick(&idx, "linux", "armhf", None), Some(1));
        assert_eq!(pick(&idx, "linux", "arm", Some("v5")), None);
        // amd64 v1 host must not take the v3 build; a v3 host prefers it.
        assert_eq!(pick(&idx, "linux", "amd64", None), Some(4));
        assert_eq!(pick(&idx, "linux", "amd64", Some("v1")), Some(4));
        assert_eq!(pick(&idx, "linux", "amd64", Some("v3")), Some(3));
        assert_eq!(pick(&idx, "LINUX", "AMD64", Some("v2")), Some(4));
        // os must match.
        assert_eq!(pick(&idx, "windows", "amd64", None), Some(5));
        // unordered variants: exact or none.
        assert_eq!(pick(&idx, "linux", "riscv64", None), Some(6));
        assert_eq!(pick(&idx, "linux", "riscv64", Some("rva22")), Some(6));
        assert_eq!(pick(&idx, "linux", "riscv64", Some("rva23")), None);
    }

    #[test]
    fn arm64_v8_entry_without_variant_and_ties_keep_order() {
        let idx = index(&[("linux", "arm64", None), ("linux", "arm64", Some("v8"))]);
        assert_eq!(pick(&idx, "linux", "arm64", Some("v8")), Some(0));
        let idx = index(&[("linux", "arm64", Some("v8.2")), ("linux", "arm64", None)]);
        assert_eq!(pick(&idx, "linux", "arm64", None), Some(1));
        assert_eq!(pick(&idx, "linux", "arm64", Some("v9")), Some(0));
    }

    #[test]
    fn no_match_lists_available_platforms() {
        let mut idx = index(&[("linux", "arm64", Some("v8")), ("linux", "arm", Some("v7"))]);
        idx.manifests[1].platform = None;
        let e = select_platform(&idx, "linux", "amd64", None).unwrap_err();
        assert!(matches!(e, RegistryError::NoMatchingPlatform { .. }));
        let msg = e.to_string();
        assert!(msg.contains("linux/amd64"), "{msg}");
        assert!(msg.contains("linux/arm64/v8"), "{msg}");
        assert!(msg.contains("1 entries without platform"), "{msg}");
        let e = select_platform(&index(&[]), "linux", "amd64", None).unwrap_err();
        assert!(e.to_string().contains("index is empty"), "{e}");
    }

    #[test]
    fn host_platform_is_go_style() {
        let p = host_platform();
        assert_eq!(p.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            (p.architecture.as_str(), p.variant.as_deref()),
            ("amd64", None)
        );
        #[cfg(target_arch = "aarch64")]
        assert_eq!(
            (p.architecture.as_str(), p.variant.as_deref()),
            ("arm64", Some("v8"))
        );
    }
}
