//! ImageFsInfo's two filesystems (images; containers' writable layers), `image.store_dir` on a
//! filesystem of its own (kubelet's split image filesystem), and `ImageSpec.runtime_handler` on
//! PullImage.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::containers::{self, Pod};
use berth_e2e::workload::value;
use berth_e2e::{Berthd, Options};

/// (mountpoint, used bytes, inodes) of each filesystem ImageFsInfo reports.
type Fs = (String, u64, u64);

async fn fs_info(berthd: &Berthd) -> (Vec<Fs>, Vec<Fs>) {
    let r = berthd
        .images()
        .await
        .unwrap()
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let each = |list: &[cri::FilesystemUsage]| {
        list.iter()
            .map(|fs| {
                assert!(fs.timestamp > 0, "{fs:?}");
                (
                    fs.fs_id.as_ref().unwrap().mountpoint.clone(),
                    value(&fs.used_bytes).unwrap(),
                    value(&fs.inodes_used).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    (each(&r.image_filesystems), each(&r.container_filesystems))
}

async fn pull_for_handler(berthd: &Berthd, handler: &str) -> Result<String, tonic::Status> {
    berthd
        .images()
        .await
        .unwrap()
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: containers::busybox(),
                runtime_handler: handler.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

fn mount_tmpfs(target: &std::path::Path) {
    std::fs::create_dir_all(target).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256m", "berth-e2e-images"])
        .arg(target)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a tmpfs at {}", target.display());
}

#[tokio::test]
async fn image_store_on_its_own_filesystem_and_writable_layers_are_reported_apart() {
    let mut berthd = Berthd::prepare("image-fs", &Options::default()).unwrap();
    let store = berthd.dir.join("image-store");
    mount_tmpfs(&store);
    std::fs::write(
        berthd.config_file.with_file_name("config.d/50-test.toml"),
        format!("[image]\nstore_dir = {store:?}\n"),
    )
    .unwrap();
    berthd.launch().await.unwrap();

    // Before any pull: the image store is the tmpfs, the writable layers under the root.
    let layers_dir = berthd.root.join("containers");
    let (images, layers) = fs_info(&berthd).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].0, store.to_string_lossy());
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_eq!(layers[0].0, layers_dir.to_string_lossy());
    let images_before = images[0].1;

    // The handler a pull names must exist; the configured one and the default both pull.
    let err = pull_for_handler(&berthd, "no-such-handler")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("no-such-handler"), "{err:?}");
    assert!(
        containers::try_pull(&berthd, &containers::busybox())
            .await
            .is_ok()
    );
    let by_runc = pull_for_handler(&berthd, "runc").await.unwrap();
    let by_default = pull_for_handler(&berthd, "").await.unwrap();
    assert_eq!(by_runc, by_default);

    // The pull landed on the tmpfs, not under the root.
    assert!(store.join("snapshots").is_dir());
    assert!(!berthd.root.join("snapshots").exists());
    let (images, layers) = fs_info(&berthd).await;
    assert!(
        images[0].1 > images_before + 512 * 1024,
        "busybox's layer should show on the image filesystem: {images_before} → {images:?}"
    );
    let layers_before = layers[0].1;

    // A container writing 2 MiB grows the container filesystem, not the image one.
    let pod = Pod::run(&berthd, "image-fs").await;
    let id = containers::run(
        &berthd,
        &pod,
        containers::shell(
            "writer",
            "dd if=/dev/zero of=/written bs=1M count=2 && touch /done && sleep 600",
        ),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let grown = loop {
        let (images_now, layers_now) = fs_info(&berthd).await;
        if layers_now[0].1 >= layers_before + 2 * 1024 * 1024 {
            assert_eq!(images_now[0].1, images[0].1, "the image store grew");
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        grown,
        "the 2 MiB write never showed on the container filesystem"
    );

    containers::stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    let (_, layers) = fs_info(&berthd).await;
    assert!(
        layers[0].1 < layers_before + 1024 * 1024,
        "the removed container's layer is still counted: {layers:?}"
    );
    berthd.stop().unwrap();
    let ok = Command::new("umount")
        .arg(&store)
        .status()
        .unwrap()
        .success();
    assert!(ok, "unmounting {}", store.display());
    berthd.finish();
}
