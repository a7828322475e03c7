//! GetContainerEvents: container lifecycle events, in order, to every client, with the pod's
//! status and its containers' statuses; and a client that never reads loses the oldest events
//! without slowing anything down.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::workload::*;
use futures_util::future::join_all;

const CREATED_EVENT: i32 = cri::ContainerEventType::ContainerCreatedEvent as i32;
const STARTED_EVENT: i32 = cri::ContainerEventType::ContainerStartedEvent as i32;
const STOPPED_EVENT: i32 = cri::ContainerEventType::ContainerStoppedEvent as i32;
const DELETED_EVENT: i32 = cri::ContainerEventType::ContainerDeletedEvent as i32;
const LIFECYCLE: [i32; 4] = [CREATED_EVENT, STARTED_EVENT, STOPPED_EVENT, DELETED_EVENT];
const POD_READY: i32 = cri::PodSandboxState::SandboxReady as i32;
/// Events berthd keeps for a client that does not read (`berth_container::EVENT_BUFFER`).
const EVENT_BUFFER: usize = 1024;
const LONG: Duration = Duration::from_secs(20);

/// `/metrics`' value of an unlabelled series, 0 if absent.
// Metric values are whole counts, read as f64; float-to-int casts saturate.
#[allow(clippy::cast_possible_truncation)]
fn metric(berthd: &Berthd, name: &str) -> u64 {
    let text = berthd.metrics().expect("/metrics");
    metric_value(&text, name).unwrap_or(0.0) as u64
}

async fn wait_subscribers(berthd: &Berthd, n: u64) {
    poll(LONG, &format!("{n} event subscribers"), async || {
        (metric(berthd, "berth_container_event_subscribers") == n).then_some(())
    })
    .await;
}

/// The status of container `id` in an event, if the event has one.
fn status_of<'a>(
    event: &'a cri::ContainerEventResponse,
    id: &str,
) -> Option<&'a cri::ContainerStatus> {
    event.containers_statuses.iter().find(|s| s.id == id)
}

#[tokio::test]
async fn events_arrive_in_order() {
    let berthd = Rig::start("evorder").await;
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "events").await;
    // Running before anybody listens: no events of its own, but in every event's statuses.
    let neighbor = run(
        &berthd,
        &pod,
        container_config("neighbor", &busybox(), &["sleep", "3600"]),
    )
    .await;
    let mut first = container_events(&berthd).await;
    let mut second = container_events(&berthd).await;
    wait_subscribers(&berthd, 2).await;

    let id = create(
        &berthd,
        &pod,
        container_config("sleeper", &busybox(), &["sleep", "3600"]),
    )
    .await
    .expect("CreateContainer");
    start(&berthd, &id).await.expect("StartContainer");
    stop(&berthd, &id, 0).await.expect("StopContainer");
    remove(&berthd, &id).await.expect("RemoveContainer");

    let mut sequences = Vec::new();
    for stream in [&mut first, &mut second] {
        let mut events = Vec::new();
        for _ in LIFECYCLE {
            events.push(next_event(stream, LONG).await);
        }
        sequences.push(events);
    }
    for events in &sequences {
        let kinds: Vec<i32> = events.iter().map(|e| e.container_event_type).collect();
        assert_eq!(
            kinds, LIFECYCLE,
            "created, started, stopped, deleted: {events:#?}"
        );
        let states = [Some(CREATED), Some(RUNNING), Some(EXITED), None];
        for (event, state) in events.iter().zip(states) {
            assert_eq!(event.container_id, id, "{event:#?}");
            let pod_status = event
                .pod_sandbox_status
                .as_ref()
                .unwrap_or_else(|| panic!("no pod status: {event:#?}"));
            assert_eq!(pod_status.id, pod.id, "{event:#?}");
            assert_eq!(pod_status.state, POD_READY, "{event:#?}");
            let own = status_of(event, &id);
            match state {
                Some(state) => {
                    let own = own.unwrap_or_else(|| panic!("no status of {id}: {event:#?}"));
                    assert_eq!(own.state, state, "{event:#?}");
                    assert_eq!(
                        own.metadata.as_ref().map(|m| m.name.as_str()),
                        Some("sleeper")
                    );
                }
                None => assert!(
                    own.is_none(),
                    "a deleted container has no status: {event:#?}"
                ),
            }
            let other = status_of(event, &neighbor)
                .unwrap_or_else(|| panic!("no status of the neighbor: {event:#?}"));
            assert_eq!(other.state, RUNNING, "{event:#?}");
            assert_eq!(
                event.containers_statuses.len(),
                if state.is_some() { 2 } else { 1 }
            );
        }
        let started = status_of(&events[1], &id).expect("status");
        assert!(started.started_at > 0, "{started:?}");
        let stopped = status_of(&events[2], &id).expect("status");
        assert!(stopped.finished_at >= started.started_at, "{stopped:?}");
        assert_eq!(stopped.exit_code, 137, "timeout 0 kills: {stopped:?}");
        assert!(events[0].created_at > 0, "{events:#?}");
        assert!(
            events
                .windows(2)
                .all(|w| w[0].created_at <= w[1].created_at),
            "created_at never decreases: {:?}",
            events.iter().map(|e| e.created_at).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        sequences[0], sequences[1],
        "both clients got the same events"
    );

    drop(first);
    drop(second);
    wait_subscribers(&berthd, 0).await;
    stop_and_remove(&berthd, &neighbor).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

/// Containers per round (created, started, stopped, removed concurrently) and rounds: 4 events
/// per container, 1600 in all, well over the 1024 a client that does not read is kept.
const BATCH: usize = 8;
const ROUNDS: usize = 50;
/// An annotation this big makes every event (which carries all the pod's container statuses)
/// tens of KiB, so the HTTP/2 flow-control windows between berthd and the stuck client fill
/// after a few dozen events and the rest pile up in berthd's buffer.
const PADDING: usize = 8 << 10;

/// What identifies an event in a sequence.
type Summary = (String, i32, i64);

fn summary(e: &cri::ContainerEventResponse) -> Summary {
    (e.container_id.clone(), e.container_event_type, e.created_at)
}

/// One round: `BATCH` containers through their whole lifecycle; their ids.
async fn round(berthd: &Berthd, pod: &Pod, round: usize, padding: &str) -> Vec<String> {
    let configs = (0..BATCH).map(|i| {
        let mut config = shell(&format!("c{round}-{i}"), "true");
        config
            .annotations
            .insert("e2e/padding".into(), padding.to_string());
        config
    });
    let ids: Vec<String> = join_all(configs.map(|c| create(berthd, pod, c)))
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("CreateContainer in round {round}: {e:?}"));
    for (what, results) in [
        (
            "StartContainer",
            join_all(ids.iter().map(|id| start(berthd, id))).await,
        ),
        (
            "StopContainer",
            join_all(ids.iter().map(|id| stop(berthd, id, 0))).await,
        ),
        (
            "RemoveContainer",
            join_all(ids.iter().map(|id| remove(berthd, id))).await,
        ),
    ] {
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            panic!("{what} in round {round}: {e:?}");
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_slow_operations() {
    let berthd = Rig::start("evstuck").await;
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "churn").await;
    let total = BATCH * ROUNDS;
    // Kept open and not polled until every operation is done.
    let mut stuck = container_events(&berthd).await;
    let mut reader = container_events(&berthd).await;
    wait_subscribers(&berthd, 2).await;
    let reading = tokio::spawn(async move {
        let mut seen: Vec<Summary> = Vec::new();
        let mut deleted = 0;
        while deleted < total {
            let event = next_event(&mut reader, Duration::from_secs(120)).await;
            deleted += usize::from(event.container_event_type == DELETED_EVENT);
            seen.push(summary(&event));
        }
        (reader, seen)
    });

    let padding = "x".repeat(PADDING);
    let began = std::time::Instant::now();
    let operations = async {
        let mut ids = Vec::new();
        for r in 0..ROUNDS {
            ids.extend(round(&berthd, &pod, r, &padding).await);
        }
        ids
    };
    let ids = tokio::time::timeout(Duration::from_secs(300), operations)
        .await
        .expect("container operations did not finish within 5 min");
    eprintln!("{total} container lifecycles took {:?}", began.elapsed());
    let (reader, seen) = tokio::time::timeout(Duration::from_secs(120), reading)
        .await
        .expect("the reading client did not get every event")
        .expect("the reading client failed");

    // The reading client got every event, each container's in lifecycle order.
    assert_eq!(seen.len(), 4 * total, "events of {total} containers");
    let mut per_container: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for (id, kind, at) in &seen {
        per_container.entry(id).or_default().push((*kind, *at));
    }
    assert_eq!(per_container.len(), total);
    for id in &ids {
        let events = per_container
            .get(id.as_str())
            .unwrap_or_else(|| panic!("no events of {id}"));
        let kinds: Vec<i32> = events.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, LIFECYCLE, "events of {id}");
        assert!(
            events.windows(2).all(|w| w[0].1 <= w[1].1),
            "{id}: {events:?}"
        );
    }
    // berthd counts a client's losses when its stream is polled again and notices them.
    eprintln!(
        "dropped before the stuck client is polled: {}",
        metric(&berthd, "berth_container_events_dropped_total")
    );

    // The stuck client, polled at last: what it had received before it stopped reading, then
    // the newest events berthd kept for it; the ones in between are lost and counted.
    let last = seen.last().expect("events").clone();
    let mut got: Vec<Summary> = Vec::new();
    while got.last() != Some(&last) {
        got.push(summary(
            &next_event(&mut stuck, Duration::from_secs(60)).await,
        ));
    }
    let dropped = usize::try_from(metric(&berthd, "berth_container_events_dropped_total")).unwrap();
    let kept = seen.iter().zip(&got).take_while(|(a, b)| a == b).count();
    eprintln!(
        "stuck client: {kept} events before it stalled, {dropped} dropped, {} after",
        got.len() - kept
    );
    assert!(
        dropped > 0,
        "berth_container_events_dropped_total counts the lost events"
    );
    assert_eq!(
        got.len() + dropped,
        seen.len(),
        "every event was either received or counted"
    );
    assert_eq!(
        got[kept..],
        seen[kept + dropped..],
        "one gap: the oldest events the stuck client had not read were dropped"
    );
    assert_eq!(
        got.len() - kept,
        EVENT_BUFFER,
        "the newest {EVENT_BUFFER} events were kept"
    );

    drop(stuck);
    drop(reader);
    wait_subscribers(&berthd, 0).await;
    pod.remove(&berthd).await;
    berthd.finish();
}
