//! CRI clients nobody here wrote: Python grpcio (PyPI) and grpc-go (Debian), set up offline by
//! `hack/peers.sh`, driving one pod and one container against a test's berthd (`e2e/peers/`).
//!
//! Both clients take the same arguments (socket, image, and the pod's name, uid, namespace, log
//! directory and cgroup parent from [`crate::pods::pod_config`], so that the leak check recognises
//! what they create), assert every answer themselves, print one `ok:` line per check, and end with a
//! `PASS:` line or a `FAIL:` line and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;

use crate::Berthd;
use crate::containers::busybox;

/// A peer's whole run: a pull from the local registry, a pod, a container, and its events.
const PEER_TIMEOUT: Duration = Duration::from_secs(300);

/// The repository's root (this crate is `<root>/e2e`).
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn hack_peers(args: &[&str]) -> anyhow::Result<String> {
    let script = repo_dir().join("hack/peers.sh");
    let out = Command::new(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}{}",
            script.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The grpcio client ready to run: the venv's python and the directory of the compiled CRI stubs.
pub struct PythonPeer {
    pub python: PathBuf,
    pub stubs: PathBuf,
}

impl PythonPeer {
    /// Creates the venv and compiles the stubs when they are missing (`hack/peers.sh python`).
    pub fn setup() -> anyhow::Result<PythonPeer> {
        let out = hack_peers(&["python"])?;
        let mut words = out.split_whitespace();
        match (words.next(), words.next()) {
            (Some(python), Some(stubs)) => Ok(PythonPeer {
                python: python.into(),
                stubs: stubs.into(),
            }),
            _ => bail!("hack/peers.sh python printed {out:?}, not \"PYTHON STUBS_DIR\""),
        }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg("-u")
            .arg(repo_dir().join("e2e/peers/grpc-python/cri_client.py"))
            .arg("--stubs")
            .arg(&self.stubs);
        command
    }
}

/// Builds the grpc-go client into `dir` (`hack/peers.sh go`) and returns the binary.
pub fn build_go_peer(dir: &Path) -> anyhow::Result<PathBuf> {
    let binary = dir.join("cri-client-go");
    hack_peers(&["go", &binary.to_string_lossy()])?;
    Ok(binary)
}

/// The arguments both clients take, for a pod named `pod_name` in this test.
pub fn peer_args(berthd: &Berthd, pod_name: &str) -> Vec<String> {
    let config = crate::pods::pod_config(berthd, pod_name);
    let metadata = config.metadata.unwrap_or_default();
    let cgroup_parent = config.linux.map(|l| l.cgroup_parent).unwrap_or_default();
    vec![
        "--socket".into(),
        berthd.socket.to_string_lossy().into_owned(),
        "--image".into(),
        busybox(),
        "--log-dir".into(),
        config.log_directory,
        "--pod-name".into(),
        metadata.name,
        "--pod-uid".into(),
        metadata.uid,
        "--namespace".into(),
        metadata.namespace,
        "--cgroup-parent".into(),
        cgroup_parent,
    ]
}

/// What a peer did: its exit status and its output.
#[derive(Debug)]
pub struct PeerRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl PeerRun {
    /// The peer passed: exit 0 and a `PASS:` line. Panics with all its output otherwise.
    pub fn assert_passed(&self, peer: &str) {
        assert!(
            self.status.success() && self.stdout.lines().any(|l| l.starts_with("PASS:")),
            "{peer} failed ({}):\n--- stdout\n{}--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }

    /// The lines of checks that passed, without their `ok: ` prefix.
    pub fn checks(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("ok: "))
            .collect()
    }
}

/// Runs a peer to its end (killed after [`PEER_TIMEOUT`]), its output kept in the test's dir.
pub fn run_peer(berthd: &Berthd, label: &str, mut command: Command) -> anyhow::Result<PeerRun> {
    // Files, not pipes: nobody has to drain them while waiting with a timeout.
    let stdout_path = berthd.dir.join(format!("{label}.stdout"));
    let stderr_path = berthd.dir.join(format!("{label}.stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    let status = crate::wait_timeout(&mut child, PEER_TIMEOUT)?;
    Ok(PeerRun {
        status,
        stdout: std::fs::read_to_string(&stdout_path)?,
        stderr: std::fs::read_to_string(&stderr_path)?,
    })
}

/// Runs a peer against `berthd` and asserts that it passed and that each of `wanted` starts one of
/// its check lines. A peer that failed half-way has its pods removed first, so that the test
/// reports the peer's failure and not the leaks it left.
pub async fn run_peer_checked(
    berthd: &Berthd,
    label: &str,
    peer: &str,
    command: Command,
    wanted: &[&str],
) {
    let run = run_peer(berthd, label, command).unwrap_or_else(|e| panic!("running {peer}: {e:#}"));
    // Shown with --nocapture: which checks ran, and the client's version.
    println!("{}", run.stdout);
    if !run.status.success() {
        remove_all_pods(berthd).await;
    }
    run.assert_passed(peer);
    let checks = run.checks();
    for wanted in wanted {
        assert!(
            checks.iter().any(|c| c.starts_with(wanted)),
            "no {wanted:?} among the checks: {checks:#?}"
        );
    }
}

/// After a peer failed half-way: stops and removes every pod (and so its containers) with our own
/// client, so that the test reports the peer's failure and not the leaks it left.
async fn remove_all_pods(berthd: &Berthd) {
    let Ok(mut rt) = berthd.runtime().await else {
        return;
    };
    let Ok(pods) = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
    else {
        return;
    };
    for pod in pods.into_inner().items {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id,
            })
            .await;
    }
}
