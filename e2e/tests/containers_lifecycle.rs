//! Container lifecycle edge cases as kubelet meets them: starting twice, removing running
//! containers, unknown ids, list filters, retried creates, and pods stopped or removed with their
//! containers in them.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::pods::{remove_pod, stop_pod};
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);
const FOREVER: &str = "while true; do sleep 0.1; done";

#[tokio::test]
async fn start_twice_fails_and_remove_kills_a_running_container() {
    let berthd = Berthd::start("ctrstart2").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "start2").await;
    let running = run(&berthd, &pod, shell("running", FOREVER)).await;
    let exited = run(&berthd, &pod, shell("exited", "exit 4")).await;
    wait_exited(&berthd, &exited, LONG).await;
    let exited_before = status(&berthd, &exited).await;

    let err = start(&berthd, &running)
        .await
        .expect_err("StartContainer on a RUNNING container");
    assert_ne!(err.code(), Code::Ok);
    assert_eq!(state(&berthd, &running).await, RUNNING, "still running");
    let err = start(&berthd, &exited)
        .await
        .expect_err("StartContainer on an EXITED container");
    assert_ne!(err.code(), Code::Ok);
    let exited_after = status(&berthd, &exited).await;
    assert_eq!(
        (
            exited_after.state,
            exited_after.exit_code,
            exited_after.finished_at
        ),
        (
            exited_before.state,
            exited_before.exit_code,
            exited_before.finished_at
        ),
        "unchanged"
    );

    // RemoveContainer of a running container kills it (kubelet stops first, but must not rely on it).
    let pid = pid(&berthd, &running).await;
    remove(&berthd, &running)
        .await
        .expect("RemoveContainer of a running container");
    wait_gone(pid, LONG).await;
    assert_eq!(
        status_response(&berthd, &running, false)
            .await
            .expect_err("removed")
            .code(),
        Code::NotFound
    );
    remove(&berthd, &running)
        .await
        .expect("RemoveContainer twice is fine");
    remove(&berthd, &exited).await.expect("RemoveContainer");
    assert!(list(&berthd, None).await.is_empty());

    // Unknown ids.
    let unknown = "ef".repeat(32);
    for (what, code) in [
        (
            "ContainerStatus",
            status_response(&berthd, &unknown, false).await.map(|_| ()),
        ),
        ("StartContainer", start(&berthd, &unknown).await),
        ("StopContainer", stop(&berthd, &unknown, 0).await),
    ]
    .map(|(w, r)| (w, r.expect_err("unknown id").code()))
    {
        assert_eq!(code, Code::NotFound, "{what}");
    }
    remove(&berthd, &unknown)
        .await
        .expect("RemoveContainer of an unknown id is fine (kubelet retries)");
    let mut rt = berthd.runtime().await.expect("runtime client");
    let err = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: "12".repeat(32),
            config: Some(shell("orphan", "true")),
            sandbox_config: Some(pod.config.clone()),
        })
        .await
        .expect_err("CreateContainer in an unknown sandbox");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(list(&berthd, None).await.is_empty());
    pod.remove(&berthd).await;
    berthd.finish();
}

fn labelled(name: &str, tier: &str, script: &str) -> cri::ContainerConfig {
    let mut config = shell(name, script);
    config.labels.insert("tier".into(), tier.into());
    config
}

#[tokio::test]
async fn list_containers_filters() {
    let berthd = Berthd::start("ctrlist").await.expect("starting berthd");
    let image_ref = pull(&berthd, &busybox()).await;
    let a = Pod::run(&berthd, "lista").await;
    let b = Pod::run(&berthd, "listb").await;
    let a_run = run(&berthd, &a, labelled("arun", "web", FOREVER)).await;
    let a_done = run(&berthd, &a, labelled("adone", "web", "exit 0")).await;
    let a_new = create(&berthd, &a, labelled("anew", "db", "true"))
        .await
        .expect("CreateContainer");
    let b_run = run(&berthd, &b, labelled("brun", "db", FOREVER)).await;
    wait_exited(&berthd, &a_done, LONG).await;

    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let all = list(&berthd, None).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let created = all.iter().find(|c| c.id == a_new).expect("the created one");
    assert_eq!(created.state, CREATED);
    assert_eq!(created.pod_sandbox_id, a.id);
    assert_eq!(
        created.metadata.as_ref().map(|m| m.name.as_str()),
        Some("anew")
    );
    assert!(
        created.image_ref == image_ref || created.image_id == image_ref,
        "the pulled image: {created:?}"
    );
    assert!(created.created_at > 0);
    assert_eq!(created.labels["tier"], "db");

    let by_state = |state| cri::ContainerFilter {
        state: Some(cri::ContainerStateValue { state }),
        ..Default::default()
    };
    assert_eq!(
        list_ids(&berthd, by_state(RUNNING)).await,
        sorted(vec![&a_run, &b_run])
    );
    assert_eq!(
        list_ids(&berthd, by_state(EXITED)).await,
        sorted(vec![&a_done])
    );
    assert_eq!(
        list_ids(&berthd, by_state(CREATED)).await,
        sorted(vec![&a_new])
    );
    assert_eq!(
        list_ids(
            &berthd,
            cri::ContainerFilter {
                pod_sandbox_id: a.id.clone(),
                ..Default::default()
            }
        )
        .await,
        sorted(vec![&a_run, &a_done, &a_new])
    );
    assert_eq!(
        list_ids(
            &berthd,
            cri::ContainerFilter {
                id: a_run[..12].to_string(),
                ..Default::default()
            }
        )
        .await,
        sorted(vec![&a_run]),
        "by id prefix"
    );
    assert_eq!(
        list_ids(
            &berthd,
            cri::ContainerFilter {
                label_selector: HashMap::from([("tier".into(), "db".into())]),
                ..Default::default()
            }
        )
        .await,
        sorted(vec![&a_new, &b_run])
    );
    assert_eq!(
        list_ids(
            &berthd,
            cri::ContainerFilter {
                label_selector: HashMap::from([
                    ("tier".into(), "web".into()),
                    ("container".into(), "adone".into())
                ]),
                ..Default::default()
            }
        )
        .await,
        sorted(vec![&a_done]),
        "every label must match"
    );
    assert_eq!(
        list_ids(
            &berthd,
            cri::ContainerFilter {
                pod_sandbox_id: b.id.clone(),
                state: Some(cri::ContainerStateValue { state: RUNNING }),
                label_selector: HashMap::from([("tier".into(), "web".into())]),
                ..Default::default()
            }
        )
        .await,
        Vec::<String>::new(),
        "filters combine"
    );
    for id in [&a_run, &a_done, &a_new, &b_run] {
        stop_and_remove(&berthd, id).await;
    }
    a.remove(&berthd).await;
    b.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn a_retried_create_gets_the_same_container() {
    let berthd = Berthd::start("ctrretry").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "retry").await;
    let config = shell("retried", FOREVER);
    // kubelet's CreateContainer timed out and it sends the same request again while the first is
    // still in flight.
    let (first, second) = tokio::join!(
        create(&berthd, &pod, config.clone()),
        create(&berthd, &pod, config.clone())
    );
    let id = first.expect("first CreateContainer");
    assert_eq!(
        second.expect("second CreateContainer"),
        id,
        "the retry in flight returns the same container"
    );
    // Once it is done, a repeat either returns it again or is refused (containerd: "name is
    // reserved"), but never makes a second container with the same name and attempt.
    match create(&berthd, &pod, config.clone()).await {
        Ok(again) => assert_eq!(again, id),
        Err(e) => assert_ne!(e.code(), Code::Ok),
    }
    assert_eq!(list(&berthd, None).await.len(), 1);
    let mut next = config;
    next.metadata = Some(cri::ContainerMetadata {
        name: "retried".into(),
        attempt: 1,
    });
    next.log_path = "retried_1.log".into();
    let other = create(&berthd, &pod, next)
        .await
        .expect("CreateContainer attempt 1");
    assert_ne!(other, id, "a new attempt is a new container");
    for id in [&id, &other] {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn stopping_and_removing_a_pod_takes_its_containers_along() {
    let berthd = Berthd::start("ctrpodstop").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "podstop").await;
    let a = run(&berthd, &pod, shell("a", FOREVER)).await;
    // Ignores SIGTERM: StopPodSandbox must still get rid of it.
    let b = run(
        &berthd,
        &pod,
        shell("b", &format!("trap '' TERM; {FOREVER}")),
    )
    .await;
    let created = create(&berthd, &pod, shell("c", "true"))
        .await
        .expect("CreateContainer");
    let pids = [pid(&berthd, &a).await, pid(&berthd, &b).await];
    stop_pod(&berthd, &pod.id).await.expect("StopPodSandbox");
    for id in [&a, &b] {
        assert_eq!(
            state(&berthd, id).await,
            EXITED,
            "{id} after StopPodSandbox"
        );
    }
    for pid in pids {
        wait_gone(pid, LONG).await;
    }
    let err = create(&berthd, &pod, shell("late", "true"))
        .await
        .expect_err("CreateContainer in a stopped pod");
    assert_ne!(err.code(), Code::Ok);
    remove_pod(&berthd, &pod.id)
        .await
        .expect("RemovePodSandbox");
    for id in [&a, &b, &created] {
        assert_eq!(
            status_response(&berthd, id, false)
                .await
                .expect_err("removed with the pod")
                .code(),
            Code::NotFound
        );
    }
    assert!(list(&berthd, None).await.is_empty());

    // RemovePodSandbox without StopPodSandbox first: running containers are killed and removed.
    let pod = Pod::run(&berthd, "podrm").await;
    let running = run(&berthd, &pod, shell("running", FOREVER)).await;
    let pid = pid(&berthd, &running).await;
    remove_pod(&berthd, &pod.id)
        .await
        .expect("RemovePodSandbox of a ready pod");
    wait_gone(pid, LONG).await;
    assert!(list(&berthd, None).await.is_empty());
    berthd.finish();
}
