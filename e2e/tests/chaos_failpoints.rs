//! The failpoint matrix: for every point in `berth_failpoint::POINTS`, berthd is made to kill
//! itself (as `kill -9` would) exactly there, restarted without failpoints, and then kubelet's
//! follow-up is played: retry the RPC or clean the pod up. Invariants after every point:
//!
//! - the pod or container kubelet would remove is removable (Stop/Remove succeed, maybe after a
//!   retry, as kubelet's sync loop retries);
//! - a running container elsewhere (the keeper) is not lost: still RUNNING, same pid;
//! - every RPC answers within its deadline;
//! - `finish()`'s leak check passes and berthd never panicked.
//!
//! One berthd per point (startup takes tens of milliseconds); the image comes from the local test
//! registry. All points are run and the failures reported together.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_e2e::Berthd;
use berth_e2e::chaos::{Cri, check_no_panic, restart_with, wait_dead};
use berth_e2e::containers::{RUNNING, busybox, pull, shell};
use berth_e2e::pods::pod_config;

use anyhow::{Context, bail};

const LOOP: &str = "while true; do sleep 0.2; done";

#[tokio::test]
async fn every_sandbox_failpoint_leaves_a_recoverable_node() {
    matrix("sandbox/").await;
}

#[tokio::test]
async fn every_container_failpoint_leaves_a_recoverable_node() {
    matrix("container/").await;
}

async fn matrix(prefix: &str) {
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for (i, point) in berth_failpoint::POINTS
        .iter()
        .enumerate()
        .filter(|(_, p)| p.starts_with(prefix))
    {
        let t = std::time::Instant::now();
        let result = exercise(i, point).await;
        eprintln!(
            "{point}: {:?} in {:?}",
            result.as_ref().map(|_| "ok"),
            t.elapsed()
        );
        if let Err(e) = result {
            failures.push(format!("{point}: {e:#}"));
        }
    }
    eprintln!("{prefix} matrix took {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One point: returns what went wrong. The berthd dir is kept on failure, for the post-mortem.
async fn exercise(index: usize, point: &str) -> anyhow::Result<()> {
    let mut berthd = Berthd::start(&format!("fp{index}")).await?;
    pull(&berthd, &busybox()).await;
    let cri = Cri::new(&berthd);

    // The keeper: a running container in another pod, which no crash may lose.
    let keep_config = pod_config(&berthd, "keeper");
    std::fs::create_dir_all(&keep_config.log_directory)?;
    let keep_pod = cri.run_pod(&keep_config).await?;
    let keeper = cri
        .create(&keep_pod, &keep_config, &shell("keeper", LOOP))
        .await?;
    cri.start(&keeper).await?;
    let (_, keeper_pid) = cri.state(&keeper).await?;

    let config = pod_config(&berthd, "target");
    std::fs::create_dir_all(&config.log_directory)?;
    let crash = format!("{point}=exit");
    let op = point.split('/').take(2).collect::<Vec<_>>().join("/");
    // Sets the stage, arms the point (a restart), and makes the RPC that must crash berthd.
    let crashed = match op.as_str() {
        "sandbox/run" => {
            restart_with(&mut berthd, &crash).await?;
            cri.run_pod(&config).await.err()
        }
        "sandbox/stop" | "sandbox/remove" => {
            let pod = cri.run_pod(&config).await?;
            let c = cri.create(&pod, &config, &shell("victim", LOOP)).await?;
            cri.start(&c).await?;
            // Kubelet stops before it removes; only a remove without a stop passes after-stop.
            if op == "sandbox/remove" && !point.ends_with("after-stop") {
                cri.stop_pod(&pod).await?;
            }
            restart_with(&mut berthd, &crash).await?;
            if op == "sandbox/stop" {
                cri.stop_pod(&pod).await.err()
            } else {
                cri.remove_pod(&pod).await.err()
            }
        }
        _ => {
            let pod = cri.run_pod(&config).await?;
            let victim = shell("victim", LOOP);
            let created = match op.as_str() {
                "container/create" => None,
                _ => Some(cri.create(&pod, &config, &victim).await?),
            };
            if let Some(id) = &created
                && op != "container/start"
            {
                cri.start(id).await?;
                if op == "container/remove" || op == "container/cleanup" {
                    cri.stop(id).await?;
                }
            }
            restart_with(&mut berthd, &crash).await?;
            match (op.as_str(), &created) {
                ("container/start", Some(id)) => cri.start(id).await.err(),
                ("container/stop", Some(id)) => cri.stop(id).await.err(),
                ("container/remove" | "container/cleanup", Some(id)) => cri.remove(id).await.err(),
                _ => cri.create(&pod, &config, &victim).await.err(),
            }
        }
    };
    match crashed {
        Some(e) if e.hung => bail!("the RPC hung instead of crashing berthd: {e}"),
        Some(_) => {}
        // The cleanup runs after RemoveContainer answered: the crash comes after the answer.
        None if op == "container/cleanup" => {}
        None => bail!("the RPC succeeded: failpoint {point} was not reached"),
    }
    wait_dead(&mut berthd, Duration::from_secs(10))?;
    if !berthd.log().contains(&format!("failpoint {point}")) {
        bail!("berthd failed, but not at {point}:\n{}", berthd.log());
    }
    restart_with(&mut berthd, "").await?;

    // Kubelet's follow-up.
    match op.as_str() {
        "sandbox/run" => {
            // The retry of the same pod must give a working pod.
            let pod = cri.run_pod(&config).await.context("RunPodSandbox retry")?;
            let c = cri.create(&pod, &config, &shell("after", LOOP)).await?;
            cri.start(&c).await?;
            expect_running(&cri, &c, None).await?;
        }
        "container/create" | "container/start" => {
            // The container the crash left (if listed) is removed; a new one must run.
            let pod = only_pod(&cri, "target").await?;
            for c in cri.containers(Some(&pod)).await? {
                cri.stop(&c.id)
                    .await
                    .context("StopContainer of the leftover")?;
                cri.remove(&c.id)
                    .await
                    .context("RemoveContainer of the leftover")?;
            }
            let c = cri.create(&pod, &config, &shell("again", LOOP)).await?;
            cri.start(&c).await?;
            expect_running(&cri, &c, None).await?;
        }
        "container/cleanup" => {
            // The removal was answered before the crash: the container stays gone, and the
            // restarted berthd finishes its cleanup (the leak check below shows it did).
            let pod = only_pod(&cri, "target").await?;
            let left = cri.containers(Some(&pod)).await?;
            if !left.is_empty() {
                bail!("a removed container is listed again after the restart: {left:?}");
            }
        }
        _ => {}
    }
    for pod in cri.pods(Some("target")).await? {
        let rounds = cri.clean_up_pod(&pod.id, 5).await?;
        if rounds > 1 {
            eprintln!("{point}: the pod needed {rounds} cleanup rounds");
        }
    }
    expect_running(&cri, &keeper, Some(keeper_pid)).await?;
    cri.clean_up_pod(&keep_pod, 5).await?;
    if !cri.pods(None).await?.is_empty() {
        bail!("pods left after cleanup: {:?}", cri.pods(None).await?);
    }
    check_no_panic(&berthd.log())?;
    berthd.try_finish()
}

async fn expect_running(cri: &Cri, id: &str, pid: Option<i64>) -> anyhow::Result<()> {
    let (state, now) = cri.state(id).await?;
    if state != RUNNING || pid.is_some_and(|p| p != now) {
        bail!("container {id}: state {state} pid {now}, expected RUNNING with pid {pid:?}");
    }
    Ok(())
}

async fn only_pod(cri: &Cri, app: &str) -> anyhow::Result<String> {
    let pods = cri.pods(Some(app)).await?;
    match pods.as_slice() {
        [pod] => Ok(pod.id.clone()),
        _ => bail!("expected one pod {app}, found {pods:?}"),
    }
}
