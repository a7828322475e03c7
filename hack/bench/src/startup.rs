//! `startup` and `wait`: time a daemon from exec to its first successful
//! Version RPC, and its idle RSS once started.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_cri_api::v1::VersionRequest;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tokio::process::{Child, Command};

use crate::client;
use crate::report::{StartupReport, StartupRun};
use crate::rss::{self, Selector};
use crate::stats::median;

/// One readiness probe: connect and call Version. Ok(true) when it answered.
async fn probe(endpoint: &str, timeout: Duration) -> bool {
    let attempt = async {
        let channel = client::connect(endpoint, timeout).await.ok()?;
        let mut c = RuntimeServiceClient::new(channel);
        c.version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(_)))
}

/// Poll until the endpoint answers Version; returns the number of probes.
pub async fn wait_ready(endpoint: &str, timeout: Duration, poll: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut probes = 0;
    loop {
        probes += 1;
        if probe(endpoint, Duration::from_secs(2)).await {
            return Ok(probes);
        }
        if Instant::now() >= deadline {
            bail!("{endpoint} did not answer Version within {timeout:?}");
        }
        tokio::time::sleep(poll).await;
    }
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Remove and recreate a directory, refusing anything that looks dangerous.
fn fresh_dir(dir: &Path) -> Result<()> {
    if !dir.is_absolute() || dir.components().count() < 3 {
        bail!(
            "refusing to wipe {}: --fresh-dir needs an absolute path at least two levels deep",
            dir.display()
        );
    }
    let mounts = mounts_under(dir);
    if !mounts.is_empty() {
        bail!(
            "refusing to wipe {}: mounts below it: {mounts:?}",
            dir.display()
        );
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of a child we spawned and still own.
        unsafe {
            libc::kill(pid as libc::pid_t, sig);
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Returns time to exit.
async fn stop(child: &mut Child, grace: Duration) -> Result<Duration> {
    let start = Instant::now();
    signal(child, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => {
            r?;
        }
        Err(_) => {
            eprintln!("warning: daemon did not exit {grace:?} after SIGTERM, sending SIGKILL");
            child.kill().await?;
        }
    }
    Ok(start.elapsed())
}

pub struct StartupParams {
    pub endpoint: String,
    pub label: String,
    pub repeat: usize,
    pub fresh_dirs: Vec<PathBuf>,
    pub settle: Duration,
    pub poll: Duration,
    pub ready_timeout: Duration,
    pub stop_grace: Duration,
    pub log_file: Option<PathBuf>,
    pub selector: Selector,
    pub command: Vec<String>,
}

pub async fn run(p: &StartupParams) -> Result<StartupReport> {
    if p.command.is_empty() {
        bail!("startup: no daemon command given (put it after --)");
    }
    let socket = client::socket_path(&p.endpoint)?;
    let mut runs = Vec::new();
    for i in 0..p.repeat.max(1) {
        if probe(&p.endpoint, Duration::from_millis(500)).await {
            bail!(
                "{} already answers before the daemon was started: another daemon owns it",
                p.endpoint
            );
        }
        for d in &p.fresh_dirs {
            fresh_dir(d)?;
        }
        // A stale socket file from a killed run must not confuse the daemon.
        if socket.exists() {
            let _ = fs::remove_file(&socket);
        }
        let (stdout, stderr) = match &p.log_file {
            Some(f) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(f)
                    .with_context(|| format!("opening {}", f.display()))?;
                (Stdio::from(file.try_clone()?), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut cmd = Command::new(&p.command[0]);
        cmd.args(&p.command[1..])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);

        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {:?}", p.command))?;
        let mut probes = 0u64;
        let ready = loop {
            probes += 1;
            if probe(&p.endpoint, Duration::from_secs(2)).await {
                break Some(start.elapsed());
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "run {}: daemon exited with {status} before answering Version{}",
                    i + 1,
                    p.log_file
                        .as_ref()
                        .map(|f| format!(" (see {})", f.display()))
                        .unwrap_or_default()
                );
            }
            if start.elapsed() >= p.ready_timeout {
                break None;
            }
            tokio::time::sleep(p.poll).await;
        };
        let Some(startup) = ready else {
            stop(&mut child, p.stop_grace).await?;
            bail!(
                "run {}: {} did not answer Version within {:?}",
                i + 1,
                p.endpoint,
                p.ready_timeout
            );
        };

        tokio::time::sleep(p.settle).await;
        let mut sel = p.selector.clone();
        if let Some(pid) = child.id() {
            sel.pids.push(pid);
        }
        let idle = rss::sample(&sel);
        let stop_time = stop(&mut child, p.stop_grace).await?;
        runs.push(StartupRun {
            startup_ms: startup.as_secs_f64() * 1000.0,
            probes,
            idle_rss_kib: idle.total_rss_kib,
            idle_hwm_kib: idle.total_hwm_kib,
            stop_ms: stop_time.as_secs_f64() * 1000.0,
        });
    }
    let ms: Vec<f64> = runs.iter().map(|r| r.startup_ms).collect();
    let rss: Vec<f64> = runs.iter().map(|r| r.idle_rss_kib as f64).collect();
    Ok(StartupReport {
        kind: "startup".into(),
        label: p.label.clone(),
        endpoint: p.endpoint.clone(),
        command: p.command.clone(),
        settle_ms: u64::try_from(p.settle.as_millis()).unwrap_or(u64::MAX),
        median_startup_ms: median(&ms).unwrap_or(0.0),
        min_startup_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
        max_startup_ms: ms.iter().copied().fold(0.0, f64::max),
        // The median of KiB counts that were u64 (float to int casts saturate).
        #[allow(clippy::cast_possible_truncation)]
        median_idle_rss_kib: median(&rss).unwrap_or(0.0) as u64,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_dir_refuses_shallow_paths() {
        assert!(fresh_dir(Path::new("/")).is_err());
        assert!(fresh_dir(Path::new("/tmp")).is_err());
        assert!(fresh_dir(Path::new("relative/dir")).is_err());
    }

    #[test]
    fn fresh_dir_wipes_contents() {
        let base = std::env::temp_dir().join(format!("berth-bench-test-{}", std::process::id()));
        let d = base.join("root");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/file"), b"x").unwrap();
        fresh_dir(&d).unwrap();
        assert!(d.is_dir());
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn probe_fails_fast_without_socket() {
        let t = Instant::now();
        assert!(
            !probe(
                "unix:///nonexistent/berth-bench.sock",
                Duration::from_secs(2)
            )
            .await
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
