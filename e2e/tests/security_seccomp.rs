//! seccomp from inside real containers: RuntimeDefault in every form kubelet sends it, Unconfined,
//! Localhost profiles in both the typed and the deprecated form, the pod's profile as the
//! containers' default, the node default, privileged containers, and the refusals.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// kubelet 1.26 still sends the deprecated string forms; they are tested here on purpose.
#![allow(deprecated)]

use berth_cri_api::v1 as cri;
use berth_e2e::containers::*;
use berth_e2e::pods::pod_config;
use berth_e2e::security::*;
use berth_e2e::{Berthd, Options, http_get};
use cri::security_profile::ProfileType;
use tonic::Code;

const SECCOMP: &str = "grep Seccomp: /proc/self/status";

fn with_caps(add: &[&str]) -> cri::Capability {
    cri::Capability {
        add_capabilities: add.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn seccomp_profiles_are_applied_as_requested() {
    let berthd = Berthd::start("seccomp").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "seccomp").await;

    // Filter mode 2 (SECCOMP_MODE_FILTER) for each way of asking for RuntimeDefault; 0 without.
    type Tweak = fn(&mut cri::LinuxContainerSecurityContext);
    let cases: [(&str, Tweak, &str); 6] = [
        (
            "typed",
            |s| s.seccomp = Some(profile(ProfileType::RuntimeDefault, "")),
            "2",
        ),
        (
            "runtime-default",
            |s| s.seccomp_profile_path = "runtime/default".into(),
            "2",
        ),
        (
            "docker-default",
            |s| s.seccomp_profile_path = "docker/default".into(),
            "2",
        ),
        (
            "unconfined",
            |s| s.seccomp = Some(profile(ProfileType::Unconfined, "")),
            "0",
        ),
        ("unset", |_| {}, "0"),
        (
            "privileged",
            |s| {
                s.privileged = true;
                s.seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
            },
            "0",
        ),
    ];
    for (name, tweak, want) in cases {
        let (code, lines) = script_output(&berthd, &pod, name, SECCOMP, tweak).await;
        assert_eq!(code, 0, "{name}: {lines:?}");
        assert_eq!(
            status_field(&lines, "Seccomp"),
            Some(want),
            "{name}: {lines:?}"
        );
    }

    // RuntimeDefault allows sethostname only with CAP_SYS_ADMIN (the pod has its own UTS
    // namespace, so the host's name is never touched).
    let hostname = "hostname renamed-by-test && echo renamed";
    let (code, lines) = script_output(&berthd, &pod, "rd-no-admin", hostname, |s| {
        s.seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
    })
    .await;
    assert_ne!(code, 0, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("not permitted")),
        "{lines:?}"
    );
    let (code, lines) = script_output(&berthd, &pod, "rd-admin", hostname, |s| {
        s.seccomp = Some(profile(ProfileType::RuntimeDefault, ""));
        s.capabilities = Some(with_caps(&["SYS_ADMIN"]));
    })
    .await;
    assert_eq!((code, lines.as_slice()), (0, &["renamed".to_string()][..]));

    // A Localhost profile that blocks sethostname wins over CAP_SYS_ADMIN, in both forms.
    let no_hostname = write_profile(
        &berthd,
        "no-hostname.json",
        &blocking_profile(&["sethostname"]),
    );
    let no_hostname = no_hostname.to_str().expect("utf-8 path");
    let (code, lines) = script_output(&berthd, &pod, "lh-typed", hostname, |s| {
        s.seccomp = Some(profile(ProfileType::Localhost, no_hostname));
        s.capabilities = Some(with_caps(&["SYS_ADMIN"]));
    })
    .await;
    assert_ne!(code, 0, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("not permitted")),
        "{lines:?}"
    );
    let (code, lines) = script_output(&berthd, &pod, "lh-path", hostname, |s| {
        s.seccomp_profile_path = format!("localhost/{no_hostname}");
        s.capabilities = Some(with_caps(&["SYS_ADMIN"]));
    })
    .await;
    assert_ne!(code, 0, "{lines:?}");
    // Without the profile the same container may rename the pod.
    let (code, lines) = script_output(&berthd, &pod, "lh-none", hostname, |s| {
        s.capabilities = Some(with_caps(&["SYS_ADMIN"]));
    })
    .await;
    assert_eq!(code, 0, "{lines:?}");

    // A Docker-format profile blocking chmod (every syscall that does it).
    let docker_format = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [{"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}],
    });
    let no_chmod = write_profile(&berthd, "no-chmod.json", &docker_format.to_string());
    let chmod = "touch /tmp/f && chmod 600 /tmp/f && echo chmod-ok";
    let (code, lines) = script_output(&berthd, &pod, "no-chmod", chmod, |s| {
        s.seccomp_profile_path = format!("localhost/{}", no_chmod.display());
    })
    .await;
    assert_ne!(code, 0, "{lines:?}");
    assert!(!lines.iter().any(|l| l == "chmod-ok"), "{lines:?}");
    let (code, lines) = script_output(&berthd, &pod, "chmod", chmod, |_| {}).await;
    assert_eq!((code, lines.as_slice()), (0, &["chmod-ok".to_string()][..]));

    // Refused, and nothing created.
    let bad_json = write_profile(&berthd, "bad.json", "{\"defaultAction\": ");
    let bad_action = write_profile(
        &berthd,
        "bad-action.json",
        r#"{"defaultAction": "SCMP_ACT_EXPLODE"}"#,
    );
    let missing = berthd.dir.join("seccomp/missing.json");
    let refusals: Vec<(String, cri::LinuxContainerSecurityContext)> = vec![
        (
            "no localhost/ prefix".into(),
            cri::LinuxContainerSecurityContext {
                seccomp_profile_path: "my-profile.json".into(),
                ..Default::default()
            },
        ),
        (
            "relative localhost".into(),
            cri::LinuxContainerSecurityContext {
                seccomp: Some(profile(ProfileType::Localhost, "profiles/x.json")),
                ..Default::default()
            },
        ),
        (
            "missing file".into(),
            cri::LinuxContainerSecurityContext {
                seccomp: Some(profile(
                    ProfileType::Localhost,
                    missing.to_str().expect("utf-8"),
                )),
                ..Default::default()
            },
        ),
        (
            "bad json".into(),
            cri::LinuxContainerSecurityContext {
                seccomp_profile_path: format!("localhost/{}", bad_json.display()),
                ..Default::default()
            },
        ),
        (
            "bad action".into(),
            cri::LinuxContainerSecurityContext {
                seccomp: Some(profile(
                    ProfileType::Localhost,
                    bad_action.to_str().expect("utf-8"),
                )),
                ..Default::default()
            },
        ),
    ];
    for (what, context) in refusals {
        let mut config = shell("refused", "true");
        *security(&mut config) = context;
        let err = create(&berthd, &pod, config).await.expect_err(&what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    assert!(
        list(&berthd, None).await.is_empty(),
        "a refused CreateContainer left a container behind"
    );
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn the_pods_profile_and_the_node_default_apply_to_containers_naming_none() {
    let options = Options {
        dropin: "[seccomp]\ndefault_profile = \"runtime-default\"\n".into(),
        ..Default::default()
    };
    let berthd = Berthd::start_with("seccompdef", options)
        .await
        .expect("starting berthd");
    pull(&berthd, &busybox()).await;
    pull(&berthd, &httpd()).await;

    // Node default RuntimeDefault: a container (and pod) naming nothing is filtered, an explicit
    // Unconfined is not.
    let plain = Pod::run(&berthd, "plain").await;
    let (_, lines) = script_output(&berthd, &plain, "unset", SECCOMP, |_| {}).await;
    assert_eq!(status_field(&lines, "Seccomp"), Some("2"), "{lines:?}");
    let (_, lines) = script_output(&berthd, &plain, "unconfined", SECCOMP, |s| {
        s.seccomp = Some(profile(ProfileType::Unconfined, ""));
    })
    .await;
    assert_eq!(status_field(&lines, "Seccomp"), Some("0"), "{lines:?}");

    // The pod says Unconfined: its containers that name nothing follow the pod, not the node.
    let mut config = pod_config(&berthd, "unconfinedpod");
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .seccomp = Some(profile(ProfileType::Unconfined, ""));
    let unconfined_pod = Pod::run_with(&berthd, config).await;
    let (_, lines) = script_output(&berthd, &unconfined_pod, "unset", SECCOMP, |_| {}).await;
    assert_eq!(status_field(&lines, "Seccomp"), Some("0"), "{lines:?}");
    let (_, lines) = script_output(&berthd, &unconfined_pod, "rd", SECCOMP, |s| {
        s.seccomp_profile_path = "runtime/default".into();
    })
    .await;
    assert_eq!(status_field(&lines, "Seccomp"), Some("2"), "{lines:?}");
    unconfined_pod.remove(&berthd).await;

    // The built-in profile lets the test images do their work: a busybox shell's usual tools
    // and the HTTP server (socket, bind, listen, accept, sendfile...).
    let tools = "set -e; ls / >/dev/null; ps >/dev/null; date >/dev/null; mkdir -p /tmp/a/b; \
                 echo x | tee /tmp/a/b/f >/dev/null; cp /tmp/a/b/f /tmp/g; mv /tmp/g /tmp/h; \
                 ln -s /tmp/h /tmp/l; cat /tmp/l >/dev/null; sleep 0.1; id >/dev/null; \
                 nproc >/dev/null; df / >/dev/null; echo tools-ok";
    let (code, lines) = script_output(&berthd, &plain, "tools", tools, |_| {}).await;
    assert_eq!((code, lines.as_slice()), (0, &["tools-ok".to_string()][..]));
    let web = run(&berthd, &plain, container_config("web", &httpd(), &[])).await;
    let ip = berth_e2e::pods::pod_ip(&berthd, &plain.id).await;
    let address = format!("{ip}:8080").parse().expect("pod address");
    let body = poll(
        std::time::Duration::from_secs(20),
        "httpd answering under RuntimeDefault",
        async || match http_get(address, "/") {
            Ok((200, body)) => Some(body),
            _ => None,
        },
    )
    .await;
    assert!(body.contains("hello from berth httpd"), "{body}");
    let status = status_response(&berthd, &web, true).await.expect("status");
    let info: serde_json::Value =
        serde_json::from_str(&status.info["info"]).expect("verbose info JSON");
    assert_eq!(
        info["runtimeSpec"]["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO",
        "the spec carries the built-in filter"
    );
    // A process exec'd into the container (kubectl exec, exec probes) is filtered too.
    let out = berth_e2e::streaming::berth::exec_sync(
        &berthd,
        &web,
        &["grep", "Seccomp:", "/proc/self/status"],
        10,
    )
    .await
    .expect("ExecSync");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["Seccomp:", "2"]
    );
    stop_and_remove(&berthd, &web).await;
    plain.remove(&berthd).await;
    berthd.finish();
}
