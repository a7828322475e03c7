//! Pod verbs, as crictl names them: `runp`, `pods`, `stopp`, `rmp`, `inspectp`.

use std::collections::HashMap;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub type Runtime = RuntimeServiceClient<Channel>;

/// What `berth runp` takes on the command line.
pub struct RunPod {
    pub name: String,
    pub namespace: String,
    pub host_network: bool,
    pub share_pid: bool,
    /// `HOST:CONTAINER[/udp]`
    pub ports: Vec<String>,
    /// `KEY=VALUE`
    pub labels: Vec<String>,
    pub runtime_handler: String,
    /// Where the pod's log directory is made: `<log_root>/<namespace>_<name>_<uid>`.
    pub log_root: String,
}

/// Default parent of the pod log directories berth makes (kubelet uses `/var/log/pods`).
pub const LOG_ROOT: &str = "/var/log/berth/pods";

/// Annotation recording the log directory berth made for a pod, so `berth create --pod` can send it
/// again with CreateContainer, as kubelet sends the pod's whole config.
pub const LOG_DIR_ANNOTATION: &str = "io.berth.cli/log-directory";

pub(crate) fn port(spec: &str) -> anyhow::Result<cri::PortMapping> {
    let (ports, protocol) = match spec.split_once('/') {
        Some((ports, "tcp")) => (ports, cri::Protocol::Tcp),
        Some((ports, "udp")) => (ports, cri::Protocol::Udp),
        Some((ports, "sctp")) => (ports, cri::Protocol::Sctp),
        Some((_, other)) => bail!("--port {spec}: unknown protocol {other:?}"),
        None => (spec, cri::Protocol::Tcp),
    };
    let (host, container) = ports
        .split_once(':')
        .with_context(|| format!("--port {spec}: expected HOST:CONTAINER"))?;
    let parse = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .with_context(|| format!("--port {spec}: {p:?} is not a port"))
    };
    Ok(cri::PortMapping {
        protocol: protocol as i32,
        host_port: i32::from(parse(host)?),
        container_port: i32::from(parse(container)?),
        host_ip: String::new(),
    })
}

pub(crate) fn labels(specs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    specs
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--label {l}: expected KEY=VALUE"))
        })
        .collect()
}

/// A random uid (UUID v4 form) for a pod started by hand or by `berth play` (kubelet would pass
/// the pod object's uid).
pub(crate) fn uid() -> String {
    let (a, b) = (crate::flags::random(), crate::flags::random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

impl RunPod {
    pub fn config(&self) -> anyhow::Result<cri::PodSandboxConfig> {
        let mode = |node: bool| {
            if node {
                cri::NamespaceMode::Node as i32
            } else {
                cri::NamespaceMode::Pod as i32
            }
        };
        let uid = uid();
        let log_directory = format!(
            "{}/{}_{}_{uid}",
            self.log_root.trim_end_matches('/'),
            self.namespace,
            self.name
        );
        Ok(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid,
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            annotations: HashMap::from([(LOG_DIR_ANNOTATION.to_string(), log_directory.clone())]),
            log_directory,
            hostname: if self.host_network {
                String::new()
            } else {
                self.name.clone()
            },
            port_mappings: self
                .ports
                .iter()
                .map(|p| port(p))
                .collect::<Result<_, _>>()?,
            labels: labels(&self.labels)?,
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: mode(self.host_network),
                        pid: if self.share_pid {
                            cri::NamespaceMode::Pod as i32
                        } else {
                            cri::NamespaceMode::Container as i32
                        },
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}

/// RunPodSandbox after making the pod's log directory, as kubelet does; returns the pod ID.
pub async fn start(
    runtime: &mut Runtime,
    pod: &RunPod,
) -> anyhow::Result<(String, cri::PodSandboxConfig)> {
    let config = pod.config()?;
    std::fs::create_dir_all(&config.log_directory).with_context(|| {
        format!(
            "creating the pod log directory {} (--log-dir or BERTH_LOG_DIR choose another)",
            config.log_directory
        )
    })?;
    let response = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: pod.runtime_handler.clone(),
        })
        .await;
    match response {
        Ok(r) => Ok((r.into_inner().pod_sandbox_id, config)),
        Err(e) => {
            let _ = std::fs::remove_dir(&config.log_directory);
            Err(anyhow::Error::from(e).context(format!("running pod {}", pod.name)))
        }
    }
}

pub async fn run(runtime: &mut Runtime, pod: &RunPod) -> anyhow::Result<()> {
    let (id, _) = start(runtime, pod).await?;
    println!("{id}");
    Ok(())
}

/// "3 minutes ago", as docker and crictl print ages.
pub(crate) fn ago(created_ns: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let secs = (now - created_ns).max(0) / 1_000_000_000;
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        _ => (secs / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

pub async fn stop(runtime: &mut Runtime, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .with_context(|| format!("stopping pod {id}"))?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

pub async fn remove(runtime: &mut Runtime, ids: &[String], force: bool) -> anyhow::Result<()> {
    for id in ids {
        // RemovePodSandbox succeeds for unknown IDs (CRI semantics); a person wants to know.
        let status = runtime
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .with_context(|| format!("pod {id}"))?
            .into_inner();
        let ready = status
            .status
            .as_ref()
            .is_some_and(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
        if ready && !force {
            bail!("pod {id} is ready: stop it first (berth stopp), or remove it with --force");
        }
        runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .with_context(|| format!("removing pod {id}"))?;
        if let Some(status) = &status.status {
            remove_log_dir(status);
        }
        println!("Removed sandbox {id}");
    }
    Ok(())
}

/// The log directory berth made for a pod (see [`LOG_DIR_ANNOTATION`]). Only a directory named
/// after the pod's own metadata counts, so an annotation can't point berth at another directory.
pub(crate) fn log_dir(status: &cri::PodSandboxStatus) -> Option<&str> {
    let dir = status.annotations.get(LOG_DIR_ANNOTATION)?;
    let m = status.metadata.as_ref()?;
    let expected = format!("{}_{}_{}", m.namespace, m.name, m.uid);
    let path = std::path::Path::new(dir);
    (path.is_absolute() && path.file_name()? == expected.as_str()).then_some(dir.as_str())
}

/// Removes the log directory berth made for a removed pod, with the logs in it (kubelet removes
/// `/var/log/pods/<pod>` too). Best effort: a failure is reported, not fatal.
pub(crate) fn remove_log_dir(status: &cri::PodSandboxStatus) {
    if let Some(dir) = log_dir(status) {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("berth: removing the pod log directory {dir}: {e}"),
        }
    }
}

pub async fn inspect(
    runtime: &mut Runtime,
    id: &str,
    output: &crate::output::OutputArgs,
) -> anyhow::Result<()> {
    let response = runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .with_context(|| format!("pod {id}"))?
        .into_inner();
    crate::output::one(output, &status_json(&response))
}

/// What `berth inspectp` prints: the status and the verbose info.
pub(crate) fn status_json(response: &cri::PodSandboxStatusResponse) -> serde_json::Value {
    let info: serde_json::Value = response
        .info
        .get("info")
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({ "status": response.status, "info": info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_labels_parse() {
        let p = port("8080:80").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol),
            (8080, 80, cri::Protocol::Tcp as i32)
        );
        assert_eq!(
            port("53:53/udp").unwrap().protocol,
            cri::Protocol::Udp as i32
        );
        for bad in ["80", "0:80", "x:80", "80:80/icmp", "70000:80"] {
            assert!(port(bad).is_err(), "{bad}");
        }
        assert_eq!(labels(&["a=b".into()]).unwrap()["a"], "b");
        assert!(labels(&["ab".into()]).is_err());
        assert_eq!(ago(0).split(' ').nth(1), Some("days"));
    }

    #[test]
    fn pods_get_a_log_directory_named_after_them() {
        let pod = RunPod {
            name: "web".into(),
            namespace: "default".into(),
            host_network: false,
            share_pid: false,
            ports: vec![],
            labels: vec![],
            runtime_handler: String::new(),
            log_root: "/var/log/berth/pods/".into(),
        };
        let config = pod.config().unwrap();
        let m = config.metadata.clone().unwrap();
        assert_eq!(m.uid.len(), 36);
        assert_ne!(m.uid, pod.config().unwrap().metadata.unwrap().uid);
        let expected = format!("/var/log/berth/pods/default_web_{}", m.uid);
        assert_eq!(config.log_directory, expected);
        let mut status = cri::PodSandboxStatus {
            metadata: Some(m),
            annotations: config.annotations.clone(),
            ..Default::default()
        };
        assert_eq!(log_dir(&status), Some(expected.as_str()));
        status
            .annotations
            .insert(LOG_DIR_ANNOTATION.into(), "/var/log".into());
        assert_eq!(log_dir(&status), None);
    }
}
