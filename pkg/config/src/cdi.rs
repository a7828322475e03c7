//! `[cdi]`: Container Device Interface devices (containerd's `enable_cdi` and `cdi_spec_dirs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdiConfig {
    /// Whether CRI `CDI_devices` and `cdi.k8s.io/` annotations are honoured. Disabled: a request
    /// naming CDI devices in `CDI_devices` fails, the annotations are ignored (containerd 2.x).
    pub enabled: bool,
    /// Spec file directories in increasing priority: a device defined in a later directory
    /// replaces one of the same name from an earlier one.
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for CdiConfig {
    fn default() -> Self {
        CdiConfig {
            enabled: true,
            spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")],
        }
    }
}

/// Every directory must be absolute.
pub(crate) fn validate(config: &CdiConfig) -> Result<(), (String, String)> {
    if config.spec_dirs.iter().any(|d| !d.is_absolute()) {
        return Err((
            "cdi.spec_dirs".into(),
            "every entry must be an absolute path".into(),
        ));
    }
    Ok(())
}
