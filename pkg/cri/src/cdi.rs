//! CDI devices of a CreateContainer: CRI `CDI_devices`, then the `cdi.k8s.io/` annotations of the
//! container config (as containerd 2.x: the container's annotations, not the pod's), resolved
//! against the configured spec directories before anything is created. Any problem with a
//! requested device is the request's: INVALID_ARGUMENT naming it.

use std::collections::BTreeMap;

use berth_cdi::{CdiError, Registry, Resolved};
use berth_config::CdiConfig;
use berth_cri_api::v1 as cri;

use crate::error::CriError;

pub(crate) async fn resolve(
    config: &CdiConfig,
    req: &cri::CreateContainerRequest,
) -> Result<Resolved, CriError> {
    let Some(container) = req.config.as_ref() else {
        return Ok(Resolved::default());
    };
    let mut names: Vec<String> = container
        .cdi_devices
        .iter()
        .map(|d| d.name.clone())
        .collect();
    if !config.enabled {
        // containerd 2.x: the field is an error, the annotations are ignored.
        if names.is_empty() {
            return Ok(Resolved::default());
        }
        return Err(CdiError::Disabled(names.join(", ")).into());
    }
    let annotations: BTreeMap<String, String> = container
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    names.extend(berth_cdi::names_from_annotations(&annotations)?);
    if names.is_empty() {
        return Ok(Resolved::default());
    }
    let registry = Registry::new(config.spec_dirs.clone());
    let resolved = tokio::task::spawn_blocking(move || registry.resolve(&names))
        .await
        .map_err(|source| CriError::Task {
            what: "resolving CDI devices",
            source,
        })??;
    tracing::debug!(devices = ?resolved.devices, "CDI devices resolved");
    Ok(resolved)
}
