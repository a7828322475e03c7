//! Recovery after berthd died in the middle of RunPodSandbox, StopPodSandbox or
//! RemovePodSandbox: a new berthd finds the records and host state the crash left, and a kubelet
//! retry, or Stop and Remove, reconcile them.

use berth_network::cni::Command;
use berth_network::testing::PLUGINS;

use super::fakes::{Fault, Step};
use super::{Node, shared_pid_pod};
use crate::{Phase, SandboxError, SandboxState};

/// Where RunPodSandbox can die, each right after its step took effect. (A crash inside the
/// namespace pin is not among them: the pin runs on a blocking task whose panic RunPodSandbox
/// sees as an error, and rolls back; the crash after the mount comes right after the pin.)
#[derive(Debug, Clone, Copy)]
enum CrashPoint {
    Host(Step),
    /// During the ADD of this plugin: it reserved what it reserves, nothing was persisted.
    CniAdd(usize),
}

const RUN_CRASHES: [CrashPoint; 6] = [
    CrashPoint::Host(Step::MountShm),
    CrashPoint::Host(Step::PlanCgroup),
    CrashPoint::Host(Step::EnsureCgroup),
    CrashPoint::Host(Step::StartInit),
    CrashPoint::CniAdd(0),
    CrashPoint::CniAdd(1),
];

/// Runs a pod into `crash` and restarts berthd; returns the half-made sandbox's ID.
async fn crash_during_run(node: &mut Node, crash: CrashPoint) -> String {
    match crash {
        CrashPoint::Host(step) => node.host.inject(step, Fault::Crash),
        CrashPoint::CniAdd(plugin) => {
            node.plugins
                .inject(PLUGINS[plugin], Command::Add, Fault::Crash)
        }
    }
    let err = node.run(shared_pid_pod("web")).await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::Task { source, .. } if source.is_panic()),
        "{crash:?}: {err}"
    );
    node.host.heal();
    node.plugins.heal();
    node.restart();
    let records = node.records();
    assert_eq!(records.len(), 1, "{crash:?}");
    assert_eq!(records[0].phase, Phase::Creating, "{crash:?}");
    assert_eq!(records[0].state(), SandboxState::NotReady, "{crash:?}");
    records[0].id.clone()
}

#[tokio::test]
async fn after_a_crash_during_run_stop_and_remove_clean_up_everything() {
    for crash in RUN_CRASHES {
        let mut node = Node::new();
        let id = crash_during_run(&mut node, crash).await;
        node.stop(&id).await.unwrap();
        node.remove(&id).await.unwrap();
        node.assert_nothing_left();
        if let CrashPoint::CniAdd(_) = crash {
            // The ADD's outcome was never recorded: a DEL without a result released it.
            let last = node.plugins.calls().pop().unwrap();
            assert_eq!((last.command, last.prev_result), (Command::Del, false));
        }
    }
}

#[tokio::test]
async fn after_a_crash_during_run_a_kubelet_retry_replaces_the_half_made_sandbox() {
    for crash in RUN_CRASHES {
        let mut node = Node::new();
        let old = crash_during_run(&mut node, crash).await;
        let id = node.run(shared_pid_pod("web")).await.unwrap();
        assert_ne!(id, old, "{crash:?}: the retry got the half-made sandbox");
        let records = node.records();
        assert_eq!(records.len(), 1, "{crash:?}");
        assert_eq!(records[0].phase, Phase::Created);
        assert_eq!(node.plugins.leased(), vec![id.clone()], "{crash:?}");
        node.remove(&id).await.unwrap();
        node.assert_nothing_left();
    }
}

/// The init is started before the record says so (the record is written once for
/// namespaces, shm, cgroup and init), and `berth-init` does not die with berthd. After a crash
/// right there, nothing knows the init; Remove finds it in the pod cgroup and kills it, so the
/// cgroup can go (before, the cgroup was busy on every retry and the init ran on for good).
/// The e2e failpoints do not reach this window (`sandbox/run/after-cgroup` is before the start,
/// `before-cni` after the write).
#[tokio::test]
async fn a_crash_between_starting_the_init_and_recording_it_is_cleaned_up_by_remove() {
    let mut node = Node::new();
    let id = crash_during_run(&mut node, CrashPoint::Host(Step::StartInit)).await;
    assert!(node.service.get(&id).unwrap().init.is_none());
    assert_eq!(node.host.world().inits.len(), 1);
    node.stop(&id).await.unwrap();
    node.remove(&id).await.unwrap();
    assert!(node.service.get(&id).is_err());
    node.assert_nothing_left();
}

/// berthd dies during StopPodSandbox's CNI DEL: after the restart the pod is still Created with
/// its network recorded, and the next Stop deletes it again.
#[tokio::test]
async fn after_a_crash_during_stop_the_next_stop_finishes() {
    let mut node = Node::new();
    let id = node.run(shared_pid_pod("web")).await.unwrap();
    node.plugins.inject(PLUGINS[0], Command::Del, Fault::Crash);
    node.stop(&id).await.unwrap_err();
    node.plugins.heal();
    node.restart();
    let record = node.service.get(&id).unwrap();
    assert_eq!(record.phase, Phase::Created);
    assert!(record.network.is_some());
    node.stop(&id).await.unwrap();
    assert_eq!(node.service.get(&id).unwrap().phase, Phase::Stopped);
    node.remove(&id).await.unwrap();
    node.assert_nothing_left();
}

/// berthd dies at each step of RemovePodSandbox: the record is still there, and the next Remove
/// finishes from it.
#[tokio::test]
async fn after_a_crash_during_remove_the_next_remove_finishes() {
    for step in [Step::UnmountShm, Step::Unpin, Step::RemoveCgroup] {
        let mut node = Node::new();
        let id = node.run(shared_pid_pod("web")).await.unwrap();
        node.stop(&id).await.unwrap();
        node.host.inject(step, Fault::Crash);
        node.remove(&id).await.unwrap_err();
        node.host.heal();
        node.restart();
        assert!(node.service.get(&id).is_ok(), "{step:?}");
        node.remove(&id).await.unwrap();
        node.assert_nothing_left();
    }
}
