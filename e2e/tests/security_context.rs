//! The rest of the security context from inside real containers: masked and read-only paths,
//! users and groups, capabilities (ambient too), no_new_privs, a read-only rootfs, privileged
//! containers, AppArmor and SELinux on a host without them, and the refusals.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// kubelet 1.26 still sends the deprecated apparmor_profile string; tested on purpose.
#![allow(deprecated)]

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::security::*;
use cri::security_profile::ProfileType;
use tonic::Code;

/// The mount options of the mount point `path` as the script printed them with [`MOUNT_OF`].
fn mount_options<'a>(lines: &'a [String], path: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{path} ")))
}

/// Prints "<mount point> <options>" for each of the given mount points that is one.
fn mount_of(paths: &[&str]) -> String {
    let wanted = paths.join(" ");
    format!(
        "for p in {wanted}; do awk -v p=$p '$5==p {{print $5\" \"$6}}' /proc/self/mountinfo; done"
    )
}

#[tokio::test]
async fn masked_and_read_only_paths_are_exactly_what_the_request_says() {
    let berthd = Berthd::start("secpaths").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "paths").await;
    let probe = format!(
        "{}; cat /etc/group | wc -c; touch /bin/x 2>&1; touch /tmp/x && echo tmp-ok",
        mount_of(&["/proc/keys", "/proc/sys", "/sys", "/bin", "/etc/group"])
    );

    // No lists in the request: Berth's defaults (/proc/keys masked, /proc/sys read-only).
    let (code, lines) = script_output(&berthd, &pod, "defaults", &probe, |_| {}).await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(mount_options(&lines, "/proc/keys").is_some(), "{lines:?}");
    assert!(
        mount_options(&lines, "/proc/sys").is_some_and(|o| o.starts_with("ro")),
        "{lines:?}"
    );
    assert!(
        mount_options(&lines, "/sys").is_some_and(|o| o.starts_with("ro")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "tmp-ok"), "{lines:?}");

    // Exactly the request's lists: /etc/group masked, /bin read-only, and none of the defaults.
    let (code, lines) = script_output(&berthd, &pod, "requested", &probe, |s| {
        s.masked_paths = vec!["/etc/group".into()];
        s.readonly_paths = vec!["/bin".into()];
    })
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        mount_options(&lines, "/etc/group").is_some(),
        "masked: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "0"),
        "masked /etc/group reads empty: {lines:?}"
    );
    assert!(
        mount_options(&lines, "/bin").is_some_and(|o| o.starts_with("ro")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("Read-only file system")),
        "{lines:?}"
    );
    assert!(mount_options(&lines, "/proc/keys").is_none(), "{lines:?}");
    assert!(mount_options(&lines, "/proc/sys").is_none(), "{lines:?}");

    // Privileged: nothing masked, /sys writable, the host's devices present.
    let privileged = format!(
        "{}; test -c /dev/loop-control && echo host-devices; grep CapEff: /proc/self/status",
        mount_of(&["/proc/keys", "/sys"])
    );
    let (code, lines) = script_output(&berthd, &pod, "privileged", &privileged, |s| {
        s.privileged = true;
        s.masked_paths = vec!["/etc/group".into()];
    })
    .await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(mount_options(&lines, "/proc/keys").is_none(), "{lines:?}");
    assert!(
        mount_options(&lines, "/sys").is_some_and(|o| o.starts_with("rw")),
        "{lines:?}"
    );
    if std::path::Path::new("/dev/loop-control").exists() {
        assert!(lines.iter().any(|l| l == "host-devices"), "{lines:?}");
    }

    // A relative path is refused before anything is created.
    let mut config = shell("relative", "true");
    security(&mut config).masked_paths = vec!["proc/kcore".into()];
    let err = create(&berthd, &pod, config)
        .await
        .expect_err("relative masked path");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(list(&berthd, None).await.is_empty());
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn users_groups_capabilities_and_privileges() {
    let berthd = Berthd::start("secusers").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "users").await;

    // Supplementary groups: the image's /etc/group ("extra" 2000 lists berth) and the request's,
    // or with Strict only the request's; ContainerStatus reports what the process got.
    let mut config = shell("merge", "id -u; id -g; id -G");
    let s = security(&mut config);
    s.run_as_username = "berth".into();
    s.run_as_group = Some(cri::Int64Value { value: 3000 });
    s.supplemental_groups = vec![4000];
    let (id, status, log) = run_to_exit(&berthd, &pod, config).await;
    assert_eq!(
        all_lines(&log),
        ["1000", "3000", "3000 2000 4000"],
        "{log:?}"
    );
    let user = status
        .user
        .and_then(|u| u.linux)
        .expect("ContainerStatus.user");
    assert_eq!((user.uid, user.gid), (1000, 3000));
    assert_eq!(user.supplemental_groups, [3000, 2000, 4000]);
    remove(&berthd, &id).await.expect("RemoveContainer");
    let (code, lines) = script_output(&berthd, &pod, "strict", "id -G", |s| {
        s.run_as_user = Some(cri::Int64Value { value: 1000 });
        s.supplemental_groups = vec![4000];
        s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
    })
    .await;
    assert_eq!(
        (code, lines.as_slice()),
        (0, &["1000 4000".to_string()][..])
    );

    // Capabilities: all dropped, one added, ambient for a non-root process.
    let caps = "grep -E '^Cap(Eff|Amb):' /proc/self/status";
    let (_, lines) = script_output(&berthd, &pod, "drop-all", caps, |s| {
        s.capabilities = Some(cri::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
    })
    .await;
    assert_eq!(
        status_field(&lines, "CapEff"),
        Some("0000000000000000"),
        "{lines:?}"
    );
    let (_, lines) = script_output(&berthd, &pod, "net-admin", caps, |s| {
        s.capabilities = Some(cri::Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
    })
    .await;
    assert_eq!(
        status_field(&lines, "CapEff"),
        Some("0000000000001000"),
        "{lines:?}"
    );
    let (_, lines) = script_output(&berthd, &pod, "ambient", caps, |s| {
        s.run_as_user = Some(cri::Int64Value { value: 1000 });
        s.capabilities = Some(cri::Capability {
            drop_capabilities: vec!["ALL".into()],
            add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
            ..Default::default()
        });
    })
    .await;
    // CAP_NET_BIND_SERVICE is bit 10: kept by a non-root process across exec.
    assert_eq!(
        status_field(&lines, "CapAmb"),
        Some("0000000000000400"),
        "{lines:?}"
    );
    assert_eq!(
        status_field(&lines, "CapEff"),
        Some("0000000000000400"),
        "{lines:?}"
    );

    // no_new_privs: a setuid-root binary does not raise a non-root user's euid.
    let suid = setuid_euid_printer(&berthd.dir);
    let run_suid = |nnp: bool| {
        let mut config = shell(
            if nnp { "nnp" } else { "no-nnp" },
            "/suid/euid; grep NoNewPrivs: /proc/self/status",
        );
        config.mounts = vec![cri::Mount {
            container_path: "/suid".into(),
            host_path: suid.display().to_string(),
            readonly: true,
            ..Default::default()
        }];
        let s = security(&mut config);
        s.run_as_user = Some(cri::Int64Value { value: 1000 });
        s.no_new_privs = nnp;
        config
    };
    let (id, _, log) = run_to_exit(&berthd, &pod, run_suid(false)).await;
    assert_eq!(all_lines(&log), ["euid=0", "NoNewPrivs:\t0"], "{log:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");
    let (id, _, log) = run_to_exit(&berthd, &pod, run_suid(true)).await;
    assert_eq!(all_lines(&log), ["euid=1000", "NoNewPrivs:\t1"], "{log:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");

    // A read-only rootfs.
    let (code, lines) = script_output(&berthd, &pod, "ro-rootfs", "touch /x", |s| {
        s.readonly_rootfs = true;
    })
    .await;
    assert_ne!(code, 0);
    assert!(
        lines.iter().any(|l| l.contains("Read-only file system")),
        "{lines:?}"
    );

    // Refusals: run_as_group without a user, both user fields, unknown capability, ALL ambient.
    type Bad = fn(&mut cri::LinuxContainerSecurityContext);
    let refusals: [(&str, Bad); 4] = [
        ("run_as_group alone", |s| {
            s.run_as_group = Some(cri::Int64Value { value: 5 })
        }),
        ("two users", |s| {
            s.run_as_user = Some(cri::Int64Value { value: 5 });
            s.run_as_username = "berth".into();
        }),
        ("unknown capability", |s| {
            s.capabilities = Some(cri::Capability {
                add_capabilities: vec!["CAP_MAGIC".into()],
                ..Default::default()
            })
        }),
        ("ambient ALL", |s| {
            s.capabilities = Some(cri::Capability {
                add_ambient_capabilities: vec!["ALL".into()],
                ..Default::default()
            })
        }),
    ];
    for (what, bad) in refusals {
        let mut config = shell("refused", "true");
        bad(security(&mut config));
        let err = create(&berthd, &pod, config).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    assert!(list(&berthd, None).await.is_empty());
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn apparmor_and_selinux_on_a_host_without_them() {
    let berthd = Berthd::start("seclsm").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let mut rt = berthd.runtime().await.expect("runtime client");
    let status = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .expect("Status")
        .into_inner();
    assert!(
        status
            .features
            .is_some_and(|f| f.supplemental_groups_policy)
    );
    let host: serde_json::Value =
        serde_json::from_str(&status.info["security"]).expect("security info JSON");
    assert_eq!(host["seccomp"], true, "{host}");
    let (apparmor, selinux) = (
        host["lsm"]["apparmor"].as_bool().expect("lsm.apparmor"),
        host["lsm"]["selinux"].as_bool().expect("lsm.selinux"),
    );
    if apparmor || selinux {
        eprintln!("this host has AppArmor or SELinux; the no-LSM behaviour is not testable here");
        berthd.finish();
        return;
    }
    let pod = Pod::run(&berthd, "lsm").await;
    // RuntimeDefault (both forms) and SELinux options are accepted and have nothing to apply.
    type Tweak = fn(&mut cri::LinuxContainerSecurityContext);
    let accepted: [(&str, Tweak); 3] = [
        ("apparmor-rd", |s| {
            s.apparmor = Some(profile(ProfileType::RuntimeDefault, ""))
        }),
        ("apparmor-rd-path", |s| {
            s.apparmor_profile = "runtime/default".into()
        }),
        ("selinux", |s| {
            s.selinux_options = Some(cri::SeLinuxOption {
                r#type: "spc_t".into(),
                level: "s0:c1,c2".into(),
                ..Default::default()
            })
        }),
    ];
    for (name, tweak) in accepted {
        let (code, lines) = script_output(&berthd, &pod, name, "echo ran", tweak).await;
        assert_eq!(
            (code, lines.as_slice()),
            (0, &["ran".to_string()][..]),
            "{name}"
        );
    }
    // A Localhost AppArmor profile asks for confinement this host cannot give.
    for (what, context) in [
        (
            "typed",
            cri::LinuxContainerSecurityContext {
                apparmor: Some(profile(ProfileType::Localhost, "my-profile")),
                ..Default::default()
            },
        ),
        (
            "path",
            cri::LinuxContainerSecurityContext {
                apparmor_profile: "localhost/my-profile".into(),
                ..Default::default()
            },
        ),
    ] {
        let mut config = shell("refused", "true");
        *security(&mut config) = context;
        let err = create(&berthd, &pod, config).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains("AppArmor is not enabled"), "{err:?}");
    }
    assert!(list(&berthd, None).await.is_empty());
    pod.remove(&berthd).await;
    berthd.finish();
}
