//! `berth play` against a real berthd: a multi-pod manifest with a ConfigMap, hostPath and
//! emptyDir volumes, an init container, a readiness probe and hostPorts; restarts with back-off
//! by the detached supervisor; `--logs` prefixes; `--down` leaving nothing behind; error messages.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::registry::SHARED;

#[path = "cli_play/helpers.rs"]
mod helpers;

use helpers::{app, free_port, play, pyyaml_dump_all, read_until, spawn_play, wait_file};

#[tokio::test]
// fcntl(F_SETFD) to clear close-on-exec, as an inherited lock would be.
#[allow(unsafe_code)]
async fn play_runs_a_multi_pod_app_and_down_removes_it() {
    let berthd = Berthd::start("play").await.unwrap();
    let out = berthd.dir.join("out");
    let manifest = berthd.dir.join("app.yaml");
    let host_port = free_port();
    std::fs::write(&manifest, app(&out, host_port)).unwrap();
    let manifest = manifest.to_str().unwrap();

    // A descriptor the CLI inherits without close-on-exec, as from `flock FILE berth play -d`:
    // the detached supervisor, which lives until --down, must not keep it.
    let inherited = std::fs::File::create(berthd.dir.join("inherited.lock")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&inherited);
    // SAFETY: fcntl(F_SETFD) on a descriptor this test owns: clears its close-on-exec flag.
    let cleared = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    assert_eq!(cleared, 0);
    let (ok, stdout, stderr) = play(&berthd, &["-d", manifest], None);
    drop(inherited);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("Play app started: 3 pod(s)"), "{stdout}");
    assert!(stderr.contains("Pod web ready"), "{stderr}");
    // Unknown fields are warnings; cluster-only ones (status, selector) pass quietly.
    assert!(
        stderr.contains("berth: warning: document 3 (Pod web): spec.containers[0].startupProbe: not supported by berth play, ignored"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("status") && !stderr.contains("selector"),
        "{stderr}"
    );
    // web was ready before client started, client before edge.
    let (web, client) = (
        stderr.find("Pod web ready").unwrap(),
        stderr.find("Pod client started").unwrap(),
    );
    assert!(web < client, "{stderr}");
    // The client's exec probe passed (its fetches were done) before edge started.
    let (client_ready, edge) = (
        stderr.find("Pod client ready").unwrap(),
        stderr.find("Pod edge started").unwrap(),
    );
    assert!(client_ready < edge, "{stderr}");

    // The client pod reached web by the name in its hosts file and by pod IP, with the init
    // container's work; the host-network pod reached it by hostPort on 127.0.0.1.
    let within = Duration::from_secs(60);
    let web_ip = wait_file(&out.join("web-ip"), within).await;
    assert!(web_ip.trim().starts_with("10.89."), "{web_ip}");
    // (edge, on the node's network, reached web by name too: its hosts file is the node's with
    // the play's pods added.)
    for file in [
        "by-ip.html",
        "by-name.html",
        "by-hostport.html",
        "edge-by-name.html",
    ] {
        let body = wait_file(&out.join(file), within).await;
        assert_eq!(body, "hello from the configmap\n", "{file}");
    }
    assert_eq!(
        wait_file(&out.join("init.txt"), within).await,
        "prepared by init\n"
    );
    assert_eq!(wait_file(&out.join("pod-name"), within).await, "client\n");
    assert_eq!(wait_file(&out.join("user"), within).await, "admin\n");
    assert_eq!(wait_file(&out.join("password"), within).await, "secret");
    // And from the host, as a person would.
    let (status, body) =
        berth_e2e::http_get(([127, 0, 0, 1], host_port).into(), "/index.html").unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from the configmap\n"));

    // The pods and containers carry the play's labels; the configMap is read-only in the pod.
    let mut rt = berthd.runtime().await.unwrap();
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.iter().all(|p| p.labels["berth.io/play"] == "app"));
    let (ok, _, stderr) = berthd
        .cli(&["exec", "httpd", "sh", "-c", "echo x > /www/new"])
        .unwrap();
    assert!(
        !ok && stderr.contains("Read-only file system"),
        "the configMap volume is writable: {stderr}"
    );
    // securityContext: the user, no privilege escalation, no capabilities, a read-only root.
    let (ok, status, stderr) = berthd
        .cli(&[
            "exec",
            "httpd",
            "sh",
            "-c",
            "id -u; id -g; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; touch /x 2>&1; true",
        ])
        .unwrap();
    assert!(ok, "{stderr}");
    assert!(status.starts_with("1000\n1000\n"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("Read-only file system"), "{status}");
    // resources: as kubelet maps them (shares from the request, quota from the limit), in
    // the CRI status and in the container's cgroup.
    let fetch = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: [
                    ("berth.io/play-pod".to_string(), "client".to_string()),
                    ("berth.io/play-container".to_string(), "fetch".to_string()),
                ]
                .into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(fetch.len(), 1, "{fetch:?}");
    let status = berth_e2e::containers::status(&berthd, &fetch[0].id).await;
    let linux = status.resources.and_then(|r| r.linux).unwrap_or_default();
    assert_eq!(
        (
            linux.memory_limit_in_bytes,
            linux.cpu_quota,
            linux.cpu_period,
            linux.cpu_shares
        ),
        (64 << 20, 50_000, 100_000, 256),
        "{linux:?}"
    );
    let pid = berth_e2e::containers::pid(&berthd, &fetch[0].id).await;
    let memory = berth_e2e::containers::cgroup_dir_of(pid, "memory").unwrap();
    let limit = ["memory.limit_in_bytes", "memory.max"]
        .iter()
        .find_map(|f| std::fs::read_to_string(memory.join(f)).ok())
        .unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let (ok, hosts, stderr) = berthd.cli(&["exec", "httpd", "cat", "/etc/hosts"]).unwrap();
    assert!(ok, "{stderr}");
    // web started first; client and edge were added to its hosts file in place as they came
    // (edge is on the host's network: not listed).
    assert!(
        hosts.contains(&format!("{}\tweb\n", web_ip.trim())),
        "{hosts}"
    );
    assert!(
        hosts.contains("\tclient\n") && !hosts.contains("edge"),
        "{hosts}"
    );

    // --logs: all containers, prefixed like compose.
    let deadline = Instant::now() + within;
    let logs = loop {
        let (ok, logs, stderr) = play(&berthd, &["--logs", manifest], None);
        assert!(ok, "{stderr}");
        if logs.contains("edge-done") && logs.contains("fetched") {
            break logs;
        }
        assert!(Instant::now() < deadline, "{logs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let prefixed = |prefix: &str, text: &str| {
        logs.lines().any(|l| {
            l.starts_with(prefix)
                && l.split_once(" | ")
                    .is_some_and(|(p, t)| p.trim_end() == prefix && t == text)
        })
    };
    assert!(prefixed("client/setup", "setup-done"), "{logs}");
    assert!(prefixed("client/fetch", "fetched"), "{logs}");
    assert!(prefixed("edge/get", "edge-done"), "{logs}");

    // Playing it again is refused while it runs.
    let (ok, _, stderr) = play(&berthd, &["-d", manifest], None);
    assert!(!ok && stderr.contains("--down"), "{stderr}");

    let state = berthd.dir.join("play-state/app");
    let supervisor: i32 = std::fs::read_to_string(state.join("supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{supervisor}")).exists());
    let supervisor_fds: Vec<_> = std::fs::read_dir(format!("/proc/{supervisor}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert!(
        !supervisor_fds
            .iter()
            .any(|t| t.file_name().is_some_and(|f| f == "inherited.lock")),
        "the supervisor kept a descriptor the CLI inherited: {supervisor_fds:?}"
    );

    // --down finds everything by its labels, even with the play's state file gone (a crash).
    std::fs::remove_file(state.join("play.json")).unwrap();
    let (ok, stdout, stderr) = play(&berthd, &["--down", manifest], None);
    assert!(ok, "{stdout}\n{stderr}");
    for pod in ["web", "client", "edge"] {
        assert!(stdout.contains(&format!("Removed pod {pod}")), "{stdout}");
    }
    assert!(!state.exists(), "the play's directory is left");
    let logs_left: Vec<_> = std::fs::read_dir(berthd.dir.join("play-logs"))
        .unwrap()
        .collect();
    assert!(logs_left.is_empty(), "pod log dirs left: {logs_left:?}");
    let stat = std::fs::read_to_string(format!("/proc/{supervisor}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the supervisor runs on: {stat}"
    );
    let (ok, out_ps, _) = berthd.cli(&["ps", "-a", "-q"]).unwrap();
    assert!(ok && out_ps.trim().is_empty(), "{out_ps}");
    // Again: nothing left to remove, and that is fine.
    let (ok, stdout, stderr) = play(&berthd, &["--down", manifest], None);
    assert!(
        ok && stdout.contains("No pods of play app"),
        "{stdout}\n{stderr}"
    );
    // hostPath volumes are the user's: kept.
    assert!(out.join("by-ip.html").exists());
    berthd.finish();
}

#[tokio::test]
async fn play_restarts_failed_containers_with_backoff_and_explains_bad_manifests() {
    let berthd = Berthd::start("playrestart").await.unwrap();
    let image = format!("{SHARED}/berth-test/busybox:latest");
    // Written by PyYAML (someone else's YAML emitter: its quoting, block styles and `---`),
    // from objects as the API defines them.
    let manifest = pyyaml_dump_all(&serde_json::json!([
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "once"},
            "spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "ok", "image": image, "command": ["sh", "-c", "echo done-once"]}],
            }}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sick"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "tired",
                    "image": image,
                    "command": ["sh", "-c", "touch /tmp/alive; sleep 1; rm /tmp/alive; exec sleep 3600"],
                    "livenessProbe": {
                        "exec": {"command": ["test", "-f", "/tmp/alive"]},
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                }],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "flaky"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "crash", "image": image, "command": ["sh", "-c", "echo attempt-run; exit 3"]}],
            },
        },
    ]));
    assert!(manifest.contains("\n---\n"), "{manifest}");
    // From stdin, with a project name.
    let (ok, stdout, stderr) = play(
        &berthd,
        &["-d", "--restart-delay", "0.5", "-p", "flaky", "-"],
        Some(&manifest),
    );
    assert!(ok, "{stdout}\n{stderr}");

    // The supervisor restarts `crash` with the next attempt each time, waiting longer each time;
    // `ok` exited 0 under OnFailure and stays as it is.
    let mut rt = berthd.runtime().await.unwrap();
    let list = |rt: &mut berth_cri_api::v1::runtime_service_client::RuntimeServiceClient<_>| {
        let mut rt = rt.clone();
        async move {
            let filter = cri::ContainerFilter {
                label_selector: [("berth.io/play".to_string(), "flaky".to_string())].into(),
                ..Default::default()
            };
            rt.list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .unwrap()
            .into_inner()
            .containers
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let crashes = loop {
        let all = list(&mut rt).await;
        let crashes: Vec<_> = all
            .iter()
            .filter(|c| c.metadata.as_ref().unwrap().name == "crash")
            .cloned()
            .collect();
        if crashes
            .iter()
            .any(|c| c.metadata.as_ref().unwrap().attempt >= 3)
        {
            let oks: Vec<_> = all
                .iter()
                .filter(|c| c.metadata.as_ref().unwrap().name == "ok")
                .collect();
            assert_eq!(oks.len(), 1, "{oks:?}");
            assert_eq!(oks[0].metadata.as_ref().unwrap().attempt, 0);
            break crashes;
        }
        assert!(Instant::now() < deadline, "no restarts: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // `tired` stopped answering its livenessProbe: stopped and started again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let restarted = list(&mut rt).await.iter().any(|c| {
            let m = c.metadata.as_ref().unwrap();
            m.name == "tired" && m.attempt >= 1
        });
        if restarted {
            break;
        }
        assert!(Instant::now() < deadline, "tired was not restarted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Only the previous attempt is kept beside the current one.
    assert!(crashes.len() <= 2, "{crashes:?}");
    let mut attempts: Vec<u32> = crashes
        .iter()
        .map(|c| c.metadata.as_ref().unwrap().attempt)
        .collect();
    attempts.sort();
    if let [previous, current] = attempts[..] {
        assert_eq!(previous + 1, current);
        let by_attempt = |a: u32| {
            crashes
                .iter()
                .find(|c| c.metadata.as_ref().unwrap().attempt == a)
                .unwrap()
                .id
                .clone()
        };
        let status = |id: String| {
            let mut rt = rt.clone();
            async move {
                rt.container_status(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status
                .unwrap()
            }
        };
        let before = status(by_attempt(previous)).await;
        let after = status(by_attempt(current)).await;
        // The back-off after attempt n (n >= 1) is 0.5 s * 2^(n-1).
        let backoff = 0.5 * f64::from(1u32 << (previous - 1).min(10));
        let gap = (after.created_at - before.finished_at) as f64 / 1e9;
        assert!(
            gap >= backoff * 0.9,
            "attempt {current} came {gap} s after {previous} (back-off {backoff} s)"
        );
        assert_eq!(before.exit_code, 3);
    }

    let (ok, logs, stderr) = play(&berthd, &["--logs", "-p", "flaky", "-"], None);
    assert!(ok, "{stderr}");
    assert!(
        logs.lines().any(|l| l == "flaky/crash | attempt-run"),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l == "once/ok     | done-once"),
        "{logs}"
    );

    let (ok, stdout, stderr) = play(&berthd, &["--down", "-p", "flaky", "-"], None);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(list(&mut rt).await.is_empty());

    // In the foreground: the output, prefixed, until Ctrl-C, which removes the play; meanwhile
    // `--logs -f` follows it from another shell.
    let looping = format!(
        "kind: Pod\nmetadata: {{name: fg}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: loop, image: \"{image}\", command: [sh, -c, \"while true; do echo tick; sleep 0.2; done\"]}}\n"
    );
    let mut foreground = spawn_play(&berthd, &["-p", "fg", "-"], Some(&looping));
    let shown = read_until(&mut foreground, "fg/loop | tick");
    assert!(shown.is_some(), "no output in the foreground");
    let mut follower = spawn_play(&berthd, &["--logs", "-f", "-p", "fg", "-"], None);
    assert!(read_until(&mut follower, "fg/loop | tick").is_some());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(foreground.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = berth_e2e::wait_timeout(&mut foreground.0, Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C");
    // --logs -f ends by itself once the play is gone.
    let status = berth_e2e::wait_timeout(&mut follower.0, Duration::from_secs(30)).unwrap();
    assert!(status.success());
    let (ok, pods, _) = berthd.cli(&["pods", "-q"]).unwrap();
    assert!(ok && pods.trim().is_empty(), "Ctrl-C left pods: {pods}");

    // A bad manifest: the document and the field at fault, and nothing made.
    let bad = format!(
        "kind: ConfigMap\nmetadata: {{name: c}}\n---\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: httpd\n    image: {image}\n    ports: [{{containerPort: http}}]\n"
    );
    let (ok, _, stderr) = play(&berthd, &["-p", "bad", "-"], Some(&bad));
    assert!(!ok);
    assert!(
        stderr.contains(
            "document 2 (Pod web): spec.containers[0].ports[0].containerPort: invalid type: string \"http\""
        ),
        "{stderr}"
    );
    let unknown = format!(
        "kind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: httpd\n    image: {image}\n    volumeMounts: [{{name: nope, mountPath: /x}}]\n"
    );
    let (ok, _, stderr) = play(&berthd, &["-p", "bad", "-"], Some(&unknown));
    assert!(
        !ok && stderr.contains(
            "document 1 (Pod web): spec.containers[0].volumeMounts[0].name: the pod has no volume \"nope\""
        ),
        "{stderr}"
    );
    let (ok, pods, _) = berthd.cli(&["pods", "-q"]).unwrap();
    assert!(ok && pods.trim().is_empty(), "{pods}");
    berthd.finish();
}

/// The README's worked example, as it is there but for the image and the hostPort: a web server
/// and a client that fetches from it by pod IP, by name and by hostPort, in the foreground
/// until Ctrl-C.
#[tokio::test]
async fn play_readme_example_in_the_foreground() {
    let berthd = Berthd::start("playreadme").await.unwrap();
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli_play/readme-example.yaml"),
    )
    .unwrap();
    let host_port = free_port().to_string();
    let manifest = readme
        .replace(
            "image: busybox",
            &format!("image: {SHARED}/berth-test/busybox:latest"),
        )
        .replace("8080", &host_port);
    let mut fg = spawn_play(&berthd, &["-p", "app", "-"], Some(&manifest));
    for _ in 0..3 {
        assert!(
            read_until(&mut fg, "client/fetch | hello from berth play").is_some(),
            "the client's three fetches"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fg.0.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = berth_e2e::wait_timeout(&mut fg.0, Duration::from_secs(30)).unwrap();
    assert_eq!(status.code(), Some(130));
    let (ok, pods, _) = berthd.cli(&["pods", "-q"]).unwrap();
    assert!(ok && pods.trim().is_empty(), "{pods}");
    berthd.finish();
}
