//! cp and top in a pod with a user namespace: ids mapped both ways.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_e2e::Berthd;
use serde_json::Value;

use super::*;

/// One file owned by `uid:uid`, as Python's tarfile writes it.
const PY_OWNED: &str = r#"
import io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    info = tarfile.TarInfo("owned"); info.size = 2
    info.uid = info.gid = int(sys.argv[1])
    t.addfile(info, io.BytesIO(b"o\n"))
sys.stdout.buffer.write(buf.getvalue())
"#;

/// Far from what other tests or the host use.
const USERNS_HOST_ID: u32 = 65536 * 41;

#[tokio::test]
async fn cp_and_top_map_user_namespace_ids() {
    use berth_cri_api::v1 as cri;
    use berth_e2e::containers::{Pod, pull, run, shell};
    use berth_e2e::pods::{namespace_options, pod_config};
    use std::os::unix::fs::PermissionsExt;

    let berthd = Berthd::start("clicpuserns").await.expect("starting berthd");
    // The pod's root reaches the rootfs as an unprivileged host uid (see userns.rs).
    std::fs::set_permissions(&berthd.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    pull(&berthd, &busybox()).await;
    let mut config = pod_config(&berthd, "cpuserns");
    let m = cri::IdMapping {
        host_id: USERNS_HOST_ID,
        container_id: 0,
        length: 65536,
    };
    namespace_options(&mut config).userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: vec![m],
        gids: vec![m],
    });
    let pod = Pod::run_with(&berthd, config).await;
    let script = "echo x > /tmp/own && chown 7:8 /tmp/own && touch /ready && sleep 1000";
    let id = run(&berthd, &pod, shell("files", script)).await;
    wait_for("the setup", || {
        berthd
            .cli(&["exec", &id, "test", "-e", "/ready"])
            .unwrap()
            .0
    })
    .await;

    // top: root in the container, the pod's host id outside.
    let json: Value = serde_json::from_str(&ok(&berthd, &["top", &id, "-o", "json"])).unwrap();
    let sleep = json["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["args"][0] == "sleep"))
        .cloned()
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(
        (sleep["uid"].as_u64(), sleep["user"].as_str()),
        (Some(0), Some("root"))
    );
    assert_eq!(sleep["hostUid"].as_u64(), Some(u64::from(USERNS_HOST_ID)));

    // In: the archive's owner is the container's; on the host it is the mapped id.
    let tar = python(PY_OWNED, &["1234"], b"");
    let (code, _, err) = berth_io(&berthd, &["cp", "-", &format!("{id}:/tmp")], &tar);
    assert_eq!(code, Some(0), "{err}");
    let owner = ok(&berthd, &["exec", &id, "stat", "-c", "%u:%g", "/tmp/owned"]);
    assert_eq!(owner.trim(), "1234:1234");
    let bundle = inspect(&berthd, &id)["info"]["bundle"]
        .as_str()
        .unwrap()
        .to_string();
    let on_host = std::fs::metadata(Path::new(&bundle).join("rootfs/tmp/owned")).unwrap();
    assert_eq!(on_host.uid(), USERNS_HOST_ID + 1234);
    // Out: the container's ids again.
    let (code, out, err) = berth_io(&berthd, &["cp", &format!("{id}:/tmp/own"), "-"], b"");
    assert_eq!(code, Some(0), "{err}");
    let read: Value = serde_json::from_slice(&python(PY_READ, &[], &out)).unwrap();
    assert_eq!(
        (read["own"]["uid"].as_u64(), read["own"]["gid"].as_u64()),
        (Some(7), Some(8))
    );
    // An owner the pod cannot have is refused.
    let tar = python(PY_OWNED, &["70000"], b"");
    let (code, _, err) = berth_io(&berthd, &["cp", "-", &format!("{id}:/tmp")], &tar);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("not mapped"), "{err}");

    pod.remove(&berthd).await;
    berthd.finish();
}
