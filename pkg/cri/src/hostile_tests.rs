//! Oversized CRI requests: labels, annotations, env, mounts and devices by the tens of
//! thousands, up to kubelet's 16 MiB message cap (which is also tonic's decoding limit here,
//! `[grpc] max_recv_message_size`). No per-field limit is imposed: the translation is linear
//! (a move of each field, maps sorted into BTreeMaps), so such a request costs a few times its
//! encoded size in memory and well under a second; the gRPC cap is the bound.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_config::SeccompDefault;
use berth_cri_api::v1 as cri;
use berth_spec::HostLsm;
use prost::Message;

use crate::security::SecurityInputs;
use crate::{containers, pods};

/// kubelet's maximum message size.
const CAP: usize = 16 << 20;

#[test]
fn default_grpc_cap_is_kubelets() {
    assert_eq!(
        berth_config::GrpcConfig::default().max_recv_message_size,
        CAP
    );
}

fn map(prefix: &str, n: usize, value_len: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}.example.com/key-{i}"),
                "v".repeat(value_len),
            )
        })
        .collect()
}

/// Encodes and decodes as the gRPC layer would, checking the message fits under the cap.
fn roundtrip<M: Message + Default>(m: &M) -> M {
    let bytes = m.encode_to_vec();
    assert!(
        bytes.len() <= CAP,
        "{} bytes is over the cap: no client could send it",
        bytes.len()
    );
    assert!(
        bytes.len() > CAP / 2,
        "big enough to matter: {}",
        bytes.len()
    );
    M::decode(&bytes[..]).unwrap()
}

fn assert_fast(started: Instant) {
    // Generous for debug builds on a loaded 2-core CI machine.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn run_pod_sandbox_with_50_000_labels_and_annotations() {
    let req = cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "big".into(),
                namespace: "default".into(),
                uid: "u".into(),
                attempt: 0,
            }),
            labels: map("label", 25_000, 100),
            annotations: map("annotation", 25_000, 200),
            port_mappings: (0..10_000)
                .map(|i| cri::PortMapping {
                    protocol: 0,
                    container_port: 1 + i % 60_000,
                    host_port: 0,
                    host_ip: String::new(),
                })
                .collect(),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    };
    let req = roundtrip(&req);
    let started = Instant::now();
    let config = pods::sandbox_config(req).unwrap();
    assert_fast(started);
    assert_eq!(config.labels.len(), 25_000);
    assert_eq!(config.annotations.len(), 25_000);
}

#[test]
fn create_container_with_thousands_of_envs_mounts_devices_and_labels() {
    let n = 10_000;
    let req = cri::CreateContainerRequest {
        pod_sandbox_id: "p".repeat(64),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "big".into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            command: vec!["x".repeat(100); n],
            args: vec!["y".repeat(100); n],
            envs: (0..n)
                .map(|i| cri::KeyValue {
                    key: format!("ENV_{i}"),
                    value: "e".repeat(200),
                })
                .collect(),
            mounts: (0..n)
                .map(|i| cri::Mount {
                    container_path: format!("/mnt/{i}"),
                    host_path: format!("/var/lib/data/{i}"),
                    ..Default::default()
                })
                .collect(),
            devices: (0..n)
                .map(|i| cri::Device {
                    container_path: format!("/dev/x{i}"),
                    host_path: format!("/dev/null{i}"),
                    permissions: "rwm".into(),
                })
                .collect(),
            labels: map("label", n, 100),
            annotations: map("annotation", n, 300),
            ..Default::default()
        }),
        sandbox_config: None,
    };
    let req = roundtrip(&req);
    let lsm = HostLsm::detect_at(Path::new("/nonexistent"), Path::new("/nonexistent"));
    let inputs = SecurityInputs {
        node_default: SeccompDefault::RuntimeDefault,
        lsm: &lsm,
        pod_seccomp: None,
    };
    let started = Instant::now();
    let (_, config) = containers::create_request(req, &inputs).unwrap();
    assert_fast(started);
    assert_eq!(config.envs.len(), n);
    assert_eq!(config.mounts.len(), n);
    assert_eq!(config.devices.len(), n);
    assert_eq!(config.annotations.len(), n);
}

/// One label of 15 MiB: a single huge string is moved, never copied per character.
#[test]
fn one_huge_annotation() {
    let mut annotations = HashMap::new();
    annotations.insert("k".to_string(), "a".repeat(15 << 20));
    let req = roundtrip(&cri::RunPodSandboxRequest {
        config: Some(cri::PodSandboxConfig {
            annotations,
            ..Default::default()
        }),
        runtime_handler: String::new(),
    });
    let started = Instant::now();
    let config = pods::sandbox_config(req).unwrap();
    assert_fast(started);
    assert_eq!(config.annotations["k"].len(), 15 << 20);
}
