//! A manifest's pod as CRI configs, mapped as kubelet maps them (kuberuntime_sandbox.go,
//! kuberuntime_container_linux.go, security_context.go).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;

use super::env::{self, PodFacts};
use super::manifest::{Container, Quantity, SecurityContext};
use super::parse::{Manifest, PlayPod};
use super::volumes::{self, Paths, Source};

/// On every pod and container of a play: its project. `--down` and `--logs` find them by it.
pub const PLAY_LABEL: &str = "berth.io/play";
pub const POD_LABEL: &str = "berth.io/play-pod";
pub const CONTAINER_LABEL: &str = "berth.io/play-container";
/// "true" on init containers.
pub const INIT_LABEL: &str = "berth.io/play-init";
/// On pods: the play's directory (volumes, hosts files, state), which `--down` removes.
pub const DIR_ANNOTATION: &str = "berth.io/play-dir";
/// On pods: terminationGracePeriodSeconds (30 by default), which `--down` stops containers with.
pub const GRACE_ANNOTATION: &str = "berth.io/play-grace";

/// kubelet's CPU constants (cm/helpers_linux.go).
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
const QUOTA_PERIOD: i64 = 100_000;
const MIN_QUOTA: i64 = 1000;

/// What every conversion needs.
pub struct Plan<'a> {
    pub project: &'a str,
    pub manifest: &'a Manifest,
    pub paths: &'a Paths,
    /// Parent of the pods' log directories.
    pub log_root: &'a str,
}

/// A quantity's value (`500m` → 0.5, `64Mi` → 67108864, `1e3` → 1000).
pub fn quantity(q: &Quantity) -> Option<f64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let s = q.0.trim();
    let value = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| {
            let number = s.strip_suffix(suffix)?;
            let number = number.parse::<f64>().ok()?;
            Some(number * scale)
        })
        .or_else(|| s.parse::<f64>().ok())?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

// Quantities are finite and not negative; float-to-int casts saturate.
#[allow(clippy::cast_possible_truncation)]
fn milli_cpu(q: &Quantity) -> Option<i64> {
    quantity(q).map(|v| (v * 1000.0).ceil() as i64)
}

fn resources(
    pod: &PlayPod,
    c: &Container,
    at: &str,
) -> anyhow::Result<cri::LinuxContainerResources> {
    let mut out = cri::LinuxContainerResources::default();
    let Some(r) = &c.resources else {
        out.cpu_shares = MIN_SHARES;
        return Ok(out);
    };
    let parse = |list: &str, name: &str, q: &Quantity| {
        quantity(q).with_context(|| {
            format!(
                "{}: {at}.resources.{list}.{name}: {:?} is not a quantity",
                pod.doc, q.0
            )
        })
    };
    for (list, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map {
            parse(list, name, q)?;
        }
    }
    // The API server defaults a request to the limit when only the limit is set.
    let cpu_request = r.requests.get("cpu").or(r.limits.get("cpu"));
    let milli = cpu_request.and_then(milli_cpu).unwrap_or(0);
    out.cpu_shares = (milli * SHARES_PER_CPU / 1000).clamp(MIN_SHARES, MAX_SHARES);
    if let Some(limit) = r.limits.get("cpu").and_then(milli_cpu) {
        out.cpu_period = QUOTA_PERIOD;
        out.cpu_quota = (limit * QUOTA_PERIOD / 1000).max(MIN_QUOTA);
    }
    if let Some(bytes) = r.limits.get("memory").and_then(quantity) {
        // Finite and not negative (quantity); float-to-int casts saturate.
        #[allow(clippy::cast_possible_truncation)]
        let bytes = bytes.ceil() as i64;
        out.memory_limit_in_bytes = bytes;
    }
    Ok(out)
}

fn profile(p: &super::manifest::SeccompProfile, at: &str) -> anyhow::Result<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    let (kind, reference) = match p.type_.as_str() {
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        "Localhost" => {
            let Some(path) = p.localhost_profile.as_deref().filter(|p| !p.is_empty()) else {
                bail!("{at}.seccompProfile.localhostProfile: needed for type Localhost");
            };
            // kubelet's root for relative profiles.
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/var/lib/kubelet/seccomp/{path}")
            };
            (ProfileType::Localhost, path)
        }
        other => bail!(
            "{at}.seccompProfile.type: {other:?} is not RuntimeDefault, Unconfined or Localhost"
        ),
    };
    Ok(cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: reference,
    })
}

fn namespaces(pod: &PlayPod) -> cri::NamespaceOption {
    let spec = &pod.spec;
    let mode = |node: bool, pod_wide: bool| {
        if node {
            cri::NamespaceMode::Node as i32
        } else if pod_wide {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        }
    };
    cri::NamespaceOption {
        network: mode(spec.host_network, true),
        pid: mode(spec.host_pid, spec.share_process_namespace),
        ipc: mode(spec.host_ipc, true),
        ..Default::default()
    }
}

/// The container's security context merged over the pod's, as kubelet's
/// determineEffectiveSecurityContext does.
fn security(
    pod: &PlayPod,
    c: &Container,
    at: &str,
) -> anyhow::Result<cri::LinuxContainerSecurityContext> {
    let doc = &pod.doc;
    let ps = pod.spec.security_context.clone().unwrap_or_default();
    let cs: SecurityContext = c.security_context.clone().unwrap_or_default();
    let run_as_user = cs.run_as_user.or(ps.run_as_user);
    let run_as_group = cs.run_as_group.or(ps.run_as_group);
    if cs.run_as_non_root.or(ps.run_as_non_root) == Some(true) && run_as_user == Some(0) {
        bail!("{doc}: {at}.securityContext: runAsNonRoot is true but runAsUser is 0");
    }
    let privileged = cs.privileged.unwrap_or(false);
    let seccomp = match cs.seccomp_profile.as_ref().or(ps.seccomp_profile.as_ref()) {
        Some(p) => Some(profile(p, &format!("{doc}: {at}.securityContext"))?),
        None => None,
    };
    Ok(cri::LinuxContainerSecurityContext {
        capabilities: cs.capabilities.map(|caps| cri::Capability {
            add_capabilities: caps.add,
            drop_capabilities: caps.drop,
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespaces(pod)),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: cs.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: ps.supplemental_groups.clone(),
        // kubelet sets no_new_privs only when allowPrivilegeEscalation is false, never when
        // privileged.
        no_new_privs: !privileged && cs.allow_privilege_escalation == Some(false),
        seccomp,
        ..Default::default()
    })
}

fn labels(pairs: &[(&str, &str)], base: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = base.clone().into_iter().collect();
    for (k, v) in pairs {
        out.insert(k.to_string(), v.to_string());
    }
    out
}

/// The sandbox config of `pod`, with the uid it runs under.
pub fn sandbox(plan: &Plan, pod: &PlayPod, uid: &str) -> anyhow::Result<cri::PodSandboxConfig> {
    let spec = &pod.spec;
    let log_directory = format!(
        "{}/{}_{}_{uid}",
        plan.log_root.trim_end_matches('/'),
        pod.namespace,
        pod.name
    );
    let mut port_mappings = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().enumerate() {
            let at = format!("{}: {}.containers[{i}].ports[{j}]", pod.doc, pod.spec_path);
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => cri::Protocol::Tcp,
                "UDP" => cri::Protocol::Udp,
                "SCTP" => cri::Protocol::Sctp,
                other => bail!("{at}.protocol: {other:?} is not TCP, UDP or SCTP"),
            };
            if !(1..=65535).contains(&p.container_port) {
                bail!("{at}.containerPort: {} is not a port", p.container_port);
            }
            // Only ports with a hostPort are mapped, as kubelet does.
            let Some(host) = p.host_port.filter(|h| *h != 0) else {
                continue;
            };
            if !(1..=65535).contains(&host) {
                bail!("{at}.hostPort: {host} is not a port");
            }
            port_mappings.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port: host,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let ps = spec.security_context.clone().unwrap_or_default();
    let seccomp = match &ps.seccomp_profile {
        Some(p) => Some(profile(
            p,
            &format!("{}: {}.securityContext", pod.doc, pod.spec_path),
        )?),
        None => None,
    };
    let mut annotations: HashMap<String, String> = pod.annotations.clone().into_iter().collect();
    annotations.insert(
        crate::pods::LOG_DIR_ANNOTATION.to_string(),
        log_directory.clone(),
    );
    annotations.insert(
        DIR_ANNOTATION.to_string(),
        plan.paths.dir.to_string_lossy().into_owned(),
    );
    annotations.insert(
        GRACE_ANNOTATION.to_string(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .max(0)
            .to_string(),
    );
    let dns_config = spec.dns_config.as_ref().map(|d| cri::DnsConfig {
        servers: d.nameservers.clone(),
        searches: d.searches.clone(),
        options: d
            .options
            .iter()
            .map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name),
                None => o.name.clone(),
            })
            .collect(),
    });
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name.clone(),
            uid: uid.to_string(),
            namespace: pod.namespace.clone(),
            attempt: 0,
        }),
        hostname: if spec.host_network {
            String::new()
        } else {
            spec.hostname.clone().unwrap_or_else(|| pod.name.clone())
        },
        log_directory,
        dns_config,
        port_mappings,
        labels: labels(
            &[(PLAY_LABEL, plan.project), (POD_LABEL, &pod.name)],
            &pod.labels,
        ),
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod)),
                run_as_user: ps.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: ps.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: ps.supplemental_groups.clone(),
                // The sandbox is privileged when any container is (kubelet).
                privileged: spec
                    .init_containers
                    .iter()
                    .chain(&spec.containers)
                    .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true)),
                seccomp,
                ..Default::default()
            }),
            sysctls: ps
                .sysctls
                .iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Which of the pod's containers: the index into `initContainers` or `containers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Which {
    pub init: bool,
    pub index: usize,
}

impl Which {
    pub fn container<'a>(&self, pod: &'a PlayPod) -> Option<&'a Container> {
        if self.init {
            pod.spec.init_containers.get(self.index)
        } else {
            pod.spec.containers.get(self.index)
        }
    }
    pub fn path(&self, pod: &PlayPod) -> String {
        let field = if self.init {
            "initContainers"
        } else {
            "containers"
        };
        format!("{}.{field}[{}]", pod.spec_path, self.index)
    }
}

/// The CreateContainer config of one container of `pod`.
#[allow(clippy::too_many_arguments)]
pub fn container(
    plan: &Plan,
    pod: &PlayPod,
    which: Which,
    attempt: u32,
    facts: &PodFacts,
    sources: &BTreeMap<String, Source>,
    warnings: &mut Vec<String>,
) -> anyhow::Result<cri::ContainerConfig> {
    let c = which
        .container(pod)
        .context("no such container in the pod")?;
    let at = which.path(pod);
    let (envs, vars) = env::environment(plan.manifest, pod, c, &at, facts, warnings)?;
    let mut mounts = volumes::mounts(pod, c, &at, sources)?;
    // The pod's hosts file (see hosts.rs), unless the container mounts its own.
    if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
        mounts.push(cri::Mount {
            container_path: "/etc/hosts".to_string(),
            host_path: plan.paths.hosts(&pod.name).to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let init = if which.init { "true" } else { "false" };
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone(),
            user_specified_image: c.image.clone(),
            ..Default::default()
        }),
        command: c.command.iter().map(|a| env::expand(a, &vars)).collect(),
        args: c.args.iter().map(|a| env::expand(a, &vars)).collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels: labels(
            &[
                (PLAY_LABEL, plan.project),
                (POD_LABEL, &pod.name),
                (CONTAINER_LABEL, &c.name),
                (INIT_LABEL, init),
            ],
            &BTreeMap::new(),
        ),
        // kubelet's layout: <pod log dir>/<container>/<attempt>.log.
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin,
        tty: c.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(pod, c, &at)?),
            security_context: Some(security(pod, c, &at)?),
        }),
        ..Default::default()
    })
}

/// Every config of the play made once with placeholder facts: the manifest's mistakes are found
/// before anything runs.
pub fn check(plan: &Plan) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    let facts = PodFacts {
        uid: "00000000-0000-4000-8000-000000000000".to_string(),
        ip: "0.0.0.0".to_string(),
    };
    for pod in &plan.manifest.pods {
        sandbox(plan, pod, &facts.uid)?;
        for (i, v) in pod.spec.volumes.iter().enumerate() {
            if let Some(medium) = v.empty_dir.as_ref().and_then(|e| e.medium.as_deref())
                && !medium.is_empty()
            {
                warnings.push(format!(
                    "{}: {}.volumes[{i}].emptyDir.medium: {medium} is not honoured: the volume is a directory of the play's state dir",
                    pod.doc, pod.spec_path
                ));
            }
        }
        let sources = volumes::plan(plan.manifest, pod, plan.paths, &mut warnings)?;
        for (init, n) in [
            (true, pod.spec.init_containers.len()),
            (false, pod.spec.containers.len()),
        ] {
            for index in 0..n {
                let which = Which { init, index };
                container(plan, pod, which, 0, &facts, &sources, &mut warnings)?;
                let c = which.container(pod);
                if let Some(probe) = c.and_then(|c| c.readiness_probe.as_ref()) {
                    super::probe::check(pod, which, probe, "readinessProbe")?;
                }
                if let Some(probe) = c.and_then(|c| c.liveness_probe.as_ref()) {
                    super::probe::check(pod, which, probe, "livenessProbe")?;
                }
            }
        }
    }
    Ok(warnings)
}
