//! A CRI client nobody here wrote: Python grpcio from PyPI, with the CRI stubs compiled by
//! grpcio-tools from the k8s-cri crate's proto (`hack/peers.sh python`). It dials `unix:<socket>`,
//! so grpcio (>= 1.57) sends the percent-encoded socket path as the HTTP/2 `:authority`, and runs a
//! pod and a container through kubelet's calls (`e2e/peers/grpc-python/cri_client.py`), then Version
//! over the other unix target forms.

use berth_e2e::Berthd;
use berth_e2e::peers::*;

#[tokio::test]
async fn grpcio_runs_a_pod_and_a_container() {
    let peer = PythonPeer::setup().expect("setting up grpcio (hack/peers.sh python)");
    let berthd = Berthd::start("grpcio").await.expect("starting berthd");
    let mut command = peer.command();
    command.args(peer_args(&berthd, "grpcio"));
    let run = run_peer(&berthd, "grpcio", command).expect("running cri_client.py");
    // Shown with --nocapture: which checks ran, and the client's version.
    println!("{}", run.stdout);
    if !run.status.success() {
        remove_all_pods(&berthd).await;
    }
    run.assert_passed("cri_client.py (grpcio)");
    let checks = run.checks();
    for wanted in [
        "ExecSync: exit code 0 (0)",
        "ListContainers: RUNNING (CONTAINER_RUNNING)",
        "GetContainerEvents: CREATED, STARTED, STOPPED, DELETED in order",
        "Version over unix:///path",
        "Version over unix:/path",
    ] {
        assert!(
            checks.iter().any(|c| c.starts_with(wanted)),
            "no {wanted:?} among the checks: {checks:#?}"
        );
    }
    berthd.finish();
}
