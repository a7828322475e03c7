//! Unit tests of the sandbox lifecycle on a fake host (namespaces, /dev/shm, cgroups, init), fake
//! CNI plugins and a fake container layer, with the real store on a tempdir: no root, no plugin
//! binaries, milliseconds per test.
//!
//! A berthd crash is simulated by a fault that panics right after its step took effect: the
//! detached lifecycle task dies without running its rollback, and the fakes' world and the store
//! keep what the step left, as the kernel and the disk would. [`Node::restart`] then opens a
//! new service on the same store and world.

mod fakes;
mod lifecycle;
mod recovery;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_network::Cni;
use berth_network::testing::FakePlugins;
use berth_store::Store;

use crate::{
    NamespaceMode, NamespaceOptions, PodContainers, PodMetadata, SandboxConfig, SandboxError,
    SandboxFilter, SandboxRecord, SandboxService,
};
use fakes::{FakeContainers, FakeHost};

pub(crate) struct Node {
    dir: tempfile::TempDir,
    store: Store,
    host: FakeHost,
    plugins: Arc<FakePlugins>,
    cni: Cni,
    containers: Arc<FakeContainers>,
    service: SandboxService,
}

const HANDLER: &str = "runc";

impl Node {
    fn new() -> Node {
        Node::with_containers(FakeContainers::default())
    }

    fn with_containers(containers: FakeContainers) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let (conf_dir, bin_dir) = FakePlugins::write_network(dir.path()).unwrap();
        let plugins = FakePlugins::new();
        let cni = Cni::new(conf_dir, vec![bin_dir], Duration::from_secs(5))
            .with_executor(plugins.clone());
        let store = Store::open(dir.path().join("meta.redb")).unwrap();
        let host = FakeHost::default();
        let service = open(&dir, &store, &cni, &host);
        Node {
            dir,
            store,
            host,
            plugins,
            cni,
            containers: Arc::new(containers),
            service,
        }
    }

    /// berthd starts again after a crash: a new service on the same store, host and plugins.
    fn restart(&mut self) {
        self.service = open(&self.dir, &self.store, &self.cni, &self.host);
    }

    fn containers(&self) -> Arc<dyn PodContainers> {
        self.containers.clone()
    }

    async fn run(&self, config: SandboxConfig) -> Result<String, SandboxError> {
        self.service.run(config, self.containers()).await
    }

    async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        self.service.stop(id, self.containers()).await
    }

    async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        self.service.remove(id, self.containers()).await
    }

    fn records(&self) -> Vec<SandboxRecord> {
        self.service.list(&SandboxFilter::default())
    }

    fn sandbox_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.service.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// Nothing of any pod is left: no pin, mount, cgroup, init, address, record or directory.
    #[track_caller]
    fn assert_nothing_left(&self) {
        let world = self.host.world();
        assert!(world.is_clean(), "left on the host: {world:?}");
        drop(world);
        assert_eq!(
            self.plugins.leased(),
            Vec::<String>::new(),
            "leaked addresses"
        );
        assert_eq!(self.records(), Vec::new(), "records in the cache");
        let stored: Vec<SandboxRecord> = self.store.list().unwrap();
        assert_eq!(stored, Vec::new(), "records in the store");
        assert_eq!(self.sandbox_dirs(), Vec::<PathBuf>::new(), "sandbox dirs");
    }
}

fn open(dir: &tempfile::TempDir, store: &Store, cni: &Cni, host: &FakeHost) -> SandboxService {
    SandboxService::open_on(
        &dir.path().join("state"),
        store.clone(),
        cni.clone(),
        vec![HANDLER.to_string()],
        HANDLER.to_string(),
        host.host(),
    )
    .unwrap()
}

/// A pod with its own network and IPC namespaces (the usual kubelet pod).
fn pod(name: &str) -> SandboxConfig {
    SandboxConfig {
        metadata: PodMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        hostname: name.into(),
        namespaces: NamespaceOptions {
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
            target_id: String::new(),
        },
        ..Default::default()
    }
}

/// [`pod`] with a shared PID namespace: every step RunPodSandbox has, the init included.
fn shared_pid_pod(name: &str) -> SandboxConfig {
    let mut config = pod(name);
    config.namespaces.pid = NamespaceMode::Pod;
    config
}
