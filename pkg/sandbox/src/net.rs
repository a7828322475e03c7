//! The sandbox's side of CNI and cgroups: translating the pod's config into the requests the
//! network and cgroup crates take.

use std::path::Path;
use std::sync::Arc;

use crate::Inner;
use crate::config::Resources;
use crate::error::SandboxError;
use crate::record::SandboxRecord;

/// The CNI request for this pod; `ip_ranges` stay empty so the CNI runtime fills in kubelet's pod
/// CIDR.
fn request(record: &SandboxRecord, netns: Option<&Path>) -> berth_network::PodNetworkRequest {
    berth_network::PodNetworkRequest {
        sandbox_id: record.id.clone(),
        netns: netns.map(Path::to_path_buf),
        pod_name: record.metadata.name.clone(),
        pod_namespace: record.metadata.namespace.clone(),
        pod_uid: record.metadata.uid.clone(),
        port_mappings: record.port_mappings.clone(),
        dns: record.dns.clone(),
        // Validated by RunPodSandbox, so only an old record could fail here: then no shaping.
        bandwidth: crate::bandwidth::from_annotations(&record.annotations)
            .ok()
            .flatten(),
        ip_ranges: Vec::new(),
    }
}

pub(crate) async fn setup(
    inner: &Arc<Inner>,
    record: &SandboxRecord,
    netns: &Path,
) -> Result<berth_network::PodNetwork, SandboxError> {
    let req = request(record, Some(netns));
    Ok(inner.cni.setup(&req).await?)
}

/// CNI DEL with the persisted ADD result (and the network config it was made with). A netns that
/// is gone (reboot) is passed as empty, so IPAM still releases the address.
pub(crate) async fn teardown(
    inner: &Arc<Inner>,
    record: &SandboxRecord,
) -> Result<(), SandboxError> {
    let netns = record
        .netns
        .as_deref()
        .filter(|ns| inner.host.namespaces.is_pinned(ns));
    // After ADD, the request as it was then (with the pod CIDR it used) is in the blob.
    let req = match &record.network {
        Some(network) => {
            let mut req = network.request.clone();
            req.netns = netns.map(Path::to_path_buf);
            req
        }
        None => request(record, netns),
    };
    Ok(inner.cni.teardown(&req, record.network.as_ref()).await?)
}

pub(crate) fn cgroup_resources(
    resources: &Resources,
    overhead: &Resources,
) -> berth_cgroup::PodResources {
    let convert = |r: &Resources| berth_cgroup::PodResources {
        cpu_shares: r.cpu_shares,
        cpu_quota: r.cpu_quota,
        cpu_period: r.cpu_period,
        memory_limit: r.memory_limit,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r.hugepage_limits.clone(),
        unified: r.unified.clone(),
    };
    convert(resources).with_overhead(&convert(overhead))
}
