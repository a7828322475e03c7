//! The OCI runtime's floor for StartContainer: a bare `runc run --detach` of the bundle the runtime
//! made at CreateContainer, timed in the same iteration as the CRI calls.
//!
//! After CreateContainer, Berth's bundle (`<state>/containers/<id>`, its `config.json` and the
//! mounted overlay rootfs) is on disk; ContainerStatus(verbose) names it (`bundle`) and the OCI
//! runtime binary (`runtimeType`). [`Floor::measure`] copies `config.json` to a bundle of its own
//! (`<state>/../berth-bench-floor-<run id>/<floor id>/`) with
//! * `root.path` the absolute path of Berth's (mounted) rootfs,
//! * its own `linux.cgroupsPath` (a sibling of the container's: the leaf replaced by the floor
//!   id),
//! * the namespace paths kept, so it joins the pod's network, IPC and UTS namespaces,
//! * the last argument of `process.args` (the shell's marker) suffixed with `-floor`, so it is
//!   never mistaken for the CRI container's shell,
//!
//! and times `runc --root <private> --log L --log-format json run --detach --bundle B --pid-file P
//! <floor id>` (berth-monitor's command line) with stdin, stdout and stderr on `/dev/null`, from
//! spawn to exit. Then, untimed: `runc delete --force` and the floor's bundle. The CRI container
//! itself is untouched (it is started afterwards, on the same rootfs).
//!
//! A runtime whose verbose status has no `bundle` (containerd 1.6 makes its bundle only when the
//! task is created, at StartContainer) gets the floor row as unsupported.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use berth_cri_api::v1 as cri;
use serde_json::Value;

use super::Recorder;
use super::pod_cgroups::cgroup_mounts;
use crate::client::Clients;

/// The floor's row.
pub const FLOOR: &str = "runc run --detach (floor)";

/// What the runtime's first answer told: where the floor keeps its state and which binary it runs.
#[derive(Debug, Clone)]
struct FloorEnv {
    /// `<base>/berth-bench-floor-<run id>`: `runc/` (runc's `--root`) and one bundle per floor.
    dir: PathBuf,
    /// The OCI runtime binary the runtime uses.
    runtime: String,
}

impl FloorEnv {
    fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }
}

/// The floor measurements of one workload run.
pub struct Floor {
    run_id: String,
    env: Mutex<Option<FloorEnv>>,
}

/// What [`Floor::measure`] needs from a verbose ContainerStatus.
#[derive(Debug, PartialEq)]
struct StatusInfo {
    bundle: PathBuf,
    runtime: String,
}

/// The `bundle` and `runtimeType` of a verbose status' `info`; `None` when it names no bundle.
fn status_info(info: &std::collections::HashMap<String, String>) -> Option<StatusInfo> {
    let v: Value = serde_json::from_str(info.get("info")?).ok()?;
    let bundle = v.get("bundle")?.as_str().filter(|s| s.starts_with('/'))?;
    let runtime = v
        .get("runtimeType")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.starts_with("io.containerd."))
        .unwrap_or("runc");
    Some(StatusInfo {
        bundle: PathBuf::from(bundle),
        runtime: runtime.to_string(),
    })
}

/// The floor's `linux.cgroupsPath` from the container's: the leaf replaced by `id` (systemd's
/// `slice:prefix:name` form keeps its slice). `None` stays `None` (runc then uses `/<id>`).
/// The bool: the systemd form (runc needs `--systemd-cgroup`).
fn floor_cgroups_path(path: Option<&str>, id: &str) -> (Option<String>, bool) {
    match path {
        None | Some("") => (None, false),
        Some(p) if p.contains(':') => {
            let slice = p.split(':').next().unwrap_or_default();
            (Some(format!("{slice}:berth-bench:{id}")), true)
        }
        Some(p) => match p.rsplit_once('/') {
            Some((parent, _)) => (Some(format!("{parent}/{id}")), false),
            None => (Some(id.to_string()), false),
        },
    }
}

/// The floor's config.json from the container's (see the module doc). Returns it, the floor's
/// cgroupsPath and whether that is systemd's form.
fn floor_spec(mut spec: Value, bundle: &Path, id: &str) -> Result<(Value, Option<String>, bool)> {
    let root = spec
        .pointer("/root/path")
        .and_then(Value::as_str)
        .context("config.json has no root.path")?;
    let root = bundle.join(root); // an absolute root.path stays as it is
    let root_str = root
        .to_str()
        .context("rootfs path is not UTF-8")?
        .to_string();
    spec["root"]["path"] = Value::String(root_str);
    if spec
        .pointer("/process/terminal")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(anyhow!(
            "the container has a terminal; the floor runs without one"
        ));
    }
    if let Some(Value::Array(args)) = spec.pointer_mut("/process/args")
        && let Some(Value::String(last)) = args.last_mut()
    {
        last.push_str("-floor");
    }
    let (cgroups, systemd) = floor_cgroups_path(
        spec.pointer("/linux/cgroupsPath").and_then(Value::as_str),
        id,
    );
    if let (Some(linux), Some(path)) = (spec.get_mut("linux"), &cgroups) {
        linux["cgroupsPath"] = Value::String(path.clone());
    }
    Ok((spec, cgroups, systemd))
}

/// The last `"msg"` of a runc JSON log (its error), or the log's tail.
fn runc_error(log: &str) -> String {
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str::<Value>(last)
        .ok()
        .and_then(|v| v.get("msg").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| last.chars().take(300).collect())
}

impl Floor {
    pub fn new(run_id: &str) -> Floor {
        Floor {
            run_id: run_id.to_string(),
            env: Mutex::new(None),
        }
    }

    fn env(&self) -> Option<FloorEnv> {
        self.env.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The floor's state dir, made on first use beside the runtime's state dir.
    fn env_for(&self, info: &StatusInfo) -> Result<FloorEnv> {
        let mut guard = self.env.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(env) = guard.as_ref() {
            return Ok(env.clone());
        }
        // bundle = <state>/containers/<id>: the floor's dir goes beside <state>.
        let base = info
            .bundle
            .ancestors()
            .nth(3)
            .with_context(|| format!("bundle path {} is too short", info.bundle.display()))?;
        let env = FloorEnv {
            dir: base.join(format!("berth-bench-floor-{}", self.run_id)),
            runtime: info.runtime.clone(),
        };
        std::fs::create_dir_all(env.runc_root())
            .with_context(|| format!("creating {}", env.runc_root().display()))?;
        *guard = Some(env.clone());
        Ok(env)
    }

    /// One floor sample for the created, not yet started CRI container `container_id`, recorded
    /// under [`FLOOR`] (a sample, an error, or unsupported when the runtime names no bundle).
    pub async fn measure(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        container_id: &str,
        iter: u64,
    ) {
        let req = cri::ContainerStatusRequest {
            container_id: container_id.to_string(),
            verbose: true,
        };
        let status =
            tokio::time::timeout(rec.call_timeout, clients.runtime.container_status(req)).await;
        let resp = match status {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                rec.unsupported(FLOOR);
                return;
            }
            Ok(Err(s)) => {
                rec.fail(FLOOR, format!("ContainerStatus(verbose): {s}"));
                return;
            }
            Err(_) => {
                rec.fail(FLOOR, "ContainerStatus(verbose) timed out");
                return;
            }
        };
        let Some(info) = status_info(&resp.info) else {
            rec.unsupported(FLOOR);
            return;
        };
        let id = format!("bbf-{}-{iter}", self.run_id);
        match self.run_once(&info, &id, rec.call_timeout).await {
            Ok(elapsed) => rec.sample(FLOOR, elapsed),
            Err(e) => rec.fail(FLOOR, format!("{e:#}")),
        }
    }

    /// Prepare, time and remove one floor container; the time of `runc run --detach`.
    async fn run_once(&self, info: &StatusInfo, id: &str, timeout: Duration) -> Result<Duration> {
        let env = self.env_for(info)?;
        let config = info.bundle.join("config.json");
        let text =
            std::fs::read(&config).with_context(|| format!("reading {}", config.display()))?;
        let spec: Value = serde_json::from_slice(&text)
            .with_context(|| format!("parsing {}", config.display()))?;
        let (spec, cgroups, systemd) = floor_spec(spec, &info.bundle, id)?;
        if let Some(root) = spec.pointer("/root/path").and_then(Value::as_str)
            && std::fs::read_dir(root).map_or(true, |mut d| d.next().is_none())
        {
            return Err(anyhow!("rootfs {root} is missing or empty (not mounted?)"));
        }
        let bundle = env.dir.join(id);
        std::fs::create_dir_all(&bundle)
            .with_context(|| format!("creating {}", bundle.display()))?;
        let res = async {
            std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec)?)
                .context("writing the floor's config.json")?;
            let log = bundle.join("runc.log");
            let mut cmd = tokio::process::Command::new(&env.runtime);
            cmd.arg("--root").arg(env.runc_root());
            if systemd {
                cmd.arg("--systemd-cgroup");
            }
            cmd.arg("--log")
                .arg(&log)
                .args(["--log-format", "json", "run", "--detach", "--bundle"])
                .arg(&bundle)
                .arg("--pid-file")
                .arg(bundle.join("pid"))
                .arg(id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            let start = Instant::now();
            let status = tokio::time::timeout(timeout, cmd.status()).await;
            let elapsed = start.elapsed();
            match status {
                Ok(Ok(s)) if s.success() => Ok(elapsed),
                Ok(Ok(s)) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    Err(anyhow!("{} run: {s}: {}", env.runtime, runc_error(&text)))
                }
                Ok(Err(e)) => Err(anyhow!("starting {}: {e}", env.runtime)),
                Err(_) => Err(anyhow!("{} run timed out after {timeout:?}", env.runtime)),
            }
        }
        .await;
        // Untimed, also after a failed run: the container, its cgroup and its bundle go.
        let cleanup = delete(&env, id, systemd).await;
        if !systemd && let Some(path) = &cgroups {
            remove_cgroup(path);
        }
        let _ = std::fs::remove_dir_all(&bundle);
        let elapsed = res?;
        cleanup?;
        Ok(elapsed)
    }

    /// Delete every floor container still in the private runc root, then the floor's dir.
    pub async fn teardown(&self) -> Result<()> {
        let Some(env) = self.env() else {
            return Ok(());
        };
        let mut first = None;
        if let Ok(dir) = std::fs::read_dir(env.runc_root()) {
            for entry in dir.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if let Err(e) = delete(&env, &id, false).await {
                    first.get_or_insert(e);
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&env.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            first.get_or_insert(anyhow!("removing {}: {e}", env.dir.display()));
        }
        first.map_or(Ok(()), Err)
    }
}

/// `runc delete --force <id>` in the floor's root; a container runc does not know is no error.
async fn delete(env: &FloorEnv, id: &str, systemd: bool) -> Result<()> {
    let mut cmd = tokio::process::Command::new(&env.runtime);
    cmd.arg("--root").arg(env.runc_root());
    if systemd {
        cmd.arg("--systemd-cgroup");
    }
    cmd.args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| anyhow!("{} delete {id} timed out", env.runtime))?
        .with_context(|| format!("running {} delete", env.runtime))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains("does not exist") || err.contains("not exist") {
        Ok(())
    } else {
        Err(anyhow!("{} delete {id}: {}", env.runtime, err.trim()))
    }
}

/// rmdir the floor's cgroup (cgroupfs) in every hierarchy where runc left it (best effort).
fn remove_cgroup(path: &str) {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| cgroup_mounts(&m))
        .unwrap_or_default();
    for m in mounts {
        let _ = std::fs::remove_dir(m.join(rel));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_bundle_and_runtime_from_verbose_info() {
        let info = HashMap::from([(
            "info".to_string(),
            r#"{"bundle":"/s/containers/abc","runtimeType":"/usr/sbin/runc","pid":0}"#.to_string(),
        )]);
        assert_eq!(
            status_info(&info),
            Some(StatusInfo {
                bundle: "/s/containers/abc".into(),
                runtime: "/usr/sbin/runc".into()
            })
        );
        // containerd: no bundle before the task exists; its runtimeType is a shim name.
        let ctrd = HashMap::from([(
            "info".to_string(),
            r#"{"runtimeType":"io.containerd.runc.v2","runtimeSpec":{}}"#.to_string(),
        )]);
        assert_eq!(status_info(&ctrd), None);
        assert_eq!(status_info(&HashMap::new()), None);
    }

    #[test]
    fn cgroups_path_gets_its_own_leaf() {
        assert_eq!(
            floor_cgroups_path(Some("/berth/pod1/c1"), "f"),
            (Some("/berth/pod1/f".into()), false)
        );
        assert_eq!(
            floor_cgroups_path(Some("kubepods.slice:berth:c1"), "f"),
            (Some("kubepods.slice:berth-bench:f".into()), true)
        );
        assert_eq!(floor_cgroups_path(None, "f"), (None, false));
        assert_eq!(
            floor_cgroups_path(Some("c1"), "f"),
            (Some("f".into()), false)
        );
    }

    #[test]
    fn floor_spec_points_at_the_rootfs_and_keeps_namespaces() {
        let spec = serde_json::json!({
            "root": {"path": "rootfs"},
            "process": {"terminal": false, "args": ["sh", "-c", "x", "marker"]},
            "linux": {
                "cgroupsPath": "/berth/p/c1",
                "namespaces": [{"type": "network", "path": "/run/netns/x"}, {"type": "pid"}]
            }
        });
        let (s, cg, systemd) = floor_spec(spec, Path::new("/b/c1"), "f1").unwrap();
        assert_eq!(s["root"]["path"], "/b/c1/rootfs");
        assert_eq!(s["process"]["args"][3], "marker-floor");
        assert_eq!(s["linux"]["cgroupsPath"], "/berth/p/f1");
        assert_eq!(s["linux"]["namespaces"][0]["path"], "/run/netns/x");
        assert_eq!((cg.as_deref(), systemd), (Some("/berth/p/f1"), false));
        let abs = serde_json::json!({"root": {"path": "/x/rootfs"}, "linux": {}});
        let (s, cg, _) = floor_spec(abs, Path::new("/b/c1"), "f1").unwrap();
        assert_eq!(s["root"]["path"], "/x/rootfs");
        assert_eq!(cg, None);
        let tty = serde_json::json!({"root": {"path": "r"}, "process": {"terminal": true}});
        assert!(floor_spec(tty, Path::new("/b"), "f").is_err());
        assert!(floor_spec(serde_json::json!({}), Path::new("/b"), "f").is_err());
    }

    #[test]
    fn runc_error_takes_the_last_message() {
        let log = "{\"level\":\"warning\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"boom\"}\n";
        assert_eq!(runc_error(log), "boom");
        assert_eq!(runc_error("plain text\n"), "plain text");
        assert_eq!(runc_error(""), "");
    }
}
