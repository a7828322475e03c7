//! Recursive read-only mounts (CRI `Mount.recursive_read_only`, kubelet's RecursiveReadOnlyMounts)
//! with runc 1.1, which has no `rro` option: Berth binds a read-only clone of the host path's
//! mount tree staged under the bundle. A host dir with a tmpfs mounted inside it shows the
//! difference from a plain read-only bind, whose submount stays writable.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::chaos::restart_with;
use berth_e2e::containers::*;
use berth_e2e::leaks::mounts_under;
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);

/// Writes into the mount's top and into its submount; one line per dir says which worked.
const PROBE: &str = "for d in /mnt/v /mnt/v/sub; do \
     if touch $d/written 2>/dev/null; then echo \"$d writable\"; else echo \"$d read-only\"; fi; \
     done; cat /mnt/v/sub/hello";

/// A host dir with a tmpfs mounted at `sub`, as a hostPath with a volume mounted inside it;
/// unmounted on drop (also when the test fails, so the next run starts clean).
struct HostTree {
    top: PathBuf,
}

impl HostTree {
    fn new(dir: &Path) -> HostTree {
        let top = dir.join("vol");
        let sub = top.join("sub");
        std::fs::create_dir_all(&sub).expect("vol/sub");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "rro-test"])
            .arg(&sub)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs on {}", sub.display());
        std::fs::write(sub.join("hello"), "from-submount\n").expect("sub/hello");
        HostTree { top }
    }

    fn sub(&self) -> PathBuf {
        self.top.join("sub")
    }
}

impl Drop for HostTree {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.sub()).status();
    }
}

fn mount(tree: &HostTree, readonly: bool, recursive_read_only: bool) -> cri::Mount {
    cri::Mount {
        container_path: "/mnt/v".into(),
        host_path: tree.top.to_string_lossy().into_owned(),
        readonly,
        recursive_read_only,
        ..Default::default()
    }
}

fn probe_container(name: &str, m: cri::Mount) -> cri::ContainerConfig {
    let mut config = shell(name, PROBE);
    config.mounts = vec![m];
    config
}

async fn handler_features(berthd: &Berthd) -> Vec<(String, bool)> {
    let mut rt = berthd.runtime().await.expect("client");
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    status
        .runtime_handlers
        .into_iter()
        .map(|h| {
            let rro = h.features.is_some_and(|f| f.recursive_read_only_mounts);
            (h.name, rro)
        })
        .collect()
}

/// The read-only clones staged for a container (mount points under `<bundle>/rro`).
async fn staged(berthd: &Berthd, id: &str) -> (PathBuf, Vec<String>) {
    let bundle = PathBuf::from(
        info(berthd, id).await["bundle"]
            .as_str()
            .expect("bundle in the verbose info"),
    );
    let rro = bundle.join("rro");
    let mounts = mounts_under(&rro);
    (rro, mounts)
}

async fn gone(rro: &Path) {
    poll(LONG, "the staging dir unmounted and removed", async || {
        (mounts_under(rro).is_empty() && !rro.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn recursive_read_only_mounts_make_submounts_read_only_too() {
    let berthd = Berthd::start("rro").await.expect("starting berthd");
    let features = handler_features(&berthd).await;
    assert!(
        !features.is_empty() && features.iter().all(|(_, rro)| *rro),
        "every handler reports recursive_read_only_mounts: {features:?}"
    );
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "rro").await;
    let tree = HostTree::new(&berthd.dir);

    // A plain read-only bind: the top is read-only, the tmpfs inside it is not.
    let (plain_id, plain_status, plain_log) = run_to_exit(
        &berthd,
        &pod,
        probe_container("plain", mount(&tree, true, false)),
    )
    .await;
    let plain = all_lines(&plain_log);
    assert_eq!(plain_status.exit_code, 0, "{plain:?}");
    assert!(plain.contains(&"/mnt/v read-only".into()), "{plain:?}");
    assert!(plain.contains(&"/mnt/v/sub writable".into()), "{plain:?}");
    assert!(
        tree.sub().join("written").exists(),
        "the write reached the host"
    );
    std::fs::remove_file(tree.sub().join("written")).expect("removing sub/written");

    // Recursive read-only: both fail, the content is visible.
    let (rro_id, rro_status, rro_log) = run_to_exit(
        &berthd,
        &pod,
        probe_container("rro", mount(&tree, true, true)),
    )
    .await;
    let rro = all_lines(&rro_log);
    assert_eq!(rro_status.exit_code, 0, "{rro:?}");
    assert!(rro.contains(&"/mnt/v read-only".into()), "{rro:?}");
    assert!(rro.contains(&"/mnt/v/sub read-only".into()), "{rro:?}");
    assert!(rro.contains(&"from-submount".into()), "{rro:?}");
    assert!(!tree.top.join("written").exists() && !tree.sub().join("written").exists());
    let reported = &rro_status.mounts;
    assert!(
        reported
            .iter()
            .any(|m| m.container_path == "/mnt/v" && m.readonly && m.recursive_read_only),
        "ContainerStatus reports the mount as recursively read-only: {reported:?}"
    );
    // The host's tree is untouched: its submount still writable there.
    std::fs::write(tree.sub().join("host-write"), "").expect("the host submount stays writable");

    let (staging, mounts) = staged(&berthd, &rro_id).await;
    assert!(
        !mounts.is_empty(),
        "a staged clone while the container exists"
    );
    remove(&berthd, &rro_id).await.expect("RemoveContainer");
    gone(&staging).await;

    // What CRI does not allow changes nothing.
    let before = list(&berthd, None).await.len();
    for (name, m) in [
        ("not-readonly", mount(&tree, false, true)),
        (
            "slave",
            cri::Mount {
                propagation: cri::MountPropagation::PropagationHostToContainer as i32,
                ..mount(&tree, true, true)
            },
        ),
        (
            "shared",
            cri::Mount {
                propagation: cri::MountPropagation::PropagationBidirectional as i32,
                ..mount(&tree, true, true)
            },
        ),
    ] {
        let err = create(&berthd, &pod, probe_container(name, m))
            .await
            .expect_err("an invalid recursive_read_only mount");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains("recursive_read_only"), "{err:?}");
    }
    assert_eq!(list(&berthd, None).await.len(), before);

    remove(&berthd, &plain_id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    drop(tree);
    berthd.finish();
}

#[tokio::test]
async fn staged_clones_go_away_after_a_failed_create_and_across_a_restart() {
    let mut berthd = Berthd::start("rroclean").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "rroclean").await;
    let tree = HostTree::new(&berthd.dir);
    let containers = berthd.state.join("containers");

    // CreateContainer fails after the clone was staged: the rollback unmounts it.
    restart_with(&mut berthd, "container/create/after-bundle=error")
        .await
        .expect("restarting berthd with a failpoint");
    let err = create(
        &berthd,
        &pod,
        probe_container("failed", mount(&tree, true, true)),
    )
    .await
    .expect_err("the failpoint fails CreateContainer");
    assert!(err.message().contains("failpoint"), "{err:?}");
    assert!(list(&berthd, None).await.is_empty());
    let left = mounts_under(&containers);
    assert!(left.is_empty(), "a failed CreateContainer left {left:?}");

    // A created container's clone survives a berthd crash, and RemoveContainer after the
    // restart still removes it.
    restart_with(&mut berthd, "")
        .await
        .expect("restarting berthd");
    let id = create(
        &berthd,
        &pod,
        probe_container("kept", mount(&tree, true, true)),
    )
    .await
    .expect("CreateContainer");
    let (staging, mounts) = staged(&berthd, &id).await;
    assert!(
        !mounts.is_empty(),
        "a staged clone for the created container"
    );
    restart_with(&mut berthd, "")
        .await
        .expect("restarting berthd");
    assert!(
        !mounts_under(&staging).is_empty(),
        "kept across the restart"
    );
    remove(&berthd, &id).await.expect("RemoveContainer");
    gone(&staging).await;

    pod.remove(&berthd).await;
    drop(tree);
    berthd.finish();
}
