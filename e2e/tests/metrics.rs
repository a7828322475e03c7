//! `/metrics` after a scripted CRI workload, parsed by the Prometheus client's own parser (not
//! berthd's code): exact counts for what the workload did, gauges back to zero once everything is
//! removed, no ids in label values; and the Grafana dashboard the Helm chart ships reads only
//! families berthd exports.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::prometheus::{Scrape, promql_metric_names, scrape};
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);
const CONTAINER_STATES: [&str; 4] = ["created", "running", "exited", "unknown"];
const SANDBOX_STATES: [&str; 2] = ["ready", "notready"];
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/berth");

/// What the workload did and saw.
struct Workload {
    /// After both containers exited, before anything was removed.
    middle: Scrape,
    /// After everything was removed.
    end: Scrape,
    /// The sandbox and container ids and the pod uid: none may appear in a label value.
    ids: Vec<String>,
    /// Bytes of the two containers' CRI log files.
    log_bytes: u64,
}

/// Pulls busybox, runs a pod with a container that exits 0 and one that exits 3, makes one call
/// that fails (ContainerStatus of an unknown id), then stops and removes everything, scraping
/// `/metrics` once the containers exited and once everything is gone.
async fn scripted_workload(berthd: &Berthd) -> Workload {
    pull(berthd, &busybox()).await;
    let pod = Pod::run(berthd, "metrics").await;
    let ok_config = shell("ok", "echo hello; exit 0");
    let bad_config = shell("bad", "echo hello; exit 3");
    let logs = [pod.log_file(&ok_config), pod.log_file(&bad_config)];
    let ok = run(berthd, &pod, ok_config).await;
    let bad = run(berthd, &pod, bad_config).await;
    for (id, code, reason) in [(&ok, 0, "Completed"), (&bad, 3, "Error")] {
        let s = wait_exited(berthd, id, LONG).await;
        assert_eq!((s.exit_code, s.reason.as_str()), (code, reason), "{s:?}");
    }
    // Both lines are in the logs once ContainerStatus says EXITED.
    let mut log_bytes = 0;
    for log in &logs {
        let lines = read_log(log).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(stream_lines(&lines, "stdout"), ["hello"], "{lines:?}");
        log_bytes += std::fs::metadata(log).expect("log file").len();
    }
    let err = status_response(berthd, "0123456789abcdef-no-such-container", false)
        .await
        .expect_err("ContainerStatus of an unknown id");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // The pod's monitor, found as containers_host.rs finds it: by sandbox id or monitor dir.
    let mut monitors = monitor_processes(&pod.id);
    if monitors.is_empty()
        && let Some(dir) = info(berthd, &ok).await["monitorDir"].as_str()
    {
        monitors = monitor_processes(dir);
    }
    assert_eq!(monitors.len(), 1, "one berth-monitor: {:?}", all_monitors());
    // Gauges may follow the exits a moment later than ContainerStatus does.
    let middle = settled(berthd, "both containers exited", |s| {
        s.value("berth_containers", &[("state", "exited")]) == Some(2.0)
    })
    .await;

    for id in [&ok, &bad] {
        stop_and_remove(berthd, id).await;
    }
    pod.remove(berthd).await;
    let end = settled(berthd, "no container, sandbox or monitor left", |s| {
        s.sum("berth_containers", &[]) == 0.0
            && s.sum("berth_sandboxes", &[]) == 0.0
            && s.value("berth_monitor_processes", &[]) == Some(0.0)
    })
    .await;
    let uid = pod
        .config
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    Workload {
        middle,
        end,
        ids: vec![pod.id.clone(), ok, bad, uid],
        log_bytes,
    }
}

/// Scrapes until `ready` holds (5 s at most), then returns that scrape; the last one if it never
/// does, for the assertions to say what is wrong.
async fn settled(berthd: &Berthd, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = scrape(berthd).expect("scraping /metrics");
        if ready(&s) {
            return s;
        }
        if std::time::Instant::now() > deadline {
            eprintln!("metrics never showed: {what}");
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ops(s: &Scrape, method: &str, code: &str) -> f64 {
    s.value(
        "berth_cri_operations_total",
        &[("method", method), ("code", code)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_after_a_scripted_workload_parse_and_count() {
    let berthd = Berthd::start("metrics-workload")
        .await
        .expect("starting berthd");
    let w = scripted_workload(&berthd).await;
    let s = &w.end;

    // CRI operations, exactly as many as the workload made, and one histogram sample per call.
    for (method, calls) in [
        ("PullImage", 1.0),
        ("RunPodSandbox", 1.0),
        ("CreateContainer", 2.0),
        ("StartContainer", 2.0),
        ("StopContainer", 2.0),
        ("RemoveContainer", 2.0),
        ("StopPodSandbox", 1.0),
        ("RemovePodSandbox", 1.0),
    ] {
        assert_eq!(ops(s, method, "OK"), calls, "{method} OK");
        assert_eq!(
            s.expect(
                "berth_cri_operation_duration_seconds_count",
                &[("method", method)]
            ),
            calls,
            "{method} histogram count"
        );
    }
    assert_eq!(ops(s, "ContainerStatus", "NotFound"), 1.0);
    let errors: f64 = s
        .samples()
        .filter(|x| x.name == "berth_cri_operations_total" && x.labels["code"] != "OK")
        .map(|x| x.value)
        .sum();
    assert_eq!(errors, 1.0, "the NotFound is the only failed call");
    let methods: BTreeSet<&str> = s
        .samples()
        .filter(|x| x.name == "berth_cri_operations_total")
        .map(|x| x.labels["method"].as_str())
        .collect();
    for method in methods {
        assert_eq!(
            s.expect(
                "berth_cri_operation_duration_seconds_count",
                &[("method", method)]
            ),
            s.sum("berth_cri_operations_total", &[("method", method)]),
            "{method}: one observation per call, whatever its code"
        );
    }

    // Images: one pull of layers fetched from the registry.
    assert!(s.expect("berth_image_pulls_total", &[("result", "success")]) >= 1.0);
    assert_eq!(
        s.sum("berth_image_pulls_total", &[("result", "failure")]),
        0.0
    );
    assert!(s.expect("berth_image_pull_bytes_total", &[]) > 0.0);
    assert!(s.expect("berth_image_layers_fetched_total", &[]) >= 1.0);
    assert_eq!(s.expect("berth_image_pulls_in_progress", &[]), 0.0);
    assert_eq!(
        s.expect("berth_image_pull_duration_seconds_count", &[]),
        s.sum("berth_image_pulls_total", &[])
    );

    // CNI: one ADD at RunPodSandbox, one DEL at StopPodSandbox (RemovePodSandbox has none left).
    for op in ["ADD", "DEL"] {
        assert_eq!(
            s.value(
                "berth_cni_operations_total",
                &[("op", op), ("result", "success")]
            ),
            Some(1.0),
            "CNI {op}"
        );
        assert_eq!(
            s.value("berth_cni_operation_duration_seconds_count", &[("op", op)]),
            Some(1.0),
            "CNI {op} histogram count"
        );
    }
    assert_eq!(
        s.sum("berth_cni_operations_total", &[("result", "failure")]),
        0.0
    );

    // While the exited containers were still there.
    let m = &w.middle;
    for state in CONTAINER_STATES {
        let expected = if state == "exited" { 2.0 } else { 0.0 };
        assert_eq!(
            m.expect("berth_containers", &[("state", state)]),
            expected,
            "{state}"
        );
    }
    assert_eq!(m.expect("berth_sandboxes", &[("state", "ready")]), 1.0);
    assert_eq!(m.expect("berth_sandboxes", &[("state", "notready")]), 0.0);
    assert_eq!(m.expect("berth_monitor_processes", &[]), 1.0);

    // Containers: two starts, one exit of each reason, no OOM kill, the logs counted.
    assert_eq!(s.expect("berth_container_starts_total", &[]), 2.0);
    assert_eq!(
        s.expect("berth_container_exits_total", &[("reason", "Completed")]),
        1.0
    );
    assert_eq!(
        s.expect("berth_container_exits_total", &[("reason", "Error")]),
        1.0
    );
    assert_eq!(s.sum("berth_container_exits_total", &[]), 2.0);
    assert_eq!(s.expect("berth_container_oom_kills_total", &[]), 0.0);
    let log_bytes = s.expect("berth_container_log_bytes_total", &[]);
    assert!(
        log_bytes >= w.log_bytes as f64,
        "berth_container_log_bytes_total {log_bytes} < {} bytes in the CRI logs",
        w.log_bytes
    );
    // Container events: each container was created, started, stopped (it exited) and deleted.
    for kind in ["created", "started", "stopped", "deleted"] {
        assert_eq!(
            s.expect("berth_container_events_total", &[("type", kind)]),
            2.0,
            "{kind} events"
        );
    }
    assert_eq!(s.expect("berth_container_events_dropped_total", &[]), 0.0);
    assert_eq!(s.expect("berth_container_event_subscribers", &[]), 0.0);

    // Everything removed: every state present, at zero.
    for state in CONTAINER_STATES {
        assert_eq!(
            s.expect("berth_containers", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    for state in SANDBOX_STATES {
        assert_eq!(
            s.expect("berth_sandboxes", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    assert_eq!(s.expect("berth_monitor_processes", &[]), 0.0);

    assert_eq!(
        s.expect(
            "berth_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("api_version", "v1")
            ]
        ),
        1.0
    );
    assert!(s.expect("process_resident_memory_bytes", &[]) > 1e6);

    // Low cardinality: no id of the workload in any label value of a berth_* series.
    for scrape in [&w.middle, &w.end] {
        for sample in scrape.samples().filter(|x| x.name.starts_with("berth_")) {
            for (label, value) in &sample.labels {
                for id in &w.ids {
                    assert!(
                        !value.contains(id.as_str()) && !value.contains(&id[..12.min(id.len())]),
                        "{}{{{label}={value:?}}} carries the id {id}",
                        sample.name
                    );
                }
            }
        }
    }
    berthd.finish();
}

/// Every `expr` of every panel target in the chart's dashboard.
fn dashboard_exprs() -> Vec<(String, String)> {
    let path = format!("{CHART}/dashboards/berth.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    assert!(
        dashboard["schemaVersion"].as_u64() >= Some(36),
        "schemaVersion"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("instance")["type"], "query");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no target");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.is_empty(), "a target of {title:?} has no expr");
            assert!(
                expr.contains("$instance"),
                "{title:?}: {expr} ignores $instance"
            );
            exprs.push((title.clone(), expr.to_string()));
        }
    }
    exprs
}

#[tokio::test]
async fn dashboard_queries_use_only_exported_metrics() {
    let exprs = dashboard_exprs();
    let template = std::fs::read_to_string(format!("{CHART}/templates/dashboard-configmap.yaml"))
        .expect("the dashboard ConfigMap template");
    assert!(template.contains(".Files.Get \"dashboards/berth.json\""));

    let berthd = Berthd::start("metrics-dashboard")
        .await
        .expect("starting berthd");
    let w = scripted_workload(&berthd).await;
    let mut missing = Vec::new();
    let mut read = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = promql_metric_names(expr).unwrap_or_else(|e| panic!("{title:?}: {e:#}"));
        assert!(!names.is_empty(), "{title:?} reads no metric: {expr}");
        for name in names {
            match w.end.family_of_metric(&name) {
                Some(family) => {
                    read.insert(family.name.clone());
                }
                None => missing.push(format!("{name} (panel {title:?})")),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard reads metrics berthd does not export:\n{}",
        missing.join("\n")
    );
    // And it shows every berth_* family berthd exports.
    let unread: Vec<_> = w
        .end
        .families
        .iter()
        .filter(|f| f.name.starts_with("berth_") && !read.contains(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    assert!(unread.is_empty(), "families no panel shows: {unread:?}");
    berthd.finish();
}
