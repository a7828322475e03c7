//! Image volumes (CRI `Mount.image`, KEP-4639), as kubelet 1.33+ sends them: a pulled image's
//! rootfs mounted read-only into a container, whole or a sub directory, on a multi-layer image (a
//! lowerdir-only overlay) and a single-layer one (a read-only bind). Kept across a berthd
//! restart, gone with the container, and nothing left behind on any failure path.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::leaks;
use berth_e2e::streaming::berth::exec_sync;
use tonic::Code;

/// Three layers: `/data/keep.txt` and `/data/added.txt`, `/data/gone.txt` whited out.
fn layered() -> String {
    image("whiteout:latest")
}

/// One layer: busybox plus `/zstd-marker`.
fn single() -> String {
    image("zstd:latest")
}

fn image_mount(container_path: &str, image: &str, sub_path: &str) -> cri::Mount {
    cri::Mount {
        container_path: container_path.into(),
        readonly: true,
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

fn sleeper(name: &str, mounts: Vec<cri::Mount>) -> cri::ContainerConfig {
    let mut config = container_config(name, &busybox(), &["sleep", "3600"]);
    config.mounts = mounts;
    config
}

/// `sh -c script` in the container: (exit code, stdout, stderr).
async fn sh(berthd: &Berthd, id: &str, script: &str) -> (i32, String, String) {
    let out = exec_sync(berthd, id, &["sh", "-c", script], 10)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e:?}"));
    (
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Mounts under the state dir's image volume mount points (all containers).
fn image_volume_mounts(berthd: &Berthd) -> Vec<String> {
    leaks::mounts_under(&berthd.state.join("containers"))
        .into_iter()
        .filter(|m| m.contains("/image-volumes/"))
        .collect()
}

async fn remove_image(berthd: &Berthd, image: &str) -> Result<(), tonic::Status> {
    let mut client = berthd.images().await.expect("image client");
    client
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn image_volumes_are_read_only_views_of_pulled_images() {
    let mut berthd = Berthd::start("imgvol").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let layered_id = pull(&berthd, &layered()).await;
    let single_id = pull(&berthd, &single()).await;
    let pod = Pod::run(&berthd, "imgvol").await;

    // Refused, and nothing made: an image not pulled (NOT_FOUND), a sub path that leaves the
    // image, one that is missing, one that is a file (INVALID_ARGUMENT; those two after the
    // image was mounted, so their rollback unmounts it), a writable or host-path image mount.
    let refusals = [
        (image_mount("/mnt/img", &httpd(), ""), Code::NotFound),
        (
            image_mount("/mnt/img", &layered(), "../etc"),
            Code::InvalidArgument,
        ),
        (
            image_mount("/mnt/img", &layered(), "/etc"),
            Code::InvalidArgument,
        ),
        (
            image_mount("/mnt/img", &layered(), "nope"),
            Code::InvalidArgument,
        ),
        (
            image_mount("/mnt/img", &layered(), "data/keep.txt"),
            Code::InvalidArgument,
        ),
        (
            cri::Mount {
                readonly: false,
                ..image_mount("/mnt/img", &layered(), "")
            },
            Code::InvalidArgument,
        ),
        (
            cri::Mount {
                host_path: "/tmp".into(),
                ..image_mount("/mnt/img", &layered(), "")
            },
            Code::InvalidArgument,
        ),
    ];
    for (i, (mount, code)) in refusals.into_iter().enumerate() {
        let err = create(
            &berthd,
            &pod,
            sleeper(&format!("bad{i}"), vec![mount.clone()]),
        )
        .await
        .expect_err("a bad image volume is refused");
        assert_eq!(err.code(), code, "{mount:?}: {err:?}");
        eprintln!("refused as expected: {}", err.message());
        assert!(image_volume_mounts(&berthd).is_empty(), "{mount:?}");
    }
    assert!(
        list(&berthd, None).await.is_empty(),
        "no container was made"
    );

    // The whole layered image, its /data alone, and the single-layer image.
    let id = run(
        &berthd,
        &pod,
        sleeper(
            "reader",
            vec![
                image_mount("/mnt/img", &layered(), ""),
                image_mount("/mnt/sub", &layered(), "./data/"),
                image_mount("/mnt/one", &single(), ""),
            ],
        ),
    )
    .await;
    assert_eq!(
        image_volume_mounts(&berthd).len(),
        3,
        "one mount per volume"
    );
    let (code, out, err) = sh(
        &berthd,
        &id,
        "ls /mnt/img/data; ls /mnt/sub; cat /mnt/one/zstd-marker",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["added.txt", "keep.txt", "added.txt", "keep.txt", "zstd"],
        "the merged view of the layers, the sub dir, the single layer"
    );
    for dir in ["/mnt/img", "/mnt/img/data", "/mnt/sub", "/mnt/one"] {
        let (code, _, err) = sh(&berthd, &id, &format!("touch {dir}/new")).await;
        assert_ne!(code, 0, "writing into {dir} fails");
        assert!(err.contains("Read-only file system"), "{dir}: {err}");
    }

    // ContainerStatus reports the image mounts as containerd does: the image, the sub path,
    // read-only, and where the image is mounted on the host.
    let status = status(&berthd, &id).await;
    let reported: Vec<_> = status
        .mounts
        .iter()
        .map(|m| {
            (
                m.container_path.as_str(),
                m.image.as_ref().map(|i| i.image.as_str()).unwrap_or(""),
                // cri-api 1.33+: the image's digest, which kubelet shows as the volume's imageRef.
                m.image.as_ref().map(|i| i.image_ref.as_str()).unwrap_or(""),
                m.image_sub_path.as_str(),
                m.readonly,
                m.host_path.contains("/image-volumes/"),
            )
        })
        .collect();
    assert_eq!(
        reported,
        [
            (
                "/mnt/img",
                layered().as_str(),
                layered_id.as_str(),
                "",
                true,
                true
            ),
            (
                "/mnt/sub",
                layered().as_str(),
                layered_id.as_str(),
                "./data/",
                true,
                true
            ),
            (
                "/mnt/one",
                single().as_str(),
                single_id.as_str(),
                "",
                true,
                true
            ),
        ]
    );

    // The volumes outlive a berthd restart, like the container.
    let stopped = berthd.stop().expect("stopping berthd");
    assert!(stopped.success(), "berthd exited with {stopped}");
    berthd.launch().await.expect("restarting berthd");
    assert_eq!(image_volume_mounts(&berthd).len(), 3);
    let (code, out, err) = sh(&berthd, &id, "cat /mnt/one/zstd-marker").await;
    assert_eq!((code, out.trim()), (0, "zstd"), "{err}");

    // The image in use by a volume: RemoveImage behaves as for a container's own image — the
    // image goes from the store, its snapshots stay while a container is mounted on them.
    remove_image(&berthd, &layered())
        .await
        .expect("RemoveImage of an image a volume uses");
    let (code, out, err) = sh(&berthd, &id, "ls /mnt/img/data").await;
    assert_eq!(code, 0, "the volume still reads after RemoveImage: {err}");
    assert!(out.contains("keep.txt"), "{out}");

    // RemoveContainer (after the restart) unmounts them.
    stop_and_remove(&berthd, &id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !image_volume_mounts(&berthd).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        image_volume_mounts(&berthd).is_empty(),
        "{:?}",
        image_volume_mounts(&berthd)
    );
    // Collecting now removes the snapshots nobody uses any more.
    remove_image(&berthd, &single()).await.expect("RemoveImage");
    pod.remove(&berthd).await;
    remove_image(&berthd, &busybox())
        .await
        .expect("RemoveImage");
    berthd.finish();
}
