//! Pod network setup and teardown with the real CNI plugins (bridge, host-local, portmap, loopback,
//! bandwidth) in network namespaces created by the tests. Needs root; see `common::prerequisites`.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_network::cni::{Bandwidth, PortMapping, Protocol};
use berth_network::{Cni, CniError, CniMetrics, PodCidrStore, PodCidrs, PodNetwork};
use common::{Fixture, Netns, ping, prerequisites, run, run_ok};
use serde_json::json;

fn standard_list(fx: &Fixture, version: &str) {
    fx.write_conflist(
        "10-pods.conflist",
        version,
        vec![
            fx.bridge_plugin(json!({})),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            json!({"type": "loopback"}),
        ],
    );
}

fn eth0_addr(netns: &Netns) -> String {
    netns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
}

#[tokio::test]
async fn add_check_del_roundtrip() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    standard_list(&fx, "1.0.0");
    let registry = prometheus::Registry::new();
    let cni = fx
        .cni()
        .with_metrics(CniMetrics::register(&registry).unwrap());

    let network = cni.setup(&fx.request("roundtrip1")).await.unwrap();
    fx.track(&network);
    assert_eq!(network.network_name, fx.network_name());
    assert!(network.config_file.ends_with("10-pods.conflist"));
    let ip = network.ips[0];
    assert!(fx.in_subnet(&ip), "{ip}");
    assert_eq!(network.ips.len(), 1, "{:?}", network.ips);
    assert!(eth0_addr(&fx.netns).contains(&format!("{ip}/24")));
    assert!(ping(&ip), "host cannot ping the pod at {ip}");
    assert_eq!(fx.reservations(), [ip.to_string()]);

    // What a caller persists, and all it needs afterwards.
    let blob = serde_json::to_vec(&network).unwrap();
    let restored: PodNetwork = serde_json::from_slice(&blob).unwrap();
    assert_eq!(restored, network);
    cni.check(&restored).await.unwrap();

    // The config used at ADD time is in the blob: DEL works with the conf dir gone.
    std::fs::remove_dir_all(&fx.conf_dir).unwrap();
    cni.teardown(&restored.request, Some(&restored))
        .await
        .unwrap();
    assert!(fx.reservations().is_empty(), "{:?}", fx.reservations());
    let links = fx.netns.exec(&["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    cni.teardown(&restored.request, Some(&restored))
        .await
        .unwrap();

    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"berth_cni_operations_total{op="ADD",result="success"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"berth_cni_operations_total{op="DEL",result="success"} 2"#));
    assert!(text.contains(r#"berth_cni_operations_total{op="CHECK",result="success"} 1"#));
    assert!(text.contains(r#"berth_cni_operation_duration_seconds_count{op="ADD"} 1"#));
}

/// A listener inside the namespace; the thread's setns only moves this thread.
// setns(CLONE_NEWNET) on the listener's thread.
#[allow(unsafe_code)]
fn listen_in(netns: PathBuf, port: u16) -> std::thread::JoinHandle<std::io::Result<()>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns)?;
        // SAFETY: a valid fd for a netns file; CLONE_NEWNET moves only the calling thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let listener = TcpListener::bind(("0.0.0.0", port))?;
        let _ = ready_tx.send(());
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false)?;
                    conn.write_all(b"hello from the pod")?;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(std::io::Error::other("no connection"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    handle
}

fn iptables_mentions(id: &str) -> bool {
    let out = run("iptables-save", &[]);
    String::from_utf8_lossy(&out.stdout).contains(id)
}

#[tokio::test]
async fn port_mapping_and_bandwidth_capabilities() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    fx.write_conflist(
        "10-pods.conflist",
        "1.0.0",
        vec![
            fx.bridge_plugin(json!({})),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ],
    );
    let cni = fx.cni();
    let host_port = 20000 + (std::process::id() % 20000) as u16;
    let mut req = fx.request("portmap1");
    req.port_mappings = vec![PortMapping {
        host_port,
        container_port: 8080,
        protocol: Protocol::Tcp,
        host_ip: String::new(),
    }];
    req.bandwidth = Some(Bandwidth {
        ingress_rate: 8_000_000,
        ingress_burst: 1_000_000,
        egress_rate: 8_000_000,
        egress_burst: 1_000_000,
    });
    let listener = listen_in(fx.netns.path(), 8080);
    let network = cni.setup(&req).await.unwrap();
    fx.track(&network);
    assert!(iptables_mentions("portmap1"), "portmap added no rules");

    // portmap's DNAT for locally generated traffic also covers 127.0.0.1: it sets route_localnet on
    // the bridge and masquerades the 127.0.0.1 source itself (its default `snat: true`), so no host
    // sysctl is changed by the test.
    let mut conn = TcpStream::connect_timeout(
        &(std::net::Ipv4Addr::LOCALHOST, host_port).into(),
        Duration::from_secs(5),
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "hello from the pod");
    listener.join().unwrap().unwrap();

    // The bandwidth plugin shaped the pod's traffic (tbf on the host side of the veth).
    let veth = network_host_veth(&network);
    let qdisc = run_ok("tc", &["qdisc", "show", "dev", &veth]);
    assert!(qdisc.contains("tbf"), "{qdisc}");

    cni.teardown(&network.request, Some(&network))
        .await
        .unwrap();
    assert!(!iptables_mentions("portmap1"), "portmap rules left behind");
    assert!(fx.reservations().is_empty());
}

/// The host-side veth: the result's interface that is neither the bridge nor in the sandbox.
fn network_host_veth(network: &PodNetwork) -> String {
    let result: serde_json::Value = serde_json::from_str(&network.result_json).unwrap();
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i.get("sandbox").is_none() && i["name"].as_str().is_some_and(|n| n.starts_with("veth"))
        })
        .and_then(|i| i["name"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn del_after_the_netns_is_gone_frees_the_ip() {
    if !prerequisites() {
        return;
    }
    let mut fx = Fixture::new();
    standard_list(&fx, "1.0.0");
    let cni = fx.cni();
    let network = cni.setup(&fx.request("gone1")).await.unwrap();
    fx.track(&network);
    assert_eq!(fx.reservations().len(), 1);
    fx.netns.delete();
    assert!(!fx.netns.path().exists());
    cni.teardown(&network.request, Some(&network))
        .await
        .unwrap();
    assert!(fx.reservations().is_empty(), "{:?}", fx.reservations());
    // Check needs the namespace, and says so.
    assert!(matches!(
        cni.check(&network).await,
        Err(CniError::NetnsMissing { .. })
    ));
}

#[tokio::test]
async fn del_without_a_cached_result() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    standard_list(&fx, "1.0.0");
    let cni = fx.cni();
    cni.teardown(&fx.request("never1"), None).await.unwrap();
    let mut no_netns = fx.request("never1");
    no_netns.netns = None;
    cni.teardown(&no_netns, None).await.unwrap();

    // Set up, but the result was never persisted (berthd died): DEL from the request alone, with
    // the current configuration, still frees the IP.
    let network = cni.setup(&fx.request("unpersisted1")).await.unwrap();
    fx.track(&network);
    assert_eq!(fx.reservations().len(), 1);
    cni.teardown(&fx.request("unpersisted1"), None)
        .await
        .unwrap();
    assert!(fx.reservations().is_empty(), "{:?}", fx.reservations());
}

#[tokio::test]
async fn failed_add_is_rolled_back() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    // The bandwidth plugin refuses a rate without a burst: a real plugin failing after bridge and
    // host-local have set up the veth and reserved an IP.
    fx.write_conflist(
        "10-pods.conflist",
        "1.0.0",
        vec![
            fx.bridge_plugin(json!({})),
            json!({"type": "bandwidth", "ingressRate": 1000000}),
        ],
    );
    let err = fx.cni().setup(&fx.request("rollback1")).await.unwrap_err();
    match &err {
        CniError::Plugin { plugin, code, .. } => {
            assert_eq!(plugin, "bandwidth");
            assert!(*code > 0);
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(fx.reservations().is_empty(), "{:?}", fx.reservations());
    let links = fx.netns.exec(&["ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
}

#[tokio::test]
async fn config_selection_and_single_plugin_conf() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let write = |file: &str, text: String| std::fs::write(fx.conf_dir.join(file), text).unwrap();
    write("00-broken.conflist", "{".to_string());
    write(
        "05-old.conflist",
        json!({"cniVersion": "0.2.0", "name": "old", "plugins": [{"type": "bridge"}]}).to_string(),
    );
    write(
        "10-missing.conflist",
        json!({"cniVersion": "1.0.0", "name": "missing", "plugins": [{"type": "berth-nope"}]})
            .to_string(),
    );
    write("15-ignored.txt", "{}".to_string());
    let mut single = fx.bridge_plugin(json!({}));
    single["cniVersion"] = json!("0.4.0");
    single["name"] = json!(fx.network_name());
    write("20-single.conf", single.to_string());
    write(
        "30-later.conflist",
        json!({"cniVersion": "1.0.0", "name": "later", "plugins": [{"type": "loopback"}]})
            .to_string(),
    );
    let cni = fx.cni();
    let selected = cni.network().unwrap();
    assert!(selected.config_file.ends_with("20-single.conf"));
    assert_eq!(selected.list.plugins().len(), 1);
    let ready = berth_network::cni_readiness(&fx.conf_dir, &[PathBuf::from(common::PLUGIN_DIR)]);
    assert!(ready.ready, "{}", ready.message);
    assert_eq!(ready.config_file, Some(selected.config_file.clone()));

    let network = cni.setup(&fx.request("single1")).await.unwrap();
    fx.track(&network);
    assert!(fx.in_subnet(&network.ips[0]));
    cni.check(&network).await.unwrap();
    cni.teardown(&network.request, Some(&network))
        .await
        .unwrap();
    assert!(fx.reservations().is_empty());
}

#[tokio::test]
async fn every_supported_version_the_plugins_speak() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let cni = fx.cni();
    let bridge = cni.plugin_versions("bridge").await.unwrap();
    assert!(bridge.supports("0.4.0"), "{bridge:?}");
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        standard_list(&fx, version);
        if !bridge.supports(version) {
            // VERSION negotiation catches it before any ADD, naming the plugin.
            match cni.validate().await {
                Err(CniError::IncompatibleVersion { plugin, .. }) => assert_eq!(plugin, "bridge"),
                other => panic!("{version}: {other:?}"),
            }
            continue;
        }
        cni.validate().await.unwrap();
        let network = cni
            .setup(&fx.request(&format!("version{}", version.replace('.', ""))))
            .await
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        fx.track(&network);
        let result: serde_json::Value = serde_json::from_str(&network.result_json).unwrap();
        assert_eq!(result["cniVersion"], version);
        assert!(
            fx.in_subnet(&network.ips[0]),
            "{version}: {:?}",
            network.ips
        );
        // CHECK does not exist before 0.4.0 and is skipped there.
        cni.check(&network).await.unwrap();
        cni.teardown(&network.request, Some(&network))
            .await
            .unwrap();
        assert!(fx.reservations().is_empty(), "{version}");
    }
}

#[tokio::test]
async fn ip_ranges_come_from_the_pod_cidr() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let other = Fixture::new(); // only for a second private subnet
    // host-local prepends runtime ranges to configured ones, so a network fed by ipRanges
    // configures none itself (as containerd's and CRI-O's templates do).
    let mut bridge = fx.bridge_plugin(json!({"capabilities": {"ipRanges": true}}));
    bridge["ipam"].as_object_mut().unwrap().remove("ranges");
    fx.write_conflist("10-pods.conflist", "1.0.0", vec![bridge]);
    let state = tempfile::tempdir().unwrap();
    let store = Arc::new(PodCidrStore::open(state.path()));
    store.set(PodCidrs::parse(&other.cidr()).unwrap()).unwrap();
    let cni = fx.cni().with_pod_cidrs(store);
    let network = cni.setup(&fx.request("ranges1")).await.unwrap();
    fx.track(&network);
    assert!(other.in_subnet(&network.ips[0]), "{:?}", network.ips);
    assert_eq!(network.request.ip_ranges, [other.cidr()]);
    cni.teardown(&network.request, Some(&network))
        .await
        .unwrap();
}

#[tokio::test]
async fn setup_needs_the_namespace_and_a_config() {
    if !prerequisites() {
        return;
    }
    let fx = Fixture::new();
    let cni = fx.cni();
    let err = cni.setup(&fx.request("noconfig1")).await.unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err}");
    standard_list(&fx, "1.0.0");
    let mut req = fx.request("nonetns1");
    req.netns = Some(Path::new("/run/netns/berth-cnitest-does-not-exist").to_path_buf());
    assert!(matches!(
        cni.setup(&req).await,
        Err(CniError::NetnsMissing { .. })
    ));
    let mut req = fx.request("nonetns2");
    req.netns = None;
    assert!(matches!(
        cni.setup(&req).await,
        Err(CniError::InvalidRequest(_))
    ));
    let req = fx.request("../evil");
    assert!(matches!(
        cni.setup(&req).await,
        Err(CniError::InvalidRequest(_))
    ));
    let _ = Cni::new("/nonexistent", vec![], Duration::from_secs(1));
}
