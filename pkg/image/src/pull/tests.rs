//! Pulls against the in-memory registry ([`super::fake`]): no network, no root, milliseconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::fake::{FakeRegistry, Fault, TestLayer, gzip_layer, plain_layer};
use crate::{Digest, ImageMetrics, ImageRecord, ImageService, Registry, SnapshotUsers};

struct Host {
    tmp: tempfile::TempDir,
    images: ImageService,
    registry: Arc<FakeRegistry>,
}

fn host() -> Host {
    let tmp = tempfile::tempdir().unwrap();
    let store = berth_store::Store::open(tmp.path().join("meta.redb")).unwrap();
    let client = berth_registry::Client::new(Default::default()).unwrap();
    let endpoint = client.endpoints("fake.test").unwrap().remove(0);
    let registry = Arc::new(FakeRegistry::new(endpoint));
    let metrics = ImageMetrics::register(&prometheus::Registry::new()).unwrap();
    let images = ImageService::open_with(
        &tmp.path().join("root"),
        berth_config::ImageConfig::default(),
        Registry {
            client,
            source: registry.clone(),
        },
        store,
        metrics,
    )
    .unwrap();
    Host {
        tmp,
        images,
        registry,
    }
}

impl Host {
    async fn pull(&self, reference: &str) -> Result<ImageRecord, crate::ImageError> {
        self.images.pull(reference, None).await
    }

    fn spawn_pull(
        &self,
        reference: &str,
    ) -> tokio::task::JoinHandle<Result<ImageRecord, crate::ImageError>> {
        let (images, reference) = (self.images.clone(), reference.to_string());
        tokio::spawn(async move { images.pull(&reference, None).await })
    }

    fn leases(&self) -> Vec<String> {
        self.images.inner.leases.lock().unwrap().clone()
    }

    /// Staged layers and ingest files left on disk.
    fn leftovers(&self) -> Vec<std::path::PathBuf> {
        ["root/snapshots/tmp", "root/content/ingest"]
            .iter()
            .flat_map(|dir| std::fs::read_dir(self.tmp.path().join(dir)).unwrap())
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// What a finished pull must not leave behind, failed or not.
    fn assert_clean(&self) {
        assert_eq!(self.leftovers(), Vec::<std::path::PathBuf>::new());
        assert_eq!(self.leases(), Vec::<String>::new());
    }

    fn has_blob(&self, digest: &str) -> bool {
        self.images
            .inner
            .content
            .has(&Digest::parse(digest).unwrap())
    }

    fn has_snapshot(&self, chain_id: &str) -> bool {
        self.images.snapshotter().exists(chain_id)
    }

    fn snapshot_count(&self) -> usize {
        self.images.snapshotter().list().unwrap().len()
    }

    fn file(&self, chain_id: &str, name: &str) -> String {
        let info = self.images.snapshotter().get(chain_id).unwrap();
        std::fs::read_to_string(info.diff_dir.join(name)).unwrap()
    }
}

/// The chain IDs of an image made of `layers`, bottom first.
fn chain_ids(layers: &[&TestLayer]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for layer in layers {
        ids.push(berth_snapshot::chain_id(
            ids.last().map(String::as_str),
            &layer.diff_id,
        ));
    }
    ids
}

/// Containers using these snapshots.
struct Containers(HashSet<String>);

impl SnapshotUsers for Containers {
    fn in_use(&self) -> HashSet<String> {
        self.0.clone()
    }
}

fn no_containers() -> Containers {
    Containers(HashSet::new())
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until `callers` callers have joined the pull of `reference` in flight.
async fn wait_for_callers(host: &Host, reference: &str, callers: u32) {
    let mut watcher = loop {
        if let Some(watcher) = host.images.watch_pull(reference).unwrap() {
            break watcher.with_interval(Duration::from_millis(1));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    while let Some(progress) = watcher.next().await {
        if progress.joined >= callers {
            return;
        }
    }
    panic!("the pull of {reference} ended before {callers} callers joined it");
}

#[tokio::test]
async fn pulls_a_multi_layer_image_through_an_index() {
    let host = host();
    let base = gzip_layer(&[("base.txt", "base"), ("replaced.txt", "old")]);
    let middle = plain_layer(&[("middle.txt", "middle")]);
    let top = gzip_layer(&[("replaced.txt", "new")]);
    let image = host
        .registry
        .push_image("app", "1", &[&base, &middle, &top]);
    let index = host.registry.push_index("app", "1", &image);

    let record = host.pull("fake.test/app:1").await.unwrap();

    assert_eq!(record.id, image.config_digest);
    assert_eq!(record.manifest_digest, image.manifest_digest);
    assert_eq!(record.repo_tags, ["fake.test/app:1"]);
    assert_eq!(record.repo_digests, [format!("fake.test/app@{index}")]);
    assert_eq!(record.user, "1000");
    let chains = chain_ids(&[&base, &middle, &top]);
    let recorded: Vec<&str> = record.layers.iter().map(|l| l.chain_id.as_str()).collect();
    assert_eq!(recorded, chains);
    assert_eq!(record.layers[1].media_type, middle.media_type);
    for digest in [&index, &image.manifest_digest, &image.config_digest] {
        assert!(host.has_blob(digest), "{digest} is in the content store");
    }
    // Committed in order, each on its parent.
    for (i, chain_id) in chains.iter().enumerate() {
        let info = host.images.snapshotter().get(chain_id).unwrap();
        let parent = i.checked_sub(1).map(|p| chains[p].clone());
        assert_eq!(info.parent, parent);
    }
    assert_eq!(host.file(&chains[0], "base.txt"), "base");
    assert_eq!(host.file(&chains[1], "middle.txt"), "middle");
    assert_eq!(host.file(&chains[2], "replaced.txt"), "new");
    assert!(host.images.status("fake.test/app:1").is_some());
    host.assert_clean();

    // Pulled again: the same record, and no blob is fetched again.
    assert_eq!(host.pull("fake.test/app:1").await.unwrap(), record);
    for digest in [
        base.digest(),
        middle.digest(),
        top.digest(),
        image.config_digest,
    ] {
        assert_eq!(host.registry.requests(&digest), 1, "requests of {digest}");
    }
    assert_eq!(host.registry.requests("app:1"), 2);
    assert_eq!(host.registry.requests(&image.manifest_digest), 2);
}

#[tokio::test]
async fn concurrent_pulls_of_one_reference_fetch_each_blob_once() {
    let host = host();
    let base = gzip_layer(&[("base.txt", "base")]);
    let top = plain_layer(&[("top.txt", "top")]);
    let image = host.registry.push_image("app", "1", &[&base, &top]);
    let gate = host.registry.hold(&top.digest());

    let pulls: Vec<_> = (0..5).map(|_| host.spawn_pull("fake.test/app:1")).collect();
    wait_for_callers(&host, "fake.test/app:1", 5).await;
    gate.open();
    for pull in pulls {
        assert_eq!(pull.await.unwrap().unwrap().id, image.config_digest);
    }

    assert_eq!(host.registry.requests("app:1"), 1);
    for digest in [base.digest(), top.digest(), image.config_digest] {
        assert_eq!(host.registry.requests(&digest), 1, "requests of {digest}");
    }
    host.assert_clean();
}

#[tokio::test]
async fn a_retry_after_a_broken_layer_reuses_the_layers_that_were_verified() {
    let host = host();
    let layers = [
        gzip_layer(&[("a.txt", "a")]),
        gzip_layer(&[("b.txt", "b")]),
        plain_layer(&[("c.txt", "c")]),
    ];
    let [a, b, c] = &layers;
    let image = host.registry.push_image("app", "1", &[a, b, c]);
    let chains = chain_ids(&[a, b, c]);
    host.registry.fail(&c.digest(), Fault::BreakMidway);
    // The broken layer breaks only once the other two are committed.
    let gate = host.registry.hold(&c.digest());

    let pulling = host.spawn_pull("fake.test/app:1");
    wait_until("the layers below the broken one", || {
        host.has_snapshot(&chains[1])
    })
    .await;
    gate.open();
    let err = pulling.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("mid-blob"), "{err}");

    assert!(host.images.status("fake.test/app:1").is_none());
    assert!(!host.has_snapshot(&chains[2]));
    assert!(!host.has_blob(&image.config_digest));
    assert!(!host.has_blob(&image.manifest_digest));
    host.assert_clean();

    host.registry.heal(&c.digest());
    let record = host.pull("fake.test/app:1").await.unwrap();
    assert_eq!(record.id, image.config_digest);
    assert_eq!(host.file(&chains[2], "c.txt"), "c");
    // The verified layers were kept; the config (stored only with a record) is fetched again.
    assert_eq!(host.registry.requests(&a.digest()), 1);
    assert_eq!(host.registry.requests(&b.digest()), 1);
    assert_eq!(host.registry.requests(&c.digest()), 2);
    assert_eq!(host.registry.requests(&image.config_digest), 2);
    host.assert_clean();
}

#[tokio::test]
async fn a_digest_mismatch_leaves_no_record_lease_or_snapshot() {
    let host = host();
    let bottom = plain_layer(&[("bottom.txt", "bottom")]);
    let top = gzip_layer(&[("top.txt", "top")]);
    let image = host.registry.push_image("app", "1", &[&bottom, &top]);
    host.registry.fail(&bottom.digest(), Fault::Corrupt);

    let err = host.pull("fake.test/app:1").await.unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");

    assert!(host.images.status("fake.test/app:1").is_none());
    assert!(host.images.list(None).is_empty());
    // The top layer may have unpacked, but its parent never came: nothing is committed.
    assert_eq!(host.snapshot_count(), 0);
    assert!(!host.has_blob(&image.config_digest));
    assert!(!host.has_blob(&image.manifest_digest));
    host.assert_clean();
}

#[tokio::test]
async fn images_sharing_a_layer_fetch_it_once_and_keep_it_while_one_needs_it() {
    let host = host();
    let base = gzip_layer(&[("base.txt", "base")]);
    let a = plain_layer(&[("a.txt", "a")]);
    let b = gzip_layer(&[("b.txt", "b")]);
    host.registry.push_image("a", "1", &[&base, &a]);
    host.registry.push_image("b", "1", &[&base, &b]);
    let gate = host.registry.hold(&base.digest());

    let (pull_a, pull_b) = (
        host.spawn_pull("fake.test/a:1"),
        host.spawn_pull("fake.test/b:1"),
    );
    wait_until("both pulls planned", || {
        host.registry.requests(&a.digest()) == 1 && host.registry.requests(&b.digest()) == 1
    })
    .await;
    gate.open();
    let (record_a, record_b) = (
        pull_a.await.unwrap().unwrap(),
        pull_b.await.unwrap().unwrap(),
    );

    assert_eq!(host.registry.requests(&base.digest()), 1);
    assert_eq!(record_a.layers[0].chain_id, record_b.layers[0].chain_id);
    assert_eq!(host.snapshot_count(), 3);
    host.assert_clean();

    // Removing one image keeps the shared layer for the other.
    host.images
        .remove("fake.test/a:1", &no_containers())
        .await
        .unwrap();
    assert!(!host.has_snapshot(&record_a.layers[1].chain_id));
    assert!(host.has_snapshot(&record_b.layers[0].chain_id));
    assert!(host.has_snapshot(&record_b.layers[1].chain_id));
    assert!(!host.has_blob(&record_a.id));

    // A container on the last image keeps its snapshots after the image is gone.
    let top_b = record_b.layers[1].chain_id.clone();
    host.images
        .remove("fake.test/b:1", &Containers(HashSet::from([top_b.clone()])))
        .await
        .unwrap();
    assert!(host.images.list(None).is_empty());
    assert!(host.has_snapshot(&top_b));
    assert!(host.has_snapshot(&record_b.layers[0].chain_id));

    // Once no container uses them, the next collection frees them.
    host.images
        .remove(&record_b.id, &no_containers())
        .await
        .unwrap();
    assert!(
        host.has_snapshot(&top_b),
        "removing an absent image collects nothing"
    );
    host.registry.push_image("c", "1", &[&a]);
    host.pull("fake.test/c:1").await.unwrap();
    host.images
        .remove("fake.test/c:1", &no_containers())
        .await
        .unwrap();
    assert_eq!(host.snapshot_count(), 0);
}

/// Pins today's behaviour: a caller that joined a pull and goes away leaves it to the others.
#[tokio::test]
async fn a_waiter_going_away_does_not_disturb_the_pull_it_joined() {
    let host = host();
    let layer = gzip_layer(&[("app.txt", "app")]);
    let image = host.registry.push_image("app", "1", &[&layer]);
    let gate = host.registry.hold(&layer.digest());

    let running = host.spawn_pull("fake.test/app:1");
    wait_until("the layer download", || {
        host.registry.requests(&layer.digest()) == 1
    })
    .await;
    let waiting = host.spawn_pull("fake.test/app:1");
    wait_for_callers(&host, "fake.test/app:1", 2).await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    gate.open();

    assert_eq!(running.await.unwrap().unwrap().id, image.config_digest);
    assert_eq!(host.registry.requests(&layer.digest()), 1);
    assert_eq!(host.registry.requests("app:1"), 1);
    host.assert_clean();
}

/// Pins today's behaviour: when the caller whose task runs a shared pull goes away, its work
/// stops and a caller still waiting starts the pull again (it succeeds; the registry sees the
/// requests twice).
#[tokio::test]
async fn when_the_caller_running_a_shared_pull_goes_away_a_waiter_restarts_it() {
    let host = host();
    let layer = gzip_layer(&[("app.txt", "app")]);
    let image = host.registry.push_image("app", "1", &[&layer]);
    let gate = host.registry.hold(&layer.digest());

    let running = host.spawn_pull("fake.test/app:1");
    wait_until("the layer download", || {
        host.registry.requests(&layer.digest()) == 1
    })
    .await;
    let waiting = host.spawn_pull("fake.test/app:1");
    wait_for_callers(&host, "fake.test/app:1", 2).await;
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    gate.open();

    assert_eq!(waiting.await.unwrap().unwrap().id, image.config_digest);
    assert_eq!(host.registry.requests(&layer.digest()), 2);
    assert_eq!(host.registry.requests("app:1"), 2);
    // The abandoned download's unpacker notices the end of its input on its own thread.
    wait_until("the abandoned unpack to clean up", || {
        host.leftovers().is_empty()
    })
    .await;
    host.assert_clean();
}
