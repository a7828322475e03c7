//! The /etc/hosts each pod's containers get, as kubelet writes it (kubelet_pods.go's
//! managedHostsFileContent), plus the pod's hostAliases and one line per pod of the play, so
//! pods reach each other by name as compose services do. Later pods are added to earlier pods'
//! files as they start: the file is rewritten in place (same inode), which a bind mount shows.
//! A host-network pod gets the node's /etc/hosts (as kubelet gives it) with the same lines
//! added; host-network pods themselves are not listed (their address is the node's).

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::parse::PlayPod;

/// The hosts file of `pod`; `peers` are `(name, ip)` of the play's pods started so far.
pub fn content(pod: &PlayPod, own_ip: &str, project: &str, peers: &[(String, String)]) -> String {
    let node = if pod.spec.host_network {
        std::fs::read_to_string(NODE_HOSTS).unwrap_or_default()
    } else {
        String::new()
    };
    own(pod, own_ip, node) + &play_lines(pod, project, peers)
}

/// The node's hosts file, which kubelet gives host-network pods (a copy of it).
const NODE_HOSTS: &str = "/etc/hosts";

/// The pod's own part: kubelet's managed file, or the node's for a host-network pod.
fn own(pod: &PlayPod, own_ip: &str, node: String) -> String {
    if pod.spec.host_network {
        let mut node = node;
        if !node.is_empty() && !node.ends_with('\n') {
            node.push('\n');
        }
        return node;
    }
    let mut out = String::from(
        "# Kubernetes-managed hosts file (written by berth play).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let hostname = pod
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| pod.name.clone());
    if !own_ip.is_empty() {
        match &pod.spec.subdomain {
            Some(sub) if !sub.is_empty() => out.push_str(&format!(
                "{own_ip}\t{hostname}.{sub}.{}.svc.cluster.local\t{hostname}\n",
                pod.namespace
            )),
            _ => out.push_str(&format!("{own_ip}\t{hostname}\n")),
        }
    }
    if !pod.spec.host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in &pod.spec.host_aliases {
            out.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
        }
    }
    out
}

fn play_lines(pod: &PlayPod, project: &str, peers: &[(String, String)]) -> String {
    let mut out = String::new();
    let others: Vec<_> = peers
        .iter()
        .filter(|(name, ip)| *name != pod.name && !ip.is_empty())
        .collect();
    if !others.is_empty() {
        out.push_str(&format!("\n# Pods of berth play {project}.\n"));
        for (name, ip) in others {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    out
}

/// Writes `content` into `path` in place: truncating the file keeps its inode, so containers
/// that have it bind-mounted see the new content.
pub fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
