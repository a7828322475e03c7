//! ImageService against real registries (Debian's docker-registry) and real overlayfs.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine as _;
use berth_cri_api::v1 as cri;
use berth_e2e::oci_layout::{Entry, RawTar, write_image};
use berth_e2e::registry::{self, AUTH, AUTH_PASSWORD, AUTH_USER, PrivateRegistry, SHARED};
use berth_e2e::{Berthd, Options};
use tonic::Code;

fn shared(name: &str) -> String {
    format!("{SHARED}/berth-test/{name}")
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull_with(
    berthd: &Berthd,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    let mut client = berthd.images().await.expect("image client");
    client
        .pull_image(cri::PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn pull(berthd: &Berthd, image: &str) -> String {
    pull_with(berthd, image, None)
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e:?}"))
}

async fn status(berthd: &Berthd, image: &str, verbose: bool) -> cri::ImageStatusResponse {
    berthd
        .images()
        .await
        .unwrap()
        .image_status(cri::ImageStatusRequest {
            image: spec(image),
            verbose,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn verbose_info(berthd: &Berthd, image: &str) -> serde_json::Value {
    let s = status(berthd, image, true).await;
    serde_json::from_str(&s.info["info"]).unwrap()
}

async fn list(berthd: &Berthd) -> Vec<cri::Image> {
    berthd
        .images()
        .await
        .unwrap()
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
}

async fn fs_used(berthd: &Berthd) -> (u64, u64) {
    let r = berthd
        .images()
        .await
        .unwrap()
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let fs = &r.image_filesystems[0];
    assert_eq!(
        fs.fs_id.as_ref().unwrap().mountpoint,
        berthd.root.to_string_lossy()
    );
    (fs.used_bytes.unwrap().value, fs.inodes_used.unwrap().value)
}

async fn remove(berthd: &Berthd, image: &str) {
    berthd
        .images()
        .await
        .unwrap()
        .remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .unwrap_or_else(|e| panic!("remove {image}: {e:?}"));
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn pulls_every_test_image_and_finds_it_by_any_reference() {
    let berthd = Berthd::start("pullall").await.unwrap();
    for name in [
        "busybox:latest",
        "config:latest",
        "httpd:latest",
        "whiteout:latest",
        "zstd:latest",
        "pause:3.9",
    ] {
        let reference = shared(name);
        let id = pull(&berthd, &reference).await;
        let image = status(&berthd, &reference, false)
            .await
            .image
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(image.id, id);
        assert_eq!(image.repo_tags, std::slice::from_ref(&reference));
        let recorded = registry::recorded_digest(&reference).unwrap();
        let repo = reference.rsplit_once(':').unwrap().0;
        assert_eq!(image.repo_digests, [format!("{repo}@{recorded}")]);
        assert!(image.size > 0);
        // The same image by ID, ID hex, repo digest, and without the default tag.
        for query in [
            id.clone(),
            id.trim_start_matches("sha256:").to_string(),
            format!("{repo}@{recorded}"),
        ] {
            assert_eq!(
                status(&berthd, &query, false).await.image.map(|i| i.id),
                Some(id.clone()),
                "{query}"
            );
        }
    }
    assert_eq!(
        status(&berthd, &shared("busybox"), false)
            .await
            .image
            .map(|i| i.repo_tags),
        Some(vec![shared("busybox:latest")])
    );
    let config = status(&berthd, &shared("config:latest"), true).await;
    let image = config.image.unwrap();
    assert_eq!((image.uid, image.username.as_str()), (None, "berth"));
    let info: serde_json::Value = serde_json::from_str(&config.info["info"]).unwrap();
    assert_eq!(
        info["imageSpec"]["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(list(&berthd).await.len(), 6);
    // Unknown image: an empty answer, not an error.
    assert!(
        status(&berthd, &shared("nope:1"), false)
            .await
            .image
            .is_none()
    );
    berthd.finish();
}

#[tokio::test]
async fn index_resolves_amd64_although_arm64_is_listed_first() {
    let berthd = Berthd::start("platform").await.unwrap();
    let reference = shared("busybox:latest");
    pull(&berthd, &reference).await;
    let info = verbose_info(&berthd, &reference).await;
    let amd64 = registry::recorded_digest(&format!("{reference}#linux/amd64")).unwrap();
    let arm64 = registry::recorded_digest(&format!("{reference}#linux/arm64")).unwrap();
    assert_eq!(info["manifestDigest"], amd64.as_str());
    assert_ne!(info["manifestDigest"], arm64.as_str());
    assert_eq!(info["imageSpec"]["architecture"], "amd64");
    berthd.finish();
}

/// Mounts the image's snapshots as a container rootfs would and runs `check` on the merged view.
fn with_merged_view(berthd: &Berthd, chain_id: &str, check: impl FnOnce(&Path)) {
    let snapshots = berth_snapshot::Snapshotter::open(&berthd.root.join("snapshots")).unwrap();
    let rw = berthd.dir.join("rw");
    let merged = berthd.dir.join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    let rootfs = snapshots.prepare_rootfs(chain_id, &rw).unwrap();
    rootfs.mount(&merged, false).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&merged)));
    berth_snapshot::unmount(&merged).unwrap();
    std::fs::remove_dir_all(&rw).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn merged_view_honours_whiteouts_opaque_dirs_and_zstd() {
    let mut berthd = Berthd::start("overlay").await.unwrap();
    pull(&berthd, &shared("whiteout:latest")).await;
    pull(&berthd, &shared("zstd:latest")).await;
    let whiteout = verbose_info(&berthd, &shared("whiteout:latest")).await["chainID"]
        .as_str()
        .unwrap()
        .to_string();
    let zstd = verbose_info(&berthd, &shared("zstd:latest")).await["chainID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(berthd.stop().unwrap().success());
    with_merged_view(&berthd, &whiteout, |root| {
        assert!(root.join("data/keep.txt").is_file());
        assert!(root.join("data/added.txt").is_file());
        assert!(
            !root.join("data/gone.txt").exists(),
            "whiteout hides the file"
        );
        let dir: Vec<String> = std::fs::read_dir(root.join("dir"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(dir, ["new"], "opaque dir replaces the lower one");
        assert!(root.join("bin/busybox").is_file());
    });
    with_merged_view(&berthd, &zstd, |root| {
        assert!(root.join("zstd-marker").exists())
    });
    berthd.finish();
}

#[tokio::test]
// Metric values are whole counts, read as f64.
#[allow(clippy::cast_possible_truncation)]
async fn concurrent_pulls_of_one_image_download_each_blob_once() {
    let berthd = Berthd::start("coalesce").await.unwrap();
    let reference = shared("big:latest");
    let mut pulls = Vec::new();
    for _ in 0..10 {
        let images = berthd.images().await.unwrap();
        let reference = reference.clone();
        pulls.push(tokio::spawn(async move {
            let mut images = images;
            images
                .pull_image(cri::PullImageRequest {
                    image: spec(&reference),
                    auth: None,
                    sandbox_config: None,
                })
                .await
                .map(|r| r.into_inner().image_ref)
        }));
    }
    let mut ids = Vec::new();
    for p in pulls {
        ids.push(p.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    let info = verbose_info(&berthd, &reference).await;
    let layers = info["layers"].as_array().unwrap();
    let layer_bytes: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    let metrics = berthd.metrics().unwrap();
    assert_eq!(
        metric(&metrics, "berth_image_pull_bytes_total") as u64,
        layer_bytes,
        "each layer blob downloaded exactly once"
    );
    assert_eq!(
        metric(&metrics, "berth_image_layers_fetched_total") as usize,
        layers.len()
    );
    assert_eq!(
        metric(&metrics, "berth_image_pulls_total{result=\"success\"}"),
        10.0
    );
    // Pulling again reuses every layer and downloads nothing.
    pull(&berthd, &reference).await;
    let metrics = berthd.metrics().unwrap();
    assert_eq!(
        metric(&metrics, "berth_image_pull_bytes_total") as u64,
        layer_bytes
    );
    assert_eq!(
        metric(&metrics, "berth_image_layers_reused_total") as usize,
        layers.len()
    );
    berthd.finish();
}

fn amd64_layer_digest(layout: &Path, manifest_digest: &str) -> String {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
    manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn tampered_layer_fails_the_pull_and_leaves_the_store_unchanged() {
    let berthd = Berthd::start("tamper").await.unwrap();
    let registry = PrivateRegistry::start(&berthd.dir).unwrap();
    registry
        .push(&registry::test_layout(), "httpd", "tamper/httpd:latest")
        .unwrap();
    let manifest = registry::recorded_digest(&shared("httpd:latest")).unwrap();
    let layer = amd64_layer_digest(&registry::test_layout(), &manifest);
    let data = registry.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let before = fs_used(&berthd).await;
    let err = pull_with(
        &berthd,
        &format!("{}/tamper/httpd:latest", registry.address),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("mismatch"), "{err:?}");
    assert!(list(&berthd).await.is_empty());
    assert_eq!(
        fs_used(&berthd).await.1,
        before.1,
        "no blob or snapshot left behind"
    );
    drop(registry);
    berthd.finish();
}

#[tokio::test]
async fn basic_auth_registry_needs_the_right_credentials() {
    let berthd = Berthd::start("auth").await.unwrap();
    let image = format!("{AUTH}/berth-test/pause:3.9");
    let auth = |password: &str| {
        Some(cri::AuthConfig {
            username: AUTH_USER.into(),
            password: password.into(),
            ..Default::default()
        })
    };
    for (credentials, what) in [(None, "no credentials"), (auth("wrong"), "wrong password")] {
        let err = pull_with(&berthd, &image, credentials).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{what}: {err:?}");
        assert!(err.message().contains(AUTH), "{what}: {err:?}");
    }
    assert!(list(&berthd).await.is_empty());
    pull_with(&berthd, &image, auth(AUTH_PASSWORD))
        .await
        .unwrap();
    // The docker config.json form: base64("user:password").
    remove(&berthd, &image).await;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    let config = cri::AuthConfig {
        auth: encoded,
        ..Default::default()
    };
    pull_with(&berthd, &image, Some(config)).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn mirrors_serve_other_registries_under_the_asked_name() {
    let options = Options {
        dropin: format!(
            "[registry.hosts.\"registry.k8s.io\"]\nmirrors = [\"http://{SHARED}\"]\nskip_origin = true\n\n\
             [registry.hosts.\"*\"]\nmirrors = [\"http://{SHARED}\"]\nskip_origin = true\n"
        ),
        ..Options::default()
    };
    let berthd = Berthd::start_with("mirror", options).await.unwrap();
    for image in [
        "registry.k8s.io/berth-test/pause:3.9",
        "gcr.io/berth-test/httpd:latest",
    ] {
        pull(&berthd, image).await;
        let found = status(&berthd, image, false)
            .await
            .image
            .unwrap_or_else(|| panic!("{image}"));
        assert_eq!(found.repo_tags, [image]);
    }
    // Two names for one image: removing one tag keeps the other.
    pull(&berthd, "docker.io/berth-test/httpd:latest").await;
    let image = status(&berthd, "gcr.io/berth-test/httpd:latest", false)
        .await
        .image
        .unwrap();
    assert_eq!(image.repo_tags.len(), 2, "{image:?}");
    remove(&berthd, "gcr.io/berth-test/httpd:latest").await;
    let kept = status(&berthd, image.id.as_str(), false)
        .await
        .image
        .unwrap();
    assert_eq!(kept.repo_tags, ["docker.io/berth-test/httpd:latest"]);
    // The short form of docker.io names resolves too.
    assert!(
        status(&berthd, "berth-test/httpd", false)
            .await
            .image
            .is_some()
    );
    berthd.finish();
}

#[tokio::test]
async fn hostile_layers_are_refused_and_write_nothing_outside() {
    let berthd = Berthd::start("hostile").await.unwrap();
    let registry = PrivateRegistry::start(&berthd.dir).unwrap();
    let canary = berthd.dir.join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("keep"), "canary").unwrap();
    let canary_abs = canary.to_string_lossy().into_owned();
    let climb = format!("../../../../../../../..{canary_abs}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            RawTar::default()
                .entry(Entry::File("../../../../pwned", b"x"))
                .finish(),
        ),
        // A leading `/` is the layer root (see layer_corpus.rs), but `..` above it is refused.
        (
            "absolute-dotdot",
            RawTar::default()
                .entry(Entry::File(
                    &format!("/../../../..{canary_abs}/pwned"),
                    b"x",
                ))
                .finish(),
        ),
        (
            "inner-dotdot",
            RawTar::default()
                .entry(Entry::Dir("a"))
                .entry(Entry::File("a/../../pwned", b"x"))
                .finish(),
        ),
        (
            "hardlink-out",
            RawTar::default()
                .entry(Entry::Hardlink("passwd", "../../../../../etc/passwd"))
                .finish(),
        ),
        (
            "hardlink-abs",
            RawTar::default()
                .entry(Entry::Hardlink("passwd", "/../etc/passwd"))
                .finish(),
        ),
        (
            "symlink-abs-parent",
            RawTar::default()
                .entry(Entry::Symlink("evil", &canary_abs))
                .entry(Entry::File("evil/pwned", b"x"))
                .finish(),
        ),
        (
            "symlink-rel-parent",
            RawTar::default()
                .entry(Entry::Symlink("evil", &climb))
                .entry(Entry::File("evil/pwned", b"x"))
                .finish(),
        ),
    ];
    let layout = berthd.dir.join("layout");
    for (name, layer) in &cases {
        write_image(&layout, name, std::slice::from_ref(layer)).unwrap();
        registry
            .push(&layout, name, &format!("hostile/{name}:latest"))
            .unwrap();
    }
    for (name, _) in &cases {
        let err = pull_with(
            &berthd,
            &format!("{}/hostile/{name}:latest", registry.address),
            None,
        )
        .await
        .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        let entries: Vec<_> = std::fs::read_dir(&canary)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["keep"], "{name} wrote into the canary dir");
        assert!(
            !berthd.dir.join("pwned").exists() && !Path::new("/pwned").exists(),
            "{name}"
        );
    }
    assert!(list(&berthd).await.is_empty());
    let (_, inodes) = fs_used(&berthd).await;
    drop(registry);
    let mut berthd = berthd;
    assert!(berthd.stop().unwrap().success());
    let snapshots = berth_snapshot::Snapshotter::open(&berthd.root.join("snapshots")).unwrap();
    assert!(
        snapshots.list().unwrap().is_empty(),
        "refused layers left snapshots ({inodes} inodes)"
    );
    berthd.finish();
}

#[tokio::test]
async fn remove_frees_the_disk_but_keeps_shared_layers() {
    let berthd = Berthd::start("remove").await.unwrap();
    let empty = fs_used(&berthd).await;
    pull(&berthd, &shared("busybox:latest")).await;
    let busybox_only = fs_used(&berthd).await;
    pull(&berthd, &shared("config:latest")).await;
    let both = fs_used(&berthd).await;
    assert!(both.0 >= busybox_only.0 && busybox_only.0 > empty.0);
    remove(&berthd, &shared("config:latest")).await;
    assert!(
        status(&berthd, &shared("config:latest"), false)
            .await
            .image
            .is_none()
    );
    // busybox keeps its layers: a re-pull downloads nothing.
    let bytes_before = metric(&berthd.metrics().unwrap(), "berth_image_pull_bytes_total");
    pull(&berthd, &shared("busybox:latest")).await;
    assert_eq!(
        metric(&berthd.metrics().unwrap(), "berth_image_pull_bytes_total"),
        bytes_before
    );
    remove(&berthd, &shared("busybox:latest")).await;
    remove(&berthd, &shared("busybox:latest")).await; // idempotent
    let after = fs_used(&berthd).await;
    assert_eq!(after, empty, "everything freed");
    assert!(list(&berthd).await.is_empty());
    berthd.finish();
}

#[tokio::test]
async fn restart_keeps_images() {
    let mut berthd = Berthd::start("imgrestart").await.unwrap();
    let id = pull(&berthd, &shared("httpd:latest")).await;
    assert!(berthd.stop().unwrap().success());
    berthd.launch().await.unwrap();
    assert_eq!(
        status(&berthd, &shared("httpd:latest"), false)
            .await
            .image
            .map(|i| i.id),
        Some(id.clone())
    );
    assert_eq!(list(&berthd).await.len(), 1);
    // Pull by ID of a present image works without the registry.
    assert_eq!(pull(&berthd, &id).await, id);
    berthd.finish();
}

#[tokio::test]
async fn bad_pull_requests_get_clear_errors() {
    let berthd = Berthd::start("badpull").await.unwrap();
    for (image, code) in [
        ("", Code::InvalidArgument),
        ("UPPER/Case:1", Code::InvalidArgument),
        ("busybox@sha256:123", Code::InvalidArgument),
        (&shared("does-not-exist:1") as &str, Code::NotFound),
    ] {
        let err = pull_with(&berthd, image, None).await.expect_err(image);
        assert_eq!(err.code(), code, "{image}: {err:?}");
        assert!(!err.message().is_empty());
    }
    assert!(list(&berthd).await.is_empty());
    berthd.finish();
}
