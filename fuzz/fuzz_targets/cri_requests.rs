//! Arbitrary bytes decoded (prost) as each CRI request that berth translates, then run through
//! the translation the RPC handler does before calling the capability crates.
//!
//! The first byte picks the request type (so the fuzzer can specialise), the rest is the
//! protobuf message. Properties: nothing panics, whatever the message holds.
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

use berth_config::SeccompDefault;
use berth_cri::fuzzing;
use berth_cri_api::v1 as cri;
use berth_spec::HostLsm;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn lsm() -> &'static HostLsm {
    static LSM: OnceLock<HostLsm> = OnceLock::new();
    LSM.get_or_init(|| HostLsm::detect_at(Path::new("/nonexistent"), Path::new("/nonexistent")))
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            if let Ok(req) = cri::RunPodSandboxRequest::decode(msg) {
                let _ = fuzzing::run_pod_sandbox(req);
            }
        }
        1 | 2 => {
            if let Ok(req) = cri::CreateContainerRequest::decode(msg) {
                let (default, pod) = if which % 6 == 1 {
                    (SeccompDefault::default(), None)
                } else {
                    (SeccompDefault::RuntimeDefault, Some("runtime/default"))
                };
                let _ = fuzzing::create_container(req, lsm(), default, pod);
            }
        }
        3 => {
            if let Ok(req) = cri::UpdateContainerResourcesRequest::decode(msg) {
                let _ = fuzzing::update_container_resources(req);
            }
        }
        4 => {
            if let Ok(req) = cri::ListContainersRequest::decode(msg) {
                let _ = fuzzing::list_containers(req);
            }
        }
        _ => {
            if let Ok(req) = cri::ListPodSandboxRequest::decode(msg) {
                let _ = fuzzing::list_pod_sandbox(req);
            }
        }
    }
});
