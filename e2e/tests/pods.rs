//! Pod sandboxes with real namespaces, cgroups and CNI plugins (Debian's containernetworking-plugins).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::pods::*;
use berth_e2e::{Berthd, Options};
use tonic::Code;

const READY: i32 = cri::PodSandboxState::SandboxReady as i32;
const NOTREADY: i32 = cri::PodSandboxState::SandboxNotready as i32;

async fn state(berthd: &Berthd, id: &str) -> i32 {
    pod_status(berthd, id).await.unwrap().status.unwrap().state
}

#[tokio::test]
async fn pod_gets_an_ip_answers_ping_and_goes_away_cleanly() {
    let berthd = Berthd::start("podip").await.unwrap();
    let id = run_pod(&berthd, pod_config(&berthd, "web")).await.unwrap();
    assert_eq!(id.len(), 64);
    assert_eq!(state(&berthd, &id).await, READY);
    let ip = pod_ip(&berthd, &id).await;
    assert!(ip.starts_with("10.89."), "{ip}");
    assert!(ping(None, &ip), "host pings the pod at {ip}");

    let info = pod_info(&berthd, &id).await;
    let netns = ns_path(&info, "netns");
    let (ok, links) = nsenter(
        &[format!("--net={}", netns.display())],
        &["ip", "-o", "addr"],
    );
    assert!(ok, "{links}");
    assert!(links.contains(&ip), "{links}");
    assert!(
        links.contains("lo") && links.contains("127.0.0.1"),
        "loopback is up: {links}"
    );
    assert!(info["cgroup"].is_object(), "{info}");
    assert!(info["cni"].is_object(), "{info}");

    // By unique prefix too.
    let status = pod_status(&berthd, &id[..8]).await.unwrap().status.unwrap();
    assert_eq!(status.id, id);
    assert_eq!(status.metadata.unwrap().name, "web");
    assert_eq!(status.labels["app"], "web");

    stop_pod(&berthd, &id).await.unwrap();
    assert_eq!(state(&berthd, &id).await, NOTREADY);
    assert!(!ping(None, &ip), "stopped pod no longer answers");
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    assert_eq!(
        pod_status(&berthd, &id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(list_pods(&berthd, None).await.is_empty());
    let metrics = berthd.metrics().unwrap();
    for series in [
        "berth_cni_operations_total{op=\"ADD\",result=\"success\"} 1",
        "berth_cni_operations_total{op=\"DEL\",result=\"success\"} 1",
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
    assert!(metrics.contains("berth_cni_operation_duration_seconds_count{op=\"ADD\"} 1"));
    berthd.finish();
}

#[tokio::test]
async fn stop_and_remove_work_when_the_netns_is_gone() {
    let berthd = Berthd::start("netnsgone").await.unwrap();
    let id = run_pod(&berthd, pod_config(&berthd, "gone")).await.unwrap();
    let netns = ns_path(&pod_info(&berthd, &id).await, "netns");
    // What a reboot does to the pinned namespace under /run.
    let umount = std::process::Command::new("umount")
        .arg(&netns)
        .status()
        .unwrap();
    assert!(umount.success());
    assert_eq!(state(&berthd, &id).await, NOTREADY);
    // DEL runs with an empty netns, so IPAM still releases the address (the leak check sees to it).
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn two_pods_reach_each_other_and_lists_filter() {
    let berthd = Berthd::start("twopods").await.unwrap();
    let a = run_pod(&berthd, pod_config(&berthd, "a")).await.unwrap();
    let b = run_pod(&berthd, pod_config(&berthd, "b")).await.unwrap();
    let netns_a = ns_path(&pod_info(&berthd, &a).await, "netns");
    let ip_b = pod_ip(&berthd, &b).await;
    assert!(ping(Some(&netns_a), &ip_b), "pod a reaches pod b at {ip_b}");

    stop_pod(&berthd, &b).await.unwrap();
    let ready = list_pods(
        &berthd,
        Some(cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue { state: READY }),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        ready.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        [a.as_str()]
    );
    let labelled = list_pods(
        &berthd,
        Some(cri::PodSandboxFilter {
            label_selector: HashMap::from([("app".into(), "b".into())]),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(labelled.len(), 1);
    assert_eq!(labelled[0].id, b);
    let by_prefix = list_pods(
        &berthd,
        Some(cri::PodSandboxFilter {
            id: a[..10].to_string(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_prefix.len(), 1);
    for id in [&a, &b] {
        remove_pod(&berthd, id).await.unwrap();
    }
    berthd.finish();
}

#[tokio::test]
async fn host_network_pod_uses_the_hosts_namespace() {
    let berthd = Berthd::start("hostnet").await.unwrap();
    let mut config = pod_config(&berthd, "hostnet");
    namespace_options(&mut config).network = cri::NamespaceMode::Node as i32;
    let id = run_pod(&berthd, config).await.unwrap();
    let info = pod_info(&berthd, &id).await;
    assert!(info["netns"].is_null(), "{info}");
    assert!(info["utsns"].is_null(), "{info}");
    assert!(info["cni"].is_null(), "no CNI for host network: {info}");
    assert_eq!(pod_ip(&berthd, &id).await, "");
    // The pod's /etc/hosts is the host's.
    let dir = std::path::PathBuf::from(info["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts")).unwrap(),
        std::fs::read_to_string("/etc/hosts").unwrap()
    );
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn dns_hostname_and_sysctls_are_applied_inside_the_pod() {
    let berthd = Berthd::start("podfiles").await.unwrap();
    let mut config = pod_config(&berthd, "files");
    config.hostname = "files-0".into();
    config.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let linux = config.linux.as_mut().unwrap();
    linux.sysctls = HashMap::from([
        ("net.ipv4.ip_unprivileged_port_start".into(), "80".into()),
        ("kernel.shmmni".into(), "1234".into()),
    ]);
    let id = run_pod(&berthd, config).await.unwrap();
    let info = pod_info(&berthd, &id).await;
    let dir = std::path::PathBuf::from(info["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("resolv.conf")).unwrap(),
        "search e2e.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hostname")).unwrap(),
        "files-0\n"
    );
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(
        hosts.contains(&format!("{}\tfiles-0", pod_ip(&berthd, &id).await)),
        "{hosts}"
    );

    let uts = format!("--uts={}", ns_path(&info, "utsns").display());
    let (_, hostname) = nsenter(&[uts], &["hostname"]);
    assert_eq!(hostname.trim(), "files-0");
    let net = format!("--net={}", ns_path(&info, "netns").display());
    let (_, port_start) = nsenter(
        &[net],
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    );
    assert_eq!(port_start.trim(), "80");
    let ipc = format!("--ipc={}", ns_path(&info, "ipcns").display());
    let (_, shmmni) = nsenter(&[ipc], &["cat", "/proc/sys/kernel/shmmni"]);
    assert_eq!(shmmni.trim(), "1234");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234",
        "the host's value is untouched"
    );
    // /dev/shm for the pod's containers is a tmpfs of its own.
    let shm = info["shm"].as_str().unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(shm) && l.contains("tmpfs"))
    );
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn bad_pod_requests_get_clear_errors_and_change_nothing() {
    let berthd = Berthd::start("badpods").await.unwrap();
    let mut not_namespaced = pod_config(&berthd, "sysctl");
    not_namespaced.linux.as_mut().unwrap().sysctls =
        HashMap::from([("kernel.panic".into(), "1".into())]);
    let mut host_net_sysctl = pod_config(&berthd, "hostsysctl");
    host_net_sysctl.linux.as_mut().unwrap().sysctls =
        HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]);
    namespace_options(&mut host_net_sysctl).network = cri::NamespaceMode::Node as i32;
    let mut no_name = pod_config(&berthd, "x");
    no_name.metadata.as_mut().unwrap().name.clear();
    let mut bad_parent = pod_config(&berthd, "parent");
    bad_parent.linux.as_mut().unwrap().cgroup_parent = "/../../etc".into();
    for (config, what) in [
        (not_namespaced, "kernel.panic"),
        (host_net_sysctl, "net.ipv4.ip_forward"),
        (no_name, "name"),
        (bad_parent, "cgroup"),
    ] {
        let err = run_pod(&berthd, config).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(what), "{what}: {err:?}");
    }
    let mut rt = berthd.runtime().await.unwrap();
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&berthd, "handler")),
            runtime_handler: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("nope"), "{err:?}");
    assert_eq!(
        stop_pod(&berthd, &"ab".repeat(32))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(list_pods(&berthd, None).await.is_empty());
    berthd.finish();
}

#[tokio::test]
async fn kubelet_retries_get_the_same_sandbox() {
    let berthd = Berthd::start("retry").await.unwrap();
    let config = pod_config(&berthd, "retry");
    let (first, second) = tokio::join!(
        run_pod(&berthd, config.clone()),
        run_pod(&berthd, config.clone())
    );
    let id = first.unwrap();
    assert_eq!(second.unwrap(), id, "a retry in flight waits for the first");
    assert_eq!(
        run_pod(&berthd, config.clone()).await.unwrap(),
        id,
        "a retry after it"
    );
    assert_eq!(list_pods(&berthd, None).await.len(), 1);
    let mut next = config;
    next.metadata.as_mut().unwrap().attempt = 1;
    let other = run_pod(&berthd, next).await.unwrap();
    assert_ne!(other, id, "a new attempt is a new sandbox");
    for id in [&id, &other] {
        remove_pod(&berthd, id).await.unwrap();
    }
    berthd.finish();
}

#[tokio::test]
async fn host_port_reaches_a_listener_in_the_pod() {
    let berthd = Berthd::start("hostport").await.unwrap();
    let host_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = pod_config(&berthd, "hostport");
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let id = run_pod(&berthd, config).await.unwrap();
    let netns = ns_path(&pod_info(&berthd, &id).await, "netns");
    // Until containers land, a listener started in the pod's netns stands in for one.
    let mut listener = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args([
            "--",
            "busybox",
            "nc",
            "-l",
            "-p",
            "8080",
            "-e",
            "echo",
            "hello-from-pod",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut reply = String::new();
    let mut connected = false;
    for _ in 0..20 {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", host_port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let _ = stream.write_all(b"hi\n");
            let _ = stream.read_to_string(&mut reply);
            connected = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(connected, "connecting to 127.0.0.1:{host_port}");
    assert_eq!(reply.trim(), "hello-from-pod");
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn restart_keeps_ready_pods_ready_with_the_same_ip() {
    let mut berthd = Berthd::start("podrestart").await.unwrap();
    let id = run_pod(&berthd, pod_config(&berthd, "keep")).await.unwrap();
    let ip = pod_ip(&berthd, &id).await;
    assert!(berthd.stop().unwrap().success());
    berthd.launch().await.unwrap();
    assert_eq!(state(&berthd, &id).await, READY);
    assert_eq!(pod_ip(&berthd, &id).await, ip);
    assert!(ping(None, &ip));
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn remove_works_with_the_cni_config_deleted() {
    let berthd = Berthd::start("nocniconf").await.unwrap();
    let id = run_pod(&berthd, pod_config(&berthd, "gone")).await.unwrap();
    std::fs::remove_dir_all(&berthd.cni_conf_dir).unwrap();
    // DEL runs with the network config recorded at ADD time, so the IP is released.
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

/// Starts berthd with a slowed-down last CNI plugin, sends RunPodSandbox for `name`, and SIGKILLs
/// berthd once the IP is reserved and the chain sits in portmap; then starts it again. Returns the
/// pod config and a probe telling whether the slowed-down plugin still runs.
async fn crash_during_cni_add(name: &str) -> (Berthd, cri::PodSandboxConfig, impl Fn() -> bool) {
    let options = Options {
        slow_cni_result: true,
        ..Options::default()
    };
    let mut berthd = Berthd::start_with(name, options).await.unwrap();
    let config = pod_config(&berthd, name);
    let pending = {
        let config = config.clone();
        let channel = berthd.channel().await.unwrap();
        tokio::spawn(async move {
            let mut rt = cri::runtime_service_client::RuntimeServiceClient::new(channel);
            rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })
    };
    let dir = berthd.dir.clone();
    let plugin_running = move || {
        berth_e2e::leaks::processes_using(&dir)
            .iter()
            .any(|p| p.contains("cni/bin/portmap"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while berth_e2e::leaks::cni_reservations(&berthd.cni_ipam_dir).is_empty() || !plugin_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "ADD never got to portmap"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    berthd.kill().unwrap();
    assert!(pending.await.unwrap().is_err());
    berthd.launch().await.unwrap();
    (berthd, config, plugin_running)
}

/// The plugin berthd was waiting for runs on (in its own process group, so a crash of berthd does
/// not cut it off half-way); let the test's slowed-down copy finish.
async fn wait_for_plugins(plugin_running: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while plugin_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the CNI plugin never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stop_and_remove_after_berthd_died_between_add_and_the_answer() {
    let (berthd, _, plugin_running) = crash_during_cni_add("podcrash").await;
    let pods = list_pods(&berthd, None).await;
    assert_eq!(pods.len(), 1, "the half-made sandbox is listed");
    assert_eq!(pods[0].state, NOTREADY);
    stop_pod(&berthd, &pods[0].id).await.unwrap();
    remove_pod(&berthd, &pods[0].id).await.unwrap();
    wait_for_plugins(plugin_running).await;
    berthd.finish();
}

#[tokio::test]
async fn a_retry_after_the_crash_gets_a_whole_new_sandbox() {
    let (berthd, config, plugin_running) = crash_during_cni_add("podretry").await;
    let half_made = list_pods(&berthd, None).await[0].id.clone();
    let id = run_pod(&berthd, config).await.unwrap();
    assert_ne!(id, half_made, "the half-made sandbox is not handed out");
    assert_eq!(state(&berthd, &id).await, READY);
    let pods = list_pods(&berthd, None).await;
    assert_eq!(pods.len(), 1, "the half-made one was removed: {pods:?}");
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    wait_for_plugins(plugin_running).await;
    berthd.finish();
}

#[tokio::test]
async fn shared_pid_namespace_has_berths_init_as_pid_1() {
    let berthd = Berthd::start("pidns").await.unwrap();
    let mut config = pod_config(&berthd, "pidns");
    namespace_options(&mut config).pid = cri::NamespaceMode::Pod as i32;
    let id = run_pod(&berthd, config).await.unwrap();
    let info = pod_info(&berthd, &id).await;
    let pid = info["init"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{info}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(
        nspid.split_whitespace().collect::<Vec<_>>(),
        ["NSpid:", &pid.to_string(), "1"]
    );
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("berth-init"), "{exe:?}");
    assert_eq!(state(&berthd, &id).await, READY);
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(rss_kib < 300, "berth-init uses {rss_kib} KiB");

    // An orphan in the pod's PID namespace is adopted and reaped by the init.
    let (ok, out) = nsenter(
        &[format!("--pid=/proc/{pid}/ns/pid")],
        &["busybox", "sh", "-c", "busybox sleep 0.2 & echo started"],
    );
    assert!(ok, "{out}");
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let adopted = std::fs::read_to_string(&children).unwrap_or_default();
        if adopted.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "init never reaped {adopted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A pod without a shared PID namespace has no process at all.
    let plain = run_pod(&berthd, pod_config(&berthd, "noproc"))
        .await
        .unwrap();
    assert!(pod_info(&berthd, &plain).await["init"].is_null());

    stop_pod(&berthd, &id).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "init still running after stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in [&id, &plain] {
        stop_pod(&berthd, id).await.unwrap();
        remove_pod(&berthd, id).await.unwrap();
    }
    berthd.finish();
}
