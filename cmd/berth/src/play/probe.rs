//! readinessProbe and livenessProbe as kubelet's prober runs them: exec through ExecSync, httpGet and tcpSocket from
//! the host to the pod's IP, each bounded by timeoutSeconds, every periodSeconds after
//! initialDelaySeconds; ready after successThreshold successes in a row, unready after
//! failureThreshold failures in a row.

use std::time::{Duration, Instant};

use anyhow::bail;
use berth_cri_api::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::convert::Which;
use super::manifest::{IntOrString, Probe};
use super::parse::PlayPod;
use crate::containers::Runtime;

/// What a probe does, its port resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Exec(Vec<String>),
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
}

fn port(pod: &PlayPod, which: Which, port: &IntOrString, at: &str) -> anyhow::Result<u16> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => {
            let c = which.container(pod);
            let found = c
                .into_iter()
                .flat_map(|c| &c.ports)
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            match found {
                Some(p) => i64::from(p.container_port),
                None => match name.parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => bail!(
                        "{}: {at}.port: the container has no port named {name:?}",
                        pod.doc
                    ),
                },
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| anyhow::anyhow!("{}: {at}.port: {number} is not a port", pod.doc))
}

/// The probe's action, checked: exactly one handler, a port that resolves, plain HTTP.
pub fn check(pod: &PlayPod, which: Which, probe: &Probe, field: &str) -> anyhow::Result<Action> {
    let at = format!("{}.{field}", which.path(pod));
    let doc = &pod.doc;
    let count = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count != 1 {
        bail!(
            "{doc}: {at}: expected exactly one of exec, httpGet and tcpSocket (grpc is not supported)"
        );
    }
    if probe.period_seconds == 0
        || probe.timeout_seconds == 0
        || probe.failure_threshold == 0
        || probe.success_threshold == 0
    {
        bail!(
            "{doc}: {at}: periodSeconds, timeoutSeconds, failureThreshold and successThreshold must be at least 1"
        );
    }
    if let Some(e) = &probe.exec {
        if e.command.is_empty() {
            bail!("{doc}: {at}.exec.command: empty");
        }
        return Ok(Action::Exec(e.command.clone()));
    }
    if let Some(h) = &probe.http_get {
        if let Some(scheme) = h.scheme.as_deref().filter(|s| *s != "HTTP") {
            bail!("{doc}: {at}.httpGet.scheme: {scheme:?}: berth play probes plain HTTP only");
        }
        let path = h.path.clone().unwrap_or_else(|| "/".to_string());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        if path.contains(['\r', '\n', ' ']) {
            bail!("{doc}: {at}.httpGet.path: {path:?} has spaces or line breaks");
        }
        for (i, hd) in h.http_headers.iter().enumerate() {
            if hd.name.contains([':', '\r', '\n']) || hd.value.contains(['\r', '\n']) {
                bail!("{doc}: {at}.httpGet.httpHeaders[{i}]: not a valid header");
            }
        }
        return Ok(Action::Http {
            host: h.host.clone().filter(|h| !h.is_empty()),
            port: port(pod, which, &h.port, &format!("{at}.httpGet"))?,
            path,
            headers: h
                .http_headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        });
    }
    let Some(t) = &probe.tcp_socket else {
        unreachable!("counted above")
    };
    Ok(Action::Tcp {
        host: t.host.clone().filter(|h| !h.is_empty()),
        port: port(pod, which, &t.port, &format!("{at}.tcpSocket"))?,
    })
}

/// One probe; `Err` says why it failed.
pub async fn run_once(
    runtime: &mut Runtime,
    container_id: &str,
    action: &Action,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        Action::Exec(cmd) => {
            let mut request = tonic::Request::new(cri::ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd: cmd.clone(),
                timeout: timeout.as_secs() as i64,
            });
            request.set_timeout(timeout + Duration::from_secs(2));
            let r = runtime
                .exec_sync(request)
                .await
                .map_err(|s| s.message().to_string())?;
            let r = r.into_inner();
            if r.exit_code == 0 {
                Ok(())
            } else {
                Err(format!(
                    "exec {cmd:?} exited {}: {}",
                    r.exit_code,
                    String::from_utf8_lossy(&r.stdout).trim()
                ))
            }
        }
        Action::Http {
            host,
            port,
            path,
            headers,
        } => {
            let host = host.as_deref().unwrap_or(pod_ip);
            tokio::time::timeout(timeout, http_get(host, *port, path, headers))
                .await
                .map_err(|_| {
                    format!("GET http://{host}:{port}{path}: timed out after {timeout:?}")
                })?
        }
        Action::Tcp { host, port } => {
            let host = host.as_deref().unwrap_or(pod_ip);
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, *port))).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connecting to {host}:{port}: {e}")),
                Err(_) => Err(format!(
                    "connecting to {host}:{port}: timed out after {timeout:?}"
                )),
            }
        }
    }
}

/// kubelet's HTTP probe: 200-399 is success (redirects are not followed here).
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let url = format!("http://{host}:{port}{path}");
    let mut stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/berth\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let code = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {url}: no HTTP status in the answer"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {code}"))
    }
}

/// One container's readiness, probed on the probe's schedule.
#[derive(Debug)]
pub struct Prober {
    pub action: Action,
    period: Duration,
    timeout: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    next: Instant,
    successes: u32,
    failures: u32,
    pub ready: bool,
    pub last_error: Option<String>,
}

impl Prober {
    /// For a container that started at `started`.
    pub fn new(action: Action, probe: &Probe, started: Instant) -> Prober {
        Prober {
            action,
            period: Duration::from_secs(u64::from(probe.period_seconds)),
            timeout: Duration::from_secs(u64::from(probe.timeout_seconds)),
            success_threshold: probe.success_threshold,
            failure_threshold: probe.failure_threshold,
            next: started + Duration::from_secs(u64::from(probe.initial_delay_seconds)),
            successes: 0,
            failures: 0,
            ready: false,
            last_error: None,
        }
    }

    /// A liveness prober: the container counts as alive until failureThreshold failures in a row.
    pub fn liveness(action: Action, probe: &Probe, started: Instant) -> Prober {
        let mut p = Prober::new(action, probe, started);
        p.ready = true;
        p
    }

    /// Probes if it is time to; returns whether the container is ready (alive).
    pub async fn poll(&mut self, runtime: &mut Runtime, container_id: &str, pod_ip: &str) -> bool {
        if Instant::now() < self.next {
            return self.ready;
        }
        self.next = Instant::now() + self.period;
        match run_once(runtime, container_id, &self.action, pod_ip, self.timeout).await {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                self.last_error = None;
                if self.successes >= self.success_threshold {
                    self.ready = true;
                }
            }
            Err(e) => {
                self.successes = 0;
                self.failures += 1;
                self.last_error = Some(e);
                if self.failures >= self.failure_threshold {
                    self.ready = false;
                }
            }
        }
        self.ready
    }
}
