//! ExecSync, Exec, Attach and PortForward: ExecSync runs here; the others answer with a URL of
//! the streaming server, where the session runs (`crate::streaming`).

use berth_cri_api::v1 as cri;

use crate::Shared;
use crate::error::CriError;

pub(super) async fn exec_sync(
    shared: &Shared,
    req: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse, CriError> {
    let limit = shared.deps.config.streaming.exec_sync_output_limit;
    crate::streaming::exec_sync(&shared.deps.containers, req, limit).await
}

pub(super) async fn exec(
    shared: &Shared,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, CriError> {
    log_audit_id(&req.audit_request_id);
    crate::streaming::exec_url(&shared.deps.containers, &shared.deps.streaming, req)
}

pub(super) async fn attach(
    shared: &Shared,
    req: cri::AttachRequest,
) -> Result<cri::AttachResponse, CriError> {
    log_audit_id(&req.audit_request_id);
    crate::streaming::attach_url(&shared.deps.containers, &shared.deps.streaming, req)
}

pub(super) async fn port_forward(
    shared: &Shared,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse, CriError> {
    crate::streaming::port_forward_url(&shared.deps.sandboxes, &shared.deps.streaming, req)
}

/// kubelet 1.36 names the API server audit event behind a session, so that what runs in the
/// container can be traced back to who asked.
fn log_audit_id(audit_request_id: &str) {
    if !audit_request_id.is_empty() {
        tracing::info!(%audit_request_id, "streaming session requested");
    }
}
