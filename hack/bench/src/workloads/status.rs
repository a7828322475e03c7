//! `status`: RuntimeService.Status with verbose=false — what the kubelet
//! polls every few seconds. Measures the cost of computing runtime and
//! network conditions.

use berth_cri_api::v1::StatusRequest;

use super::{BoxFut, Recorder, Workload};
use crate::client::Clients;

pub struct Status;

impl Workload for Status {
    fn name(&self) -> &'static str {
        "status"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["Status"]
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        _iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let req = StatusRequest { verbose: false };
            let resp = rec.call("Status", clients.runtime.status(req)).await;
            if resp.is_some_and(|r| r.status.is_none()) {
                rec.fail("Status", "StatusResponse without status");
            }
        })
    }
}
