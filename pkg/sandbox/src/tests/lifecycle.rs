//! RunPodSandbox, StopPodSandbox and RemovePodSandbox, and the rollback of a RunPodSandbox that
//! fails at any of its steps.

use berth_network::cni::Command;
use berth_network::testing::PLUGINS;

use super::fakes::{FakeContainers, Fault, Step};
use super::{Node, pod, shared_pid_pod};
use crate::{NamespaceMode, Phase, SandboxError, SandboxState, UserNamespaceMappings};

fn plugin_calls(node: &Node, id: &str) -> Vec<(String, Command)> {
    node.plugins.commands_for(id)
}

fn cni(plugin: usize, command: Command) -> (String, Command) {
    (PLUGINS[plugin].to_string(), command)
}

#[tokio::test]
async fn run_status_stop_remove() {
    let mut node = Node::new();
    let id = node.run(shared_pid_pod("web")).await.unwrap();

    let record = node.service.get(&id).unwrap();
    assert_eq!(record.phase, Phase::Created);
    {
        let world = node.host.world();
        for ns in [&record.netns, &record.ipcns, &record.utsns] {
            let ns = ns.as_ref().expect("a pod namespace");
            assert!(world.pins.contains(ns), "{ns:?} is not pinned");
        }
        assert!(world.shm.contains(record.shm.as_ref().unwrap()));
        assert!(
            world
                .cgroups
                .contains(&record.cgroup.as_ref().unwrap().path)
        );
        assert!(world.inits.contains_key(&record.init.as_ref().unwrap().pid));
    }
    let ips = record.ips();
    assert_eq!(ips.len(), 1);
    let hosts = std::fs::read_to_string(record.hosts_path()).unwrap();
    assert!(hosts.ends_with(&format!("{}\tweb\n", ips[0])), "{hosts}");
    assert_eq!(
        std::fs::read_to_string(record.hostname_path()).unwrap(),
        "web\n"
    );
    assert_eq!(
        plugin_calls(&node, &id),
        vec![cni(0, Command::Add), cni(1, Command::Add)]
    );
    // The persisted record is the cached one.
    node.restart();
    assert_eq!(node.service.get(&id).unwrap(), record);

    node.stop(&id).await.unwrap();
    let stopped = node.service.get(&id).unwrap();
    assert_eq!(stopped.phase, Phase::Stopped);
    assert_eq!(stopped.state(), SandboxState::NotReady);
    assert!(stopped.network.is_none());
    assert!(node.plugins.leased().is_empty());
    assert_eq!(node.containers.calls(), vec![("stop", id.clone())]);
    // Stop keeps the namespaces for Remove, and kills the init.
    assert!(
        node.host
            .world()
            .pins
            .contains(stopped.netns.as_ref().unwrap())
    );
    assert!(node.host.world().inits.is_empty());

    // Stop is idempotent: no second DEL.
    node.stop(&id).await.unwrap();
    assert_eq!(plugin_calls(&node, &id).len(), 4);

    node.remove(&id).await.unwrap();
    assert_eq!(
        node.containers.calls(),
        vec![("stop", id.clone()), ("remove", id.clone())]
    );
    node.assert_nothing_left();
    node.remove(&id).await.unwrap();
    assert!(matches!(
        node.stop(&id).await,
        Err(SandboxError::NotFound(_))
    ));
}

#[tokio::test]
async fn remove_without_stop_stops_first() {
    let node = Node::new();
    let id = node.run(pod("web")).await.unwrap();
    node.remove(&id).await.unwrap();
    assert_eq!(
        node.containers.calls(),
        vec![("stop", id.clone()), ("remove", id.clone())]
    );
    assert_eq!(
        plugin_calls(&node, &id)[2..],
        [cni(1, Command::Del), cni(0, Command::Del)]
    );
    node.assert_nothing_left();
}

#[tokio::test]
async fn a_host_network_pod_has_no_pod_namespaces_and_no_cni() {
    let node = Node::new();
    let mut config = pod("host");
    config.namespaces.network = NamespaceMode::Node;
    config.namespaces.ipc = NamespaceMode::Node;
    let id = node.run(config).await.unwrap();
    let record = node.service.get(&id).unwrap();
    assert_eq!(record.state(), SandboxState::Ready);
    assert!(record.netns.is_none() && record.shm.is_none());
    assert!(node.host.world().pins.is_empty());
    assert!(node.plugins.calls().is_empty());
    node.stop(&id).await.unwrap();
    node.remove(&id).await.unwrap();
    assert!(node.plugins.calls().is_empty());
    node.assert_nothing_left();
}

/// A failure at each step of RunPodSandbox: everything done before it is undone (the CNI DEL
/// runs for an ADD that happened), and the record is gone.
#[tokio::test]
async fn a_failure_at_each_step_rolls_back_everything_before_it() {
    let host_steps = [
        Step::Pin,
        Step::MountShm,
        Step::PlanCgroup,
        Step::EnsureCgroup,
        Step::StartInit,
    ];
    for step in host_steps {
        let node = Node::new();
        node.host.inject(step, Fault::Error);
        let err = node.run(shared_pid_pod("web")).await.unwrap_err();
        assert!(format!("{err}").contains("injected"), "{step:?}: {err}");
        // No ADD happened, so no DEL either.
        assert!(node.plugins.calls().is_empty(), "{step:?}");
        node.assert_nothing_left();
    }
    for (plugin, expected) in [
        // The CNI runtime deletes the list itself after a failed ADD; no DEL of its own follows
        // from the sandbox, since the ADD's outcome (a failure) is known.
        (
            0,
            vec![
                cni(0, Command::Add),
                cni(1, Command::Del),
                cni(0, Command::Del),
            ],
        ),
        (
            1,
            vec![
                cni(0, Command::Add),
                cni(1, Command::Add),
                cni(1, Command::Del),
                cni(0, Command::Del),
            ],
        ),
    ] {
        let node = Node::new();
        node.plugins
            .inject(PLUGINS[plugin], Command::Add, Fault::Error);
        let err = node.run(shared_pid_pod("web")).await.unwrap_err();
        assert!(matches!(err, SandboxError::Cni(_)), "{err}");
        let calls: Vec<_> = node
            .plugins
            .calls()
            .into_iter()
            .map(|c| (c.plugin, c.command))
            .collect();
        assert_eq!(calls, expected, "ADD failing in plugin {plugin}");
        node.assert_nothing_left();
    }
}

/// A rollback that fails itself keeps the record: the half-made pod stays listed (NOTREADY),
/// and RemovePodSandbox, or a retry of RunPodSandbox, finishes the cleanup.
#[tokio::test]
async fn a_failed_rollback_leaves_a_record_that_remove_or_a_retry_cleans_up() {
    for retry in [false, true] {
        let node = Node::new();
        node.plugins.inject(PLUGINS[1], Command::Add, Fault::Error);
        node.host.inject(Step::Unpin, Fault::Error);
        node.run(pod("web")).await.unwrap_err();
        let left = node.records();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].phase, Phase::Creating);
        assert_eq!(left[0].state(), SandboxState::NotReady);
        assert!(!node.host.world().pins.is_empty());

        node.plugins.heal();
        node.host.heal();
        if retry {
            let id = node.run(pod("web")).await.unwrap();
            assert_ne!(id, left[0].id);
            node.remove(&id).await.unwrap();
        } else {
            node.remove(&left[0].id).await.unwrap();
        }
        node.assert_nothing_left();
    }
}

#[tokio::test]
async fn a_kubelet_retry_finds_the_first_sandbox() {
    let node = Node::new();
    let (first, second) = tokio::join!(node.run(pod("web")), node.run(pod("web")));
    let id = first.unwrap();
    assert_eq!(second.unwrap(), id);
    assert_eq!(node.run(pod("web")).await.unwrap(), id);
    assert_eq!(node.records().len(), 1);
    assert_eq!(node.plugins.calls().len(), 2, "one ADD per plugin");
    // Also once stopped: kubelet makes a new attempt for a new sandbox.
    node.stop(&id).await.unwrap();
    assert_eq!(node.run(pod("web")).await.unwrap(), id);
    let mut next = pod("web");
    next.metadata.attempt = 1;
    let other = node.run(next).await.unwrap();
    assert_ne!(other, id);
    node.remove(&id).await.unwrap();
    node.remove(&other).await.unwrap();
    node.assert_nothing_left();
}

#[tokio::test]
async fn stop_fails_while_the_containers_cannot_be_stopped_and_keeps_the_network() {
    let node = Node::new();
    let id = node.run(pod("web")).await.unwrap();
    node.containers
        .fail_stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    node.stop(&id).await.unwrap_err();
    node.remove(&id).await.unwrap_err();
    let record = node.service.get(&id).unwrap();
    assert_eq!(record.phase, Phase::Created);
    assert!(record.network.is_some());
    assert_eq!(
        node.plugins.calls().len(),
        2,
        "no DEL while containers may run"
    );
    node.containers
        .fail_stop
        .store(false, std::sync::atomic::Ordering::Relaxed);
    node.remove(&id).await.unwrap();
    node.assert_nothing_left();
}

/// A broken CNI DEL never blocks StopPodSandbox; RemovePodSandbox retries it and fails until it
/// works, so the pod's address is not leaked.
#[tokio::test]
async fn a_failed_cni_del_at_stop_is_retried_by_remove() {
    let node = Node::new();
    let id = node.run(pod("web")).await.unwrap();
    node.plugins.inject(PLUGINS[1], Command::Del, Fault::Error);
    node.stop(&id).await.unwrap();
    let record = node.service.get(&id).unwrap();
    assert_eq!(record.phase, Phase::Stopped);
    assert!(
        record.network.is_some(),
        "the DEL failed: keep what it needs"
    );
    let err = node.remove(&id).await.unwrap_err();
    assert!(matches!(err, SandboxError::Cni(_)), "{err}");
    assert!(node.service.get(&id).is_ok());
    node.plugins.heal();
    node.remove(&id).await.unwrap();
    node.assert_nothing_left();
}

#[tokio::test]
async fn bad_requests_create_nothing() {
    let node = Node::new();
    let mut unknown = pod("web");
    unknown.runtime_handler = "kata".into();
    assert!(matches!(
        node.run(unknown).await,
        Err(SandboxError::UnknownHandler { .. })
    ));
    let mut no_uid = pod("web");
    no_uid.metadata.uid.clear();
    assert!(matches!(
        node.run(no_uid).await,
        Err(SandboxError::IncompleteMetadata)
    ));
    assert!(node.containers.calls().is_empty());
    node.assert_nothing_left();
}

#[tokio::test]
async fn user_namespace_pods_ask_the_container_layer() {
    let mut userns_pod = pod("web");
    userns_pod.userns = Some(UserNamespaceMappings::single(65536, 65536));

    let refusing = Node::with_containers(FakeContainers::refusing_user_namespaces(
        "no idmapped mounts",
    ));
    let err = refusing.run(userns_pod.clone()).await.unwrap_err();
    assert!(
        matches!(&err, SandboxError::UserNamespacesUnavailable { problem } if problem.contains("idmapped")),
        "{err}"
    );
    refusing.assert_nothing_left();

    let node = Node::new();
    let id = node.run(userns_pod).await.unwrap();
    let record = node.service.get(&id).unwrap();
    assert!(
        node.host
            .world()
            .pins
            .contains(record.userns_path.as_ref().unwrap())
    );
    node.remove(&id).await.unwrap();
    node.assert_nothing_left();
}
