//! Plans for hosts configured in a containerd host directory (`registry.config_path`), read with
//! `berth_config::hosts_dir` (which knows the file format); this turns them into endpoints.

use std::collections::HashMap;
use std::path::Path;

use berth_config::hosts_dir::{HostEndpoint, HostsFile, read_hosts_dir};

use crate::endpoint::{ClientCert, Endpoint, HostPlan, TlsKey, parse_mirror};
use crate::error::RegistryError;
use crate::reference::DOCKER_HUB;

/// Reads `dir` and plans every namespace in it, keyed by registry host (and `_default`).
pub(crate) fn plans(dir: &Path) -> Result<HashMap<String, HostPlan>, RegistryError> {
    let files = read_hosts_dir(dir).map_err(|source| RegistryError::HostsDir { source })?;
    let mut out = HashMap::new();
    for (key, file) in files {
        for what in &file.ignored {
            tracing::warn!(file = %file.source.display(), "ignoring {what}");
        }
        out.insert(key.clone(), plan(&key, &file)?);
    }
    Ok(out)
}

fn tls(e: &HostEndpoint) -> TlsKey {
    let mut ca_files = e.ca_files.clone();
    ca_files.sort();
    ca_files.dedup();
    TlsKey {
        insecure: e.skip_verify,
        ca_files,
        client: e
            .client
            .as_ref()
            .and_then(|(cert, key)| ClientCert::new(Some(cert), key.as_ref())),
    }
}

fn plan(key: &str, file: &HostsFile) -> Result<HostPlan, RegistryError> {
    let mut mirrors = Vec::new();
    for e in &file.endpoints {
        let url = parse_mirror(&e.url).map_err(|reason| RegistryError::Config {
            host: key.to_string(),
            reason: format!("{}: host {:?}: {reason}", file.source.display(), e.url),
        })?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        // The registry's own server (containerd's `server`) gets no `?ns=`; anything else is a
        // mirror, as containerd treats hosts that differ from the namespace.
        let own = authority == key || (key == DOCKER_HUB && authority == "registry-1.docker.io");
        mirrors.push(Endpoint::with(
            &url,
            !own,
            tls(e),
            e.headers.clone(),
            e.resolve,
            e.override_path,
        ));
    }
    Ok(HostPlan {
        mirrors,
        origin_tls: tls(&file.origin),
        origin_headers: file.origin.headers.clone(),
        insecure: file.origin.skip_verify,
        has_ca: !file.origin.ca_files.is_empty(),
        skip_origin: file.skip_origin,
        configures_endpoints: true,
        credentials: None,
    })
}
