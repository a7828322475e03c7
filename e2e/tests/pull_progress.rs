//! Pull progress (`berth.images.v1.Images`, proto/images/v1) served beside CRI on berthd's socket:
//! a pull with progress against the local registry (10 layers of 20 MiB), a CRI PullImage and a
//! watcher joining it while in flight, a pull of an image already present, an unknown image, and
//! a client nobody here wrote (Python grpcio, stubs compiled from the .proto at test time).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use berth_api::images::v1 as api;
use berth_api::images::v1::images_client::ImagesClient;
use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::{busybox, pull};
use berth_e2e::peers::{PythonPeer, repo_dir, run_peer};
use berth_e2e::registry::SHARED;
use tonic::Code;
use tonic::transport::Channel;

fn big10() -> String {
    format!("{SHARED}/berth-test/big10:latest")
}

async fn client(berthd: &Berthd) -> ImagesClient<Channel> {
    ImagesClient::new(berthd.channel().await.expect("connecting to berthd"))
}

/// Every message of a stream, or the status it ended with (and the messages before it).
async fn collect(
    mut stream: tonic::Streaming<api::PullProgress>,
) -> (Vec<api::PullProgress>, Option<tonic::Status>) {
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, None),
            Err(status) => return (messages, Some(status)),
        }
    }
}

async fn pull_with_progress(berthd: &Berthd, image: &str) -> tonic::Streaming<api::PullProgress> {
    client(berthd)
        .await
        .pull_with_progress(api::PullRequest {
            image: image.to_string(),
            auth: None,
        })
        .await
        .unwrap_or_else(|e| panic!("PullWithProgress {image}: {e:?}"))
        .into_inner()
}

async fn remove(berthd: &Berthd, image: &str) {
    berthd
        .images()
        .await
        .unwrap()
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("RemoveImage {image}: {e:?}"));
}

fn state(layer: &api::LayerProgress) -> api::LayerState {
    api::LayerState::try_from(layer.state).unwrap_or(api::LayerState::Unspecified)
}

/// Byte counts per layer never go back, only the last message is done, and it is complete.
fn assert_consistent(messages: &[api::PullProgress], what: &str) -> api::PullProgress {
    let mut seen: HashMap<String, u64> = HashMap::new();
    for m in messages {
        for layer in &m.layers {
            let before = seen.insert(layer.digest.clone(), layer.downloaded_bytes);
            assert!(
                before.unwrap_or(0) <= layer.downloaded_bytes,
                "{what}: {} went back from {before:?} to {}",
                layer.digest,
                layer.downloaded_bytes
            );
            assert!(
                layer.downloaded_bytes <= layer.total_bytes,
                "{what}: {layer:?}"
            );
        }
    }
    let (last, before) = messages
        .split_last()
        .unwrap_or_else(|| panic!("{what}: no message"));
    assert!(
        before.iter().all(|m| !m.done),
        "{what}: done before the end"
    );
    assert!(last.done, "{what}: the last message is not done: {last:?}");
    last.clone()
}

fn total_downloaded(m: &api::PullProgress) -> u64 {
    m.layers.iter().map(|l| l.downloaded_bytes).sum()
}

#[tokio::test]
async fn pull_progress_per_layer_joined_watched_present_and_unknown() {
    let berthd = Berthd::start("pullprogress")
        .await
        .expect("starting berthd");
    let image = big10();

    // Nothing in flight: nothing to watch.
    let idle = client(&berthd)
        .await
        .watch_pull(api::WatchPullRequest {
            image: image.clone(),
        })
        .await;
    let status = match idle {
        Ok(stream) => collect(stream.into_inner()).await.1,
        Err(status) => Some(status),
    };
    assert_eq!(status.map(|s| s.code()), Some(Code::NotFound));

    // A pull with progress; once it is in flight, kubelet's PullImage joins it and a second
    // client watches it.
    let mut stream = pull_with_progress(&berthd, &image).await;
    let first = stream
        .message()
        .await
        .expect("first progress message")
        .expect("a first message");
    assert!(
        !first.done,
        "big10 cannot be pulled before the first message: {first:?}"
    );
    let (cri_id, watched, rest) = tokio::join!(
        pull(&berthd, &image),
        async {
            let watch = client(&berthd)
                .await
                .watch_pull(api::WatchPullRequest {
                    image: image.clone(),
                })
                .await
                .expect("WatchPull of the pull in flight")
                .into_inner();
            collect(watch).await
        },
        collect(stream),
    );
    let (rest, error) = rest;
    assert!(error.is_none(), "PullWithProgress ended with {error:?}");
    let mut messages = vec![first];
    messages.extend(rest);
    let last = assert_consistent(&messages, "PullWithProgress");
    assert_eq!(last.image_id, cri_id, "the id CRI's PullImage reports");
    assert_eq!(last.image, image);
    assert!(last.manifest_digest.starts_with("sha256:"), "{last:?}");
    assert_eq!(last.layers.len(), 10);
    for layer in &last.layers {
        assert_eq!(state(layer), api::LayerState::Done, "{layer:?}");
        assert_eq!(layer.downloaded_bytes, layer.total_bytes);
        assert!(layer.total_bytes > 20 * 1024 * 1024, "{layer:?}");
    }
    // Byte counts rose along the way (200 MiB do not arrive within one 100 ms interval).
    let totals: Vec<u64> = messages.iter().map(total_downloaded).collect();
    assert!(
        totals.windows(2).filter(|w| w[0] < w[1]).count() >= 2,
        "byte counts did not rise: {totals:?}"
    );
    assert!(
        messages.iter().any(|m| m.layers.iter().any(|l| {
            state(l) == api::LayerState::Downloading && l.downloaded_bytes < l.total_bytes
        })),
        "no layer was seen downloading"
    );
    assert!(
        messages.iter().any(|m| m.joined >= 2),
        "kubelet's PullImage did not show as joined: {:?}",
        messages.iter().map(|m| m.joined).collect::<Vec<_>>()
    );
    let (watched, watch_error) = watched;
    assert!(
        watch_error.is_none(),
        "WatchPull ended with {watch_error:?}"
    );
    let watched_last = assert_consistent(&watched, "WatchPull");
    assert_eq!(watched_last.image_id, cri_id);

    // Already present: every layer says so, with the same id.
    let (again, error) = collect(pull_with_progress(&berthd, &image).await).await;
    assert!(error.is_none(), "{error:?}");
    let present = assert_consistent(&again, "second pull");
    assert_eq!(present.image_id, cri_id);
    assert_eq!(present.layers.len(), 10);
    assert!(
        present
            .layers
            .iter()
            .all(|l| state(l) == api::LayerState::Present && l.downloaded_bytes == l.total_bytes),
        "{present:?}"
    );

    // An unknown image ends with CRI's answer for it.
    let unknown = format!("{SHARED}/berth-test/no-such-image:latest");
    let (messages, error) = collect(pull_with_progress(&berthd, &unknown).await).await;
    assert_eq!(
        error.as_ref().map(|s| s.code()),
        Some(Code::NotFound),
        "{error:?} after {messages:?}"
    );
    assert!(messages.iter().all(|m| !m.done));

    remove(&berthd, &image).await;
    berthd.finish();
}

#[tokio::test]
async fn grpcio_streams_pull_progress() {
    let peer = PythonPeer::setup().expect("setting up grpcio (hack/peers.sh python)");
    let berthd = Berthd::start("pullprogress-py")
        .await
        .expect("starting berthd");
    let mut command = std::process::Command::new(&peer.python);
    command
        .arg("-u")
        .arg(repo_dir().join("e2e/peers/grpc-python/pull_progress.py"))
        .arg("--proto-root")
        .arg(repo_dir().join("proto"))
        .arg("--out")
        .arg(berthd.dir.join("py-stubs"))
        .arg("--socket")
        .arg(&berthd.socket)
        .arg("--image")
        .arg(busybox());
    let run = run_peer(&berthd, "pull-progress-py", command).expect("running pull_progress.py");
    println!("{}", run.stdout);
    run.assert_passed("pull_progress.py (grpcio)");
    assert!(
        run.checks()
            .iter()
            .any(|c| c.starts_with("WatchPull: StatusCode.NOT_FOUND")),
        "{:?}",
        run.checks()
    );
    remove(&berthd, &busybox()).await;
    berthd.finish();
}
