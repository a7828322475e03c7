//! The CNI runtime's protocol logic on the fake executor: chaining, rollback of a failed ADD,
//! DEL with and without the persisted result, CHECK. No plugin runs, no root is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cni::{Cni, CniError, Command, PodNetworkRequest};
use crate::testing::{FakePlugins, Fault, NETWORK, PLUGINS};

struct Fixture {
    dir: tempfile::TempDir,
    conf_dir: PathBuf,
    plugins: Arc<FakePlugins>,
    cni: Cni,
    netns: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (conf_dir, bin_dir) = FakePlugins::write_network(dir.path()).unwrap();
    // ADD needs the namespace file to exist; any file will do for the fake plugins.
    let netns = dir.path().join("netns");
    std::fs::write(&netns, "").unwrap();
    let plugins = FakePlugins::new();
    let cni =
        Cni::new(&conf_dir, vec![bin_dir], Duration::from_secs(5)).with_executor(plugins.clone());
    Fixture {
        dir,
        conf_dir,
        plugins,
        cni,
        netns,
    }
}

fn request(id: &str, netns: &Path) -> PodNetworkRequest {
    PodNetworkRequest {
        sandbox_id: id.into(),
        netns: Some(netns.to_path_buf()),
        pod_name: "web".into(),
        pod_namespace: "default".into(),
        pod_uid: "uid-1".into(),
        ..Default::default()
    }
}

fn add(p: &str) -> (String, Command) {
    (p.to_string(), Command::Add)
}

fn del(p: &str) -> (String, Command) {
    (p.to_string(), Command::Del)
}

#[tokio::test]
async fn setup_chains_the_list_and_teardown_deletes_it_in_reverse() {
    let f = fixture();
    let network = f.cni.setup(&request("pod-a", &f.netns)).await.unwrap();
    assert_eq!(network.network_name, NETWORK);
    assert_eq!(network.ips.len(), 1);
    assert_eq!(f.plugins.leased(), vec!["pod-a".to_string()]);
    let calls = f.plugins.calls();
    assert_eq!(calls.len(), 2);
    assert!(!calls[0].prev_result && calls[1].prev_result, "{calls:?}");

    f.cni.check(&network).await.unwrap();
    f.cni
        .teardown(&network.request, Some(&network))
        .await
        .unwrap();
    assert_eq!(
        f.plugins.commands_for("pod-a"),
        vec![
            add(PLUGINS[0]),
            add(PLUGINS[1]),
            (PLUGINS[0].to_string(), Command::Check),
            (PLUGINS[1].to_string(), Command::Check),
            del(PLUGINS[1]),
            del(PLUGINS[0]),
        ]
    );
    // DEL gets the persisted result back.
    assert!(f.plugins.calls()[4..].iter().all(|c| c.prev_result));
    assert!(f.plugins.leased().is_empty());
}

#[tokio::test]
async fn a_failed_add_deletes_what_the_earlier_plugins_set_up() {
    let f = fixture();
    f.plugins.inject(PLUGINS[1], Command::Add, Fault::Error);
    let err = f.cni.setup(&request("pod-b", &f.netns)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            CniError::Plugin {
                command: Command::Add,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        f.plugins.commands_for("pod-b"),
        vec![
            add(PLUGINS[0]),
            add(PLUGINS[1]),
            del(PLUGINS[1]),
            del(PLUGINS[0])
        ]
    );
    assert!(f.plugins.leased().is_empty(), "the address leaked");
}

#[tokio::test]
async fn teardown_without_a_persisted_result_uses_the_current_config_and_a_gone_netns() {
    let f = fixture();
    f.plugins.inject(PLUGINS[1], Command::Add, Fault::Crash);
    let cni = f.cni.clone();
    let req = request("pod-c", &f.netns);
    // berthd dies during the ADD: nothing is returned, let alone persisted.
    let crashed = tokio::spawn(async move { cni.setup(&req).await }).await;
    assert!(crashed.unwrap_err().is_panic());
    assert_eq!(f.plugins.leased(), vec!["pod-c".to_string()]);

    // After the restart: DEL from the request alone, with the namespace gone (reboot).
    f.plugins.heal();
    std::fs::remove_file(&f.netns).unwrap();
    f.cni
        .teardown(&request("pod-c", &f.netns), None)
        .await
        .unwrap();
    let dels: Vec<_> = f
        .plugins
        .calls()
        .into_iter()
        .filter(|c| c.command == Command::Del)
        .collect();
    assert_eq!(dels.len(), 2);
    assert!(dels.iter().all(|c| !c.prev_result && c.netns.is_empty()));
    assert!(f.plugins.leased().is_empty());
}

#[tokio::test]
async fn teardown_uses_the_persisted_list_after_the_conf_dir_is_gone() {
    let f = fixture();
    let network = f.cni.setup(&request("pod-d", &f.netns)).await.unwrap();
    std::fs::remove_dir_all(&f.conf_dir).unwrap();
    f.cni
        .teardown(&network.request, Some(&network))
        .await
        .unwrap();
    assert!(f.plugins.leased().is_empty());
    // Without the persisted result there is nothing to delete with.
    let err = f.cni.teardown(&network.request, None).await.unwrap_err();
    assert!(matches!(err, CniError::NoConfig { .. }), "{err}");
    drop(f.dir);
}

#[tokio::test]
async fn teardown_runs_every_plugin_even_after_one_failed() {
    let f = fixture();
    let network = f.cni.setup(&request("pod-e", &f.netns)).await.unwrap();
    f.plugins.inject(PLUGINS[1], Command::Del, Fault::Error);
    let err = f
        .cni
        .teardown(&network.request, Some(&network))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CniError::Teardown { errors } if errors.len() == 1),
        "{err}"
    );
    // The IPAM plugin's DEL still ran: the address is free although the DEL as a whole failed.
    assert!(f.plugins.leased().is_empty());
}

#[tokio::test]
async fn validate_asks_every_plugin_for_its_versions() {
    let f = fixture();
    let selected = f.cni.validate().await.unwrap();
    assert_eq!(selected.list.name(), NETWORK);
    let versions: Vec<_> = f.plugins.calls().into_iter().map(|c| c.command).collect();
    assert_eq!(versions, vec![Command::Version, Command::Version]);
}
