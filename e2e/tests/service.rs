//! berthd as a systemd service: the notify protocol it speaks to `$NOTIFY_SOCKET` (spoken to a
//! datagram socket the test binds, as systemd binds its own), and `make install` / `make
//! uninstall` into a staging `DESTDIR`. The unit itself is checked by `make check-systemd`; the
//! Debian package by `package.rs`.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::containers::{Pod, busybox, monitor_processes, pull, run, shell, stop_and_remove};
use berth_e2e::{Berthd, Options, berthd_binary, wait_timeout};
use tokio::net::UnixDatagram;

/// Kills berthd should the test fail before stopping it.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The next notify message, as its assignments.
async fn next_message(socket: &UnixDatagram, berthd: &Berthd) -> Vec<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no notify message within 20s:\n{}", berthd.log()))
        .expect("receiving a notify message");
    String::from_utf8(buf[..n].to_vec())
        .expect("notify messages are text")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether process `pid` has a descriptor open on a file named `name`.
fn has_open(pid: i32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("listing /proc/<pid>/fd")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| target.file_name().is_some_and(|f| f == name))
}

/// The environment a process started with.
fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("reading /proc/<pid>/environ");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[tokio::test]
// fcntl(F_SETFD) to clear close-on-exec, as an inherited lock would be; kill(2) with SIGTERM
// (Child::kill only sends SIGKILL).
#[allow(unsafe_code)]
async fn notify_ready_once_cri_answers_and_stopping_on_sigterm() {
    let mut berthd = Berthd::prepare("notify", &Options::default()).unwrap();
    let path = berthd.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    berthd
        .env
        .push(("NOTIFY_SOCKET".into(), path.to_string_lossy().into_owned()));
    // A variable berthd leaves alone: the monitor inherits it, so the check below means something.
    berthd
        .env
        .push(("BERTH_E2E_INHERITED".into(), "yes".into()));
    // A descriptor berthd inherits without close-on-exec, as from `flock FILE berthd`: it must not
    // reach the pod's monitor, which outlives berthd (berthd marks it close-on-exec at start).
    let inherited = std::fs::File::create(berthd.dir.join("inherited.lock")).unwrap();
    // SAFETY: fcntl(F_SETFD) on a descriptor this test owns: clears its close-on-exec flag.
    let cleared = unsafe { libc::fcntl(inherited.as_raw_fd(), libc::F_SETFD, 0) };
    assert_eq!(cleared, 0);
    let mut running = Running(Some(berthd.spawn(&[]).unwrap()));
    drop(inherited);
    let berthd_pid = running.0.as_ref().expect("berthd runs").id() as i32;
    assert!(
        has_open(berthd_pid, "inherited.lock"),
        "berthd did not inherit the descriptor: the check below would mean nothing"
    );

    // Status lines may come first; READY=1 must not come before the CRI socket serves.
    let mut before_ready = Vec::new();
    let ready = loop {
        let message = next_message(&socket, &berthd).await;
        if message.iter().any(|a| a == "READY=1") {
            break message;
        }
        before_ready.push(message);
    };
    // One attempt, no retry: READY=1 promises that the socket answers now.
    let version = berthd
        .runtime()
        .await
        .expect("connecting right after READY=1")
        .version(cri::VersionRequest::default())
        .await
        .expect("Version right after READY=1")
        .into_inner();
    assert_eq!(version.runtime_name, "berth");
    assert!(
        ready.contains(&"STATUS=serving CRI".to_string()),
        "{ready:?}"
    );
    assert!(
        before_ready
            .iter()
            .flatten()
            .any(|a| a.starts_with("STATUS=recovering")),
        "{before_ready:?}"
    );

    // berthd took NOTIFY_SOCKET out of its environment: a pod's monitor (which runs runc) must not
    // be able to notify systemd in berthd's name. (berthd's own /proc/<pid>/environ still shows the
    // block it was started with: the kernel never updates it.)
    // The monitor is spawned at the pod's first CreateContainer; its --dir names the pod's id.
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "notify").await;
    let container = run(
        &berthd,
        &pod,
        shell("sleeper", "trap 'exit 0' TERM; while :; do sleep 1; done"),
    )
    .await;
    let monitors = monitor_processes(&pod.id[..pod.id.len().min(32)]);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    let env = environ(monitors[0].0);
    assert!(
        env.contains(&"BERTH_E2E_INHERITED=yes".to_string()),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|v| v.starts_with("NOTIFY_SOCKET=")),
        "the pod's monitor inherited NOTIFY_SOCKET: {env:?}"
    );
    assert!(
        !has_open(monitors[0].0, "inherited.lock"),
        "the pod's monitor inherited a descriptor berthd was started with"
    );
    stop_and_remove(&berthd, &container).await;
    pod.remove(&berthd).await;

    let mut child = running.0.take().expect("berthd runs");
    // SAFETY: kill(2) on the pid of a child not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let stopping = next_message(&socket, &berthd).await;
    assert!(stopping.contains(&"STOPPING=1".to_string()), "{stopping:?}");
    let status = wait_timeout(&mut child, Duration::from_secs(15)).unwrap();
    assert!(
        status.success(),
        "berthd exited with {status}:\n{}",
        berthd.log()
    );
    drop(socket);
    berthd.finish();
}

/// The repository (the Makefile and packaging/ are there).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is in the repository")
        .to_path_buf()
}

/// `make install` or `make uninstall` with the binaries cargo built for these tests.
fn make(target: &str, prefix: &str, destdir: &Path) -> String {
    let bins = berthd_binary().unwrap().parent().unwrap().to_path_buf();
    let out = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(repo())
        .arg(target)
        .arg(format!("PREFIX={prefix}"))
        .arg(format!("DESTDIR={}", destdir.display()))
        .env("BINS", &bins)
        .output()
        .expect("running make");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "make {target} failed:\n{text}");
    text
}

/// `berthd config show` with this file, minus the line naming its source.
fn effective_config(berthd: &Path, file: &Path) -> String {
    let out = Command::new(berthd)
        .arg("--config")
        .arg(file)
        .args(["config", "show"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berthd rejects {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("# from "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file (not directory) below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn make_install_and_uninstall_honour_prefix_and_destdir() {
    let dest = tempfile::Builder::new()
        .prefix("berth-install-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = dest.path();
    make("install", "/usr/local", root);

    for bin in ["berthd", "berth", "berth-monitor", "berth-init"] {
        let path = root.join("usr/local/bin").join(bin);
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755, "{}", path.display());
    }
    let unit =
        std::fs::read_to_string(root.join("usr/local/lib/systemd/system/berthd.service")).unwrap();
    assert!(
        unit.lines().any(|l| l == "ExecStart=/usr/local/bin/berthd"),
        "{unit}"
    );
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");

    // berth's completions, where each shell looks under the prefix, and its man pages.
    let share = root.join("usr/local/share");
    let bash = share.join("bash-completion/completions/berth");
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p berth", bash.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("berth"),
        "bash did not load {}: {}",
        bash.display(),
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(share.join("zsh/site-functions/_berth").is_file());
    assert!(share.join("fish/vendor_completions.d/berth.fish").is_file());
    for page in ["berth.1", "berth-ps.1", "berth-pull.1"] {
        let text = std::fs::read_to_string(share.join("man/man1").join(page)).unwrap();
        assert!(text.contains(".TH berth"), "{page}: {text}");
    }

    // The default config: only comments, every setting of `berthd config default` among them, and
    // berthd's loader takes it as the defaults.
    let berthd = root.join("usr/local/bin/berthd");
    let config_path = root.join("etc/berth/config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        config
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "{config}"
    );
    let defaults = Command::new(&berthd)
        .args(["config", "default"])
        .output()
        .unwrap();
    let defaults = String::from_utf8(defaults.stdout).unwrap();
    for setting in defaults
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        assert!(
            config.lines().any(|l| l == format!("# {setting}")),
            "{setting:?} is not in the installed config"
        );
    }
    let empty = root.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(
        effective_config(&berthd, &config_path),
        effective_config(&berthd, &empty)
    );
    std::fs::remove_file(&empty).unwrap();
    assert!(root.join("etc/berth/config.d").is_dir());

    // A changed config survives a second install and the uninstall.
    let changed = format!("{config}\n[log]\nlevel = \"debug\"\n");
    std::fs::write(&config_path, &changed).unwrap();
    let again = make("install", "/usr/local", root);
    assert!(again.contains("keeping the existing"), "{again}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), changed);
    make("uninstall", "/usr/local", root);
    assert_eq!(files_below(root), vec![config_path.clone()]);

    // An unchanged config goes with the rest, and so do the directories install made in /etc.
    std::fs::remove_file(&config_path).unwrap();
    make("install", "/usr/local", root);
    make("uninstall", "/usr/local", root);
    assert_eq!(files_below(root), Vec::<PathBuf>::new());
    assert!(!root.join("etc/berth").exists());

    // Outside /usr and /usr/local, systemd would not find the unit under the prefix.
    make("install", "/opt/berth", root);
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/berthd.service")).unwrap();
    assert!(
        unit.lines().any(|l| l == "ExecStart=/opt/berth/bin/berthd"),
        "{unit}"
    );
    assert!(root.join("opt/berth/bin/berth-monitor").is_file());
    make("uninstall", "/opt/berth", root);
    assert_eq!(files_below(root), Vec::<PathBuf>::new());
}
