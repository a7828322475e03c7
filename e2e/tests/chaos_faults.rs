//! Faults from outside berthd: the OCI runtime SIGKILLed mid-create, a CNI plugin that hangs, a
//! registry that drops or stalls a blob, ENOSPC on the root, the state dir wiped as by a reboot,
//! and the store file left by an unclean stop under write-heavy churn.
//!
//! Invariants after every fault: every RPC answers within its deadline (the chaos client), what
//! kubelet would remove is removable, `finish()`'s leak check passes, no panic in the log, and
//! berthd still answers Version and Status.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_e2e::chaos::{Cri, check_no_panic, end_checked, write_script};
use berth_e2e::containers::{CREATED, EXITED, RUNNING, busybox, gone, image, shell};
use berth_e2e::leaks;
use berth_e2e::pods::pod_config;
use berth_e2e::{Berthd, Options};

/// Debian's plugins, as in the rig.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
const LOOP: &str = "while true; do sleep 0.2; done";

// ---------------------------------------------------------------------------------------------
// 1. The OCI runtime SIGKILLed in the middle of `run`.

#[tokio::test]
async fn a_runtime_killed_mid_create_fails_start_cleanly_and_the_retry_works() {
    // The real runc goes on in the background while the wrapper the monitor waits for dies by
    // SIGKILL: the container may well come up behind berthd's back.
    runtime_killed("runckill", "/usr/sbin/runc \"$@\" & sleep 0.3; kill -9 $$").await;
}

#[tokio::test]
async fn a_runtime_killed_before_create_fails_start_cleanly_and_the_retry_works() {
    runtime_killed("runckill0", "kill -9 $$").await;
}

/// The runtime handler is a wrapper that runs `kill` (shell) on its first `run`/`create`.
async fn runtime_killed(name: &str, kill: &str) {
    let started = Instant::now();
    let mut berthd = Berthd::prepare(name, &Options::default()).expect("preparing berthd");
    let script = berthd.dir.join("bin/runc");
    let once = berthd.dir.join("bin/killed");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in run|create)\n\
             if [ ! -e {once} ]; then touch {once}; {kill}; fi;;\n\
             esac; done\nexec /usr/sbin/runc \"$@\"\n",
            once = once.display()
        ),
    )
    .expect("wrapper");
    std::fs::write(
        berthd.dir.join("etc/config.d/50-test.toml"),
        format!(
            "[runtime.handlers.runc]\npath = {:?}\n",
            script.display().to_string()
        ),
    )
    .expect("drop-in");
    berthd.launch().await.expect("starting berthd");
    let cri = Cri::new(&berthd);
    cri.pull(&busybox()).await.expect("pull");
    let config = pod_config(&berthd, name);
    std::fs::create_dir_all(&config.log_directory).expect("log dir");
    let pod = cri.run_pod(&config).await.expect("RunPodSandbox");

    let first = cri
        .create(&pod, &config, &shell("first", LOOP))
        .await
        .expect("CreateContainer");
    let err = cri
        .start(&first)
        .await
        .expect_err("StartContainer with a runtime that died");
    assert!(!err.hung, "{err}");
    eprintln!("StartContainer failed: {err}");
    assert!(
        err.message.contains("signal")
            || err.message.contains("killed")
            || err.message.contains("runtime"),
        "a clear error: {err}"
    );
    let status = cri.status(&first).await.expect("ContainerStatus");
    eprintln!(
        "after the failed start: state {} reason {:?} message {:?}",
        status.state, status.reason, status.message
    );
    assert!(
        status.state == EXITED || status.state == CREATED,
        "EXITED or CREATED, not {}",
        status.state
    );
    if status.state == EXITED {
        assert!(
            !status.reason.is_empty(),
            "an exited container has a reason"
        );
    }
    // Whatever the runtime did behind the wrapper's back, no container runs while it is reported
    // not running.
    let runc = Command::new("/usr/sbin/runc")
        .arg("--root")
        .arg(berthd.state.join("runtime/runc"))
        .args(["state", &first])
        .output()
        .expect("runc state");
    let runc_state = String::from_utf8_lossy(&runc.stdout);
    eprintln!("runc state after the failed start: {}", runc_state.trim());
    assert!(
        !runc_state.contains("\"running\""),
        "the container runs while reported {}: {runc_state}",
        status.state
    );

    // kubelet: remove the failed one, create a new one.
    cri.stop(&first).await.expect("StopContainer");
    cri.remove(&first).await.expect("RemoveContainer");
    let second = cri
        .create(&pod, &config, &shell("second", LOOP))
        .await
        .expect("CreateContainer again");
    cri.start(&second).await.expect("StartContainer again");
    assert_eq!(cri.status(&second).await.expect("status").state, RUNNING);
    cri.clean_up_pod(&pod, 3).await.expect("removing the pod");
    end_checked(berthd).await;
    eprintln!("took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. A CNI plugin that hangs on ADD.

/// Puts `body` as plugin `plugin` into a bin dir searched before the real one.
fn wrap_cni_plugin(berthd: &Berthd, plugin: &str, body: &str) {
    let bin = berthd.dir.join("cni/wrapped");
    write_script(&bin.join(plugin), body).expect("writing the wrapper");
    let config = std::fs::read_to_string(&berthd.config_file).expect("config");
    let config = config.replacen(
        "bin_dirs = [",
        &format!("bin_dirs = [{:?}, ", bin.display().to_string()),
        1,
    );
    std::fs::write(&berthd.config_file, config).expect("config");
}

#[tokio::test]
async fn a_hanging_cni_plugin_times_out_and_is_rolled_back() {
    let started = Instant::now();
    let options = Options {
        dropin: "[cni]\nplugin_timeout_secs = 2\n".into(),
        ..Options::default()
    };
    let mut berthd = Berthd::prepare("cnihang", &options).expect("preparing berthd");
    let pids = berthd.dir.join("cni/hung-pids");
    let once = berthd.dir.join("cni/hung");
    wrap_cni_plugin(
        &berthd,
        "bridge",
        &format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ] && [ ! -e {once} ]; then touch {once}; \
             echo $$ >> {pids}; exec sleep 1000; fi\nexec {CNI_BIN_DIR}/bridge\n",
            once = once.display(),
            pids = pids.display()
        ),
    );
    berthd.launch().await.expect("starting berthd");
    let cri = Cri::new(&berthd);
    let config = pod_config(&berthd, "hang");
    std::fs::create_dir_all(&config.log_directory).expect("log dir");
    let t = Instant::now();
    let err = cri
        .run_pod(&config)
        .await
        .expect_err("RunPodSandbox with a hanging plugin");
    let took = t.elapsed();
    eprintln!("RunPodSandbox failed after {took:?}: {err}");
    assert!(!err.hung, "{err}");
    assert!(
        took < Duration::from_secs(10),
        "failed within the CNI timeout, not after {took:?}"
    );
    assert!(
        err.message.contains("timed out") || err.message.contains("timeout"),
        "a clear error: {err}"
    );
    let hung: Vec<i32> = std::fs::read_to_string(&pids)
        .expect("the plugin ran")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!hung.is_empty());
    for pid in hung {
        assert!(gone(pid), "the hung plugin ({pid}) was killed");
    }
    assert!(
        cri.pods(None).await.expect("list").is_empty(),
        "the failed pod is rolled back"
    );
    // Nothing of the failed pod is left right now (not only after finish).
    let now = leaks::netns_named(&berthd.test_id())
        .into_iter()
        .chain(leaks::cni_reservations(&berthd.cni_ipam_dir))
        .chain(leaks::cgroups_named(&berthd.test_id()))
        .collect::<Vec<_>>();
    assert!(now.is_empty(), "rolled back: {now:?}");
    let pod = cri.run_pod(&config).await.expect("the retry");
    cri.clean_up_pod(&pod, 3).await.expect("removing the pod");
    end_checked(berthd).await;
    eprintln!("took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 4. ENOSPC on the root.

/// A tmpfs mounted on a dir; unmounted (lazily) when dropped, also when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0711"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    fn unmount(&self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !leaks::mounts_under(&self.0).is_empty() {
            self.unmount();
        }
    }
}

#[tokio::test]
async fn a_full_root_fails_the_pull_cleanly_and_frees_the_space() {
    let started = Instant::now();
    let mut berthd = Berthd::prepare("enospc", &Options::default()).expect("preparing berthd");
    let tmpfs = Tmpfs::mount(&berthd.root, "40m");
    berthd.launch().await.expect("starting berthd");
    let cri = Cri::new(&berthd);
    let big = image("big:latest");
    let err = cri
        .pull(&big)
        .await
        .expect_err("pulling 200 MB into 40 MiB");
    eprintln!("the pull failed: {err}");
    assert!(!err.hung, "{err}");
    assert!(
        err.message.contains("No space left")
            && (err.message.starts_with("ResourceExhausted")
                || err.message.starts_with("Internal")),
        "a clear error: {err}"
    );
    cri.alive().await.expect("berthd answers");
    assert!(
        cri.images().await.expect("ListImages").is_empty(),
        "the failed image is not listed"
    );
    let _ = cri.remove_image(&big).await;
    let used = cri.image_fs_used().await.expect("ImageFsInfo");
    eprintln!("ImageFsInfo used after the failure: {used}");
    // The layers that completed (the busybox base the big image shares) may stay, as in
    // containerd's content store; the one that ran out of space must be gone, and with it the
    // space it took.
    assert!(
        used < 8 << 20,
        "the partial layer's space is freed: {used} bytes used"
    );
    let tmp: Vec<_> = std::fs::read_dir(berthd.root.join("snapshots/tmp"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "no half-unpacked snapshot: {tmp:?}");
    let free = free_bytes(&berthd.root);
    assert!(free > 30 << 20, "the space is back: {free} bytes free");
    // The space is back: a small image pulls and runs.
    cri.pull(&busybox())
        .await
        .expect("a small pull after ENOSPC");
    let config = pod_config(&berthd, "enospc");
    std::fs::create_dir_all(&config.log_directory).expect("log dir");
    let pod = cri.run_pod(&config).await.expect("RunPodSandbox");
    let c = cri
        .create(&pod, &config, &shell("small", LOOP))
        .await
        .expect("CreateContainer");
    cri.start(&c).await.expect("StartContainer");
    cri.clean_up_pod(&pod, 3).await.expect("removing the pod");
    cri.remove_image(&busybox()).await.expect("RemoveImage");
    cri.alive().await.expect("berthd answers");
    check_no_panic(&berthd.log()).expect("no panic");
    // Stop, check nothing is mounted on top of the tmpfs, unmount it, then the usual leak check.
    let status = berthd.stop().expect("stopping berthd");
    assert!(status.success(), "berthd exited with {status}");
    let inside: Vec<_> = leaks::mounts_under(&berthd.root)
        .into_iter()
        .filter(|m| m != &format!("mount: {}", berthd.root.display()))
        .collect();
    assert!(inside.is_empty(), "mounts left on the root: {inside:?}");
    tmpfs.unmount();
    drop(tmpfs);
    berthd.finish();
    eprintln!("took {:?}", started.elapsed());
}

/// Free bytes on the filesystem holding `dir` (`df`).
fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// 5. The state dir wiped, as after a reboot.

/// What a reboot does to a node, short of rebooting: every process of the test's pods and
/// monitors killed, every mount below the test dir gone, the (tmpfs) state dir empty, the pod
/// cgroups gone. The root and the CNI IPAM store (on disk) stay.
// kill(2) of leftover processes by pid.
#[allow(unsafe_code)]
fn reboot(berthd: &Berthd) {
    let id = berthd.test_id();
    for _ in 0..50 {
        let mut any = false;
        for cgroup in leaks::cgroups_named(&id) {
            let path = PathBuf::from(cgroup.trim_start_matches("cgroup: "));
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "find {} -name cgroup.kill -exec sh -c 'echo 1 > $0' {{}} \\;",
                    path.display()
                ))
                .status();
        }
        for line in leaks::monitors_for(&berthd.dir)
            .into_iter()
            .chain(leaks::processes_using(&berthd.dir))
        {
            let pid = line
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .and_then(|s| s.parse::<i32>().ok());
            if let Some(pid) = pid
                && !line.contains("(zombie)")
            {
                // SAFETY: kill(2) with a pid read from /proc.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                any = true;
            }
        }
        if !any {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut mounts: Vec<String> = leaks::mounts_under(&berthd.dir)
        .into_iter()
        .map(|m| m.trim_start_matches("mount: ").to_string())
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
    // cgroups die with the machine: deepest first.
    for cgroup in leaks::cgroups_named(&id) {
        let path = cgroup.trim_start_matches("cgroup: ").to_string();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("find {path} -depth -type d -exec rmdir {{}} \\;"))
            .status();
    }
    if let Ok(entries) = std::fs::read_dir(&berthd.state) {
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
}

#[tokio::test]
async fn a_state_dir_wiped_as_by_a_reboot_leaves_removable_pods() {
    let started = Instant::now();
    let mut berthd = Berthd::start("reboot").await.expect("starting berthd");
    let cri = Cri::new(&berthd);
    cri.pull(&busybox()).await.expect("pull");
    let config = pod_config(&berthd, "reboot");
    std::fs::create_dir_all(&config.log_directory).expect("log dir");
    let pod = cri.run_pod(&config).await.expect("RunPodSandbox");
    let c = cri
        .create(&pod, &config, &shell("before", LOOP))
        .await
        .expect("CreateContainer");
    cri.start(&c).await.expect("StartContainer");
    let (_, pid) = cri.state(&c).await.expect("ContainerStatus");
    assert!(pid > 0);

    berthd.kill().expect("kill -9 berthd");
    reboot(&berthd);
    assert!(
        gone(i32::try_from(pid).unwrap()),
        "the container died with the machine"
    );
    assert!(
        !leaks::cni_reservations(&berthd.cni_ipam_dir).is_empty(),
        "the IP reservation survives the reboot (it is on disk)"
    );
    berthd
        .launch()
        .await
        .expect("starting berthd after the reboot");

    let pods = cri.pods(None).await.expect("ListPodSandbox");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(
        pods[0].state,
        berth_cri_api::v1::PodSandboxState::SandboxNotready as i32,
        "the pod is NOTREADY"
    );
    let status = cri.status(&c).await.expect("ContainerStatus");
    eprintln!(
        "after the reboot: state {} reason {:?}",
        status.state, status.reason
    );
    assert!(
        status.state == EXITED
            || status.state == berth_cri_api::v1::ContainerState::ContainerUnknown as i32,
        "EXITED or UNKNOWN, not {}",
        status.state
    );
    cri.stop_pod(&pod).await.expect("StopPodSandbox");
    cri.remove(&c).await.expect("RemoveContainer");
    cri.remove_pod(&pod).await.expect("RemovePodSandbox");
    assert!(
        leaks::cni_reservations(&berthd.cni_ipam_dir).is_empty(),
        "the IP is released from the cached result"
    );
    end_checked(berthd).await;
    eprintln!("took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 6. The store left by an unclean stop under write-heavy churn.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclean_stop_under_churn_is_repaired_and_loses_no_record() {
    let started = Instant::now();
    let mut berthd = Berthd::start("storekill").await.expect("starting berthd");
    let cri = Cri::new(&berthd);
    cri.pull(&busybox()).await.expect("pull");
    let done = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for l in 0..3 {
        let (cri, done, made) = (cri.clone(), done.clone(), made.clone());
        let template = pod_config(&berthd, &format!("churn{l}"));
        loops.push(tokio::spawn(async move {
            // Pods whose RunPodSandbox answered before the kill: they must survive it.
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::SeqCst) {
                let mut config = template.clone();
                if let Some(m) = config.metadata.as_mut() {
                    m.name = format!("{}-{i}", m.name);
                    m.uid = format!("{}-{i}", m.uid);
                }
                i += 1;
                let _ = std::fs::create_dir_all(&config.log_directory);
                let Ok(pod) = cri.run_pod(&config).await else {
                    break;
                };
                acknowledged.push(pod.clone());
                made.fetch_add(1, Ordering::SeqCst);
                // A container created and removed: more writes.
                if let Ok(c) = cri.create(&pod, &config, &shell("w", LOOP)).await {
                    let _ = cri.remove(&c).await;
                }
            }
            acknowledged
        }));
    }
    // Kill once a dozen pods are in (or after 20 s, should the loops have stopped on errors).
    let churning = Instant::now();
    while made.load(Ordering::SeqCst) < 12 && churning.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    berthd.kill().expect("kill -9 berthd");
    done.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    for l in loops {
        acknowledged.extend(l.await.expect("churn loop"));
    }
    // Only pods acknowledged before the kill count; a call in flight may have answered just now
    // only if berthd answered it before dying, which is also "before the kill".
    let log_before = berthd.log().len();
    berthd.launch().await.expect("restart after the kill");
    let log = berthd.log()[log_before..].to_string();
    assert!(
        log.contains("not closed cleanly; repairing"),
        "the restart says it repairs the store"
    );
    let listed: Vec<String> = cri
        .pods(None)
        .await
        .expect("ListPodSandbox")
        .into_iter()
        .map(|p| p.id)
        .collect();
    eprintln!(
        "{} pods acknowledged before the kill, {} listed after",
        acknowledged.len(),
        listed.len()
    );
    for pod in &acknowledged {
        assert!(
            listed.contains(pod),
            "pod {pod} acknowledged before the kill is lost"
        );
    }
    for pod in &listed {
        let containers = cri.containers(Some(pod)).await.expect("ListContainers");
        for c in &containers {
            assert!(
                [CREATED, RUNNING, EXITED].contains(&c.state)
                    || c.state == berth_cri_api::v1::ContainerState::ContainerUnknown as i32
            );
        }
        cri.clean_up_pod(pod, 5).await.expect("removing the pod");
    }
    assert!(cri.pods(None).await.expect("list").is_empty());
    end_checked(berthd).await;
    eprintln!("took {:?}", started.elapsed());
}
