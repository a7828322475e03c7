//! Random SIGKILLs under churn: a few loops run pods and containers through their whole life,
//! as kubelet does, while berthd is killed at random moments and restarted; 5 long-lived
//! containers run alongside. At the end none of them is lost (same pid, RUNNING), every pod is
//! removable, the leak check is clean and berthd never panicked.
//!
//! `BERTH_CHAOS_KILLS` kills (default 50; `make chaos` runs 1000); `BERTH_CHAOS_SEED` replays a
//! run (the seed is printed).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::chaos::{Cri, Rng, check_no_panic, env_count};
use berth_e2e::containers::{RUNNING, busybox, pull, shell};
use berth_e2e::pods::pod_config;

const LOOPS: usize = 3;
const LONG_LIVED: usize = 5;
/// How long the final cleanup may keep failing once berthd is left alone.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);
const LOOP: &str = "while true; do sleep 0.2; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_under_churn_lose_nothing() {
    let kills = env_count("BERTH_CHAOS_KILLS", 50);
    let mut rng = Rng::from_env("random_sigkills_under_churn_lose_nothing");
    let mut berthd = Berthd::start("chaoskill").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let cri = Cri::new(&berthd);

    let long_config = pod_config(&berthd, "longlived");
    std::fs::create_dir_all(&long_config.log_directory).expect("log dir");
    let long_pod = cri.run_pod(&long_config).await.expect("RunPodSandbox");
    let mut long_lived = Vec::new();
    for i in 0..LONG_LIVED {
        let id = cri
            .create(&long_pod, &long_config, &shell(&format!("long{i}"), LOOP))
            .await
            .expect("CreateContainer");
        cri.start(&id).await.expect("StartContainer");
        let (_, pid) = cri.state(&id).await.expect("ContainerStatus");
        long_lived.push((id, pid));
    }

    let done = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU32::new(0));
    let mut loops = Vec::new();
    for l in 0..LOOPS {
        let template = pod_config(&berthd, &format!("churn{l}"));
        let (cri, done, cycles) = (cri.clone(), done.clone(), cycles.clone());
        loops.push(tokio::spawn(churn(l, template, cri, done, cycles)));
    }

    let started = std::time::Instant::now();
    for k in 0..kills {
        tokio::time::sleep(rng.millis(100, 1500)).await;
        berthd.kill().expect("kill -9 berthd");
        // Sometimes kubelet comes back before berthd does; sometimes berthd is down a while.
        tokio::time::sleep(rng.millis(0, 150)).await;
        if let Err(e) = berthd.launch().await {
            panic!("restart after kill {k}: {e:#}");
        }
    }
    eprintln!(
        "{kills} kills in {:?}; {} churn cycles completed",
        started.elapsed(),
        cycles.load(Ordering::Relaxed)
    );
    done.store(true, Ordering::Relaxed);
    let mut hung = Vec::new();
    for l in loops {
        hung.extend(l.await.expect("churn loop"));
    }
    assert!(
        hung.is_empty(),
        "hung RPCs or pods not removable: {hung:#?}"
    );

    let mut lost = Vec::new();
    for (id, pid) in &long_lived {
        match cri.state(id).await {
            Ok((state, now)) if state == RUNNING && now == *pid => {}
            other => lost.push(format!("{id} (pid {pid}): {other:?}")),
        }
    }
    assert!(lost.is_empty(), "long-lived containers lost: {lost:#?}");
    cri.clean_up_pod(&long_pod, 5)
        .await
        .expect("removing the long-lived pod");
    let left = cri.pods(None).await.expect("ListPodSandbox");
    assert!(left.is_empty(), "pods left: {left:#?}");
    check_no_panic(&berthd.log()).expect("no panic");
    berthd.finish();
}

/// One kubelet-like worker: whole pod lives, one after another. Any error (berthd is down) puts
/// it into cleanup of its own pods until that succeeds. Returns the RPCs that hung.
async fn churn(
    l: usize,
    template: cri::PodSandboxConfig,
    cri: Cri,
    done: Arc<AtomicBool>,
    cycles: Arc<AtomicU32>,
) -> Vec<String> {
    let app = format!("churn{l}");
    let mut hung = Vec::new();
    let mut n = 0u32;
    let mut dirty = false;
    let mut cleanup_deadline = None;
    loop {
        let stopping = done.load(Ordering::Relaxed);
        if !stopping && !dirty {
            n += 1;
            let mut config = template.clone();
            // A pod of its own as kubelet gives each pod: uid and pod cgroup.
            if let Some(m) = config.metadata.as_mut() {
                m.uid = format!("{}-{n}", m.uid);
            }
            if let Some(linux) = config.linux.as_mut() {
                linux.cgroup_parent = format!("{}-{n}", linux.cgroup_parent);
            }
            match one_life(&cri, &config).await {
                Ok(()) => {
                    cycles.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) if e.hung => hung.push(e.to_string()),
                Err(_) => {}
            }
            dirty = true;
        }
        // Kubelet's view after an error: whatever pods of ours exist must go; it keeps trying
        // until they are gone.
        let cleaned = async {
            for pod in cri.pods(Some(&app)).await? {
                for c in cri.containers(Some(&pod.id)).await? {
                    cri.stop(&c.id).await?;
                    cri.remove(&c.id).await?;
                }
                cri.stop_pod(&pod.id).await?;
                cri.remove_pod(&pod.id).await?;
            }
            Ok::<_, berth_e2e::chaos::RpcError>(())
        }
        .await;
        match cleaned {
            Ok(()) if stopping => return hung,
            Ok(()) => dirty = false,
            Err(e) if e.hung => hung.push(e.to_string()),
            Err(e) => {
                if stopping {
                    // berthd stays up from now on: a pod still not removable is a finding.
                    let deadline = *cleanup_deadline
                        .get_or_insert_with(|| std::time::Instant::now() + CLEANUP_LIMIT);
                    if std::time::Instant::now() > deadline {
                        hung.push(format!(
                            "{app}: pods not removable within {CLEANUP_LIMIT:?}: {e}"
                        ));
                        return hung;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
        if hung.len() > 10 {
            return hung;
        }
    }
}

async fn one_life(
    cri: &Cri,
    config: &cri::PodSandboxConfig,
) -> Result<(), berth_e2e::chaos::RpcError> {
    let _ = std::fs::create_dir_all(&config.log_directory);
    let pod = cri.run_pod(config).await?;
    let c = cri.create(&pod, config, &shell("churn", LOOP)).await?;
    cri.start(&c).await?;
    cri.stop(&c).await?;
    cri.remove(&c).await?;
    cri.stop_pod(&pod).await?;
    cri.remove_pod(&pod).await
}
