//! Pods with a user namespace (Kubernetes `hostUsers: false`): CRI `userns_options` mode POD.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::pods::{namespace_options, pod_config, pod_status, run_pod};
use tonic::Code;

/// Far from what other tests or the host use.
const HOST_ID: u32 = 65536 * 40;

fn userns(host_id: u32) -> cri::UserNamespace {
    let m = cri::IdMapping {
        host_id,
        container_id: 0,
        length: 65536,
    };
    cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: vec![m],
        gids: vec![m],
    }
}

fn userns_pod(berthd: &Berthd, name: &str, u: cri::UserNamespace) -> cri::PodSandboxConfig {
    let mut config = pod_config(berthd, name);
    namespace_options(&mut config).userns_options = Some(u);
    config
}

/// The runtime reaches the container's rootfs and bind sources as the pod's root, which only
/// has "other" permissions on host directories: the test dir (0700 from tempdir) must be
/// searchable, as containerd's state dirs are (0711).
fn searchable(berthd: &Berthd) {
    std::fs::set_permissions(&berthd.dir, std::fs::Permissions::from_mode(0o711)).expect("chmod");
}

async fn supported(berthd: &Berthd) -> bool {
    let mut rt = berthd.runtime().await.expect("client");
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    status
        .runtime_handlers
        .iter()
        .all(|h| h.features.is_some_and(|f| f.user_namespaces))
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn pod_user_namespace_maps_ids_and_idmaps_files() {
    let berthd = Berthd::start("userns").await.expect("starting berthd");
    assert!(
        supported(&berthd).await,
        "this kernel supports idmapped mounts"
    );
    searchable(&berthd);
    pull(&berthd, &busybox()).await;
    let pod = Pod::run_with(&berthd, userns_pod(&berthd, "userns", userns(HOST_ID))).await;

    let status = pod_status(&berthd, &pod.id)
        .await
        .expect("PodSandboxStatus")
        .status
        .expect("status");
    let reported = status
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .and_then(|o| o.userns_options)
        .expect("userns_options in PodSandboxStatus");
    assert_eq!(reported, userns(HOST_ID));

    let vol = berthd.dir.join("vol");
    let (rw, ro) = (vol.join("rw"), vol.join("ro"));
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("host-file"), "host\n").unwrap();
    let script = "cat /proc/self/uid_map; cat /proc/self/gid_map; echo uid=$(id -u); \
        stat -c 'owner=%u:%g' /bin/busybox /etc/passwd /etc/hosts /dev/shm /mnt/rw; \
        echo root > /root-file && echo rootfs-ok; echo vol > /mnt/rw/by-pod && echo vol-ok; \
        echo x > /mnt/ro/host-file || echo ro-refused; mount -o remount,rw /mnt/ro 2>/dev/null && echo remounted; \
        test -r /proc/self/status && echo proc-ok; test -d /sys/class/net/lo && echo sys-ok; \
        mknod /blockdev b 8 0 2>/dev/null && echo mknod-ok || echo mknod-refused; \
        exec sleep 300";
    let mut config = shell("probe", script);
    config.mounts = vec![
        cri::Mount {
            container_path: "/mnt/rw".into(),
            host_path: rw.to_string_lossy().into_owned(),
            ..Default::default()
        },
        cri::Mount {
            container_path: "/mnt/ro".into(),
            host_path: ro.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        },
    ];
    // The pod's root gets every capability in its own namespace: still no host root.
    security(&mut config).capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    let log_file = pod.log_file(&config);
    let id = run(&berthd, &pod, config).await;
    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = read_log(&log_file)
            .map(|l| stream_lines(&l, "stdout"))
            .unwrap_or_default();
        if lines
            .iter()
            .any(|l| l == "sysctl-refused" || l == "proc-ok")
            && lines.len() >= 14
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = lines.join("\n");
    println!("container output:\n{text}");
    let want_map = format!("0 {HOST_ID} 65536");
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(squeeze(&lines[0]), want_map, "{text}");
    assert_eq!(squeeze(&lines[1]), want_map, "{text}");
    assert!(lines.contains(&"uid=0".to_string()), "{text}");
    assert_eq!(
        lines.iter().filter(|l| *l == "owner=0:0").count(),
        5,
        "rootfs, pod files, shm and volumes look owned by the pod's root: {text}"
    );
    for want in [
        "rootfs-ok",
        "vol-ok",
        "ro-refused",
        "proc-ok",
        "sys-ok",
        "mknod-refused",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want}: {text}");
    }
    assert!(!lines.iter().any(|l| l == "remounted"), "{text}");

    // From the host: the process runs as HOST_ID.
    let pid = pid(&berthd, &id).await;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status_field(&proc_status, "Uid:");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == HOST_ID.to_string()),
        "{uid_line}"
    );
    // What the pod's root wrote through the idmapped volume is stored with the pod's ids.
    assert_eq!(std::fs::metadata(rw.join("by-pod")).unwrap().uid(), 0);
    // What it wrote into its rootfs lands in the writable layer with host ids.
    let upper_file = find_file(&berthd.root.join("containers").join(&id), "root-file")
        .expect("root-file in the writable layer");
    assert_eq!(std::fs::metadata(&upper_file).unwrap().uid(), HOST_ID);
    assert_eq!(
        std::fs::read_to_string(ro.join("host-file")).unwrap(),
        "host\n"
    );

    // exec joins the user namespace.
    let mut rt = berthd.runtime().await.expect("client");
    let out = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "id -u; cat /proc/self/uid_map".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.exit_code, 0, "{stdout}");
    assert!(stdout.starts_with("0\n"), "{stdout}");
    assert!(squeeze(&stdout).contains(&want_map), "{stdout}");

    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    assert!(
        berth_e2e::leaks::mounts_under(&berthd.dir).is_empty(),
        "{:?}",
        berth_e2e::leaks::mounts_under(&berthd.dir)
    );
    berthd.finish();
}

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
        if entry.file_type().is_ok_and(|t| t.is_dir())
            && let Some(found) = find_file(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// A change that makes a user-namespace pod config invalid.
type Edit = Box<dyn FnOnce(&mut cri::PodSandboxConfig)>;

async fn refused(
    berthd: &Berthd,
    name: &str,
    edit: impl FnOnce(&mut cri::PodSandboxConfig),
) -> tonic::Status {
    let mut config = userns_pod(berthd, name, userns(HOST_ID));
    edit(&mut config);
    std::fs::create_dir_all(&config.log_directory).unwrap();
    run_pod(berthd, config).await.expect_err("refused")
}

#[tokio::test]
async fn bad_user_namespace_requests_are_refused() {
    let berthd = Berthd::start("usernsbad").await.expect("starting berthd");
    let cases: Vec<(&str, Edit)> = vec![
        (
            "no mappings",
            Box::new(|c| {
                namespace_options(c).userns_options = Some(cri::UserNamespace {
                    mode: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                })
            }),
        ),
        (
            "zero length",
            Box::new(|c| {
                let u = namespace_options(c).userns_options.as_mut().unwrap();
                u.uids[0].length = 0;
            }),
        ),
        (
            "overflow",
            Box::new(|c| {
                let u = namespace_options(c).userns_options.as_mut().unwrap();
                u.gids[0].host_id = u32::MAX - 100;
            }),
        ),
        (
            "no root",
            Box::new(|c| {
                let u = namespace_options(c).userns_options.as_mut().unwrap();
                u.uids[0].container_id = 1;
            }),
        ),
        (
            "host root",
            Box::new(|c| {
                let u = namespace_options(c).userns_options.as_mut().unwrap();
                u.uids[0].host_id = 0;
            }),
        ),
        (
            "mode container",
            Box::new(|c| {
                namespace_options(c).userns_options.as_mut().unwrap().mode =
                    cri::NamespaceMode::Container as i32;
            }),
        ),
        (
            "node with mappings",
            Box::new(|c| {
                namespace_options(c).userns_options.as_mut().unwrap().mode =
                    cri::NamespaceMode::Node as i32;
            }),
        ),
        (
            "host network",
            Box::new(|c| {
                namespace_options(c).network = cri::NamespaceMode::Node as i32;
            }),
        ),
        (
            "host ipc",
            Box::new(|c| {
                namespace_options(c).ipc = cri::NamespaceMode::Node as i32;
            }),
        ),
        (
            "host pid",
            Box::new(|c| {
                namespace_options(c).pid = cri::NamespaceMode::Node as i32;
            }),
        ),
        (
            "shared pid",
            Box::new(|c| {
                namespace_options(c).pid = cri::NamespaceMode::Pod as i32;
            }),
        ),
    ];
    for (i, (what, edit)) in cases.into_iter().enumerate() {
        let status = refused(&berthd, &format!("bad{i}"), edit).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    assert!(berth_e2e::leaks::mounts_under(&berthd.dir).is_empty());
    berthd.finish();
}

#[tokio::test]
async fn container_user_namespace_must_match_its_pod() {
    let berthd = Berthd::start("usernsctr").await.expect("starting berthd");
    searchable(&berthd);
    pull(&berthd, &busybox()).await;
    let pod = Pod::run_with(&berthd, userns_pod(&berthd, "usernsctr", userns(HOST_ID))).await;
    let host_pod = Pod::run(&berthd, "hostusers").await;
    for (target, u) in [
        (&pod, userns(HOST_ID + 65536)),
        (
            &pod,
            cri::UserNamespace {
                mode: cri::NamespaceMode::Node as i32,
                ..Default::default()
            },
        ),
        (&host_pod, userns(HOST_ID)),
    ] {
        let mut config = shell("c", "true");
        security(&mut config).namespace_options = Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Container as i32,
            userns_options: Some(u),
            ..Default::default()
        });
        let err = create(&berthd, target, config).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    // Propagation cannot reach through an idmapped copy: refused before anything is made.
    let mut config = shell("prop", "true");
    config.mounts = vec![cri::Mount {
        container_path: "/mnt/h2c".into(),
        host_path: berthd.dir.join("h2c").to_string_lossy().into_owned(),
        propagation: cri::MountPropagation::PropagationHostToContainer as i32,
        ..Default::default()
    }];
    let err = create(&berthd, &pod, config).await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut config = shell("privileged", "true");
    security(&mut config).privileged = true;
    let err = create(&berthd, &pod, config).await.expect_err("refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // A source the kernel cannot idmap (procfs) fails CreateContainer after the rootfs and
    // other sources were idmapped: all of it is rolled back (berthd.finish checks the mounts).
    let mut config = shell("procfs", "true");
    config.mounts = vec![cri::Mount {
        container_path: "/mnt/proc".into(),
        host_path: "/proc/sys".into(),
        readonly: true,
        ..Default::default()
    }];
    let err = create(&berthd, &pod, config).await.expect_err("refused");
    assert!(err.message().contains("idmapping"), "{err:?}");
    let leftovers: Vec<String> = berth_e2e::leaks::mounts_under(&berthd.dir)
        .into_iter()
        .filter(|m| m.contains("/containers/"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same options as the pod's, or none, are fine.
    let mut config = shell("same", "id -u");
    security(&mut config).namespace_options = Some(cri::NamespaceOption {
        pid: cri::NamespaceMode::Container as i32,
        userns_options: Some(userns(HOST_ID)),
        ..Default::default()
    });
    let (id, status, log) = run_to_exit(&berthd, &pod, config).await;
    assert_eq!(status.exit_code, 0, "{log:?}");
    assert_eq!(stream_lines(&log, "stdout"), vec!["0".to_string()]);
    remove(&berthd, &id).await.expect("remove");
    pod.remove(&berthd).await;
    host_pod.remove(&berthd).await;
    berthd.finish();
}

/// kubelet's `procMount: Unmasked` (allowed since 1.30 only with `hostUsers: false`): two empty
/// lists in a container of a user-namespaced pod leave /proc unmasked and writable; kubelet's
/// default lists still mask.
#[tokio::test]
async fn proc_mount_unmasked_in_a_user_namespace() {
    let berthd = Berthd::start("usernsproc").await.expect("starting berthd");
    searchable(&berthd);
    pull(&berthd, &busybox()).await;
    let pod = Pod::run_with(
        &berthd,
        userns_pod(&berthd, "usernsproc", userns(HOST_ID + 65536)),
    )
    .await;
    let probe = "for p in /proc/keys /proc/sys; do \
                 awk -v p=$p '$5==p {print $5\" \"$6}' /proc/self/mountinfo; done; echo done";
    let mut outputs = Vec::new();
    for (name, masked, readonly) in [
        ("unmasked", vec![], vec![]),
        (
            "default",
            vec!["/proc/keys".to_string()],
            vec!["/proc/sys".to_string()],
        ),
    ] {
        let mut config = shell(name, probe);
        let s = security(&mut config);
        s.masked_paths = masked;
        s.readonly_paths = readonly;
        // kubelet sends the pod's user namespace in every container's namespace options.
        s.namespace_options = Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            pid: cri::NamespaceMode::Container as i32,
            userns_options: Some(userns(HOST_ID + 65536)),
            ..Default::default()
        });
        let (id, status, log) = run_to_exit(&berthd, &pod, config).await;
        assert_eq!(status.exit_code, 0, "{log:?}");
        outputs.push(stream_lines(&log, "stdout"));
        remove(&berthd, &id).await.expect("RemoveContainer");
    }
    assert_eq!(outputs[0], ["done"], "Unmasked: no /proc mounts over /proc");
    assert!(
        outputs[1].iter().any(|l| l.starts_with("/proc/keys ")),
        "{:?}",
        outputs[1]
    );
    assert!(
        outputs[1].iter().any(|l| l.starts_with("/proc/sys ro")),
        "{:?}",
        outputs[1]
    );
    pod.remove(&berthd).await;
    berthd.finish();
}
