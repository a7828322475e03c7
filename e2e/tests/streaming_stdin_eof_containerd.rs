//! What `streaming_stdin_eof.rs` expects of Berth, checked against the reference: containerd 1.6's
//! CRI plugin, driven by the same Go client on spdystream (what kubectl uses). Ignored by default
//! (it needs a running containerd and no berthd); to rerun it:
//!
//! ```sh
//! hack/registry.sh start && hack/test-images.sh        # the test registry on 127.0.0.1:5000
//! export BERTH_BENCH_DIR=/tmp/berth-stream-ctrd        # a private containerd, stopped afterwards
//! hack/bench/containerd.sh start && eval "$(hack/bench/containerd.sh env)"
//! cargo test -p berth-e2e --test streaming_stdin_eof_containerd -- --ignored --nocapture
//! hack/bench/containerd.sh stop
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure};
use berth_e2e::containers::busybox;
use berth_e2e::streaming::StreamOptions;
use berth_e2e::streaming::cri::{attach_url, exec_url, images, runtime};
use berth_e2e::streaming::go_spdy::{GoSpdyClient, GoSpdyOptions, GoSpdyResult};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

const ALL_STREAMS: StreamOptions = StreamOptions {
    stdin: true,
    stdout: true,
    stderr: true,
    tty: false,
};
const PROMPT: Duration = Duration::from_secs(5);

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
    async fn container(&mut self, name: &str, cmd: &[&str], stdin_once: bool) -> String {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: busybox(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            stdin: true,
            stdin_once,
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

    async fn state(&mut self, id: &str) -> anyhow::Result<(i32, i32)> {
        let status = self
            .rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default();
        Ok((status.state, status.exit_code))
    }
}

async fn go_session(url: &str, options: GoSpdyOptions) -> anyhow::Result<GoSpdyResult> {
    let out = GoSpdyClient::get(Path::new(env!("CARGO_TARGET_TMPDIR")))
        .run(url, &options)
        .await?;
    println!("     {out:?}");
    ensure!(out.exit_code == 0, "the session did not end");
    ensure!(
        out.ended_after < PROMPT,
        "ended only after {:?}",
        out.ended_after
    );
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start); see the file's doc"]
async fn containerd_ends_sessions_at_stdin_eof_as_berth_does() {
    let socket = socket();
    let mut img = images(&socket)
        .await
        .expect("containerd's CRI socket (start it first)");
    img.pull_image(cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: busybox(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("pulling busybox");
    let log_dir = tempfile::tempdir().expect("log dir");
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "stdin-eof-ref".into(),
            uid: format!("stdin-eof-ref-{}", std::process::id()),
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
    let result = tokio::time::timeout(Duration::from_secs(120), checks(&mut r)).await;
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
    let failures = result.expect("the checks took over 2 minutes");
    assert!(
        failures.is_empty(),
        "failed checks:\n{}",
        failures.join("\n")
    );
}

async fn checks(r: &mut Reference) -> Vec<String> {
    let mut failures = Vec::new();
    let mut check = |name: &str, result: anyhow::Result<()>| match result {
        Ok(()) => println!("ok   {name}"),
        Err(e) => {
            println!("FAIL {name}: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    };

    let once = r.container("once", &["sh"], true).await;
    let result = async {
        let url = attach_url(&mut r.rt, &once, ALL_STREAMS).await?;
        let out = go_session(
            &url,
            GoSpdyOptions {
                input: "echo hello\n".into(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(out.stdout == "hello\n" && out.succeeded(), "{out:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (state, code) = r.state(&once).await?;
        ensure!(
            state == cri::ContainerState::ContainerExited as i32 && code == 0,
            "state {state}, exit code {code}"
        );
        Ok(())
    }
    .await;
    check(
        "stdin_once attach: stdin FIN ends sh and the session",
        result,
    );

    let reader = r
        .container(
            "reader",
            &["sh", "-c", "while read l; do echo \"got $l\"; done"],
            false,
        )
        .await;
    let result = async {
        let url = attach_url(&mut r.rt, &reader, ALL_STREAMS).await?;
        let out = go_session(
            &url,
            GoSpdyOptions {
                input: "one\n".into(),
                close_after: Some("got one\n".into()),
                ..Default::default()
            },
        )
        .await?;
        ensure!(out.stdout == "got one\n" && out.succeeded(), "{out:?}");
        let (state, _) = r.state(&reader).await?;
        if state != cri::ContainerState::ContainerRunning as i32 {
            bail!("the container stopped (state {state})");
        }
        Ok(())
    }
    .await;
    check(
        "attach without stdin_once: stdin FIN ends the attachment only",
        result,
    );

    let result = async {
        let url = exec_url(&mut r.rt, &reader, &["cat"], ALL_STREAMS).await?;
        let out = go_session(
            &url,
            GoSpdyOptions {
                input: "data-line\n".into(),
                close_after: Some("data-line\n".into()),
                ..Default::default()
            },
        )
        .await?;
        ensure!(out.stdout == "data-line\n" && out.succeeded(), "{out:?}");
        Ok(())
    }
    .await;
    check("exec cat: stdin FIN ends cat and the session", result);
    failures
}
