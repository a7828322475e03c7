//! `list`: ListPodSandbox, ListContainers and ListImages (no filter), each
//! once per iteration — the kubelet's relist path. On an empty runtime this
//! measures the fixed cost of each list; populate the runtime first to
//! measure scaling. UNIMPLEMENTED answers are reported as "unsupported".

use berth_cri_api::v1::{ListContainersRequest, ListImagesRequest, ListPodSandboxRequest};

use super::{BoxFut, Recorder, Workload};
use crate::client::Clients;

pub struct List;

impl Workload for List {
    fn name(&self) -> &'static str {
        "list"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["ListPodSandbox", "ListContainers", "ListImages"]
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        _iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            rec.call(
                "ListPodSandbox",
                clients
                    .runtime
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
            )
            .await;
            rec.call(
                "ListContainers",
                clients
                    .runtime
                    .list_containers(ListContainersRequest { filter: None }),
            )
            .await;
            rec.call(
                "ListImages",
                clients
                    .image
                    .list_images(ListImagesRequest { filter: None }),
            )
            .await;
        })
    }
}
