//! Fixture for the monitor integration tests: a real berth-monitor (built by `make build`, or
//! `$BERTH_MONITOR_BIN`), real runc containers from a busybox bundle, and a Drop guard that removes
//! every container, cgroup and process again, also when a test fails.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_monitor_api::{CreateRequest, Monitor, MonitorError};

/// Every container (and monitor) of these tests gets a top-level cgroup `<prefix>-<its id>` of its
/// own: tests run in parallel, and a shared parent removed by one test's cleanup races with
/// another test's runc creating its cgroup inside it.
pub const CGROUP_PARENT: &str = "berth-monitor-test";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "printf", "sleep", "head", "tr", "cat", "test", "[", "true", "tty", "stty",
];

/// The monitor binary and runc, or `None` (with the reason printed) when the test cannot run here.
// geteuid: the tests need root.
#[allow(unsafe_code)]
pub fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: the monitor tests need root (runc, cgroups)");
        return None;
    }
    let Some(runc) = find_in_path("runc") else {
        eprintln!("skipping: runc is not installed");
        return None;
    };
    if !Path::new(BUSYBOX).exists() {
        eprintln!("skipping: {BUSYBOX} is missing (busybox-static)");
        return None;
    }
    let bin = match std::env::var_os("BERTH_MONITOR_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/berth-monitor"),
    };
    if !bin.exists() {
        eprintln!(
            "skipping: no monitor binary at {} (run `make build` or set BERTH_MONITOR_BIN)",
            bin.display()
        );
        return None;
    }
    Some((bin, runc))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub runc: PathBuf,
    pub monitor: Monitor,
    pub child: Option<Child>,
    rootfs: PathBuf,
    ids: Vec<String>,
}

impl Fixture {
    pub fn new(bin: &Path, runc: &Path) -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rootfs = tmp.path().join("rootfs");
        for sub in ["bin", "proc", "dev", "tmp"] {
            fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        fs::create_dir_all(tmp.path().join("logs")).unwrap();
        let dir = tmp.path().join("monitor");
        let (monitor, child) = Monitor::spawn(bin, &dir, &[]).expect("spawning the monitor");
        Fixture {
            dir,
            runc: runc.to_path_buf(),
            monitor,
            child: Some(child),
            rootfs,
            ids: Vec::new(),
            tmp,
        }
    }

    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// A fresh container id (unique across the parallel tests of this process).
    pub fn new_id(&mut self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "bmt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.ids.push(id.clone());
        id
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.tmp.path().join("logs").join(format!("{id}.log"))
    }

    /// A bundle running `args` (busybox applets) in a read-only copy of the fixture's rootfs.
    pub fn bundle(&self, id: &str, args: &[&str], tty: bool) -> PathBuf {
        let bundle = self.tmp.path().join("bundles").join(id);
        fs::create_dir_all(&bundle).unwrap();
        let args: Vec<String> = args.iter().map(|a| json_str(a)).collect();
        let config = format!(
            r#"{{
  "ociVersion": "1.0.2",
  "process": {{
    "terminal": {tty},
    "user": {{"uid": 0, "gid": 0}},
    "args": [{args}],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/",
    "noNewPrivileges": true
  }},
  "root": {{"path": {root}, "readonly": true}},
  "hostname": "bmt",
  "mounts": [
    {{"destination": "/proc", "type": "proc", "source": "proc"}},
    {{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}},
    {{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}}
  ],
  "linux": {{
    "namespaces": [{{"type": "pid"}}, {{"type": "mount"}}, {{"type": "ipc"}}, {{"type": "uts"}}],
    "cgroupsPath": "/{CGROUP_PARENT}-{id}"
  }}
}}"#,
            args = args.join(", "),
            root = json_str(&self.rootfs.to_string_lossy()),
        );
        fs::write(bundle.join("config.json"), config).unwrap();
        bundle
    }

    pub fn request(&self, id: &str, args: &[&str], tty: bool) -> CreateRequest {
        CreateRequest {
            container_id: id.to_string(),
            runtime_path: self.runc.clone(),
            runtime_args: vec![
                "--root".into(),
                self.tmp.path().join("runc").to_string_lossy().into_owned(),
            ],
            bundle: self.bundle(id, args, tty),
            log_path: Some(self.log_path(id)),
            tty,
            stdin: false,
            stdin_once: false,
            oom_files: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Creates a container running `args`; its pid.
    pub fn create(&mut self, args: &[&str], tty: bool) -> (String, i32) {
        let id = self.new_id();
        let req = self.request(&id, args, tty);
        let pid = self
            .monitor
            .create(&req)
            .unwrap_or_else(|e| panic!("creating {id}: {e}"));
        (id, pid)
    }

    pub fn runc(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.runc)
            .arg("--root")
            .arg(self.tmp.path().join("runc"))
            .args(args)
            .output()
            .expect("running runc")
    }

    pub fn kill(&self, id: &str) {
        let out = self.runc(&["kill", id, "KILL"]);
        assert!(
            out.status.success(),
            "runc kill {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Removes the container from runc (and its cgroup), leaving the monitor's bookkeeping.
    pub fn delete(&self, id: &str) {
        let _ = self.runc(&["delete", "--force", id]);
        remove_cgroups(id);
    }

    /// The monitor's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.monitor.pid())
    }

    /// Waits (at most 10 s) for the monitor process to exit; its exit code.
    pub fn wait_monitor_exit(&mut self) -> i32 {
        let child = self.child.as_mut().expect("monitor child");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the monitor did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads the CRI log of `id`.
    pub fn log(&self, id: &str) -> String {
        fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    pub fn wait_exit(&self, id: &str) -> berth_monitor_api::Exit {
        match self.monitor.wait(id, Some(Duration::from_secs(20))) {
            Ok(Some(exit)) => exit,
            Ok(None) => panic!("container {id} did not exit in time"),
            Err(e) => panic!("waiting for {id}: {e}"),
        }
    }

    pub fn try_create(&mut self, req: &CreateRequest) -> Result<i32, MonitorError> {
        self.ids.push(req.container_id.clone());
        self.monitor.create(req)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Containers first, while the monitor still reaps them (this host's PID 1 reaps nothing).
        for id in &self.ids {
            self.delete(id);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Every cgroup hierarchy root (v1 controllers and the unified one on hybrid hosts, or the v2 root).
pub fn cgroup_controllers() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut roots = vec![root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                roots.push(e.path());
            }
        }
    }
    roots
}

pub fn remove_cgroups(id: &str) {
    for ctrl in cgroup_controllers() {
        let _ = fs::remove_dir(ctrl.join(format!("{CGROUP_PARENT}-{id}")));
    }
}

/// Polls `cond` every 20 ms for up to `timeout`.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One parsed CRI log line.
#[derive(Debug)]
pub struct LogLine {
    pub stream: String,
    pub partial: bool,
    pub content: String,
}

/// Parses a CRI log, asserting every line's shape (timestamp, stream, tag).
pub fn parse_log(text: &str) -> Vec<LogLine> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "log does not end in a newline"
    );
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert_eq!(ts.len(), 30, "timestamp {ts:?}");
            let b = ts.as_bytes();
            assert!(
                b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[29] == b'Z',
                "timestamp {ts:?}"
            );
            let stream = parts.next().expect("stream").to_string();
            assert!(
                stream == "stdout" || stream == "stderr",
                "stream {stream:?}"
            );
            let tag = parts.next().expect("tag");
            assert!(tag == "F" || tag == "P", "tag {tag:?}");
            LogLine {
                stream,
                partial: tag == "P",
                content: parts.next().unwrap_or("").to_string(),
            }
        })
        .collect()
}
