//! A CRI client nobody here wrote: Python grpcio from PyPI, with the CRI stubs compiled by
//! grpcio-tools from proto/cri/api.proto (cri-api v0.36) (`hack/peers.sh python`). It dials `unix:<socket>`,
//! so grpcio (>= 1.57) sends the percent-encoded socket path as the HTTP/2 `:authority`, and runs a
//! pod and a container through kubelet's calls (`e2e/peers/grpc-python/cri_client.py`), then Version
//! over the other unix target forms. On the way it calls every one of cri-api v0.36's 41 RPCs and
//! fails if any is missing or answers UNIMPLEMENTED.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_e2e::Berthd;
use berth_e2e::peers::*;

#[tokio::test]
async fn grpcio_runs_a_pod_and_a_container() {
    let peer = PythonPeer::setup().expect("setting up grpcio (hack/peers.sh python)");
    let berthd = Berthd::start("grpcio").await.expect("starting berthd");
    let mut command = peer.command();
    command.args(peer_args(&berthd, "grpcio"));
    run_peer_checked(
        &berthd,
        "grpcio",
        "cri_client.py (grpcio)",
        command,
        &[
            "ExecSync: exit code 0 (0)",
            "ListContainers: RUNNING (CONTAINER_RUNNING)",
            "GetContainerEvents: CREATED, STARTED, STOPPED, DELETED in order",
            "Version over unix:///path",
            "Version over unix:/path",
            "every one of the 41 CRI RPCs answered (missing: [])",
        ],
    )
    .await;
    berthd.finish();
}
