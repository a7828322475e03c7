//! SIGHUP reloads the configuration: a registry host's mirror moves from A (the shared test
//! registry) to B (a private one holding an image A lacks) and the next pull goes to B while a
//! running pod and container stay untouched; pinned images follow the file; an invalid
//! configuration is rejected whole (counted, the previous one stays); a change to `root` is
//! reported as needing a restart and not applied.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_cri_api::v1 as cri;
use berth_e2e::containers::*;
use berth_e2e::prometheus::scrape;
use berth_e2e::registry::{PrivateRegistry, SHARED, test_layout};
use berth_e2e::{Berthd, Options};

/// An image every mirror is asked for under this registry name; the name itself resolves nowhere.
const HOST: &str = "mirror.test";

fn mirror_config(mirror: &str, pinned: &[&str]) -> String {
    format!(
        "[registry.hosts.\"{HOST}\"]\nmirrors = [\"http://{mirror}\"]\nskip_origin = true\n\n\
         [image]\npinned = {pinned:?}\n"
    )
}

fn dropin(berthd: &Berthd) -> PathBuf {
    berthd
        .config_file
        .parent()
        .expect("config dir")
        .join("config.d/50-test.toml")
}

fn reloads(berthd: &Berthd, result: &str) -> f64 {
    scrape(berthd)
        .expect("scraping /metrics")
        .value("berth_config_reloads_total", &[("result", result)])
        .unwrap_or(0.0)
}

/// Writes the drop-in, sends SIGHUP and waits until the reload with `result` was counted.
async fn reload(berthd: &Berthd, text: &str, result: &str) {
    std::fs::write(dropin(berthd), text).expect("writing the drop-in");
    let before = reloads(berthd, result);
    let pid = berthd.pid().expect("berthd runs") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(berthd, result) < before + 1.0 {
        assert!(
            Instant::now() < deadline,
            "no {result} reload counted; log:\n{}",
            berthd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pinned(berthd: &Berthd, image: &str) -> bool {
    let mut client = berthd.images().await.expect("image client");
    client
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
        .unwrap_or_else(|| panic!("{image} is not present"))
        .pinned
}

#[tokio::test]
async fn sighup_moves_the_mirror_and_leaves_pods_alone() {
    let busybox = format!("{HOST}/berth-test/busybox:latest");
    let only_in_b = format!("{HOST}/reload/only-in-b:v1");
    let options = Options {
        dropin: mirror_config(SHARED, &[]),
        ..Options::default()
    };
    let berthd = Berthd::start_with("reload", options).await.unwrap();
    let b_dir = berthd.dir.join("mirror-b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b = PrivateRegistry::start(&b_dir).unwrap();
    b.push(&test_layout(), "busybox", "reload/only-in-b:v1")
        .unwrap();
    assert_eq!(
        scrape(&berthd)
            .unwrap()
            .value("berth_config_reloads_total", &[("result", "failure")]),
        Some(0.0),
        "both results are exported from the start"
    );

    // Mirror A serves the host: its image pulls, B's does not exist there.
    pull(&berthd, &busybox).await;
    assert!(try_pull(&berthd, &only_in_b).await.is_err());
    assert!(!pinned(&berthd, &busybox).await);
    let pod = Pod::run(&berthd, "reload").await;
    let container = run(
        &berthd,
        &pod,
        container_config("sleeper", &busybox, &["sleep", "3600"]),
    )
    .await;
    let pid_before = pid(&berthd, &container).await;

    // Mirror B, and busybox pinned: the next pulls go to B, and A is not asked any more (B lacks
    // busybox, so a pull of its tag now fails).
    reload(&berthd, &mirror_config(&b.address, &[&busybox]), "success").await;
    pull(&berthd, &only_in_b).await;
    let err = try_pull(&berthd, &busybox)
        .await
        .expect_err("busybox is only on A");
    assert!(err.message().contains(&b.address), "{err:?}");
    assert!(pinned(&berthd, &busybox).await);
    // The running pod and container are the same ones, still running.
    assert_eq!(state(&berthd, &container).await, RUNNING);
    assert_eq!(pid(&berthd, &container).await, pid_before);
    let pods = berth_e2e::pods::list_pods(&berthd, None).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].id, pod.id);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);

    // Invalid configurations are rejected whole: a syntax error, then a CA file that does not
    // exist (together with a mirror change that must not be applied either).
    let failures = reloads(&berthd, "failure");
    reload(&berthd, "[registry\n", "failure").await;
    let missing_ca = format!(
        "[registry.hosts.\"{HOST}\"]\nmirrors = [\"http://{SHARED}\"]\nskip_origin = true\n\
         ca_file = \"/nonexistent/ca.pem\"\n"
    );
    reload(&berthd, &missing_ca, "failure").await;
    assert_eq!(reloads(&berthd, "failure"), failures + 2.0);
    let log = berthd.log();
    assert!(log.contains("configuration reload rejected"), "{log}");
    assert!(log.contains("/nonexistent/ca.pem"), "{log}");
    // Still mirror B, still pinned.
    pull(&berthd, &only_in_b).await;
    assert!(pinned(&berthd, &busybox).await);

    // `root` cannot change while running: reported, counted as needing a restart, not applied.
    let moved = format!(
        "root = \"{}\"\n{}",
        berthd.dir.join("other-root").display(),
        mirror_config(&b.address, &[])
    );
    reload(&berthd, &moved, "success").await;
    let log = berthd.log();
    assert!(log.contains("need a restart"), "{log}");
    assert!(log.contains("root"), "{log}");
    assert_eq!(
        scrape(&berthd)
            .unwrap()
            .value("berth_config_restart_required", &[]),
        Some(1.0)
    );
    assert!(!berthd.dir.join("other-root").exists());
    // The live part of that reload applied: busybox is no longer pinned; images are where they were.
    assert!(!pinned(&berthd, &busybox).await);
    assert_eq!(state(&berthd, &container).await, RUNNING);

    stop_and_remove(&berthd, &container).await;
    pod.remove(&berthd).await;
    drop(b);
    berthd.finish();
}
