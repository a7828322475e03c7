//! The `berth` CLI against a real berthd: what a person types at a shell.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_e2e::Berthd;
use berth_e2e::registry::SHARED;

#[tokio::test]
async fn cli_pulls_lists_inspects_and_removes_images() {
    let berthd = Berthd::start("cli").await.unwrap();
    let image = format!("{SHARED}/berth-test/config:latest");
    let run = |args: &[&str]| berthd.cli(args).unwrap();

    let (ok, out, err) = run(&["pull", &image]);
    assert!(ok, "{err}");
    assert!(out.contains(&image) && out.contains("sha256:"), "{out}");

    let (ok, out, err) = run(&["images"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("IMAGE ID"),
        "{out}"
    );
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].starts_with(&format!("{SHARED}/berth-test/config")),
        "{out}"
    );
    assert!(lines[1].contains("latest"), "{out}");

    let (ok, quiet, _) = run(&["images", "-q"]);
    assert!(ok);
    let id = quiet.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{quiet}");

    let (ok, out, err) = run(&["inspect", &image]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["id"], id.as_str());
    assert_eq!(json["username"], "berth");
    assert_eq!(
        json["info"]["imageSpec"]["config"]["WorkingDir"],
        "/work/dir"
    );

    let (ok, out, _) = run(&["imagefs"]);
    assert!(ok && out.contains(&*berthd.root.to_string_lossy()), "{out}");

    // A person is told about a typo; CRI's RemoveImage alone would say nothing.
    let (ok, _, err) = run(&["rmi", "no-such-image:1"]);
    assert!(!ok && err.contains("no such image"), "{err}");
    let (ok, _, err) = run(&["inspect", "no-such-image:1"]);
    assert!(!ok && err.contains("no such image"), "{err}");
    let (ok, _, err) = run(&["pull", "--creds", "nouser", &image]);
    assert!(!ok && err.contains("USER:PASSWORD"), "{err}");

    let (ok, out, err) = run(&["rmi", &image]);
    assert!(ok && out.contains("Deleted"), "{err}");
    let (ok, out, _) = run(&["images", "-q"]);
    assert!(ok && out.trim().is_empty(), "{out}");
    berthd.finish();
}

#[tokio::test]
async fn cli_runs_lists_inspects_stops_and_removes_pods() {
    let berthd = Berthd::start("clipods").await.unwrap();
    let run = |args: &[&str]| berthd.cli(args).unwrap();

    let (ok, out, err) = run(&["runp", "web", "-n", "e2e", "-l", "app=web"]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");

    let (ok, out, err) = run(&["pods"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("POD ID"), "{out}");
    assert!(
        lines[1].starts_with(&id[..13]) && lines[1].contains("Ready"),
        "{out}"
    );
    assert!(
        lines[1].contains("web") && lines[1].contains("e2e"),
        "{out}"
    );

    let (ok, out, err) = run(&["inspectp", &id[..12]]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["status"]["id"], id.as_str());
    assert!(json["info"]["netns"].is_string(), "{json}");

    let (ok, _, err) = run(&["rmp", &id]);
    assert!(!ok && err.contains("stop it first"), "{err}");
    let (ok, out, err) = run(&["stopp", &id[..10]]);
    assert!(ok && out.contains("Stopped"), "{err}");
    let (ok, out, err) = run(&["rmp", &id]);
    assert!(ok && out.contains("Removed"), "{err}");
    let (ok, _, err) = run(&["inspectp", &id]);
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, _, err) = run(&["runp", "bad", "--port", "80"]);
    assert!(!ok && err.contains("HOST:CONTAINER"), "{err}");
    let (ok, out, _) = run(&["pods", "-q"]);
    assert!(ok && out.trim().is_empty(), "{out}");
    berthd.finish();
}

#[tokio::test]
async fn cli_runs_containers_like_docker() {
    let berthd = Berthd::start("clictr").await.unwrap();
    let image = format!("{SHARED}/berth-test/busybox:latest");
    let logs = berthd.state.parent().unwrap().join("cli-logs");
    let logs = logs.to_str().unwrap();
    let run = |args: &[&str]| berthd.cli(args).unwrap();

    // Foreground: the output by stream, the container's exit code, nothing left with --rm.
    let (ok, out, err) = run(&[
        "run",
        "--rm",
        "--name",
        "hello",
        "--log-dir",
        logs,
        &image,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert!(!ok, "exit 3 must fail the command: {out} {err}");
    assert!(out.contains("out") && !out.contains("err"), "{out}");
    assert!(err.contains("err"), "{err}");
    let (ok, out, _) = run(&["ps", "-a", "-q"]);
    assert!(ok && out.trim().is_empty(), "--rm left {out}");
    let (ok, out, _) = run(&["pods", "-q"]);
    assert!(ok && out.trim().is_empty(), "--rm left the pod {out}");

    // Detached: ps, logs, stop, rm.
    let (ok, out, err) = run(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        "--log-dir",
        logs,
        &image,
        "sh",
        "-c",
        "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");
    let (ok, out, err) = run(&["ps"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&id[..13]) && l.contains("sleeper")),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (ok, out, err) = run(&["logs", &id[..12]]);
        assert!(ok, "{err}");
        if out.contains("started") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no log line: {out}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (ok, _, err) = run(&["rm", &id]);
    assert!(!ok && err.contains("running"), "{err}");
    let (ok, out, err) = run(&["exec", &id, "echo", "in"]);
    assert!(ok && out == "in\n", "{out} {err}");
    let (ok, _, err) = run(&["stop", "--time", "5", &id]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(&["inspectc", &id]);
    assert!(ok, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["status"]["exit_code"], 0, "{json}");
    assert_eq!(json["status"]["state"], "CONTAINER_EXITED", "{json}");
    let (ok, _, err) = run(&["rm", &id]);
    assert!(ok, "{err}");
    let (ok, pods, _) = run(&["pods", "-q"]);
    assert!(ok);
    for pod in pods.split_whitespace() {
        assert!(run(&["stopp", pod]).0);
        assert!(run(&["rmp", pod]).0);
    }
    berthd.finish();
}
