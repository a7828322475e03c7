//! What cri-api v0.36 (Kubernetes 1.36) added since the 1.32 proto, against a real berthd: the
//! streaming list RPCs (CRIListStreaming), each sending the very items of its unary twin with the
//! same filters and no message for an empty list; UpdatePodSandboxResources (in-place pod resize)
//! re-sizing the pod cgroup Berth made; and the container stop signal of the CRI config.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::{Pod, busybox, create, pull, run, shell, start};
use berth_e2e::pods::{pod_config, pod_info};

/// Every message of a server stream.
async fn all<T>(mut stream: tonic::Streaming<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(message) = stream.message().await.expect("a stream message") {
        out.push(message);
    }
    out
}

/// The items of every message of a server stream, in order.
async fn items<T, I>(stream: tonic::Streaming<T>, field: impl Fn(T) -> Vec<I>) -> Vec<I> {
    all(stream).await.into_iter().flat_map(field).collect()
}

fn ids<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

#[tokio::test]
async fn stream_rpcs_send_what_their_unary_twins_list() {
    let berthd = Berthd::start("crilists").await.unwrap();
    pull(&berthd, &busybox()).await;
    let mut pods = Vec::new();
    let mut containers = Vec::new();
    for (name, tier) in [("front", "web"), ("back", "db")] {
        let mut config = pod_config(&berthd, name);
        config.labels.insert("tier".into(), tier.into());
        let pod = Pod::run_with(&berthd, config).await;
        containers.push(run(&berthd, &pod, shell("main", "sleep 60")).await);
        pods.push(pod);
    }
    let mut rt = berthd.runtime().await.unwrap();

    // Pods: all, then by label.
    let listed = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    let streamed = all(rt
        .stream_pod_sandboxes(cri::StreamPodSandboxesRequest { filter: None })
        .await
        .unwrap()
        .into_inner())
    .await;
    assert!(streamed.iter().all(|m| !m.pod_sandboxes.is_empty()));
    let streamed: Vec<_> = streamed.into_iter().flat_map(|m| m.pod_sandboxes).collect();
    assert_eq!(streamed.len(), 2);
    assert_eq!(
        ids(streamed.iter().map(|p| p.id.as_str())),
        ids(listed.iter().map(|p| p.id.as_str()))
    );
    let web = cri::PodSandboxFilter {
        label_selector: HashMap::from([("tier".to_string(), "web".to_string())]),
        ..Default::default()
    };
    let streamed: Vec<_> = items(
        rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest { filter: Some(web) })
            .await
            .unwrap()
            .into_inner(),
        |m| m.pod_sandboxes,
    )
    .await;
    assert_eq!(
        ids(streamed.iter().map(|p| p.id.as_str())),
        ids([pods[0].id.as_str()])
    );

    // Containers: all, by pod, and a filter nothing matches (no message at all).
    let streamed: Vec<_> = items(
        rt.stream_containers(cri::StreamContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner(),
        |m| m.containers,
    )
    .await;
    assert_eq!(
        ids(streamed.iter().map(|c| c.id.as_str())),
        ids(containers.iter().map(String::as_str))
    );
    let by_pod = cri::ContainerFilter {
        pod_sandbox_id: pods[1].id.clone(),
        ..Default::default()
    };
    let streamed: Vec<_> = items(
        rt.stream_containers(cri::StreamContainersRequest {
            filter: Some(by_pod),
        })
        .await
        .unwrap()
        .into_inner(),
        |m| m.containers,
    )
    .await;
    assert_eq!(
        ids(streamed.iter().map(|c| c.id.as_str())),
        ids([containers[1].as_str()])
    );
    let nothing = cri::ContainerFilter {
        id: "0000000000000000".into(),
        ..Default::default()
    };
    let messages = all(rt
        .stream_containers(cri::StreamContainersRequest {
            filter: Some(nothing),
        })
        .await
        .unwrap()
        .into_inner())
    .await;
    assert!(messages.is_empty(), "{messages:?}");

    // Stats, pod stats and pod metrics: the same items as the unary calls.
    let listed = rt
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let streamed: Vec<_> = items(
        rt.stream_container_stats(cri::StreamContainerStatsRequest { filter: None })
            .await
            .unwrap()
            .into_inner(),
        |m| m.container_stats,
    )
    .await;
    let stat_ids = |s: &[cri::ContainerStats]| {
        ids(s
            .iter()
            .filter_map(|s| s.attributes.as_ref())
            .map(|a| a.id.as_str()))
    };
    assert_eq!(stat_ids(&streamed), stat_ids(&listed));
    assert_eq!(streamed.len(), 2);
    let streamed: Vec<_> = items(
        rt.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest { filter: None })
            .await
            .unwrap()
            .into_inner(),
        |m| m.pod_sandbox_stats,
    )
    .await;
    assert_eq!(
        ids(streamed
            .iter()
            .filter_map(|s| s.attributes.as_ref())
            .map(|a| a.id.as_str())),
        ids(pods.iter().map(|p| p.id.as_str()))
    );
    let listed = rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let streamed: Vec<_> = items(
        rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner(),
        |m| m.pod_sandbox_metrics,
    )
    .await;
    assert_eq!(
        ids(streamed.iter().map(|m| m.pod_sandbox_id.as_str())),
        ids(listed.iter().map(|m| m.pod_sandbox_id.as_str()))
    );

    // Images.
    let mut images = berthd.images().await.unwrap();
    let listed = images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images;
    let streamed: Vec<_> = items(
        images
            .stream_images(cri::StreamImagesRequest { filter: None })
            .await
            .unwrap()
            .into_inner(),
        |m| m.images,
    )
    .await;
    assert_eq!(streamed, listed);

    for pod in &pods {
        pod.remove(&berthd).await;
    }
    berthd.finish();
}

/// The pod's cgroup file in one v1 controller (this host is hybrid) or the unified hierarchy.
fn cgroup_file(info: &serde_json::Value, controller: &str, file: &str) -> Option<String> {
    let path = info["cgroup"]["path"].as_str()?.trim_start_matches('/');
    [
        format!("/sys/fs/cgroup/{controller}/{path}/{file}"),
        format!("/sys/fs/cgroup/{path}/{file}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

#[tokio::test]
async fn update_pod_sandbox_resources_resizes_the_pod_cgroup() {
    let berthd = Berthd::start("podresize").await.unwrap();
    let memory = |bytes: i64| cri::LinuxContainerResources {
        cpu_shares: 256,
        memory_limit_in_bytes: bytes,
        ..Default::default()
    };
    let mut config = pod_config(&berthd, "resize");
    config.linux.as_mut().unwrap().resources = Some(memory(64 << 20));
    let pod = Pod::run_with(&berthd, config).await;
    let info = pod_info(&berthd, &pod.id).await;
    assert_eq!(
        cgroup_file(&info, "memory", "memory.limit_in_bytes"),
        Some((64u64 << 20).to_string()),
        "{info}"
    );

    let mut rt = berthd.runtime().await.unwrap();
    rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.id.clone(),
        resources: Some(memory(128 << 20)),
        overhead: Some(memory(16 << 20)),
    })
    .await
    .unwrap();
    assert_eq!(
        cgroup_file(&info, "memory", "memory.limit_in_bytes"),
        Some((144u64 << 20).to_string())
    );
    assert_eq!(
        cgroup_file(&info, "cpu", "cpu.shares").as_deref(),
        Some("512")
    );

    let unknown = rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "ffffffffffff".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    berth_e2e::pods::stop_pod(&berthd, &pod.id).await.unwrap();
    let stopped = rt
        .update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.id.clone(),
            resources: Some(memory(256 << 20)),
            overhead: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        stopped.code(),
        tonic::Code::FailedPrecondition,
        "{stopped:?}"
    );
    pod.remove(&berthd).await;
    berthd.finish();
}

async fn status(berthd: &Berthd, id: &str) -> cri::ContainerStatus {
    let mut rt = berthd.runtime().await.unwrap();
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

#[tokio::test]
async fn the_cri_stop_signal_overrides_the_images_and_is_reported() {
    let berthd = Berthd::start("stopsignal").await.unwrap();
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "stopsig").await;
    // A shell that exits 7 on SIGUSR1 and ignores SIGTERM: only the CRI config's signal stops it
    // before the timeout.
    let mut config = shell(
        "trapper",
        "trap 'exit 7' USR1; trap '' TERM; while true; do sleep 0.1; done",
    );
    config.stop_signal = cri::Signal::Sigusr1 as i32;
    let trapper = create(&berthd, &pod, config).await.unwrap();
    start(&berthd, &trapper).await.unwrap();
    let plain = run(&berthd, &pod, shell("plain", "sleep 60")).await;
    assert_eq!(
        status(&berthd, &trapper).await.stop_signal,
        cri::Signal::Sigusr1 as i32
    );
    assert_eq!(
        status(&berthd, &plain).await.stop_signal,
        cri::Signal::Sigterm as i32
    );

    let mut rt = berthd.runtime().await.unwrap();
    let started = std::time::Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: trapper.clone(),
        timeout: 30,
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "SIGUSR1 was not sent first"
    );
    let stopped = status(&berthd, &trapper).await;
    assert_eq!(stopped.exit_code, 7, "{stopped:?}");

    // A value CRI does not define is refused.
    let mut bad = shell("bad", "true");
    bad.stop_signal = 99;
    let refused = create(&berthd, &pod, bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    pod.remove(&berthd).await;
    berthd.finish();
}
