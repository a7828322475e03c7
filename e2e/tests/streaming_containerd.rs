//! The streaming client (`berth_e2e::streaming`) against a reference server: containerd 1.6's CRI
//! plugin, which serves Exec/Attach/PortForward with Kubernetes' own streaming code. Ignored by
//! default (it needs a running containerd); to rerun it:
//!
//! ```sh
//! hack/registry.sh start && hack/test-images.sh        # the test registry on 127.0.0.1:5000
//! export BERTH_BENCH_DIR=/tmp/berth-stream-ctrd        # a private containerd, stopped afterwards
//! hack/bench/containerd.sh start && eval "$(hack/bench/containerd.sh env)"
//! cargo test -p berth-e2e --test streaming_containerd -- --ignored --nocapture
//! hack/bench/containerd.sh stop
//! ```
//!
//! `BERTH_BENCH_CONTAINERD_ENDPOINT` (what `containerd.sh env` exports) names the CRI socket. The
//! test removes its pod at the end, so containerd is left as it was.

use std::path::PathBuf;
use std::time::Duration;

use berth_e2e::containers::{busybox, httpd};
use berth_e2e::streaming::cri::{attach_url, exec_url, images, port_forward_url, runtime};
use berth_e2e::streaming::{
    ExecOptions, ExecSession, ExecStatus, SpdyPortForwarder, SpdyVersion, StreamOptions, Transport,
    WsVersion, exec, http_get, port_forward_ws,
};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(20);

fn socket() -> PathBuf {
    let endpoint = std::env::var("BERTH_BENCH_CONTAINERD_ENDPOINT")
        .unwrap_or_else(|_| "unix:///var/tmp/berth-bench/containerd/containerd.sock".to_string());
    PathBuf::from(endpoint.trim_start_matches("unix://"))
}

struct Reference {
    rt: RuntimeServiceClient<Channel>,
    pod: String,
    pod_config: cri::PodSandboxConfig,
}

impl Reference {
    async fn container(
        &mut self,
        name: &str,
        image: &str,
        cmd: &[&str],
        stdin: bool,
        tty: bool,
    ) -> String {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            stdin,
            tty,
            linux: Some(Default::default()),
            ..Default::default()
        };
        let id = self
            .rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: self.pod.clone(),
                config: Some(config),
                sandbox_config: Some(self.pod_config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}"))
            .into_inner()
            .container_id;
        self.rt
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e:?}"));
        id
    }

    async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        transport: Transport,
        options: ExecOptions,
    ) -> anyhow::Result<berth_e2e::streaming::ExecOutput> {
        let url = exec_url(&mut self.rt, id, cmd, options.streams()).await?;
        exec(&url, transport, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start); see the file's doc"]
async fn the_client_speaks_kubernetes_streaming_protocols_with_containerd() {
    let socket = socket();
    let mut img = images(&socket)
        .await
        .expect("containerd's CRI socket (start it first)");
    for image in [busybox(), httpd()] {
        img.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pulling {image}: {e:?}"));
    }
    let log_dir = tempfile::tempdir().expect("log dir");
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "streaming-ref".into(),
            uid: format!("streaming-ref-{}", std::process::id()),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        log_directory: log_dir.path().to_string_lossy().into_owned(),
        linux: Some(Default::default()),
        ..Default::default()
    };
    let mut rt = runtime(&socket).await.expect("runtime client");
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let mut r = Reference {
        rt,
        pod,
        pod_config,
    };
    let result = tokio::time::timeout(Duration::from_secs(300), checks(&mut r)).await;
    // Remove the pod whatever happened.
    let _ =
        r.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: r.pod.clone(),
        })
        .await;
    let _ =
        r.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: r.pod.clone(),
        })
        .await;
    let failures = result.expect("the checks took over 5 minutes");
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
}

/// Runs every check; returns the failures (each is also printed as it happens).
async fn checks(r: &mut Reference) -> Vec<String> {
    let mut failures = Vec::new();
    let mut check = |name: String, result: anyhow::Result<()>| match result {
        Ok(()) => println!("ok   {name}"),
        Err(e) => {
            println!("FAIL {name}: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    };
    let sleeper = r
        .container("sleeper", &busybox(), &["sleep", "3600"], false, false)
        .await;

    for transport in Transport::ALL {
        let name = format!("{transport:?}");
        // containerd 1.6's streaming server predates v5.channel.k8s.io (Kubernetes 1.30).
        if transport == Transport::Ws(WsVersion::V5) {
            let out = r
                .exec(&sleeper, &["true"], transport, ExecOptions::default())
                .await;
            check(
                format!("{name}: refused by containerd 1.6"),
                match out {
                    Err(e) => {
                        println!("     ({e:#})");
                        Ok(())
                    }
                    Ok(o) => Err(anyhow::anyhow!("v5 accepted? {}", o.summary())),
                },
            );
            continue;
        }
        let out = r
            .exec(
                &sleeper,
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                transport,
                ExecOptions::default(),
            )
            .await;
        check(
            format!("{name}: output and non-zero exit"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.stdout_str() == "out\n" && o.stderr_str() == "err\n",
                    "output: {}",
                    o.summary()
                );
                let v4 = transport.protocol().starts_with("v4");
                match &o.status {
                    ExecStatus::Exited(3) if v4 => Ok(()),
                    // Kubernetes' server closes v1's error stream as soon as it has it: no status.
                    ExecStatus::Exited(0)
                        if transport == Transport::Spdy(SpdyVersion::V1)
                            && o.raw_status.is_empty() =>
                    {
                        println!(
                            "     (no status: Kubernetes' v1 handler closes the error stream)"
                        );
                        Ok(())
                    }
                    ExecStatus::Error(text) if !v4 && !text.is_empty() => {
                        println!("     (text status: {text:?})");
                        Ok(())
                    }
                    _ => anyhow::bail!("{}", o.summary()),
                }
            }),
        );
        let out = r
            .exec(
                &sleeper,
                &["echo", "fine"],
                transport,
                ExecOptions::default(),
            )
            .await;
        check(
            format!("{name}: success"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.status == ExecStatus::Exited(0) && o.stdout_str() == "fine\n",
                    "{}",
                    o.summary()
                );
                Ok(())
            }),
        );
        let options = ExecOptions {
            stdin: Some(b"line one\nline two\n".to_vec()),
            ..Default::default()
        };
        let out = r
            .exec(&sleeper, &["head", "-n", "1"], transport, options)
            .await;
        check(
            format!("{name}: stdin"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.stdout_str() == "line one\n" && o.exit_code() == Some(0),
                    "{}",
                    o.summary()
                );
                Ok(())
            }),
        );
        // containerd 1.6 sends no tty output over WebSocket unless stdin is attached too.
        let options = ExecOptions {
            tty: true,
            stdin: matches!(transport, Transport::Ws(_)).then(Vec::new),
            ..Default::default()
        };
        let out = r
            .exec(
                &sleeper,
                &["sh", "-c", "echo in-tty; tty"],
                transport,
                options,
            )
            .await;
        check(
            format!("{name}: tty"),
            out.and_then(|o| {
                let text = o.stdout_str();
                anyhow::ensure!(
                    text.contains("in-tty\r\n") && text.contains("/dev/pts/"),
                    "{}",
                    o.summary()
                );
                Ok(())
            }),
        );
    }

    // stdin closed (FIN) ends `cat`; a megabyte of stdin and of stdout.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let spdy = Transport::Spdy(SpdyVersion::V4);
    let options = ExecOptions {
        stdin: Some(big.clone()),
        ..Default::default()
    };
    let out = r.exec(&sleeper, &["cat"], spdy, options).await;
    check(
        "SPDY v4: 1 MiB through cat, stdin closed".into(),
        out.and_then(|o| {
            anyhow::ensure!(
                o.stdout == big && o.exit_code() == Some(0),
                "{} bytes back, {:?}",
                o.stdout.len(),
                o.status
            );
            Ok(())
        }),
    );
    for transport in [
        spdy,
        Transport::Ws(WsVersion::V4),
        Transport::Ws(WsVersion::V4Base64),
    ] {
        let out = r
            .exec(
                &sleeper,
                &["head", "-c", "3000000", "/dev/zero"],
                transport,
                ExecOptions::default(),
            )
            .await;
        check(
            format!("{transport:?}: 3 MB of stdout"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.stdout.len() == 3_000_000 && o.exit_code() == Some(0),
                    "{} bytes, {:?}",
                    o.stdout.len(),
                    o.status
                );
                Ok(())
            }),
        );
    }

    // Resize: the size is sent before the shell reads its line and runs stty.
    for transport in [
        spdy,
        Transport::Spdy(SpdyVersion::V3),
        Transport::Ws(WsVersion::V4),
    ] {
        let result = async {
            let streams = StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            };
            let url = exec_url(
                &mut r.rt,
                &sleeper,
                &["sh", "-c", "read x; stty size"],
                streams,
            )
            .await?;
            let mut session = ExecSession::open(&url, transport, streams).await?;
            session.resize(123, 45).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            session.send_stdin(b"go\n").await?;
            let out = session.wait(T).await?;
            anyhow::ensure!(
                out.stdout_str().contains("45 123"),
                "{:?}",
                out.stdout_str()
            );
            Ok(())
        }
        .await;
        check(format!("{transport:?}: resize"), result);
    }

    // Attach to a container reading its stdin.
    let reader = r
        .container(
            "reader",
            &busybox(),
            &["sh", "-c", "while read l; do echo \"got $l\"; done"],
            true,
            false,
        )
        .await;
    for transport in [spdy, Transport::Ws(WsVersion::V4)] {
        let result = async {
            let streams = StreamOptions {
                stdin: true,
                ..Default::default()
            };
            let url = attach_url(&mut r.rt, &reader, streams).await?;
            let mut session = ExecSession::open(&url, transport, streams).await?;
            session.send_stdin(b"hello\n").await?;
            session.read_until("got hello\n", T).await?;
            session.send_stdin(b"again\n").await?;
            session.read_until("got again\n", T).await?;
            Ok(())
        }
        .await;
        check(format!("{transport:?}: attach"), result);
    }

    // Port-forward to the HTTP test image, several connections at once.
    r.container("web", &httpd(), &[], false, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = async {
        let url = port_forward_url(&mut r.rt, &r.pod, &[8080]).await?;
        let forwarder = SpdyPortForwarder::connect(&url).await?;
        let mut gets = Vec::new();
        for i in 0..6 {
            let mut conn = forwarder.open(8080).await?;
            gets.push(tokio::spawn(async move {
                let path = if i % 2 == 0 {
                    "/".to_string()
                } else {
                    "/bytes/2000000".to_string()
                };
                http_get(&mut conn, &path, T).await.map(|r| (path, r))
            }));
        }
        for get in gets {
            let (path, (status, body)) = get.await??;
            anyhow::ensure!(status == 200, "GET {path}: {status}");
            if path == "/" {
                anyhow::ensure!(
                    String::from_utf8_lossy(&body).contains("hello from berth httpd"),
                    "{body:?}"
                );
            } else {
                anyhow::ensure!(body.len() == 2_000_000, "GET {path}: {} bytes", body.len());
            }
        }
        Ok(())
    }
    .await;
    check("SPDY port-forward: 6 parallel GETs".into(), result);
    let result = async {
        let url = port_forward_url(&mut r.rt, &r.pod, &[8080]).await?;
        let mut conn = port_forward_ws(&url, 8080).await?;
        let (status, body) = http_get(&mut conn, "/bytes/500000", T).await?;
        anyhow::ensure!(
            status == 200 && body.len() == 500_000,
            "{status}, {} bytes",
            body.len()
        );
        Ok(())
    }
    .await;
    check("WebSocket port-forward".into(), result);
    failures
}
