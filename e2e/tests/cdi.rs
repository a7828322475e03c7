//! CDI devices from inside real containers: a JSON spec and a YAML spec in two spec directories
//! of the test's own (never the host's /etc/cdi), requested through CRI `CDI_devices` and through
//! a `cdi.k8s.io/` annotation; the device node (its numbers, writable through the device cgroup),
//! the env and the mount are checked from the container's log. An unknown device is refused with
//! INVALID_ARGUMENT and leaves nothing behind.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use berth_cri_api::v1 as cri;
use berth_e2e::containers::*;
use berth_e2e::{Berthd, Options};
use tonic::Code;

fn json_spec(mounted: &Path) -> String {
    format!(
        r#"{{
  "cdiVersion": "0.6.0",
  "kind": "example.com/device",
  "containerEdits": {{"env": ["BERTH_CDI_COMMON=1"]}},
  "devices": [{{
    "name": "null",
    "containerEdits": {{
      "env": ["BERTH_CDI=null"],
      "deviceNodes": [{{"path": "/dev/berth-null", "hostPath": "/dev/null"}}],
      "mounts": [{{"hostPath": "{}", "containerPath": "/etc/berth-cdi.txt",
                   "options": ["ro", "nosuid", "nodev", "bind"]}}]
    }}
  }}]
}}"#,
        mounted.display()
    )
}

const YAML_SPEC: &str = r#"
cdiVersion: "0.8.0"
kind: example.com/yaml
devices:
  - name: zero
    containerEdits:
      env: ["BERTH_CDI_YAML=zero"]
      deviceNodes:
        - path: /dev/berth-zero
          hostPath: /dev/zero
"#;

/// Entries of a directory (0 if it does not exist).
/// The names in `dir` (containers' bundle or layer dirs).
fn entries(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn output(berthd: &Berthd, pod: &Pod, config: cri::ContainerConfig) -> (i32, Vec<String>) {
    let (id, status, log) = run_to_exit(berthd, pod, config).await;
    remove(berthd, &id).await.expect("RemoveContainer");
    (status.exit_code, all_lines(&log))
}

#[tokio::test]
async fn cdi_devices_from_json_and_yaml_specs() {
    let cdi = tempfile::tempdir().expect("temp dir");
    let (etc, run) = (cdi.path().join("etc"), cdi.path().join("run"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    let mounted = cdi.path().join("mounted.txt");
    std::fs::write(&mounted, "from-the-host\n").unwrap();
    std::fs::write(etc.join("example.json"), json_spec(&mounted)).unwrap();
    std::fs::write(run.join("yaml.yaml"), YAML_SPEC).unwrap();
    let options = Options {
        dropin: format!(
            "[cdi]\nspec_dirs = [{:?}, {:?}]\n",
            etc.display().to_string(),
            run.display().to_string()
        ),
        ..Options::default()
    };
    let berthd = Berthd::start_with("cdi", options)
        .await
        .expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "cdi").await;

    // CRI CDI_devices, a JSON spec: node 1:3, writable; env of the device and of the spec; mount.
    let mut config = shell(
        "field",
        "stat -c 'node %t %T %F' /dev/berth-null; echo x > /dev/berth-null && echo write-ok; \
         echo env=$BERTH_CDI common=$BERTH_CDI_COMMON; cat /etc/berth-cdi.txt; \
         echo y >> /etc/berth-cdi.txt 2>/dev/null || echo mount-ro",
    );
    config.cdi_devices = vec![cri::CdiDevice {
        name: "example.com/device=null".into(),
    }];
    let (code, lines) = output(&berthd, &pod, config).await;
    assert_eq!(code, 0, "{lines:?}");
    for want in [
        "node 1 3 character special file",
        "write-ok",
        "env=null common=1",
        "from-the-host",
        "mount-ro",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want}: {lines:?}");
    }

    // The cdi.k8s.io/ annotation, a YAML spec from the second directory: node 1:5, readable.
    let mut config = shell(
        "annotation",
        "stat -c 'node %t %T' /dev/berth-zero; head -c 4 /dev/berth-zero | wc -c; \
         echo yaml=$BERTH_CDI_YAML; test -e /dev/berth-null || echo no-null",
    );
    config
        .annotations
        .insert("cdi.k8s.io/e2e".into(), "example.com/yaml=zero".into());
    let (code, lines) = output(&berthd, &pod, config).await;
    assert_eq!(code, 0, "{lines:?}");
    for want in ["node 1 5", "4", "yaml=zero", "no-null"] {
        assert!(lines.iter().any(|l| l.trim() == want), "{want}: {lines:?}");
    }

    // Unknown devices, by field or annotation, and a malformed name: refused, nothing created.
    let bundles = (
        entries(&berthd.state.join("containers")),
        entries(&berthd.root.join("containers")),
    );
    let mut unknown = shell("unknown", "true");
    unknown.cdi_devices = vec![cri::CdiDevice {
        name: "example.com/device=nope".into(),
    }];
    let mut by_annotation = shell("unknown-annotation", "true");
    by_annotation
        .annotations
        .insert("cdi.k8s.io/x".into(), "example.com/none=0".into());
    let mut malformed = shell("malformed", "true");
    malformed.cdi_devices = vec![cri::CdiDevice {
        name: "not-qualified".into(),
    }];
    for (config, name) in [
        (unknown, "example.com/device=nope"),
        (by_annotation, "example.com/none=0"),
        (malformed, "not-qualified"),
    ] {
        let err = create(&berthd, &pod, config)
            .await
            .expect_err("CreateContainer with an unknown CDI device");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(name), "{err:?}");
    }
    assert!(list(&berthd, None).await.is_empty());
    // No new dir: the earlier containers' dirs may still go meanwhile (RemoveContainer answers
    // first and releases them in the background).
    let after = (
        entries(&berthd.state.join("containers")),
        entries(&berthd.root.join("containers")),
    );
    assert!(
        after.0.is_subset(&bundles.0) && after.1.is_subset(&bundles.1),
        "before {bundles:?}, after {after:?}"
    );

    pod.remove(&berthd).await;
    berthd.finish();
}
