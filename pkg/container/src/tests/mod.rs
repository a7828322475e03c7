//! Unit tests of the container lifecycle on the fakes of `fakes.rs`: no root, no processes, a
//! tempdir for the state and root dirs and the store.
//!
//! A berthd crash is a runtime dropped with its tasks (nothing after the await point it reached
//! runs) and a new service opened on the same store and the same [`World`]; or, for steps no fake
//! call marks, the records and host state a crash there leaves, made directly.

mod lifecycle;
mod recovery;
mod rollback;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_sandbox::{Phase as PodPhase, SandboxRecord};
use berth_store::Store;

use crate::fakes::{
    FakeCgroups, FakeImages, FakeMonitors, FakeRootfs, FakeRuntime, FakeSandboxes, IMAGE, World,
};
use crate::{
    ContainerConfig, ContainerMetrics, ContainerRecord, ContainerService, Deps, Handler, Phase,
    Probes,
};

pub(crate) const POD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) world: Arc<World>,
    pub(crate) sandboxes: Arc<FakeSandboxes>,
    pub(crate) store: Store,
    pub(crate) metrics: ContainerMetrics,
}

/// A runtime like berthd's, one per berthd "process" of a test.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let dir = tempfile::tempdir().expect("a tempdir");
        let store = Store::open(dir.path().join("berth.db")).expect("a store");
        let sandboxes = Arc::new(FakeSandboxes::default());
        let harness = Harness {
            world: World::new(),
            sandboxes,
            store,
            metrics: ContainerMetrics::register(&prometheus::Registry::new())
                .expect("container metrics"),
            dir,
        };
        harness.add_pod(POD);
        harness
    }

    pub(crate) fn add_pod(&self, id: &str) {
        let pod = SandboxRecord {
            id: id.to_string(),
            metadata: Default::default(),
            phase: PodPhase::Created,
            created_at_ns: 1,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            runtime_handler: "runc".into(),
            hostname: "pod".into(),
            log_directory: String::new(),
            namespaces: Default::default(),
            dns: None,
            port_mappings: vec![],
            sysctls: BTreeMap::new(),
            dir: self.dir.path().join("sandboxes").join(id),
            netns: None,
            ipcns: None,
            utsns: None,
            shm: None,
            cgroup: None,
            network: None,
            network_pending: false,
            init: None,
            seccomp_profile: None,
            userns: None,
            userns_path: None,
        };
        self.sandboxes
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), pod);
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub(crate) fn root_dir(&self) -> PathBuf {
        self.dir.path().join("lib")
    }

    /// A berthd (re)starting: the service opened on the store, on the fakes. Call inside a
    /// runtime.
    pub(crate) fn open(&self) -> ContainerService {
        let handlers = BTreeMap::from([(
            "runc".to_string(),
            Handler {
                path: Some(PathBuf::from("/fake/runc")),
                root: self.state_dir().join("runtime").join("runc"),
            },
        )]);
        let deps = Deps {
            store: self.store.clone(),
            images: Arc::new(FakeImages),
            sandboxes: self.sandboxes.clone(),
            cgroups: Arc::new(FakeCgroups),
            runtime: Arc::new(FakeRuntime(self.world.clone())),
            rootfs: Arc::new(FakeRootfs(self.world.clone())),
            handlers,
            monitor_binary: PathBuf::from("/fake/berth-monitor"),
            metrics: self.metrics.clone(),
        };
        let monitors = Arc::new(FakeMonitors {
            world: self.world.clone(),
            dir: self.state_dir().join("mon"),
        });
        let probes = Probes {
            userns_problem: Some("not probed in unit tests".into()),
            rro_problem: None,
        };
        ContainerService::open_with(deps, monitors, probes, &self.state_dir(), &self.root_dir())
            .expect("the container service opens")
    }

    /// The records in the store (what a restart would find).
    pub(crate) fn stored(&self) -> Vec<ContainerRecord> {
        self.store
            .list::<ContainerRecord>()
            .expect("the store lists")
    }

    pub(crate) fn put(&self, record: &ContainerRecord) {
        self.store.put(record).expect("the store writes");
    }

    /// The calls the fakes saw whose text starts with one of `prefixes`.
    pub(crate) fn calls(&self, prefixes: &[&str]) -> Vec<String> {
        self.world
            .calls()
            .into_iter()
            .filter(|c| prefixes.iter().any(|p| c.starts_with(p)))
            .collect()
    }

    /// Nothing of any container is left: no record, bundle, writable layer, mount, runtime state.
    pub(crate) fn assert_nothing_left(&self) {
        assert!(
            self.stored().is_empty(),
            "records left: {:?}",
            self.stored()
        );
        for dir in [
            self.state_dir().join("containers"),
            self.root_dir().join("containers"),
        ] {
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
        }
        let state = self.world.state();
        assert!(state.mounted.is_empty(), "mounted: {:?}", state.mounted);
        assert!(
            state.runtime_state.is_empty(),
            "runtime state: {:?}",
            state.runtime_state
        );
    }
}

pub(crate) fn config(name: &str) -> ContainerConfig {
    ContainerConfig {
        name: name.to_string(),
        image: IMAGE.to_string(),
        ..Default::default()
    }
}

/// Waits (up to a second) until `check` holds: for work the service does in the background.
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("{what}: still not the case after a second");
}

pub(crate) fn phase_of(service: &ContainerService, id: &str) -> Phase {
    service.get(id).expect("the container exists").phase
}
