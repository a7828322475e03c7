//! berth's housekeeping verbs against a real berthd: `rm --all`, `rmp --all`, `rmi --prune`,
//! `system prune` and `system df`, `events` with filters, `statsp` and `metricsp`. Outputs are
//! compared as parsed JSON, and against what berthd answers over CRI.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_e2e::containers::{self, Pod, busybox, config_image, httpd, pull, shell};
use berth_e2e::{Berthd, Options, pods, prometheus};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn ids(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The row of `system df -o json` for `kind`.
fn df_row(doc: &Value, kind: &str) -> Value {
    doc["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {doc}"))
        .clone()
}

fn image_id(berthd: &Berthd, reference: &str) -> (String, u64) {
    let (ok, out, err) = berthd.cli(&["images", "-o", "json"]).unwrap();
    assert!(ok, "{err}");
    let doc = json(&out);
    let image = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["repoTags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == reference)
        })
        .unwrap_or_else(|| panic!("no {reference} in {doc}"))
        .clone();
    (
        image["id"].as_str().unwrap().to_string(),
        image["size"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn cli_prunes_removes_all_and_reports_disk_usage() {
    let options = Options {
        dropin: format!("[image]\npinned = [{:?}]\n", httpd()),
        ..Options::default()
    };
    let berthd = Berthd::start_with("clihouse", options).await.unwrap();
    let cli = |args: &[&str]| berthd.cli(args).unwrap();
    for image in [busybox(), config_image(), httpd()] {
        pull(&berthd, &image).await;
    }
    let (config_id, config_size) = image_id(&berthd, &config_image());
    let (busybox_id, _) = image_id(&berthd, &busybox());
    let (httpd_id, _) = image_id(&berthd, &httpd());

    // Pod "keep": one running container, one exited. Pod "gone": stopped, with an exited one.
    let keep = Pod::run(&berthd, "keep").await;
    let running = containers::run(&berthd, &keep, shell("run", "sleep 300")).await;
    let (exited, _, _) = containers::run_to_exit(&berthd, &keep, shell("x", "echo x")).await;
    let gone = Pod::run(&berthd, "gone").await;
    let (in_gone, _, _) = containers::run_to_exit(&berthd, &gone, shell("y", "true")).await;
    pods::stop_pod(&berthd, &gone.id).await.unwrap();

    // A named volume no container uses, with 5 bytes in it.
    let mut volumes =
        berth_api::volumes::v1::volumes_client::VolumesClient::new(berthd.channel().await.unwrap());
    let volume = volumes
        .create(berth_api::volumes::v1::CreateVolumeRequest {
            name: "dfvol".into(),
            labels: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    std::fs::write(std::path::Path::new(&volume.mountpoint).join("f"), "12345").unwrap();

    // df: 3 images, busybox in use; 3 containers, 1 running; the volume.
    let (ok, out, err) = cli(&["system", "df", "-o", "json"]);
    assert!(ok, "{err}");
    let doc = json(&out);
    let images = df_row(&doc, "Images");
    assert_eq!(
        (images["total"].as_u64(), images["active"].as_u64()),
        (Some(3), Some(1)),
        "{doc}"
    );
    let size = images["size"].as_u64().unwrap();
    assert!(size > 0, "{doc}");
    // The pinned image is never reclaimable: only the config image is.
    assert_eq!(
        images["reclaimable"].as_u64(),
        Some(config_size.min(size)),
        "{doc}"
    );
    let vols = df_row(&doc, "Local Volumes");
    assert_eq!(
        [
            &vols["total"],
            &vols["active"],
            &vols["size"],
            &vols["reclaimable"]
        ],
        [1, 0, 5, 5],
        "{doc}"
    );
    let ctrs = df_row(&doc, "Containers");
    assert_eq!(
        (ctrs["total"].as_u64(), ctrs["active"].as_u64()),
        (Some(3), Some(1)),
        "{doc}"
    );
    let (ok, out, _) = cli(&["system", "df"]);
    let table: Vec<&str> = out.lines().collect();
    assert!(
        ok && table[0].split_whitespace().collect::<Vec<_>>()
            == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{out}"
    );
    assert!(
        table[1].starts_with("Images") && table[1].contains('%'),
        "{out}"
    );
    assert!(table[2].starts_with("Containers"), "{out}");
    assert!(table[3].starts_with("Local Volumes"), "{out}");
    let (ok, out, _) = cli(&["system", "df", "--format", "{{.Type}}={{.Total}}"]);
    assert_eq!(out, "Images=3\nContainers=3\nLocal Volumes=1\n");
    assert!(ok);
    volumes
        .remove(berth_api::volumes::v1::RemoveVolumeRequest {
            name: "dfvol".into(),
        })
        .await
        .unwrap();

    // On a terminal (a pty from util-linux's script) prune asks first; "n" removes nothing.
    let mut asked = Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} -H unix://{} system prune",
                berth_e2e::berth_binary().unwrap().display(),
                berthd.socket.display()
            ),
        ])
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut asked.stdin.take().unwrap(), b"n\n").unwrap();
    let out = asked.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Are you sure you want to continue? [y/N]"),
        "{text}"
    );
    assert!(!text.contains("Deleted"), "{text}");
    assert_eq!(containers::list(&berthd, None).await.len(), 3);

    // prune without -a: exited containers, the pod that is not ready; no tagged image.
    // stdin is not a terminal: no question asked, even without -f.
    let (ok, out, err) = cli(&["system", "prune", "-o", "json"]);
    assert!(ok, "{err}");
    let doc = json(&out);
    assert_eq!(
        ids(&doc["containersDeleted"]),
        set(&[&exited, &in_gone]),
        "{doc}"
    );
    assert_eq!(ids(&doc["podsDeleted"]), set(&[&gone.id]), "{doc}");
    assert!(ids(&doc["imagesDeleted"]).is_empty(), "{doc}");
    let left: Vec<String> = containers::list(&berthd, None)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, std::slice::from_ref(&running));
    let left: Vec<String> = pods::list_pods(&berthd, None)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(left, std::slice::from_ref(&keep.id));

    // -a: every unused image, but not the pinned one, nor busybox (the running container's).
    let (ok, out, err) = cli(&["system", "prune", "-a", "-f", "-o", "json"]);
    assert!(ok, "{err}");
    let doc = json(&out);
    assert_eq!(ids(&doc["imagesDeleted"]), set(&[&config_id]), "{doc}");
    assert!(doc["spaceReclaimed"].as_u64().unwrap() > 0, "{doc}");
    let (ok, out, _) = cli(&["system", "prune", "-f"]);
    assert!(ok && out.trim() == "Total reclaimed space: 0B", "{out}");

    // rm --all: the exited container goes; the running one only with -f.
    let (exited, _, _) = containers::run_to_exit(&berthd, &keep, shell("z", "true")).await;
    let (ok, out, err) = cli(&["rm", "--all"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), exited);
    assert!(err.contains(&running) && err.contains("running"), "{err}");
    let (ok, out, err) = cli(&["rm", "-a", "-f"]);
    assert!(ok && out.trim() == running, "{out} {err}");
    let (_, out, _) = cli(&["ps", "-a", "-q"]);
    assert!(out.trim().is_empty(), "{out}");
    let (ok, _, err) = cli(&["rm"]);
    assert!(!ok && err.contains("<IDS>"), "{err}");
    let (ok, _, _) = cli(&["rm", "--all", "x"]);
    assert!(!ok, "--all with IDs");

    // rmp --all: the stopped pod goes; the ready one only with -f.
    let stopped = Pod::run(&berthd, "stopped").await;
    pods::stop_pod(&berthd, &stopped.id).await.unwrap();
    let (ok, out, err) = cli(&["rmp", "--all"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("Removed sandbox {}", stopped.id));
    assert!(err.contains(&keep.id) && err.contains("ready"), "{err}");
    let (ok, out, err) = cli(&["rmp", "-a", "-f"]);
    assert!(ok && out.contains(&keep.id), "{out} {err}");
    let (_, out, _) = cli(&["pods", "-q"]);
    assert!(out.trim().is_empty(), "{out}");

    // rmi --prune: busybox is unused now; the pinned image stays.
    let (ok, out, err) = cli(&["rmi", "--prune"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("Deleted: {busybox_id}"));
    let (_, out, _) = cli(&["images", "-o", "json"]);
    let doc = json(&out);
    let left: Vec<(&str, bool)> = doc["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["pinned"].as_bool().unwrap()))
        .collect();
    assert_eq!(left, [(httpd_id.as_str(), true)]);
    let (ok, out, err) = cli(&["rmi", "--prune"]);
    assert!(ok && out.is_empty(), "{out} {err}");
    berthd.finish();
}

/// A `berth events` running in the background; its output once killed.
fn spawn_cli(berthd: &Berthd, args: &[&str]) -> Child {
    Command::new(berth_e2e::berth_binary().unwrap())
        .args(["-H", &format!("unix://{}", berthd.socket.display())])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stop_and_read(mut child: Child) -> String {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines().map(json).collect()
}

#[tokio::test]
async fn cli_events_filter_and_print_json_lines() {
    let berthd = Berthd::start("clievents").await.unwrap();
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "evpod").await;

    let all = spawn_cli(&berthd, &["events", "-o", "json"]);
    let some = spawn_cli(
        &berthd,
        &[
            "events",
            "-o",
            "json",
            "--filter",
            "container=ev",
            "--filter",
            "type=started",
            "--filter",
            "type=stopped",
        ],
    );
    let elsewhere = spawn_cli(&berthd, &["events", "--filter", "namespace=elsewhere"]);
    let table = spawn_cli(
        &berthd,
        &[
            "events",
            "--filter",
            "pod=evpod",
            "--filter",
            "type=deleted",
        ],
    );
    // CRI has no history: act only once all four are subscribed.
    containers::poll(Duration::from_secs(10), "4 event subscribers", async || {
        let scrape = prometheus::scrape(&berthd).ok()?;
        (scrape.value("berth_container_event_subscribers", &[])? >= 4.0).then_some(())
    })
    .await;

    let (ev, _, _) = containers::run_to_exit(&berthd, &pod, shell("ev", "exit 3")).await;
    let (other, _, _) = containers::run_to_exit(&berthd, &pod, shell("other", "true")).await;
    for id in [&ev, &other] {
        containers::remove(&berthd, id).await.unwrap();
    }
    // The last event reaches the listeners a moment after RemoveContainer answers.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let events = json_lines(&stop_and_read(all));
    let of =
        |id: &str| -> Vec<&Value> { events.iter().filter(|e| e["containerId"] == id).collect() };
    let kinds = |list: &[&Value]| {
        list.iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&of(&ev)),
        ["created", "started", "stopped", "deleted"],
        "{events:?}"
    );
    assert_eq!(
        kinds(&of(&other)),
        ["created", "started", "stopped", "deleted"],
        "{events:?}"
    );
    for e in of(&ev) {
        // Every documented field, the deleted container's name included.
        assert_eq!(e["containerName"], "ev", "{e}");
        assert_eq!(e["attempt"], 0, "{e}");
        assert_eq!(
            (e["podId"].as_str(), e["podName"].as_str()),
            (Some(pod.id.as_str()), Some("evpod")),
            "{e}"
        );
        assert_eq!(e["podNamespace"], "e2e", "{e}");
        let nanos: i64 = e["timeNano"].as_str().unwrap().parse().unwrap();
        assert!(e["time"].as_str().unwrap().starts_with("20"), "{e}");
        assert!(nanos > 1_700_000_000_000_000_000, "{e}");
    }
    let stopped = of(&ev)[2];
    assert_eq!(
        (stopped["state"].as_str(), stopped["exitCode"].as_i64()),
        (Some("Exited"), Some(3))
    );
    assert_eq!(stopped["image"], busybox());
    assert_eq!(of(&ev)[1]["exitCode"], Value::Null);

    let filtered = json_lines(&stop_and_read(some));
    let seen: Vec<(String, String)> = filtered
        .iter()
        .map(|e| {
            (
                e["containerId"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (ev.clone(), "started".to_string()),
            (ev.clone(), "stopped".to_string())
        ]
    );
    assert_eq!(stop_and_read(elsewhere), "");
    let lines: Vec<String> = stop_and_read(table).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(&format!(" container deleted {ev} (name=ev, attempt=0")),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(&format!(" container deleted {other} (name=other")),
        "{lines:?}"
    );

    let (ok, _, err) = berthd.cli(&["events", "--filter", "type=paused"]).unwrap();
    assert!(
        !ok && err.contains("created, started, stopped, deleted"),
        "{err}"
    );
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn cli_statsp_and_metricsp_match_cri() {
    let berthd = Berthd::start("clistatsp").await.unwrap();
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "stats").await;
    let id = containers::run(&berthd, &pod, shell("busy", "sleep 300")).await;
    let cli = |args: &[&str]| berthd.cli(args).unwrap();

    let (ok, out, err) = cli(&["statsp", "-o", "json"]);
    assert!(ok, "{err}");
    let doc = json(&out);
    let items = doc["pods"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{doc}");
    let item = &items[0];
    assert_eq!(
        (item["id"].as_str(), item["name"].as_str()),
        (Some(pod.id.as_str()), Some("stats"))
    );
    assert_eq!(item["namespace"], "e2e");
    assert!(
        item["memoryWorkingSetBytes"].as_u64().unwrap() > 0,
        "{item}"
    );
    assert!(item["cpuCoreNanoSeconds"].as_u64().is_some(), "{item}");
    let containers_json: Vec<&str> = item["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(containers_json, [id.as_str()]);

    // The same pods and containers as ListPodSandboxStats answers.
    let mut runtime = berthd.runtime().await.unwrap();
    let cri_stats = runtime
        .list_pod_sandbox_stats(berth_cri_api::v1::ListPodSandboxStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let cri_pods: HashSet<String> = cri_stats
        .iter()
        .map(|s| s.attributes.clone().unwrap().id)
        .collect();
    assert_eq!(cri_pods, HashSet::from([pod.id.clone()]));
    let linux = cri_stats[0].linux.clone().unwrap();
    let processes = linux.process.and_then(|p| p.process_count).map(|c| c.value);
    assert_eq!(item["processCount"].as_u64(), processes);

    let (ok, out, _) = cli(&["statsp", "stats"]);
    let table: Vec<&str> = out.lines().collect();
    assert!(
        ok && table[0].starts_with("POD")
            && table[0].contains("CPU %")
            && table[0].contains("PROCS"),
        "{out}"
    );
    assert!(
        table[1].starts_with(&pod.id[..13]) && table[1].contains("stats"),
        "{out}"
    );
    let (ok, out, _) = cli(&["statsp", "-o", "yaml"]);
    assert!(ok && out.starts_with("pods:"), "{out}");
    let (ok, out, _) = cli(&["statsp", "-l", "app=none", "-o", "json"]);
    assert!(ok && json(&out)["pods"] == Value::Array(vec![]), "{out}");
    // --watch redraws until interrupted.
    let watch = spawn_cli(&berthd, &["statsp", "-w", "--interval", "0.2"]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let out = stop_and_read(watch);
    assert!(out.matches("POD").count() >= 2, "{out}");

    let (ok, out, err) = cli(&["metricsp", "-o", "json"]);
    assert!(ok, "{err}");
    let doc = json(&out);
    let ours = doc["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podId"] == pod.id.as_str())
        .unwrap_or_else(|| panic!("no pod {} in {doc}", pod.id))
        .clone();
    let names: HashSet<&str> = ours["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            ours["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["metrics"].as_array().unwrap()),
        )
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let cri_metrics = runtime
        .list_pod_sandbox_metrics(berth_cri_api::v1::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let cri_names: HashSet<String> = cri_metrics
        .iter()
        .filter(|p| p.pod_sandbox_id == pod.id)
        .flat_map(|p| {
            p.metrics
                .iter()
                .chain(p.container_metrics.iter().flat_map(|c| &c.metrics))
        })
        .map(|m| m.name.clone())
        .collect();
    assert!(!names.is_empty());
    assert_eq!(
        names.iter().map(|n| n.to_string()).collect::<HashSet<_>>(),
        cri_names
    );
    let (ok, out, _) = cli(&["metricsp", "stats"]);
    assert!(
        ok && out.starts_with("POD") && out.contains(&pod.id[..13]),
        "{out}"
    );

    containers::stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

/// A runtime without ListPodSandboxMetrics (containerd 1.6 predates it): berth says so, with the
/// runtime's own message, and exits 125 as for any runtime error. Needs the private containerd:
/// `hack/bench/containerd.sh start`, then
/// `cargo test -p berth-e2e --test cli_housekeeping -- --ignored`.
#[test]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start)"]
fn cli_metricsp_reports_a_runtime_without_it() {
    let socket = berth_e2e::containerd::socket();
    let out = Command::new(berth_e2e::berth_binary().unwrap())
        .args(["-H", &format!("unix://{}", socket.display())])
        .args(["metricsp", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("the runtime does not implement ListPodSandboxMetrics: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The rest works against it: statsp lists its pods (none of this test's).
    let out = Command::new(berth_e2e::berth_binary().unwrap())
        .args(["-H", &format!("unix://{}", socket.display())])
        .args(["statsp", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout));
}
