//! `version`: RuntimeService.Version, the cheapest CRI round trip. Measures
//! the fixed cost of the gRPC stack and the daemon's request path.

use berth_cri_api::v1::VersionRequest;

use super::{BoxFut, Recorder, Workload};
use crate::client::Clients;

pub struct Version;

impl Workload for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["Version"]
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        _iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let req = VersionRequest {
                version: "v1".to_string(),
            };
            let resp = rec.call("Version", clients.runtime.version(req)).await;
            if resp.is_some_and(|r| r.runtime_api_version.is_empty()) {
                rec.fail("Version", "empty runtime_api_version in VersionResponse");
            }
        })
    }
}
