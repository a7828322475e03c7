//! Berth's built-in RuntimeDefault seccomp profile against containerd's, as each runtime writes
//! it into a container's runtime spec: the same default action and at least every syscall
//! containerd allows a default container unconditionally. Ignored by default (it needs a running
//! containerd 1.6); to rerun it:
//!
//! ```sh
//! hack/test-images.sh                                   # the test registry on 127.0.0.1:5000
//! export BERTH_BENCH_DIR=/tmp/berth-seccomp-ctrd        # a private containerd, stopped afterwards
//! hack/bench/containerd.sh start && eval "$(hack/bench/containerd.sh env)"
//! cargo test -p berth-e2e --test security_seccomp_containerd -- --ignored --nocapture
//! hack/bench/containerd.sh stop
//! ```

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containerd::{ReferencePod, container_config};
use berth_e2e::containers::*;
use berth_e2e::security::profile;
use cri::security_profile::ProfileType;

/// What containerd 1.6.20 allows unconditionally and moby's current default profile (Berth's
/// source) no longer does: io_uring was removed upstream for its record of kernel exploits, and
/// `socket` is allowed only for a list of address families (no AF_VSOCK, AF_ALG, DECnet...).
const NARROWED_UPSTREAM: [&str; 4] = [
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "socket",
];

/// The names a spec's filter allows with no condition on the arguments.
fn unconditional(spec: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for rule in spec["linux"]["seccomp"]["syscalls"]
        .as_array()
        .expect("seccomp syscalls")
    {
        let no_args = rule["args"].as_array().is_none_or(|a| a.is_empty());
        if rule["action"] == "SCMP_ACT_ALLOW" && no_args {
            for n in rule["names"].as_array().expect("names") {
                names.insert(n.as_str().expect("name").to_string());
            }
        }
    }
    names
}

fn runtime_spec(info: &std::collections::HashMap<String, String>) -> serde_json::Value {
    let info: serde_json::Value = serde_json::from_str(&info["info"]).expect("verbose info JSON");
    info["runtimeSpec"].clone()
}

#[tokio::test]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start); see the file's doc"]
async fn runtime_default_covers_what_containerd_allows() {
    let mut config = container_config("rd", &busybox(), &["sleep", "60"]);
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context = Some(cri::LinuxContainerSecurityContext {
        seccomp: Some(profile(ProfileType::RuntimeDefault, "")),
        ..Default::default()
    });

    let mut reference = ReferencePod::run("seccomp-ref", &[busybox()]).await;
    let id = reference.run_container(config.clone()).await;
    let theirs = reference
        .rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id,
            verbose: true,
        })
        .await
        .map(|r| runtime_spec(&r.into_inner().info));
    reference.remove().await;
    let theirs = theirs.expect("containerd's ContainerStatus");

    let berthd = Berthd::start("seccompref").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "seccompref").await;
    let mut ours_config = shell("rd", "sleep 60");
    *security(&mut ours_config) = config.linux.and_then(|l| l.security_context).expect("sc");
    let ours_id = run(&berthd, &pod, ours_config).await;
    let ours = status_response(&berthd, &ours_id, true)
        .await
        .map(|r| runtime_spec(&r.info))
        .expect("Berth's ContainerStatus");
    stop_and_remove(&berthd, &ours_id).await;
    pod.remove(&berthd).await;
    berthd.finish();

    for key in ["defaultAction", "defaultErrnoRet"] {
        println!(
            "{key}: containerd {} berth {}",
            theirs["linux"]["seccomp"][key], ours["linux"]["seccomp"][key]
        );
    }
    assert_eq!(
        theirs["linux"]["seccomp"]["defaultAction"],
        ours["linux"]["seccomp"]["defaultAction"]
    );
    let (theirs, ours) = (unconditional(&theirs), unconditional(&ours));
    let missing: Vec<&String> = theirs
        .difference(&ours)
        .filter(|n| !NARROWED_UPSTREAM.contains(&n.as_str()))
        .collect();
    let extra: Vec<&String> = ours.difference(&theirs).collect();
    println!(
        "containerd allows {} syscalls unconditionally, Berth {}",
        theirs.len(),
        ours.len()
    );
    println!("only Berth allows (newer upstream): {extra:?}");
    println!(
        "only containerd allows: {:?}",
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    assert!(missing.is_empty(), "Berth's profile misses {missing:?}");
}
