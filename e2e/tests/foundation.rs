//! The foundation: Version, Status, RuntimeConfig, UpdateRuntimeConfig, UNIMPLEMENTED for the rest,
//! metrics, the socket's lifecycle and configuration errors — against a real berthd.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::{Berthd, Options};
use tonic::Code;

fn condition<'a>(status: &'a cri::StatusResponse, kind: &str) -> &'a cri::RuntimeCondition {
    status
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status:?}"))
}

async fn status(berthd: &Berthd, verbose: bool) -> cri::StatusResponse {
    berthd
        .runtime()
        .await
        .unwrap()
        .status(cri::StatusRequest { verbose })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn version_names_berth_and_api_v1() {
    let berthd = Berthd::start("version").await.unwrap();
    let v = berthd
        .runtime()
        .await
        .unwrap()
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.version, "0.1.0");
    berthd.finish();
}

#[tokio::test]
async fn status_reports_ready_conditions_handlers_and_config() {
    let berthd = Berthd::start("status").await.unwrap();
    let s = status(&berthd, true).await;
    let runtime = condition(&s, "RuntimeReady");
    assert!(runtime.status, "{runtime:?}");
    assert!(runtime.message.contains("runc"), "{runtime:?}");
    let network = condition(&s, "NetworkReady");
    assert!(network.status, "{network:?}");
    let names: Vec<&str> = s.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["", "runc"]);
    let config: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(config["root"], berthd.root.to_string_lossy().as_ref());
    assert_eq!(config["cgroup"]["driver"], "cgroupfs");
    let sources: Vec<String> = serde_json::from_str(&s.info["configSources"]).unwrap();
    assert_eq!(sources, [berthd.config_file.to_string_lossy()]);
    // Without verbose, no info.
    assert!(status(&berthd, false).await.info.is_empty());
    berthd.finish();
}

#[tokio::test]
async fn network_ready_follows_the_cni_config_dir_without_restart() {
    let options = Options {
        cni: false,
        ..Options::default()
    };
    let berthd = Berthd::start_with("netready", options).await.unwrap();
    let network = condition(&status(&berthd, false).await, "NetworkReady").clone();
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(
        network
            .message
            .contains("no usable CNI network configuration"),
        "{network:?}"
    );

    // A config naming a plugin that doesn't exist is not good enough.
    std::fs::write(
        berthd.cni_conf_dir.join("05-bad.conflist"),
        r#"{"cniVersion":"1.0.0","name":"bad","plugins":[{"type":"no-such-plugin"}]}"#,
    )
    .unwrap();
    let network = condition(&status(&berthd, false).await, "NetworkReady").clone();
    assert!(!network.status);
    assert!(network.message.contains("no-such-plugin"), "{network:?}");

    berthd.write_cni_config().unwrap();
    let s = status(&berthd, true).await;
    assert!(condition(&s, "NetworkReady").status);
    assert!(
        s.info["cniConfig"].ends_with("10-berth-e2e.conflist"),
        "{:?}",
        s.info
    );
    berthd.finish();
}

#[tokio::test]
async fn runtime_not_ready_when_the_default_handler_binary_is_missing() {
    let options = Options {
        dropin: "[runtime]\ndefault_handler = \"ghost\"\n[runtime.handlers.ghost]\npath = \"/nonexistent/ghost-runtime\"\n"
            .into(),
        ..Options::default()
    };
    let berthd = Berthd::start_with("notready", options).await.unwrap();
    let s = status(&berthd, false).await;
    let runtime = condition(&s, "RuntimeReady");
    assert!(!runtime.status);
    assert_eq!(runtime.reason, "RuntimeHandlerMissing");
    assert!(
        runtime.message.contains("/nonexistent/ghost-runtime"),
        "{runtime:?}"
    );
    berthd.finish();
}

async fn cgroup_driver(berthd: &Berthd) -> i32 {
    let r = berthd
        .runtime()
        .await
        .unwrap()
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    r.linux.expect("linux runtime config").cgroup_driver
}

#[tokio::test]
async fn runtime_config_reports_the_configured_cgroup_driver() {
    let berthd = Berthd::start("cgdefault").await.unwrap();
    assert_eq!(
        cgroup_driver(&berthd).await,
        cri::CgroupDriver::Cgroupfs as i32
    );
    berthd.finish();

    let options = Options {
        dropin: "[cgroup]\ndriver = \"systemd\"\n".into(),
        ..Options::default()
    };
    let berthd = Berthd::start_with("cgsystemd", options).await.unwrap();
    assert_eq!(
        cgroup_driver(&berthd).await,
        cri::CgroupDriver::Systemd as i32
    );
    berthd.finish();
}

fn update_request(cidr: &str) -> cri::UpdateRuntimeConfigRequest {
    cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.to_string(),
            }),
        }),
    }
}

#[tokio::test]
async fn update_runtime_config_validates_stores_and_keeps_the_pod_cidr() {
    let mut berthd = Berthd::start("podcidr").await.unwrap();
    let mut client = berthd.runtime().await.unwrap();
    let err = client
        .update_runtime_config(update_request("10.0.0.0/99"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(status(&berthd, true).await.info["podCIDR"].is_empty());

    client
        .update_runtime_config(update_request("10.244.3.0/24,fd00:10:244:3::/64"))
        .await
        .unwrap();
    // Empty means "no change".
    client
        .update_runtime_config(update_request(""))
        .await
        .unwrap();
    assert_eq!(
        status(&berthd, true).await.info["podCIDR"],
        "10.244.3.0/24,fd00:10:244:3::/64"
    );

    // kubelet does not resend it after a runtime restart: it must survive one.
    assert!(berthd.stop().unwrap().success());
    berthd.launch().await.unwrap();
    assert_eq!(
        status(&berthd, true).await.info["podCIDR"],
        "10.244.3.0/24,fd00:10:244:3::/64"
    );
    berthd.finish();
}

/// Every cri-api v0.36 RPC is implemented now (the grpcio peer calls all 41); a refused call is
/// still instrumented like any other: counted by method and code, and timed.
#[tokio::test]
async fn refused_calls_are_counted_by_method_and_code() {
    let berthd = Berthd::start("refused").await.unwrap();
    let mut rt = berthd.runtime().await.unwrap();
    let err = rt
        .checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .expect_err("CheckpointContainer without a container id");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("container_id"), "{err:?}");
    let metrics = berthd.metrics().unwrap();
    for series in [
        "berth_cri_operations_total{code=\"InvalidArgument\",method=\"CheckpointContainer\"} 1",
        "berth_cri_operation_duration_seconds_count{method=\"CheckpointContainer\"} 1",
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
    berthd.finish();
}

#[tokio::test]
async fn metrics_endpoint_exports_build_info_rpc_and_process_series() {
    let berthd = Berthd::start("metrics").await.unwrap();
    let mut client = berthd.runtime().await.unwrap();
    for _ in 0..3 {
        client.status(cri::StatusRequest::default()).await.unwrap();
    }
    let _ = client
        .update_runtime_config(update_request("garbage"))
        .await;
    let text = berthd.metrics().unwrap();
    assert!(text.contains(&format!(
        "berth_build_info{{api_version=\"v1\",version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("berth_cri_operations_total{code=\"OK\",method=\"Status\"} 3"));
    assert!(text.contains(
        "berth_cri_operations_total{code=\"InvalidArgument\",method=\"UpdateRuntimeConfig\"} 1"
    ));
    assert!(
        text.contains(
            "berth_cri_operation_duration_seconds_bucket{method=\"Status\",le=\"0.001\"}"
        )
    );
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(value("process_open_fds") >= 5.0);
    assert!(value("process_threads") >= 2.0);
    let (code, _) = berth_e2e::http_get(berthd.metrics_address, "/nope").unwrap();
    assert_eq!(code, 404);
    berthd.finish();
}

#[tokio::test]
async fn sixteen_mib_messages_are_accepted() {
    let berthd = Berthd::start("bigmsg").await.unwrap();
    // ~15 MiB: above tonic's 4 MiB default, within kubelet's 16 MiB. It must reach the handler (and be
    // refused as a bad CIDR), not be cut off by the transport.
    let huge = "x".repeat(15 * 1024 * 1024);
    let err = berthd
        .runtime()
        .await
        .unwrap()
        .update_runtime_config(update_request(&huge))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "{}",
        &err.message()[..200.min(err.message().len())]
    );
    berthd.finish();
}

#[tokio::test]
async fn socket_is_0660_and_a_second_daemon_is_refused() {
    let berthd = Berthd::start("single").await.unwrap();
    let mode = std::fs::metadata(&berthd.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let mut second = berthd.spawn(&["--metrics-address", "127.0.0.1:0"]).unwrap();
    let exit = wait_exit(&mut second);
    assert!(!exit.success());
    let log = berthd.log();
    assert!(log.contains("already serving"), "{log}");
    assert!(log.contains(&berthd.pid().unwrap().to_string()), "{log}");
    // The first one is unharmed.
    status(&berthd, false).await;
    berthd.finish();
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    berth_e2e::wait_timeout(child, Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn stale_socket_from_a_killed_daemon_is_replaced() {
    let mut berthd = Berthd::start("stale").await.unwrap();
    berthd.kill().unwrap();
    assert!(berthd.socket.exists(), "SIGKILL leaves the socket behind");
    berthd.launch().await.unwrap();
    status(&berthd, false).await;
    berthd.finish();
}

#[tokio::test]
async fn sigterm_lets_in_flight_calls_finish_and_exits_zero() {
    let mut berthd = Berthd::start("sigterm").await.unwrap();
    let client = berthd.runtime().await.unwrap();
    // Keep calls in flight while the signal arrives: every call either completes or is refused
    // cleanly as unavailable; none hangs.
    let mut callers = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        callers.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..200 {
                match client.status(cri::StatusRequest { verbose: true }).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        assert!(
                            matches!(
                                e.code(),
                                Code::Unavailable | Code::Unknown | Code::Cancelled
                            ),
                            "{e:?}"
                        );
                        break;
                    }
                }
            }
            ok
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let exit = berthd.stop().unwrap();
    assert!(exit.success(), "exit {exit}:\n{}", berthd.log());
    let mut total = 0;
    for caller in callers {
        total += tokio::time::timeout(Duration::from_secs(10), caller)
            .await
            .expect("a call hung after SIGTERM")
            .unwrap();
    }
    assert!(total > 0);
    assert!(!berthd.socket.exists(), "socket removed on clean exit");
    assert!(berthd.log().contains("berthd stopped"));
    berthd.finish();
}

#[tokio::test]
async fn configuration_errors_stop_startup_and_name_file_and_key() {
    let cases = [
        (
            "[grpc]\nmax_recv_message_sise = 1\n",
            "grpc.max_recv_message_sise",
        ),
        ("[metrics]\nenabled = \"yes\"\n", "metrics.enabled"),
        ("[log\n", "invalid TOML"),
        (
            "[runtime]\ndefault_handler = \"kata\"\n",
            "runtime.default_handler",
        ),
    ];
    for (dropin, expect) in cases {
        let options = Options {
            dropin: dropin.to_string(),
            ..Options::default()
        };
        let berthd = Berthd::prepare("badconfig", &options).unwrap();
        let mut child = berthd.spawn(&[]).unwrap();
        let exit = wait_exit(&mut child);
        assert!(!exit.success(), "{dropin}");
        let log = berthd.log();
        assert!(log.contains(expect), "{dropin}: {log}");
        if expect != "runtime.default_handler" {
            assert!(log.contains("50-test.toml"), "{dropin}: {log}");
        }
        assert!(
            !berthd.socket.exists(),
            "{dropin}: no socket when misconfigured"
        );
        assert!(
            !berthd.root.exists(),
            "{dropin}: nothing created when misconfigured"
        );
        berthd.finish();
    }
}

#[tokio::test]
async fn json_logs_carry_one_span_per_rpc_with_method() {
    let options = Options {
        dropin: "[log]\nformat = \"json\"\n".into(),
        ..Options::default()
    };
    let berthd = Berthd::start_with("jsonlog", options).await.unwrap();
    let _ = berthd
        .runtime()
        .await
        .unwrap()
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: "abc123".into(),
        })
        .await;
    let log = berthd.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["span"]["method"] == "StopPodSandbox")
        .unwrap_or_else(|| panic!("no JSON line with the RPC span:\n{log}"));
    assert_eq!(line["span"]["sandbox_id"], "abc123");
    assert_eq!(line["code"], "NotFound");
    berthd.finish();
}

#[test]
fn config_default_and_version_commands() {
    let bin = berth_e2e::berthd_binary().unwrap();
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = std::process::Command::new(&bin)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed: toml::Table = text.parse().unwrap();
    assert_eq!(
        parsed["listen"].as_str(),
        Some("unix:///run/berth/berth.sock")
    );
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 10,
        "documented"
    );
}

#[test]
fn helm_chart_config_dropin_is_valid_berth_config() {
    let chart_config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/berth/files/config.toml"
    );
    let out = std::process::Command::new(berth_e2e::berthd_binary().unwrap())
        .args(["--config", chart_config, "config", "show"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("driver = \"systemd\""), "{shown}");
}
