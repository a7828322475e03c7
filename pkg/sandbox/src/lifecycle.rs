//! RunPodSandbox, StopPodSandbox and RemovePodSandbox: the steps, their order, and their undoing.

use std::sync::Arc;

use berth_namespace::NsKind;

use crate::config::{NamespaceMode, SandboxConfig};
use crate::error::SandboxError;
use crate::record::{Phase, SandboxRecord};
use crate::{Inner, PodContainers, bandwidth, files, ids, net};

/// Checks everything that can be checked before any side effect, so bad input changes nothing.
fn validate(
    inner: &Inner,
    config: &mut SandboxConfig,
    containers: &dyn PodContainers,
) -> Result<(), SandboxError> {
    let m = &config.metadata;
    if m.name.is_empty() || m.namespace.is_empty() || m.uid.is_empty() {
        return Err(SandboxError::IncompleteMetadata);
    }
    if config.runtime_handler.is_empty() {
        config.runtime_handler = inner.default_handler.clone();
    }
    if !inner.handlers.contains(&config.runtime_handler) {
        return Err(SandboxError::UnknownHandler {
            handler: config.runtime_handler.clone(),
            known: inner.handlers.join(", "),
        });
    }
    let ns = &config.namespaces;
    if ns.network == NamespaceMode::Target || ns.ipc == NamespaceMode::Target {
        return Err(SandboxError::InvalidNamespaces(
            "only the PID namespace can target a container",
        ));
    }
    match ns.pid {
        NamespaceMode::Target if ns.target_id.is_empty() => {
            return Err(SandboxError::InvalidNamespaces(
                "PID namespace mode TARGET needs a target container id",
            ));
        }
        _ => {}
    }
    if !config.hostname.is_empty() && !valid_hostname(&config.hostname) {
        return Err(SandboxError::InvalidHostname(config.hostname.clone()));
    }
    berth_namespace::validate_sysctls(&config.sysctls, !ns.host_network(), !ns.host_ipc())?;
    if let Some(dns) = &config.dns {
        files::check_dns(dns)?;
    }
    bandwidth::from_annotations(&config.annotations)?;
    if let Some(maps) = &config.userns {
        check_userns(ns, maps, || containers.user_namespaces_unsupported())?;
    }
    Ok(())
}

/// A pod user namespace: valid mappings, no host namespace (kubelet forbids those with
/// `hostUsers: false` too: a host namespace is owned by the host's user namespace, so the
/// pod's root could not use it), and a node that can idmap the pod's files: `node_problem` says
/// why this node cannot (asked last, after the request's own errors).
fn check_userns(
    ns: &crate::NamespaceOptions,
    maps: &crate::UserNamespaceMappings,
    node_problem: impl FnOnce() -> Option<String>,
) -> Result<(), SandboxError> {
    maps.validate()?;
    if ns.host_network() || ns.host_ipc() || ns.pid == NamespaceMode::Node {
        return Err(SandboxError::InvalidNamespaces(
            "a pod with a user namespace (hostUsers: false) cannot use the host's network, IPC or PID namespace",
        ));
    }
    if ns.pid == NamespaceMode::Pod {
        // berth-init would have to be PID 1 of a PID namespace owned by the pod's user namespace,
        // which needs a second child of its own; not done yet.
        return Err(SandboxError::InvalidNamespaces(
            "a shared PID namespace (shareProcessNamespace) together with a user namespace (hostUsers: false) is not supported by berth",
        ));
    }
    if let Some(problem) = node_problem() {
        return Err(SandboxError::UserNamespacesUnavailable { problem });
    }
    Ok(())
}

fn valid_hostname(name: &str) -> bool {
    name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The node's hostname, which host-network pods without one of their own get.
fn node_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

pub(crate) async fn run(
    inner: &Arc<Inner>,
    mut config: SandboxConfig,
    containers: &dyn PodContainers,
) -> Result<String, SandboxError> {
    validate(inner, &mut config, containers)?;
    // Kubelet retries with the same metadata: the retry waits here for the first call and then
    // finds its sandbox.
    let key = config.metadata.clone();
    inner.creating.run(key, async {
        let existing = inner
            .records()
            .values()
            .find(|r| r.metadata == config.metadata)
            .map(|r| (r.id.clone(), r.phase));
        match existing {
            // Still Creating although no RunPodSandbox for it runs (we hold its metadata's lock):
            // berthd died during it. The retry must not get that half-made pod: replace it.
            Some((id, Phase::Creating)) => {
                tracing::info!(sandbox_id = %id, "RunPodSandbox retry: replacing the sandbox a crash left half-made");
                remove(inner, &id, containers).await?;
                create(inner, config.clone(), containers).await
            }
            Some((id, _)) => {
                tracing::info!(sandbox_id = %id, "RunPodSandbox retry: returning the existing sandbox");
                Ok(id)
            }
            None => create(inner, config.clone(), containers).await,
        }
    })
    .await
}

async fn create(
    inner: &Arc<Inner>,
    config: SandboxConfig,
    containers: &dyn PodContainers,
) -> Result<String, SandboxError> {
    let id = ids::generate()?;
    // Listed (NOTREADY) from its first record write on: a Stop or Remove of it waits until this
    // RunPodSandbox has finished or rolled back.
    let lock = inner.lock_for(&id);
    let guard = lock.lock().await;
    let created = create_locked(inner, config, id.clone(), containers).await;
    if created.is_err() {
        inner.forget_lock(&id);
    }
    drop(guard);
    created
}

async fn create_locked(
    inner: &Arc<Inner>,
    config: SandboxConfig,
    id: String,
    containers: &dyn PodContainers,
) -> Result<String, SandboxError> {
    let started = std::time::Instant::now();
    let dir = inner.dir.join(&id);
    let hostname = if config.hostname.is_empty() {
        node_hostname()
    } else {
        config.hostname.clone()
    };
    let cgroup = inner.host.cgroups.pod_cgroup(&config.cgroup_parent, &id)?;
    let mut record = SandboxRecord {
        id: id.clone(),
        metadata: config.metadata.clone(),
        phase: Phase::Creating,
        created_at_ns: berth_clock::now_ns(),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: config.runtime_handler.clone(),
        hostname,
        log_directory: config.log_directory.clone(),
        namespaces: config.namespaces.clone(),
        dns: config.dns.clone(),
        port_mappings: config.port_mappings.clone(),
        sysctls: config.sysctls.clone(),
        dir,
        netns: None,
        ipcns: None,
        utsns: None,
        shm: None,
        cgroup: Some(cgroup),
        network: None,
        network_pending: false,
        init: None,
        seccomp_profile: config.seccomp_profile.clone(),
        userns: config.userns.clone(),
        userns_path: None,
    };
    // Written before the first side effect: a crash from here on leaves a record to clean up from.
    inner.save(&record).await?;
    berth_failpoint::fail("sandbox/run/after-record").map_err(SandboxError::Failpoint)?;
    match setup(inner, &mut record, &config).await {
        Ok(()) => {
            record.phase = Phase::Created;
            if let Err(e) = inner.save(&record).await {
                undo(inner, &record, containers).await;
                return Err(e);
            }
            tracing::info!(
                sandbox_id = %id,
                pod = %format!("{}/{}", config.metadata.namespace, config.metadata.name),
                ips = ?record.ips(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "pod sandbox ready"
            );
            Ok(id)
        }
        Err(e) => {
            tracing::warn!(sandbox_id = %id, error = %e, "RunPodSandbox failed; rolling back");
            undo(inner, &record, containers).await;
            Err(e)
        }
    }
}

/// The side effects, in order. The record is written once before the CNI ADD (with everything
/// made so far, and the ADD marked pending); the caller writes it with the ADD result.
async fn setup(
    inner: &Arc<Inner>,
    record: &mut SandboxRecord,
    config: &SandboxConfig,
) -> Result<(), SandboxError> {
    let host_network = config.namespaces.host_network();
    let host_ipc = config.namespaces.host_ipc();
    let mut phases = Phases::start();
    files::create_dir(&record.dir)?;

    // Namespaces: the pod's own network, IPC and UTS (UTS follows the network, as in Kubernetes:
    // a host-network pod has the node's hostname).
    let mut kinds = Vec::new();
    if !host_network {
        kinds.push(NsKind::Net);
        kinds.push(NsKind::Uts);
    }
    if !host_ipc {
        kinds.push(NsKind::Ipc);
    }
    if !kinds.is_empty() {
        let ns_dir = record.dir.join("ns");
        let hostname = (!host_network).then_some(record.hostname.clone());
        let sysctls = config.sysctls.clone();
        let userns = config.userns.clone();
        let service = inner.clone();
        let pinned = tokio::task::spawn_blocking(move || {
            service.host.namespaces.pin(&berth_namespace::PinRequest {
                dir: &ns_dir,
                kinds: &kinds,
                hostname: hostname.as_deref(),
                sysctls: &sysctls,
                userns: userns.as_ref(),
            })
        })
        .await
        .map_err(SandboxError::task("namespace"))??;
        record.netns = pinned.net;
        record.utsns = pinned.uts;
        record.ipcns = pinned.ipc;
        record.userns_path = pinned.user;
    }
    phases.mark("namespaces");
    berth_failpoint::fail("sandbox/run/after-namespaces").map_err(SandboxError::Failpoint)?;
    if !host_ipc {
        record.shm = Some(inner.host.shm.mount(&record.dir)?);
    }
    // The directories Berth is about to make (only those are Berth's to remove) are recorded
    // before the first mkdir: a crash inside `ensure`, which makes one per hierarchy, would
    // otherwise leave them behind for good. kubelet normally makes the pod cgroup itself, so
    // this write costs kubelet's pods nothing.
    let planned = match record.cgroup.as_mut() {
        Some(cgroup) => inner.host.cgroups.plan(cgroup)?,
        None => false,
    };
    if planned {
        inner.save(record).await?;
    }
    if let Some(cgroup) = record.cgroup.as_mut() {
        let resources = net::cgroup_resources(&config.resources, &config.overhead);
        inner.host.cgroups.ensure(cgroup, &resources)?;
    }
    phases.mark("shm+cgroup");
    berth_failpoint::fail("sandbox/run/after-cgroup").map_err(SandboxError::Failpoint)?;
    if config.namespaces.pid == NamespaceMode::Pod {
        let procs = match &record.cgroup {
            Some(cgroup) => inner.host.cgroups.init_procs_files(cgroup)?,
            None => Vec::new(),
        };
        record.init = Some(inner.host.inits.start(&procs)?);
        phases.mark("init");
    }
    // One durable write for all of the above (each record write is an fsync, and RunPodSandbox
    // is on kubelet's critical path). A crash before it leaves only what teardown finds by path
    // (namespaces, shm under the sandbox dir); after it, everything is recorded.
    record.network_pending = record.netns.is_some();
    inner.save(record).await?;
    phases.mark("record");
    berth_failpoint::fail("sandbox/run/before-cni").map_err(SandboxError::Failpoint)?;

    if let Some(netns) = record.netns.clone() {
        // A failed ADD is rolled back by the CNI runtime itself.
        let added = net::setup(inner, record, &netns).await;
        record.network_pending = false;
        record.network = Some(added?);
        // Saved with the Created phase by the caller, before RunPodSandbox returns.
        phases.mark("cni");
        berth_failpoint::fail("sandbox/run/after-cni").map_err(SandboxError::Failpoint)?;
    }
    files::write_pod_files(
        &record.dir,
        record.dns.as_ref(),
        &record.hostname,
        host_network,
        &record.ips(),
    )?;
    phases.mark("files");
    berth_failpoint::fail("sandbox/run/before-final-save").map_err(SandboxError::Failpoint)?;
    tracing::debug!(sandbox_id = %record.id, phases = %phases, "pod sandbox set up");
    Ok(())
}

/// Where RunPodSandbox spends its time, for the debug log.
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((phase, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (phase, took)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{phase}={:.2}ms", took.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// Undoes a failed RunPodSandbox completely, including its record.
async fn undo(inner: &Arc<Inner>, record: &SandboxRecord, containers: &dyn PodContainers) {
    if let Err(e) = teardown(inner, record, true, containers).await {
        tracing::warn!(sandbox_id = %record.id, error = %e, "rolling back a failed RunPodSandbox");
        return;
    }
    if let Err(e) = inner.delete(&record.id).await {
        tracing::warn!(sandbox_id = %record.id, error = %e, "deleting the record of a failed RunPodSandbox");
    }
}

/// Stop: the containers, then the network (CNI DEL with the persisted result; a broken CNI is
/// logged, never fatal). The namespaces stay pinned until Remove: nothing runs in them any more,
/// and kubelet may still inspect the stopped pod.
async fn stop_steps(
    inner: &Arc<Inner>,
    record: &mut SandboxRecord,
    containers: &dyn PodContainers,
) -> Result<(), SandboxError> {
    containers.stop_all(&record.id).await?;
    berth_failpoint::fail("sandbox/stop/after-containers").map_err(SandboxError::Failpoint)?;
    if let Some(init) = &record.init {
        inner.host.inits.stop(init);
    }
    if record.network.is_some() || record.network_pending {
        match net::teardown(inner, record).await {
            Ok(()) => {
                record.network = None;
                record.network_pending = false;
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %record.id, error = %e, "CNI DEL failed; the pod's IP may stay reserved")
            }
        }
    }
    Ok(())
}

pub(crate) async fn stop(
    inner: &Arc<Inner>,
    id: &str,
    containers: &dyn PodContainers,
) -> Result<(), SandboxError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let Some(mut record) = inner.records().get(id).cloned() else {
        return Err(SandboxError::NotFound(id.to_string()));
    };
    if record.phase == Phase::Stopped {
        return Ok(());
    }
    stop_steps(inner, &mut record, containers).await?;
    berth_failpoint::fail("sandbox/stop/after-cni").map_err(SandboxError::Failpoint)?;
    record.phase = Phase::Stopped;
    inner.save(&record).await?;
    tracing::info!(sandbox_id = %id, "pod sandbox stopped");
    Ok(())
}

/// Everything a sandbox may have, removed in reverse order of creation. Every step tolerates what
/// it removes being gone already. `network_too`: also run the stop steps (remove without stop, or
/// a rollback).
async fn teardown(
    inner: &Arc<Inner>,
    record: &SandboxRecord,
    network_too: bool,
    containers: &dyn PodContainers,
) -> Result<(), SandboxError> {
    let mut record = record.clone();
    if network_too {
        stop_steps(inner, &mut record, containers).await?;
    }
    berth_failpoint::fail("sandbox/remove/after-stop").map_err(SandboxError::Failpoint)?;
    containers.remove_all(&record.id).await?;
    berth_failpoint::fail("sandbox/remove/after-containers").map_err(SandboxError::Failpoint)?;
    // By path, not by record: a crash may have come before the record said it was mounted.
    inner.host.shm.unmount(&record.dir.join(files::SHM))?;
    berth_failpoint::fail("sandbox/remove/after-shm").map_err(SandboxError::Failpoint)?;
    inner.host.namespaces.unpin(&record.dir.join("ns"))?;
    berth_failpoint::fail("sandbox/remove/after-unpin").map_err(SandboxError::Failpoint)?;
    if let Some(init) = &record.init {
        // Stop only signals it; its cgroup cannot go while it is still exiting.
        inner.host.inits.stop_and_wait(init).await?;
    }
    if let Some(cgroup) = &record.cgroup {
        kill_leftovers(inner, &record.id, cgroup).await?;
        inner.host.cgroups.remove(cgroup)?;
    }
    berth_failpoint::fail("sandbox/remove/after-cgroup").map_err(SandboxError::Failpoint)?;
    files::remove_dir(&record.dir)
}

/// Kills whatever still runs in the pod's own cgroups, which would keep them from being removed
/// on every retry. The containers are gone by now and a recorded init has exited, so anything
/// left is a leftover: an init berthd started but died before recording (its record is written
/// once, after the start), or a helper of the container layer that outlived it.
async fn kill_leftovers(
    inner: &Arc<Inner>,
    id: &str,
    cgroup: &berth_cgroup::PodCgroup,
) -> Result<(), SandboxError> {
    let service = inner.clone();
    let cgroup = cgroup.clone();
    // Blocks while the killed processes exit (a PID namespace's init waits for the rest).
    let killed = tokio::task::spawn_blocking(move || service.host.cgroups.kill_leftovers(&cgroup))
        .await
        .map_err(SandboxError::task("cgroup cleanup"))??;
    if !killed.is_empty() {
        tracing::warn!(sandbox_id = %id, pids = ?killed, "killed processes left in the pod cgroup");
    }
    Ok(())
}

pub(crate) async fn remove(
    inner: &Arc<Inner>,
    id: &str,
    containers: &dyn PodContainers,
) -> Result<(), SandboxError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let Some(mut record) = inner.records().get(id).cloned() else {
        return Ok(());
    };
    if record.phase != Phase::Stopped {
        stop_steps(inner, &mut record, containers).await?;
    }
    if record.network.is_some() || record.network_pending {
        // The CNI DEL failed at stop, where it is only logged so that a broken plugin never
        // blocks a stop. Here it is retried and a failure is an error: the pod stays, and
        // kubelet's retry of RemovePodSandbox tries again instead of the pod's IP leaking.
        net::teardown(inner, &record).await?;
        record.network = None;
        record.network_pending = false;
        inner.save(&record).await?;
    }
    teardown(inner, &record, false, containers).await?;
    berth_failpoint::fail("sandbox/remove/before-delete").map_err(SandboxError::Failpoint)?;
    inner.delete(id).await?;
    drop(_guard);
    inner.forget_lock(id);
    tracing::info!(sandbox_id = %id, "pod sandbox removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NamespaceOptions, UserNamespaceMappings};

    fn pod_ns() -> NamespaceOptions {
        NamespaceOptions {
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
            target_id: String::new(),
        }
    }

    #[test]
    fn user_namespace_rules() {
        let maps = UserNamespaceMappings::single(65536, 65536);
        check_userns(&pod_ns(), &maps, || None).unwrap();
        let invalid = |ns: NamespaceOptions, maps: &UserNamespaceMappings| match check_userns(
            &ns,
            maps,
            || None,
        ) {
            Err(SandboxError::InvalidNamespaces(_)) => {}
            Err(SandboxError::Namespace(berth_namespace::NamespaceError::InvalidIdMappings {
                ..
            })) => {}
            other => panic!("{ns:?} {maps:?}: {other:?}"),
        };
        invalid(pod_ns(), &UserNamespaceMappings::default());
        invalid(pod_ns(), &UserNamespaceMappings::single(0, 65536));
        for edit in [
            |n: &mut NamespaceOptions| n.network = NamespaceMode::Node,
            |n: &mut NamespaceOptions| n.ipc = NamespaceMode::Node,
            |n: &mut NamespaceOptions| n.pid = NamespaceMode::Node,
            |n: &mut NamespaceOptions| n.pid = NamespaceMode::Pod,
        ] {
            let mut ns = pod_ns();
            edit(&mut ns);
            invalid(ns, &maps);
        }
        // The request's own errors come first; then what the node lacks.
        let err = check_userns(&pod_ns(), &maps, || Some("no idmap".into())).unwrap_err();
        assert!(
            matches!(&err, SandboxError::UserNamespacesUnavailable { problem } if problem.contains("no idmap")),
            "{err:?}"
        );
    }
}
