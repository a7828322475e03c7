//! The metadata store across restarts: a clean stop closes it, a crash leaves it to be repaired.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_e2e::Berthd;
use berth_e2e::containers::{Pod, busybox, pull, run, shell, stop_and_remove};

/// What redb's repair callback makes the store log when the file was not closed cleanly.
const REPAIRING: &str = "metadata store was not closed cleanly";

/// The log written since `from` (the file is appended to by every launch).
fn log_since(berthd: &Berthd, from: usize) -> String {
    berthd.log().get(from..).unwrap_or_default().to_string()
}

#[tokio::test]
async fn sigterm_closes_the_store_and_sigkill_leaves_it_to_be_repaired() {
    let mut berthd = Berthd::start("storeclose").await.unwrap();
    // A pod and a running container, so that their background tasks (exit watchers, event
    // fan-outs) hold the store too when the signal comes.
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "storeclose").await;
    let container = run(&berthd, &pod, shell("sleeper", "sleep 600")).await;
    assert!(
        !berthd.log().contains(REPAIRING),
        "a fresh store needs no repair:\n{}",
        berthd.log()
    );

    let status = berthd.stop().unwrap();
    assert!(
        status.success(),
        "berthd exited with {status}:\n{}",
        berthd.log()
    );
    assert!(
        berthd.log().contains("metadata store closed"),
        "{}",
        berthd.log()
    );
    let mark = berthd.log().len();
    berthd.launch().await.unwrap();
    let restarted = log_since(&berthd, mark);
    assert!(
        !restarted.contains(REPAIRING) && restarted.contains("recovered=false"),
        "a start after SIGTERM must find the store closed cleanly:\n{restarted}"
    );

    // A crash cannot close the store: the next start must repair it, keeping every record.
    berthd.kill().unwrap();
    let mark = berthd.log().len();
    berthd.launch().await.unwrap();
    let restarted = log_since(&berthd, mark);
    assert!(
        restarted.contains(REPAIRING),
        "a start after SIGKILL must repair the store:\n{restarted}"
    );

    stop_and_remove(&berthd, &container).await;
    pod.remove(&berthd).await;
    berthd.finish();
}
