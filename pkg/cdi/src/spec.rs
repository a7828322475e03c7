//! CDI spec files: the model (the fields of spec versions 0.3.0 to 0.8.0 that Berth applies),
//! parsing from JSON or YAML, and validation. Unknown fields are ignored, as the reference
//! implementation does; fields Berth cannot apply (`intelRdt`, `netDevices`) are kept to refuse
//! a device that uses them.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::name::{check_device, parse_kind};

/// The spec versions accepted.
pub const SUPPORTED_VERSIONS: [&str; 6] = ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0"];

/// The OCI hook names a CDI hook may use (`prestart` is deprecated in OCI but still valid).
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Applied whenever any device of this spec is used.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// The edits of a device or a spec; also the merged result of several (lists concatenated).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerEdits {
    /// `KEY=value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    #[serde(rename = "additionalGIDs", skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
    /// Not applied: a device using it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intel_rdt: Option<serde_json::Value>,
    /// Not applied: a device using it is refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub net_devices: Vec<serde_json::Value>,
}

impl ContainerEdits {
    pub fn is_empty(&self) -> bool {
        self == &ContainerEdits::default()
    }

    /// Appends `other`'s edits after this one's.
    pub fn append(&mut self, other: &ContainerEdits) {
        self.env.extend(other.env.iter().cloned());
        self.device_nodes.extend(other.device_nodes.iter().cloned());
        self.mounts.extend(other.mounts.iter().cloned());
        self.hooks.extend(other.hooks.iter().cloned());
        self.additional_gids
            .extend(other.additional_gids.iter().copied());
        if other.intel_rdt.is_some() {
            self.intel_rdt = other.intel_rdt.clone();
        }
        self.net_devices.extend(other.net_devices.iter().cloned());
    }

    /// What Berth cannot apply, if anything.
    pub(crate) fn unsupported(&self) -> Option<&'static str> {
        if self.intel_rdt.is_some() {
            Some("intelRdt (Intel RDT class of service)")
        } else if !self.net_devices.is_empty() {
            Some("netDevices (network device injection)")
        } else {
            None
        }
    }

    fn validate(&self) -> Result<(), String> {
        for e in &self.env {
            if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                return Err(format!("env entry {e:?} is not KEY=value"));
            }
        }
        for d in &self.device_nodes {
            absolute("device node path", &d.path)?;
            if let Some(h) = &d.host_path {
                absolute("device node hostPath", h)?;
            }
            if let Some(t) = &d.r#type
                && !matches!(t.as_str(), "b" | "c" | "u" | "p")
            {
                return Err(format!("device node {}: invalid type {t:?}", d.path));
            }
            if let Some(p) = &d.permissions
                && !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
            {
                return Err(format!("device node {}: invalid permissions {p:?}", d.path));
            }
        }
        for m in &self.mounts {
            absolute("mount containerPath", &m.container_path)?;
            if m.host_path.is_empty() {
                return Err(format!("mount {}: empty hostPath", m.container_path));
            }
        }
        for h in &self.hooks {
            if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
                return Err(format!("invalid hook name {:?}", h.hook_name));
            }
            absolute("hook path", &h.path)?;
            if h.timeout.is_some_and(|t| t <= 0) {
                return Err(format!("hook {}: timeout must be positive", h.path));
            }
            for e in &h.env {
                if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
                    return Err(format!("hook {}: env entry {e:?} is not KEY=value", h.path));
                }
            }
        }
        Ok(())
    }
}

fn absolute(what: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') && !p.contains('\0') {
        Ok(())
    } else {
        Err(format!("{what} {p:?} is not an absolute path"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// In the container.
    pub path: String,
    /// On the host; `path` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `b`, `c`, `u` or `p`; from the host node when unset.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    /// Device cgroup access (`rwm` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// Whether a file in a spec directory is a spec file, by its extension.
pub fn is_spec_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("json" | "yaml")
    )
}

/// Parses a spec file's content: JSON for `.json`, YAML otherwise (YAML being a superset).
pub fn parse(path: &Path, data: &str) -> Result<Spec, String> {
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(data).map_err(|e| e.to_string())
    } else {
        serde_norway::from_str(data).map_err(|e| e.to_string())
    }
}

impl Spec {
    /// The spec-level checks: a supported version, a valid kind, valid and unique device names,
    /// and valid edits. A device with no edits at all is invalid (CDI requires some).
    pub fn validate(&self) -> Result<(), String> {
        if !SUPPORTED_VERSIONS.contains(&self.cdi_version.as_str()) {
            return Err(format!(
                "unsupported cdiVersion {:?} (supported: {})",
                self.cdi_version,
                SUPPORTED_VERSIONS.join(", ")
            ));
        }
        parse_kind(&self.kind)?;
        if self.devices.is_empty() {
            return Err("no devices".into());
        }
        self.container_edits.validate()?;
        let mut seen = BTreeSet::new();
        for d in &self.devices {
            check_device(&d.name)?;
            if !seen.insert(d.name.as_str()) {
                return Err(format!("device {:?} is defined twice", d.name));
            }
            if d.container_edits.is_empty() {
                return Err(format!("device {:?} has no containerEdits", d.name));
            }
            d.container_edits
                .validate()
                .map_err(|e| format!("device {:?}: {e}", d.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
