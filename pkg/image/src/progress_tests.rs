use super::*;

fn layer(digest: &str, size: u64) -> LayerRecord {
    LayerRecord {
        digest: digest.to_string(),
        diff_id: String::new(),
        chain_id: String::new(),
        size,
        media_type: String::new(),
    }
}

fn image(id: &str) -> ImageRecord {
    ImageRecord {
        id: id.to_string(),
        repo_tags: vec![],
        repo_digests: vec![],
        manifest_digest: "sha256:m".to_string(),
        size: 0,
        layers: vec![layer("sha256:a", 100), layer("sha256:b", 50)],
        user: String::new(),
        created_at_ns: 0,
    }
}

fn states(p: &PullProgress) -> Vec<(LayerState, u64)> {
    p.layers
        .iter()
        .map(|l| (l.state, l.downloaded_bytes))
        .collect()
}

#[tokio::test]
async fn layers_move_through_states_and_count_bytes() {
    let tracker = PullTracker::new("r/x:1");
    let mut watcher = tracker.watch().with_interval(Duration::ZERO);
    let first = watcher.next().await.unwrap();
    assert!(first.layers.is_empty() && first.manifest_digest.is_none());

    tracker.resolved("sha256:m", &image("").layers);
    tracker.layer(0, LayerState::Downloading);
    tracker.bytes(0, 30);
    tracker.bytes(0, 20);
    tracker.layer(1, LayerState::Present);
    let now = watcher.next().await.unwrap();
    assert_eq!(now.manifest_digest.as_deref(), Some("sha256:m"));
    assert_eq!(now.layers[0].total_bytes, 100);
    assert_eq!(
        states(&now),
        [(LayerState::Downloading, 50), (LayerState::Present, 50)]
    );

    tracker.layer(0, LayerState::Verifying);
    tracker.layer(0, LayerState::Unpacking);
    tracker.layer(0, LayerState::Done);
    // Out of range (cannot happen from the pull code): ignored, not a panic.
    tracker.bytes(7, 1);
    tracker.layer(7, LayerState::Done);
    let now = watcher.next().await.unwrap();
    assert_eq!(
        states(&now),
        [(LayerState::Done, 100), (LayerState::Present, 50)]
    );
    assert!(!now.is_final());
}

#[tokio::test]
async fn the_final_state_is_sent_and_then_the_watch_ends() {
    let tracker = PullTracker::new("r/x:1");
    tracker.resolved("sha256:m", &image("").layers);
    let mut watcher = tracker.watch().with_interval(Duration::from_millis(200));
    assert!(!watcher.next().await.unwrap().is_final());
    // Within the interval: the end still arrives (after it), complete.
    tracker.bytes(0, 10);
    tracker.finish(&Ok(image("sha256:id")));
    let started = Instant::now();
    let last = watcher.next().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    match &last.outcome {
        Some(PullOutcome::Pulled { image_id }) => assert_eq!(image_id, "sha256:id"),
        other => panic!("unexpected outcome {other:?}"),
    }
    assert_eq!(
        states(&last),
        [(LayerState::Done, 100), (LayerState::Done, 50)]
    );
    assert!(watcher.next().await.is_none());

    // Nothing changes an ended pull, and a watcher joining late gets the end at once.
    tracker.bytes(0, 1);
    tracker.finish(&Err(Arc::new(ImageError::Cancelled)));
    let mut late = tracker.watch();
    let seen = late.next().await.unwrap();
    assert!(matches!(seen.outcome, Some(PullOutcome::Pulled { .. })));
    assert_eq!(seen.layers[0].downloaded_bytes, 100);
    assert!(late.next().await.is_none());
}

#[tokio::test]
async fn a_watcher_is_throttled_and_sees_the_latest_state() {
    let tracker = Arc::new(PullTracker::new("r/x:1"));
    tracker.resolved("sha256:m", &[layer("sha256:a", 1000)]);
    let mut watcher = tracker.watch().with_interval(Duration::from_millis(50));
    let updating = {
        let tracker = tracker.clone();
        tokio::spawn(async move {
            for n in 1..=1000u32 {
                tracker.bytes(0, 1);
                if n.is_multiple_of(10) {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            tracker.finish(&Ok(image("sha256:id")));
        })
    };
    let mut seen = Vec::new();
    while let Some(p) = watcher.next().await {
        seen.push(p.layers[0].downloaded_bytes);
    }
    updating.await.unwrap();
    // ~300 ms of updates (1000 of them) at one snapshot per 50 ms.
    assert!(seen.len() <= 12, "{} snapshots: {seen:?}", seen.len());
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&1000));
}

#[tokio::test]
async fn callers_join_one_tracker_until_it_ends() {
    let trackers = Trackers::default();
    let first = trackers.join("r/x:1\0", "r/x:1");
    let second = trackers.join("r/x:1\0", "r/x:1");
    assert!(Arc::ptr_eq(first.tracker(), second.tracker()));
    let other = trackers.join("r/y:1\0", "r/y:1");
    assert!(!Arc::ptr_eq(first.tracker(), other.tracker()));

    let mut watcher = trackers.watch("r/x:1").expect("a pull in flight");
    assert_eq!(watcher.next().await.unwrap().joined, 2);
    assert!(trackers.watch("r/z:1").is_none());
    drop(second);
    assert_eq!(first.tracker().state.borrow().joined, 1);
    let third = trackers.join("r/x:1\0", "r/x:1");
    assert_eq!(first.tracker().state.borrow().joined, 2);

    first.finish(&Ok(image("sha256:id")));
    // Ended: not offered to new watchers, and a new pull of the reference starts afresh.
    assert!(trackers.watch("r/x:1").is_none());
    let again = trackers.join("r/x:1\0", "r/x:1");
    assert!(!Arc::ptr_eq(first.tracker(), again.tracker()));
    drop((first, third));
    let last = watcher.with_interval(Duration::ZERO).next().await.unwrap();
    assert!(matches!(last.outcome, Some(PullOutcome::Pulled { .. })));
    // The end shows who waited for it, not that everybody left afterwards.
    assert_eq!(last.joined, 2);
    drop((again, other));
}

#[tokio::test]
async fn the_last_caller_leaving_ends_the_progress() {
    let trackers = Trackers::default();
    let only = trackers.join("r/x:1\0", "r/x:1");
    let mut watcher = trackers.watch("r/x:1").unwrap();
    assert!(!watcher.next().await.unwrap().is_final());
    drop(only);
    assert!(trackers.watch("r/x:1").is_none());
    let last = watcher.next().await.unwrap();
    assert!(matches!(last.outcome, Some(PullOutcome::Failed(_))));
    assert!(watcher.next().await.is_none());
}

#[tokio::test]
async fn an_image_found_present_is_over_at_once() {
    let mut watcher = PullTracker::finished("sha256:id", &image("sha256:id")).watch();
    let only = watcher.next().await.unwrap();
    assert_eq!(
        states(&only),
        [(LayerState::Present, 100), (LayerState::Present, 50)]
    );
    assert!(matches!(only.outcome, Some(PullOutcome::Pulled { .. })));
    assert!(watcher.next().await.is_none());
}
