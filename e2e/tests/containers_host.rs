//! Containers and the host around them: bind mounts and propagation, image volumes, the pod's shared
//! network and IPC namespaces, pod IPs and hostPorts, cgroup limits and their updates, log
//! rotation, and the per-pod monitor's memory.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::containers::*;
use berth_e2e::pods::{pod_config, pod_info, pod_ip};
use berth_e2e::{Berthd, http_get};
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);

fn bind(container_path: &str, host_path: &Path, readonly: bool) -> cri::Mount {
    cri::Mount {
        container_path: container_path.to_string(),
        host_path: host_path.to_string_lossy().into_owned(),
        readonly,
        ..Default::default()
    }
}

/// The mountinfo line of the mount point `path`, if `path` is one.
fn mountinfo_of(path: &Path) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let path = path.to_string_lossy();
    mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(path.as_ref()))
        .map(str::to_string)
}

/// Whether the mount holding `path` propagates (`shared:N` among mountinfo's optional fields).
fn on_shared_mount(path: &Path) -> bool {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "PROPAGATION", "-T"])
        .arg(path)
        .output()
        .expect("findmnt");
    String::from_utf8_lossy(&out.stdout).contains("shared")
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(status.success(), "{args:?} failed");
}

#[tokio::test]
async fn bind_mounts_honour_readonly_and_missing_host_dirs_are_created() {
    let berthd = Berthd::start("ctrmounts").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    pull(&berthd, &config_image()).await;
    let pod = Pod::run(&berthd, "mounts").await;
    let vol = berthd.dir.join("vol");
    let (ro, rw, missing) = (vol.join("ro"), vol.join("rw"), vol.join("missing/deeper"));
    std::fs::create_dir_all(&ro).expect("ro dir");
    std::fs::create_dir_all(&rw).expect("rw dir");
    std::fs::write(ro.join("hello"), "from-host\n").expect("ro/hello");

    let mut readonly = shell("ro", "cat /mnt/ro/hello; touch /mnt/ro/x");
    readonly.mounts = vec![bind("/mnt/ro", &ro, true)];
    let mut writable = shell(
        "rw",
        "echo rw-ok > /mnt/rw/y && test -d /mnt/new && echo new-ok",
    );
    writable.mounts = vec![
        bind("/mnt/rw", &rw, false),
        bind("/mnt/new", &missing, false),
    ];
    // The image declares VOLUME /data. As root: who owns a fresh image volume is not the point here.
    let mut volume = container_config("vol", &config_image(), &[]);
    volume.args = vec!["test -d /data && echo vol-data > /data/f && cat /data/f".into()];
    security(&mut volume).run_as_user = Some(cri::Int64Value { value: 0 });

    let (ro_id, ro_status, ro_log) = run_to_exit(&berthd, &pod, readonly).await;
    assert_ne!(
        ro_status.exit_code, 0,
        "touch on a read-only mount fails: {ro_log:?}"
    );
    assert!(has(&all_lines(&ro_log), "from-host"), "{ro_log:?}");
    assert!(!ro.join("x").exists(), "the host dir is unchanged");
    let mounts = &ro_status.mounts;
    assert!(
        mounts
            .iter()
            .any(|m| m.container_path == "/mnt/ro" && m.readonly),
        "ContainerStatus lists the mounts: {mounts:?}"
    );

    let (rw_id, rw_status, rw_log) = run_to_exit(&berthd, &pod, writable).await;
    assert_eq!(rw_status.exit_code, 0, "{rw_log:?}");
    assert!(has(&all_lines(&rw_log), "new-ok"), "{rw_log:?}");
    assert_eq!(
        std::fs::read_to_string(rw.join("y")).expect("rw/y on the host"),
        "rw-ok\n"
    );
    assert!(missing.is_dir(), "the missing host dir was created");

    let (vol_id, vol_status, vol_log) = run_to_exit(&berthd, &pod, volume).await;
    assert_eq!(vol_status.exit_code, 0, "{vol_log:?}");
    assert!(has(&all_lines(&vol_log), "vol-data"), "{vol_log:?}");

    for id in [&ro_id, &rw_id, &vol_id] {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

#[tokio::test]
async fn bidirectional_propagation_shows_container_mounts_on_the_host() {
    let berthd = Berthd::start("ctrprop").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "prop").await;
    let shared = berthd.dir.join("vol/shared");
    let sub = shared.join("sub");
    std::fs::create_dir_all(&sub).expect("shared/sub");
    // kubelet hosts have `/` shared (systemd does it); this one may not. Then make the volume a
    // shared mount of its own, as a hostPath on a shared mount would be.
    let own_mount = !on_shared_mount(&shared);
    if own_mount {
        let path = shared.to_string_lossy().into_owned();
        sh(&["mount", "--bind", &path, &path]);
        sh(&["mount", "--make-shared", &path]);
    }
    let mut config = shell(
        "mounter",
        "mount -t tmpfs -o size=1m prop-test /mnt/shared/sub && echo ready; \
         while true; do sleep 0.1; done",
    );
    config.mounts = vec![cri::Mount {
        propagation: cri::MountPropagation::PropagationBidirectional as i32,
        ..bind("/mnt/shared", &shared, false)
    }];
    security(&mut config).privileged = true;
    let log = pod.log_file(&config);
    let created = create(&berthd, &pod, config).await;
    let mut seen = None;
    let mut failure = None;
    match created {
        Ok(id) => {
            start(&berthd, &id).await.expect("StartContainer");
            wait_log_line(&log, "ready", LONG).await;
            seen = poll(LONG, "the container's tmpfs on the host", async || {
                mountinfo_of(&sub).filter(|l| l.contains("tmpfs"))
            })
            .await
            .into();
            stop_and_remove(&berthd, &id).await;
        }
        Err(e) => failure = Some(e),
    }
    // Clean up the host side before asserting: the propagated mount stays on the host.
    if mountinfo_of(&sub).is_some() {
        sh(&["umount", &sub.to_string_lossy()]);
    }
    if own_mount {
        sh(&["umount", &shared.to_string_lossy()]);
    }
    if let Some(e) = failure {
        panic!("CreateContainer with a Bidirectional mount: {e:?}");
    }
    assert!(seen.is_some());
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn containers_of_a_pod_share_localhost_ipc_and_hostname() {
    let berthd = Berthd::start("ctrshare").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    pull(&berthd, &httpd()).await;
    let pod = Pod::run(&berthd, "share").await;
    let web = run(&berthd, &pod, container_config("web", &httpd(), &[])).await;
    let (client, client_status, client_log) = run_to_exit(
        &berthd,
        &pod,
        shell(
            "client",
            "for i in $(seq 100); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
        ),
    )
    .await;
    assert_eq!(client_status.exit_code, 0, "{client_log:?}");
    assert!(
        all_lines(&client_log)
            .iter()
            .any(|l| l.contains("hello from berth httpd")),
        "{client_log:?}"
    );

    let (writer, writer_status, _) =
        run_to_exit(&berthd, &pod, shell("writer", "echo shm-data > /dev/shm/x")).await;
    assert_eq!(writer_status.exit_code, 0, "{writer_status:?}");
    let (reader, reader_status, reader_log) =
        run_to_exit(&berthd, &pod, shell("reader", "cat /dev/shm/x; hostname")).await;
    assert_eq!(reader_status.exit_code, 0, "{reader_log:?}");
    assert_eq!(
        stream_lines(&reader_log, "stdout"),
        ["shm-data", "share"],
        "the pod's /dev/shm and hostname"
    );
    let info = pod_info(&berthd, &pod.id).await;
    if let Some(shm) = info["shm"].as_str() {
        assert_eq!(
            std::fs::read_to_string(Path::new(shm).join("x")).expect("x in the pod's shm"),
            "shm-data\n"
        );
    }
    stop_and_remove(&berthd, &web).await;
    for id in [&client, &writer, &reader] {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

/// GET / until it answers 200.
async fn wait_http(address: std::net::SocketAddr) -> String {
    poll(
        LONG,
        &format!("httpd answering on {address}"),
        async || match http_get(address, "/") {
            Ok((200, body)) => Some(body),
            _ => None,
        },
    )
    .await
}

#[tokio::test]
async fn httpd_answers_on_the_pod_ip_and_a_host_port() {
    let berthd = Berthd::start("ctrhttpd").await.expect("starting berthd");
    pull(&berthd, &httpd()).await;
    let host_port = free_port();
    let mut config = pod_config(&berthd, "httpd");
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(host_port),
        host_ip: String::new(),
    }];
    let pod = Pod::run_with(&berthd, config).await;
    let id = run(&berthd, &pod, container_config("httpd", &httpd(), &[])).await;
    let ip = pod_ip(&berthd, &pod.id).await;
    let address = format!("{ip}:8080").parse().expect("pod address");
    let body = wait_http(address).await;
    assert!(body.contains("hello from berth httpd"), "{body:?}");
    let body = wait_http(([127, 0, 0, 1], host_port).into()).await;
    assert!(body.contains("hello from berth httpd"), "{body:?}");
    // httpd exits 0 on SIGTERM.
    stop(&berthd, &id, 10).await.expect("StopContainer");
    let s = status(&berthd, &id).await;
    assert_eq!(
        (s.state, s.exit_code, s.reason.as_str()),
        (EXITED, 0, "Completed"),
        "{s:?}"
    );
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

#[tokio::test]
async fn update_container_resources_changes_the_cgroup() {
    let berthd = Berthd::start("ctrupdate").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "update").await;
    let mut config = container_config("sleeper", &busybox(), &["sleep", "3600"]);
    *resources(&mut config) = cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        ..Default::default()
    };
    let id = run(&berthd, &pod, config).await;
    let pid = pid(&berthd, &id).await;
    let memory = cgroup_dir_of(pid, "memory").expect("the container's memory cgroup");
    let cpu = cgroup_dir_of(pid, "cpu").expect("the container's cpu cgroup");
    let uid = &pod.config.metadata.as_ref().expect("pod metadata").uid;
    assert!(
        memory.to_string_lossy().contains(uid.as_str()),
        "the container's cgroup is below its pod's: {}",
        memory.display()
    );
    let limit = memory.join("memory.limit_in_bytes");
    assert_eq!(read_trimmed(&limit), (64u64 << 20).to_string());
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "50000");

    let updated = cri::LinuxContainerResources {
        memory_limit_in_bytes: 128 << 20,
        cpu_period: 100_000,
        cpu_quota: 20_000,
        cpu_shares: 256,
        ..Default::default()
    };
    update_resources(&berthd, &id, updated)
        .await
        .expect("UpdateContainerResources");
    assert_eq!(read_trimmed(&limit), (128u64 << 20).to_string());
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "20000");
    assert_eq!(read_trimmed(&cpu.join("cpu.shares")), "256");
    let s = status(&berthd, &id).await;
    let reported = s.resources.and_then(|r| r.linux).unwrap_or_default();
    assert_eq!(reported.memory_limit_in_bytes, 128 << 20, "{reported:?}");
    assert_eq!(reported.cpu_quota, 20_000, "{reported:?}");
    assert_eq!(state(&berthd, &id).await, RUNNING);

    let err = update_resources(&berthd, &"cd".repeat(32), Default::default())
        .await
        .expect_err("unknown container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn reopen_container_log_starts_a_new_file_after_rotation() {
    let berthd = Berthd::start("ctrreopen").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "reopen").await;
    let config = shell("ticker", "while true; do echo tick; sleep 0.2; done");
    let log = pod.log_file(&config);
    let id = run(&berthd, &pod, config).await;
    wait_log_line(&log, "tick", LONG).await;
    // What kubelet's log rotation does: rename, then ask for a new file.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotating the log");
    reopen_log(&berthd, &id).await.expect("ReopenContainerLog");
    let new_lines = poll(LONG, "two ticks in the new log file", async || {
        let lines = read_log(&log).ok()?;
        (all_lines(&lines).iter().filter(|l| *l == "tick").count() >= 2).then_some(lines)
    })
    .await;
    assert!(
        new_lines.iter().all(|l| l.stream == "stdout"),
        "{new_lines:?}"
    );
    let rotated_size = std::fs::metadata(&rotated).expect("rotated log").len();
    // The old file is closed: wait for two more ticks in the new one, the old one stays as it was.
    let seen = new_lines.len();
    poll(LONG, "more ticks in the new log file", async || {
        (read_log(&log).ok()?.len() >= seen + 2).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::metadata(&rotated).expect("rotated log").len(),
        rotated_size,
        "nothing more is written to the rotated file"
    );
    read_log(&rotated).expect("the rotated file is a well-formed CRI log");

    stop(&berthd, &id, 0).await.expect("StopContainer");
    assert!(
        reopen_log(&berthd, &id).await.is_err(),
        "ReopenContainerLog of a stopped container fails"
    );
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}

/// The pod's monitor: exactly one berth-monitor naming the sandbox id or, if none does, the
/// monitor dir the container's verbose info names.
async fn the_monitor(berthd: &Berthd, sandbox_id: &str, container_id: &str) -> i32 {
    let mut monitors = monitor_processes(sandbox_id);
    if monitors.is_empty()
        && let Some(dir) = info(berthd, container_id).await["monitorDir"].as_str()
    {
        monitors = monitor_processes(dir);
    }
    assert_eq!(
        monitors.len(),
        1,
        "one berth-monitor for pod {sandbox_id}; all monitors: {:?}",
        all_monitors()
    );
    monitors[0].0
}

/// The monitor's resident memory once it has settled: it trims itself at most once a second after
/// doing something, so this samples for a few seconds and returns the smallest figure (KiB) seen,
/// stopping early once under `limit`.
async fn settled_rss_kib(pid: i32, limit: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut least = u64::MAX;
    while std::time::Instant::now() < deadline {
        least = least.min(vm_rss_kib(pid).expect("monitor RSS"));
        if least < limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    least
}

#[tokio::test]
async fn the_pod_monitor_stays_small_and_parents_the_containers() {
    let berthd = Berthd::start("ctrmonitor").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "monitor").await;
    // Quiet containers: the figures are for a monitor with nothing to log.
    let quiet = |i: usize| container_config(&format!("c{i}"), &busybox(), &["sleep", "3600"]);
    let first = run(&berthd, &pod, quiet(0)).await;
    let monitor = the_monitor(&berthd, &pod.id, &first).await;
    let container_pid = pid(&berthd, &first).await;
    assert_eq!(
        proc_state(container_pid).map(|(_, ppid)| ppid),
        Some(monitor),
        "the monitor parents the container"
    );
    let one = settled_rss_kib(monitor, 1024).await;
    let mut ids = vec![first];
    for i in 1..5 {
        ids.push(run(&berthd, &pod, quiet(i)).await);
    }
    for id in &ids {
        assert_eq!(
            the_monitor(&berthd, &pod.id, id).await,
            monitor,
            "one monitor per pod"
        );
    }
    let five = settled_rss_kib(monitor, 1536).await;
    eprintln!("berth-monitor {monitor} VmRSS: {one} KiB with 1 container, {five} KiB with 5");
    assert!(
        one < 1024,
        "berth-monitor uses {one} KiB with one container"
    );
    assert!(
        five < 1536,
        "berth-monitor uses {five} KiB with five containers"
    );
    for id in &ids {
        stop_and_remove(&berthd, id).await;
    }
    pod.remove(&berthd).await;
    wait_gone(monitor, LONG).await;
    berthd.finish();
}
