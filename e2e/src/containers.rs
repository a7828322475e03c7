//! Helpers for container tests: container configs kubelet would send, the container RPCs, polling
//! container states, reading CRI-format logs, and looking at container processes and cgroups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use tonic::Status;

use crate::Berthd;
use crate::registry::SHARED;

pub const CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
pub const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
pub const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

/// A test image in the shared registry (`hack/images/README.md`).
pub fn image(name: &str) -> String {
    format!("{SHARED}/berth-test/{name}")
}

pub fn busybox() -> String {
    image("busybox:latest")
}

pub fn config_image() -> String {
    image("config:latest")
}

pub fn httpd() -> String {
    image("httpd:latest")
}

/// Pulls an image as kubelet does before CreateContainer; returns its image ref.
pub async fn pull(berthd: &Berthd, image: &str) -> String {
    try_pull(berthd, image)
        .await
        .unwrap_or_else(|e| panic!("pulling {image} (is hack/test-images.sh done?): {e:?}"))
}

/// [`pull`] for tests that expect some pulls to fail.
pub async fn try_pull(berthd: &Berthd, image: &str) -> Result<String, Status> {
    let mut client = berthd.images().await.expect("image client");
    client
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// A pod ready for containers: its id, the config it was created with (CreateContainer sends it
/// again) and its log directory, created as kubelet creates `/var/log/pods/<pod>`.
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
}

impl Pod {
    /// Runs a pod from `crate::pods::pod_config` after creating its log directory.
    pub async fn run(berthd: &Berthd, name: &str) -> Pod {
        Self::run_with(berthd, crate::pods::pod_config(berthd, name)).await
    }

    pub async fn run_with(berthd: &Berthd, config: cri::PodSandboxConfig) -> Pod {
        std::fs::create_dir_all(&config.log_directory).expect("creating the pod log directory");
        let id = crate::pods::run_pod(berthd, config.clone())
            .await
            .expect("RunPodSandbox");
        Pod { id, config }
    }

    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }

    /// Where a container's log ends up on the host.
    pub fn log_file(&self, config: &cri::ContainerConfig) -> PathBuf {
        self.log_dir().join(&config.log_path)
    }

    /// Stops and removes the pod (and so whatever containers are left in it).
    pub async fn remove(&self, berthd: &Berthd) {
        crate::pods::stop_pod(berthd, &self.id)
            .await
            .expect("StopPodSandbox");
        crate::pods::remove_pod(berthd, &self.id)
            .await
            .expect("RemovePodSandbox");
    }
}

/// A container config as kubelet sends it: name, attempt 0, log path `<name>_0.log`, a label.
/// `command` empty means the image's entrypoint and cmd.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}_0.log"),
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        annotations: HashMap::from([("e2e/container".to_string(), name.to_string())]),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// A busybox container running `sh -c script`.
pub fn shell(name: &str, script: &str) -> cri::ContainerConfig {
    container_config(name, &busybox(), &["sh", "-c", script])
}

/// The container's Linux resources, to set limits.
pub fn resources(config: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerResources {
    config
        .linux
        .get_or_insert_with(Default::default)
        .resources
        .get_or_insert_with(Default::default)
}

/// The container's security context, to set users or privileges.
pub fn security(config: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

pub async fn create(
    berthd: &Berthd,
    pod: &Pod,
    config: cri::ContainerConfig,
) -> Result<String, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod.id.clone(),
        config: Some(config),
        sandbox_config: Some(pod.config.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

pub async fn start(berthd: &Berthd, id: &str) -> Result<(), Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.start_container(cri::StartContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

/// CreateContainer then StartContainer, as kubelet does; panics with the error if either fails.
pub async fn run(berthd: &Berthd, pod: &Pod, config: cri::ContainerConfig) -> String {
    let name = config.metadata.as_ref().map(|m| m.name.clone());
    let id = create(berthd, pod, config)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name:?}: {e:?}"));
    start(berthd, &id)
        .await
        .unwrap_or_else(|e| panic!("StartContainer {name:?} ({id}): {e:?}"));
    id
}

pub async fn stop(berthd: &Berthd, id: &str, timeout_secs: i64) -> Result<(), Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout: timeout_secs,
    })
    .await
    .map(|_| ())
}

pub async fn remove(berthd: &Berthd, id: &str) -> Result<(), Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

/// StopContainer (timeout 0: the tests' containers have nothing to save) and RemoveContainer.
pub async fn stop_and_remove(berthd: &Berthd, id: &str) {
    stop(berthd, id, 0)
        .await
        .unwrap_or_else(|e| panic!("StopContainer {id}: {e:?}"));
    remove(berthd, id)
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e:?}"));
}

pub async fn status_response(
    berthd: &Berthd,
    id: &str,
    verbose: bool,
) -> Result<cri::ContainerStatusResponse, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose,
    })
    .await
    .map(|r| r.into_inner())
}

pub async fn status(berthd: &Berthd, id: &str) -> cri::ContainerStatus {
    status_response(berthd, id, false)
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"))
        .status
        .unwrap_or_else(|| panic!("ContainerStatus {id} has no status"))
}

pub async fn state(berthd: &Berthd, id: &str) -> i32 {
    status(berthd, id).await.state
}

/// The verbose info's JSON (`info["info"]`, as containerd has it).
pub async fn info(berthd: &Berthd, id: &str) -> serde_json::Value {
    let response = status_response(berthd, id, true)
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id} (verbose): {e:?}"));
    let raw = response
        .info
        .get("info")
        .unwrap_or_else(|| panic!("verbose ContainerStatus {id} has no info: {response:?}"));
    serde_json::from_str(raw).unwrap_or_else(|e| panic!("verbose info is not JSON ({e}): {raw}"))
}

/// The container's pid on the host, from the verbose info.
pub async fn pid(berthd: &Berthd, id: &str) -> i32 {
    let info = info(berthd, id).await;
    info["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or_else(|| panic!("no pid in the verbose info of {id}: {info}"))
}

pub async fn list(berthd: &Berthd, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.list_containers(cri::ListContainersRequest { filter })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

/// The ids ListContainers returns for `filter`, sorted.
pub async fn list_ids(berthd: &Berthd, filter: cri::ContainerFilter) -> Vec<String> {
    let mut ids: Vec<_> = list(berthd, Some(filter))
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

pub async fn update_resources(
    berthd: &Berthd,
    id: &str,
    linux: cri::LinuxContainerResources,
) -> Result<(), Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.to_string(),
        linux: Some(linux),
        windows: None,
        annotations: HashMap::new(),
    })
    .await
    .map(|_| ())
}

pub async fn reopen_log(berthd: &Berthd, id: &str) -> Result<(), Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

/// Polls `check` every 20 ms until it returns `Some`, failing after `timeout` with `what`.
pub async fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the container is EXITED and returns its status.
pub async fn wait_exited(berthd: &Berthd, id: &str, timeout: Duration) -> cri::ContainerStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(berthd, id).await;
        if s.state == EXITED {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} not EXITED after {timeout:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a container to its exit; returns its final status and its log.
pub async fn run_to_exit(
    berthd: &Berthd,
    pod: &Pod,
    config: cri::ContainerConfig,
) -> (String, cri::ContainerStatus, Vec<LogLine>) {
    let log = pod.log_file(&config);
    let id = run(berthd, pod, config).await;
    let status = wait_exited(berthd, &id, Duration::from_secs(20)).await;
    // The monitor may write the last lines just after recording the exit: they are there once
    // ContainerStatus says EXITED (kubelet reads the log after that), so no waiting here.
    let lines = read_log(&log).unwrap_or_else(|e| panic!("log of {id}: {e:#}"));
    (id, status, lines)
}

/// One line of a CRI log file: `<RFC3339Nano> <stream> <P|F> <content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub content: String,
}

/// Parses a CRI log file; each line must be well-formed.
pub fn read_log(path: &Path) -> anyhow::Result<Vec<LogLine>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_log(&text).with_context(|| format!("in {}", path.display()))
}

pub fn parse_log(text: &str) -> anyhow::Result<Vec<LogLine>> {
    let mut lines = Vec::new();
    let Some(body) = text.strip_suffix('\n') else {
        if text.is_empty() {
            return Ok(lines);
        }
        bail!("the log does not end with a newline: {text:?}");
    };
    for raw in body.split('\n') {
        let mut parts = raw.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("malformed CRI log line {raw:?}");
        };
        let content = parts.next().unwrap_or_default();
        if !is_rfc3339_nano(time) {
            bail!("bad timestamp {time:?} in {raw:?}");
        }
        if stream != "stdout" && stream != "stderr" {
            bail!("bad stream {stream:?} in {raw:?}");
        }
        if tag != "P" && tag != "F" {
            bail!("bad tag {tag:?} in {raw:?}");
        }
        lines.push(LogLine {
            time: time.to_string(),
            stream: stream.to_string(),
            tag: tag.to_string(),
            content: content.to_string(),
        });
    }
    Ok(lines)
}

/// `2016-10-06T00:17:09.669794202Z` or with an offset, as Go's RFC3339Nano writes it (trailing
/// zeros of the fraction dropped, so the fraction has 1 to 9 digits or is absent).
fn is_rfc3339_nano(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}

/// The full lines of one stream (partial chunks joined), `\r` of tty output dropped.
pub fn stream_lines(lines: &[LogLine], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines.iter().filter(|l| l.stream == stream) {
        current.push_str(&line.content);
        if line.tag == "F" {
            out.push(current.trim_end_matches('\r').to_string());
            current.clear();
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// All full lines, whatever the stream.
pub fn all_lines(lines: &[LogLine]) -> Vec<String> {
    let mut out = stream_lines(lines, "stdout");
    out.extend(stream_lines(lines, "stderr"));
    out
}

/// Waits until the log file has a full line equal to `line`; returns all lines read.
pub async fn wait_log_line(path: &Path, line: &str, timeout: Duration) -> Vec<LogLine> {
    poll(
        timeout,
        &format!("{line:?} in {}", path.display()),
        async || {
            let lines = read_log(path).ok()?;
            all_lines(&lines).iter().any(|l| l == line).then_some(lines)
        },
    )
    .await
}

/// A process's state letter and parent pid from `/proc/<pid>/stat`; `None` once it is gone.
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`; comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether a process is gone. A zombie whose parent is PID 1 counts as gone: on this machine PID 1
/// does not reap orphans, so an exited process that was re-parented to it stays a zombie forever.
pub fn gone(pid: i32) -> bool {
    match proc_state(pid) {
        None => true,
        Some(('Z', 1)) => true,
        Some(_) => false,
    }
}

/// Waits for a process to be gone (see [`gone`]).
pub async fn wait_gone(pid: i32, timeout: Duration) {
    poll(timeout, &format!("process {pid} to exit"), async || {
        gone(pid).then_some(())
    })
    .await
}

/// The cgroup directory of a process in a v1 controller hierarchy (or the unified one if the
/// controller has none), from `/proc/<pid>/cgroup`.
pub fn cgroup_dir_of(pid: i32, controller: &str) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("reading /proc/{pid}/cgroup"))?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == controller) {
            return Ok(Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(path.trim_start_matches('/')));
        }
    }
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("0::") {
            return Ok(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        }
    }
    bail!("no {controller} cgroup in /proc/{pid}/cgroup:\n{text}")
}

/// berth-monitor processes (by command line) that name `needle` (the sandbox id, or the
/// container's `monitorDir` from the verbose info); (pid, command line).
pub fn monitor_processes(needle: &str) -> Vec<(i32, String)> {
    all_monitors()
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains(needle))
        .collect()
}

/// Every live berth-monitor process on the host; (pid, command line).
pub fn all_monitors() -> Vec<(i32, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        if cmdline.contains("berth-monitor") && !gone(pid) {
            found.push((pid, cmdline.trim().to_string()));
        }
    }
    found
}

/// A process's resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cri_log_lines() {
        let text = "2016-10-06T00:17:09.669794202Z stdout P abc\n\
                    2016-10-06T00:17:09.669794203Z stdout F def\n\
                    2016-10-06T00:17:10Z stderr F \n\
                    2016-10-06T00:17:10.5+02:00 stderr F with  spaces \n";
        let lines = parse_log(text).expect("parses");
        assert_eq!(lines.len(), 4);
        assert_eq!(stream_lines(&lines, "stdout"), ["abcdef"]);
        assert_eq!(stream_lines(&lines, "stderr"), ["", "with  spaces "]);
        assert!(parse_log("2016-10-06 stdout F x\n").is_err());
        assert!(parse_log("2016-10-06T00:17:09.1Z stdin F x\n").is_err());
        assert!(parse_log("2016-10-06T00:17:09.1Z stdout X x\n").is_err());
        assert!(parse_log("2016-10-06T00:17:09.1Z stdout F x").is_err());
        assert!(parse_log("").expect("empty").is_empty());
    }
}
