//! CNI plugins that die: the bridge plugin SIGKILLed in the middle of ADD (after its work, before
//! its answer) and in the middle of DEL (before any work). RunPodSandbox must fail cleanly and
//! roll back, its retry must work, and in the end no IP stays reserved (the leak check).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_e2e::chaos::{Cri, check_no_panic, write_script};
use berth_e2e::containers::{busybox, pull};
use berth_e2e::pods::pod_config;
use berth_e2e::{Berthd, Options};

/// Debian's plugins, as in the rig.
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Prepares a berthd whose `bridge` plugin is a wrapper that kills itself once, on `command`
/// (`ADD`: after the real plugin did its work; `DEL`: before it does anything).
async fn with_dying_bridge(name: &str, command: &str) -> Berthd {
    let mut berthd = Berthd::prepare(name, &Options::default()).expect("preparing berthd");
    let bin = berthd.dir.join("cni/dying");
    let once = berthd.dir.join("cni/died");
    let body = if command == "ADD" {
        format!(
            "#!/bin/sh\nout=$({CNI_BIN_DIR}/bridge)\nrc=$?\n\
             if [ \"$CNI_COMMAND\" = ADD ] && [ ! -e {once} ]; then touch {once}; kill -9 $$; fi\n\
             printf '%s' \"$out\"\nexit $rc\n",
            once = once.display()
        )
    } else {
        format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = DEL ] && [ ! -e {once} ]; then touch {once}; kill -9 $$; fi\n\
             exec {CNI_BIN_DIR}/bridge\n",
            once = once.display()
        )
    };
    write_script(&bin.join("bridge"), &body).expect("writing the wrapper");
    let config = std::fs::read_to_string(&berthd.config_file).expect("config");
    let config = config.replacen(
        "bin_dirs = [",
        &format!("bin_dirs = [{:?}, ", bin.display().to_string()),
        1,
    );
    std::fs::write(&berthd.config_file, config).expect("config");
    berthd.launch().await.expect("starting berthd");
    berthd
}

#[tokio::test]
async fn a_cni_plugin_killed_mid_add_is_rolled_back_and_the_retry_works() {
    let berthd = with_dying_bridge("cniaddkill", "ADD").await;
    pull(&berthd, &busybox()).await;
    let cri = Cri::new(&berthd);
    let config = pod_config(&berthd, "addkill");
    std::fs::create_dir_all(&config.log_directory).expect("log dir");
    let err = cri
        .run_pod(&config)
        .await
        .expect_err("RunPodSandbox with a plugin that died");
    assert!(!err.hung, "{err}");
    assert!(
        cri.pods(None).await.expect("list").is_empty(),
        "the failed pod is rolled back"
    );
    let pod = cri.run_pod(&config).await.expect("the retry");
    cri.clean_up_pod(&pod, 3).await.expect("removing the pod");
    check_no_panic(&berthd.log()).expect("no panic");
    berthd.finish();
}

#[tokio::test]
async fn a_cni_plugin_killed_mid_del_does_not_leak_the_ip() {
    let berthd = with_dying_bridge("cnidelkill", "DEL").await;
    let cri = Cri::new(&berthd);
    let config = pod_config(&berthd, "delkill");
    std::fs::create_dir_all(&config.log_directory).expect("log dir");
    let pod = cri.run_pod(&config).await.expect("RunPodSandbox");
    // The first DEL dies; kubelet retries Stop and Remove until they succeed.
    let rounds = cri.clean_up_pod(&pod, 5).await.expect("removing the pod");
    eprintln!("removed after {rounds} rounds");
    check_no_panic(&berthd.log()).expect("no panic");
    berthd.finish();
}
