//! Version, Status, RuntimeConfig and UpdateRuntimeConfig.

use berth_cri_api::v1 as cri;

use crate::error::CriError;
use crate::{KUBELET_API_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME, RUNTIME_VERSION, Shared};

pub(super) async fn version(_: cri::VersionRequest) -> Result<cri::VersionResponse, CriError> {
    Ok(cri::VersionResponse {
        version: KUBELET_API_VERSION.to_string(),
        runtime_name: RUNTIME_NAME.to_string(),
        runtime_version: RUNTIME_VERSION.to_string(),
        runtime_api_version: RUNTIME_API_VERSION.to_string(),
    })
}

pub(super) async fn status(
    shared: &Shared,
    req: cri::StatusRequest,
) -> Result<cri::StatusResponse, CriError> {
    Ok(shared.status(req.verbose))
}

pub(super) async fn runtime_config(
    shared: &Shared,
    _: cri::RuntimeConfigRequest,
) -> Result<cri::RuntimeConfigResponse, CriError> {
    let driver = match shared.deps.config.cgroup.driver {
        berth_config::CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        berth_config::CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
    };
    Ok(cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    })
}

pub(super) async fn update_runtime_config(
    shared: &Shared,
    req: cri::UpdateRuntimeConfigRequest,
) -> Result<cri::UpdateRuntimeConfigResponse, CriError> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    // CRI: an empty CIDR means "no change", not "clear".
    if cidr.trim().is_empty() {
        return Ok(cri::UpdateRuntimeConfigResponse {});
    }
    let cidrs = berth_network::PodCidrs::parse(&cidr)?;
    if cidrs != shared.deps.pod_cidrs.get() {
        shared
            .deps
            .pod_cidrs
            .set(cidrs.clone())
            .map_err(CriError::from)?;
        tracing::info!(pod_cidr = %cidrs, "pod CIDR updated");
    }
    Ok(cri::UpdateRuntimeConfigResponse {})
}
