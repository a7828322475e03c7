//! The Debian package (`make deb`, packaging/deb.sh): installed into this very system with
//! `dpkg -i`, berthd started from the installed files with the installed config answers CRI and
//! runs a container with the installed berth-monitor, then `dpkg -r` and `dpkg -P` take everything away.
//!
//! The package is built from the binaries cargo built for these tests (uncompressed, so that
//! packaging a debug build takes a second), or taken from `$BERTH_DEB` (e.g. `make deb`'s).
//! Skipped, with a message, only where dpkg-deb is missing. A berth package or berth files already
//! on the system are never touched: the test fails instead. An existing /etc/berth is moved aside
//! and put back.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_cri_api::v1 as cri;
use berth_e2e::containers::{Pod, busybox, monitor_processes, pull, run, shell, stop_and_remove};
use berth_e2e::pods::{namespace_options, pod_config};
use berth_e2e::{Berthd, Options, berthd_binary, wait_timeout};

const ETC: &str = "/etc/berth";
const CONFIG: &str = "/etc/berth/config.toml";
const UNIT: &str = "/lib/systemd/system/berthd.service";
const BINARIES: [&str; 4] = [
    "/usr/bin/berthd",
    "/usr/bin/berth",
    "/usr/bin/berth-monitor",
    "/usr/bin/berth-init",
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// dpkg, waiting for its lock should an apt run elsewhere hold it.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("running dpkg");
        if out.status.success() || !text(&out).contains("lock") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `dpkg-query`'s status of the berth package ("ii ", "rc ", ...), None when it is not installed
/// and has no files left.
fn package_status() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", "berth"])
        .output()
        .expect("running dpkg-query");
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    // A purged package may linger as "un"/"pn" (not installed, no files) until dpkg forgets it.
    let known = out.status.success() && !status.starts_with('u') && !status.starts_with('p');
    known.then_some(status)
}

/// Puts the system back whatever happens: purges the package if the test left it, and returns the
/// /etc/berth that was there before.
struct System {
    saved_etc: Option<PathBuf>,
}

impl System {
    fn take_over() -> System {
        if let Some(status) = package_status() {
            panic!("a berth package is already known to dpkg ({status}); not touching it");
        }
        for path in BINARIES.iter().chain(&[UNIT]) {
            assert!(
                !Path::new(path).exists(),
                "{path} exists outside any package; not overwriting it"
            );
        }
        let saved_etc = Path::new(ETC).exists().then(|| {
            // Beside it: a rename never crosses filesystems there.
            let saved = PathBuf::from(format!("{ETC}.e2e-saved-{}", std::process::id()));
            std::fs::rename(ETC, &saved).expect("moving /etc/berth aside");
            saved
        });
        System { saved_etc }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if package_status().is_some() {
            let _ = dpkg(&["--purge", "berth"]);
        }
        let _ = std::fs::remove_dir_all(ETC);
        if let Some(saved) = self.saved_etc.take()
            && let Err(e) = std::fs::rename(&saved, ETC)
        {
            eprintln!(
                "could not put /etc/berth back from {}: {e}",
                saved.display()
            );
        }
    }
}

/// Kills the installed berthd should the test fail before stopping it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn build_deb(out_dir: &Path) -> PathBuf {
    if let Some(deb) = std::env::var_os("BERTH_DEB") {
        return PathBuf::from(deb);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bins = berthd_binary().unwrap().parent().unwrap().to_path_buf();
    let out = Command::new(repo.join("packaging/deb.sh"))
        .arg("--bins")
        .arg(&bins)
        .arg("--out")
        .arg(out_dir)
        .env("DEB_COMPRESSION", "none")
        .output()
        .expect("running packaging/deb.sh");
    assert!(out.status.success(), "deb.sh failed:\n{}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The package's metadata and file list, before anything is installed.
fn check_contents(deb: &Path) {
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(name.starts_with(&format!("berth_{version}_")), "{name}");
    let field = |f: &str| {
        let out = Command::new("dpkg-deb")
            .arg("--field")
            .arg(deb)
            .arg(f)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "berth");
    assert_eq!(field("Version"), version);
    let depends = field("Depends");
    for dep in ["runc", "containernetworking-plugins"] {
        assert!(depends.contains(dep), "Depends: {depends}");
    }
    assert_eq!(field("Recommends"), "iptables");
    let conffiles = Command::new("dpkg-deb")
        .arg("--info")
        .arg(deb)
        .arg("conffiles")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&conffiles.stdout).trim(), CONFIG);
}

/// Whether some process runs this executable.
fn running_from(exe: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|entry| {
            std::fs::read_link(entry.path().join("exe")).is_ok_and(|p| p == Path::new(exe))
        })
}

async fn wait_answers(berthd: &Berthd, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("installed berthd exited ({status}):\n{}", berthd.log());
        }
        if let Ok(mut rt) = berthd.runtime().await
            && let Ok(v) = rt.version(cri::VersionRequest::default()).await
        {
            assert_eq!(v.into_inner().runtime_name, "berth");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "installed berthd did not answer within 15s:\n{}",
            berthd.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
// kill(2) with SIGTERM: Child::kill only sends SIGKILL.
#[allow(unsafe_code)]
async fn deb_installs_serves_cri_and_removes_cleanly() {
    if !on_path("dpkg-deb") {
        eprintln!("skipped: dpkg-deb is not installed (not a Debian system?)");
        return;
    }
    // The test's own root, state, socket and metrics port; no CNI (the pod uses the host network).
    let berthd = Berthd::prepare(
        "package",
        &Options {
            cni: false,
            ..Options::default()
        },
    )
    .unwrap();
    let deb = build_deb(&berthd.dir);
    check_contents(&deb);
    let system = System::take_over();

    let out = dpkg(&["--install", &deb.to_string_lossy()]);
    assert!(out.status.success(), "dpkg -i failed:\n{}", text(&out));
    assert_eq!(package_status().as_deref(), Some("ii "));
    for path in BINARIES.iter().chain(&[UNIT, CONFIG]) {
        assert!(Path::new(path).is_file(), "{path} not installed");
    }
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(
        unit.lines().any(|l| l == "ExecStart=/usr/bin/berthd"),
        "{unit}"
    );

    // The installed berthd with the installed config; flags put its files in the test's dir.
    let log = std::fs::File::create(&berthd.log_file).unwrap();
    let child = Command::new("/usr/bin/berthd")
        .arg("--config")
        .arg(CONFIG)
        .arg("--root")
        .arg(&berthd.root)
        .arg("--state")
        .arg(&berthd.state)
        .arg("--listen")
        .arg(format!("unix://{}", berthd.socket.display()))
        .arg("--metrics-address")
        .arg(berthd.metrics_address.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    let mut running = Running(Some(child));
    wait_answers(&berthd, running.0.as_mut().unwrap()).await;

    // A pod with a shared PID namespace (its PID 1 is berth-init) and a container (parented by the
    // pod's berth-monitor): berthd runs both from beside itself, the installed files.
    pull(&berthd, &busybox()).await;
    let mut config = pod_config(&berthd, "package");
    let namespaces = namespace_options(&mut config);
    namespaces.network = cri::NamespaceMode::Node as i32;
    namespaces.pid = cri::NamespaceMode::Pod as i32;
    let pod = Pod::run_with(&berthd, config).await;
    let container = run(
        &berthd,
        &pod,
        shell("sleeper", "trap 'exit 0' TERM; while :; do sleep 1; done"),
    )
    .await;
    let monitors = monitor_processes(&pod.id[..pod.id.len().min(32)]);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    let exe = std::fs::read_link(format!("/proc/{}/exe", monitors[0].0)).unwrap();
    assert_eq!(exe, Path::new("/usr/bin/berth-monitor"));
    assert!(
        running_from("/usr/bin/berth-init"),
        "no process runs /usr/bin/berth-init"
    );
    stop_and_remove(&berthd, &container).await;
    pod.remove(&berthd).await;

    let mut child = running.0.take().unwrap();
    // SAFETY: kill(2) on the pid of a child not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_timeout(&mut child, Duration::from_secs(15)).unwrap();
    assert!(
        status.success(),
        "berthd exited with {status}:\n{}",
        berthd.log()
    );

    // Remove: everything but the conffile goes.
    let out = dpkg(&["--remove", "berth"]);
    assert!(out.status.success(), "dpkg -r failed:\n{}", text(&out));
    assert_eq!(package_status().as_deref(), Some("rc "));
    for path in BINARIES.iter().chain(&[UNIT]) {
        assert!(!Path::new(path).exists(), "{path} left after dpkg -r");
    }
    assert!(Path::new(CONFIG).is_file(), "dpkg -r removed the conffile");

    // Purge: the conffile and /etc/berth go, and dpkg forgets the package.
    let out = dpkg(&["--purge", "berth"]);
    assert!(out.status.success(), "dpkg -P failed:\n{}", text(&out));
    assert_eq!(package_status(), None);
    assert!(!Path::new(ETC).exists(), "{ETC} left after dpkg -P");
    assert!(!Path::new("/usr/share/doc/berth").exists());

    drop(system);
    berthd.finish();
}
