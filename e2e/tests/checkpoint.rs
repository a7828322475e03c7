//! CheckpointContainer: bad requests are refused before anything happens; a checkpoint needs
//! CRIU to pass `criu check` on this host. Where it does, the archive holds what checkpointctl
//! and CRI-O read; where it does not (Debian 12's CRIU 3.17 on kernels that moved the vDSO, as
//! here), the answer is FAILED_PRECONDITION naming CRIU and nothing is left behind.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::{self, Pod};

async fn checkpoint(
    berthd: &Berthd,
    id: &str,
    location: &str,
) -> Result<cri::CheckpointContainerResponse, tonic::Status> {
    berthd
        .runtime()
        .await
        .unwrap()
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id.to_string(),
            location: location.to_string(),
            timeout: 60,
        })
        .await
        .map(|r| r.into_inner())
}

fn criu_works() -> bool {
    Command::new("criu")
        .arg("check")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tar_names(archive: &std::path::Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -tf {}", archive.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[tokio::test]
async fn checkpoint_writes_an_archive_or_says_why_it_cannot() {
    let berthd = Berthd::start("checkpoint").await.unwrap();
    containers::pull(&berthd, &containers::busybox()).await;
    let pod = Pod::run(&berthd, "checkpoint").await;
    let counter = containers::run(
        &berthd,
        &pod,
        containers::shell(
            "counter",
            "i=0; while true; do echo $i > /count; i=$((i+1)); sleep 0.1; done",
        ),
    )
    .await;
    let out_dir = berthd.dir.join("checkpoints");
    std::fs::create_dir_all(&out_dir).unwrap();
    let location = out_dir.join("checkpoint-counter.tar");
    let location_str = location.to_string_lossy().into_owned();

    // Refused before anything is touched.
    for (id, loc, code) in [
        ("", location_str.as_str(), tonic::Code::InvalidArgument),
        (counter.as_str(), "", tonic::Code::InvalidArgument),
        (
            counter.as_str(),
            "relative.tar",
            tonic::Code::InvalidArgument,
        ),
        (
            counter.as_str(),
            "/nonexistent-dir-berth/x.tar",
            tonic::Code::InvalidArgument,
        ),
        (
            "no-such-container",
            location_str.as_str(),
            tonic::Code::NotFound,
        ),
    ] {
        let err = checkpoint(&berthd, id, loc).await.unwrap_err();
        assert_eq!(err.code(), code, "{id:?} {loc:?}: {err:?}");
    }
    let created = containers::create(&berthd, &pod, containers::shell("idle", "sleep 600"))
        .await
        .unwrap();
    let err = checkpoint(&berthd, &created, &location_str)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("running"), "{err:?}");

    if criu_works() {
        checkpoint(&berthd, &counter, &location_str).await.unwrap();
        let names = tar_names(&location);
        for wanted in ["checkpoint", "config.dump", "spec.dump", "rootfs-diff.tar"] {
            assert!(
                names.iter().any(|n| n == wanted),
                "{wanted} not in {names:?}"
            );
        }
        assert!(
            names.iter().any(|n| n.starts_with("checkpoint/")),
            "no CRIU images in {names:?}"
        );
    } else {
        let err = checkpoint(&berthd, &counter, &location_str)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("CRIU"), "{err:?}");
        assert!(!location.exists());
    }
    // No scratch dir stays beside the archive, and the container still runs.
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".berth-checkpoint"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        containers::state(&berthd, &counter).await,
        containers::RUNNING
    );

    containers::remove(&berthd, &created).await.unwrap();
    containers::stop_and_remove(&berthd, &counter).await;
    pod.remove(&berthd).await;
    berthd.finish();
}
