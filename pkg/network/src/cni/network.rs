//! The pod network: what the sandbox code calls to set up, check and tear down a pod's network.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PodCidrStore;
use crate::cni::args::{DEFAULT_IFNAME, PodArgs, check_container_id, cni_args};
use crate::cni::config::{NetworkConfigList, SelectedNetwork, load_network};
use crate::cni::exec::{PluginExecutor, ProcessExecutor};
use crate::cni::list::{self, ListCall};
use crate::cni::runtime_config::{Bandwidth, CapabilityArgs, Dns, PortMapping};
use crate::cni::version::PluginVersions;
use crate::cni::{CniError, CniMetrics, Command, PluginEnv};

/// What the sandbox knows about a pod when it sets up its network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetworkRequest {
    /// The sandbox ID: CNI_CONTAINERID, and the key plugins (host-local, portmap) file state under.
    pub sandbox_id: String,
    /// Required for setup and check. For teardown, `None` or a path that no longer exists (the
    /// namespace was unpinned, or the node rebooted) becomes an empty CNI_NETNS.
    pub netns: Option<PathBuf>,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default)]
    pub dns: Option<Dns>,
    #[serde(default)]
    pub bandwidth: Option<Bandwidth>,
    /// CIDRs for the `ipRanges` capability; when empty, [`Cni::with_pod_cidrs`]'s store fills them.
    #[serde(default)]
    pub ip_ranges: Vec<String>,
}

/// A pod network that was set up: everything needed to check or tear it down, in one serializable
/// value. Persist it before RunPodSandbox returns; `cni.teardown(&net.request, Some(&net))` needs
/// nothing else, neither the conf dir (it may have changed or gone) nor the netns (gone after a
/// reboot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    pub network_name: String,
    /// The pod's IPs, primary first, IPv4 before IPv6.
    pub ips: Vec<IpAddr>,
    /// The final ADD result, passed back to plugins as `prevResult` on CHECK and DEL.
    pub result_json: String,
    /// Where the configuration was read from (informational: teardown uses `config_list`).
    pub config_file: PathBuf,
    /// The network configuration list used at ADD time, in `.conflist` form.
    pub config_list: String,
    pub ifname: String,
    /// The request as completed at ADD time (with `ip_ranges` filled), because plugins need the same
    /// capability arguments on DEL: portmap only removes the port mappings it is told about.
    pub request: PodNetworkRequest,
}

/// The CNI runtime of a node: one conf dir, its bin dirs, and a per-plugin-call timeout.
#[derive(Clone)]
pub struct Cni {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    timeout: Duration,
    metrics: Option<CniMetrics>,
    pod_cidrs: Option<Arc<PodCidrStore>>,
    /// Runs the plugins: [`ProcessExecutor`] unless [`Cni::with_executor`] replaced it.
    executor: Arc<dyn PluginExecutor>,
}

impl Cni {
    /// `timeout` bounds each plugin call, not a whole operation: a list of three plugins may take
    /// three times as long (and twice that again when a failed ADD is rolled back).
    pub fn new(conf_dir: impl Into<PathBuf>, bin_dirs: Vec<PathBuf>, timeout: Duration) -> Cni {
        Cni {
            conf_dir: conf_dir.into(),
            bin_dirs,
            timeout,
            metrics: None,
            pod_cidrs: None,
            executor: Arc::new(ProcessExecutor),
        }
    }

    /// Runs plugins through `executor` instead of as child processes (tests: canned results).
    pub fn with_executor(mut self, executor: Arc<dyn PluginExecutor>) -> Cni {
        self.executor = executor;
        self
    }

    pub fn with_metrics(mut self, metrics: CniMetrics) -> Cni {
        self.metrics = Some(metrics);
        self
    }

    /// Requests without `ip_ranges` get the node's pod CIDRs (from UpdateRuntimeConfig) instead.
    pub fn with_pod_cidrs(mut self, store: Arc<PodCidrStore>) -> Cni {
        self.pod_cidrs = Some(store);
        self
    }

    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    pub fn bin_dirs(&self) -> &[PathBuf] {
        &self.bin_dirs
    }

    /// The configuration setup would use now (reads the conf dir; no plugin is run).
    pub fn network(&self) -> Result<SelectedNetwork, CniError> {
        load_network(&self.conf_dir, &self.bin_dirs)
    }

    /// [`Cni::network`], plus asking every plugin by VERSION whether it speaks the list's version.
    pub async fn validate(&self) -> Result<SelectedNetwork, CniError> {
        let selected = self.network()?;
        list::validate_versions(
            self.executor.as_ref(),
            &selected.list,
            &self.bin_dirs,
            self.timeout,
        )
        .await?;
        Ok(selected)
    }

    pub async fn plugin_versions(&self, plugin_type: &str) -> Result<PluginVersions, CniError> {
        list::plugin_versions(
            self.executor.as_ref(),
            &self.bin_dirs,
            plugin_type,
            self.timeout,
        )
        .await
    }

    /// ADD on the current configuration. On failure, whatever the list had set up is deleted again.
    pub async fn setup(&self, req: &PodNetworkRequest) -> Result<PodNetwork, CniError> {
        let started = Instant::now();
        let outcome = self.setup_inner(req).await;
        self.observe(Command::Add, started, outcome.is_ok());
        outcome
    }

    async fn setup_inner(&self, req: &PodNetworkRequest) -> Result<PodNetwork, CniError> {
        check_container_id(&req.sandbox_id)?;
        let netns = required_netns(req)?;
        let mut request = req.clone();
        if request.ip_ranges.is_empty()
            && let Some(store) = &self.pod_cidrs
        {
            request.ip_ranges = store.get().0.iter().map(ToString::to_string).collect();
        }
        let selected = self.network()?;
        let env = self.env(&request, DEFAULT_IFNAME, netns)?;
        let caps = capability_args(&request);
        let added = self.list_call(&selected.list, &env, &caps).add().await?;
        let config_list = String::from_utf8(selected.list.as_bytes().to_vec()).map_err(|e| {
            CniError::InvalidConfig {
                origin: selected.config_file.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        tracing::info!(
            sandbox_id = %request.sandbox_id,
            network = selected.list.name(),
            ips = ?added.result.pod_ips(),
            "pod network set up"
        );
        Ok(PodNetwork {
            network_name: selected.list.name().to_string(),
            ips: added.result.pod_ips(),
            result_json: added.raw.to_string(),
            config_file: selected.config_file,
            config_list,
            ifname: DEFAULT_IFNAME.to_string(),
            request,
        })
    }

    /// DEL. With `cached` (the persisted setup), the configuration and result recorded at ADD time
    /// are used, so this works after the conf dir changed or vanished; without it (berthd died
    /// before persisting), the current configuration and no prevResult. Pod identity, capability
    /// arguments (portmap only removes the mappings it is told about) and netns come from `req`;
    /// `cached.request` is the ADD-time request when the caller has nothing newer. A missing
    /// netns becomes an empty CNI_NETNS, as with libcni, so IPAM still frees the address. DEL of
    /// a network never set up succeeds: plugins are idempotent.
    pub async fn teardown(
        &self,
        req: &PodNetworkRequest,
        cached: Option<&PodNetwork>,
    ) -> Result<(), CniError> {
        let started = Instant::now();
        let outcome = self.teardown_inner(req, cached).await;
        self.observe(Command::Del, started, outcome.is_ok());
        outcome
    }

    async fn teardown_inner(
        &self,
        req: &PodNetworkRequest,
        cached: Option<&PodNetwork>,
    ) -> Result<(), CniError> {
        check_container_id(&req.sandbox_id)?;
        let (list, prev, ifname) = match cached {
            Some(network) => {
                let prev = serde_json::from_str::<Value>(&network.result_json)
                    .inspect_err(|e| {
                        tracing::warn!(
                            sandbox_id = %req.sandbox_id,
                            error = %e,
                            "persisted CNI result is not JSON; deleting without prevResult"
                        );
                    })
                    .ok();
                (persisted_list(network)?, prev, network.ifname.as_str())
            }
            None => (self.network()?.list, None, DEFAULT_IFNAME),
        };
        let env = self.env(req, ifname, existing_netns(req.netns.as_deref()))?;
        let caps = capability_args(req);
        self.list_call(&list, &env, &caps).del(prev.as_ref()).await
    }

    /// CHECK against the recorded result; Ok without running anything when the list disables CHECK
    /// or its version predates it.
    pub async fn check(&self, network: &PodNetwork) -> Result<(), CniError> {
        let started = Instant::now();
        let outcome = async {
            let request = &network.request;
            check_container_id(&request.sandbox_id)?;
            let list = persisted_list(network)?;
            if !list::check_applies(&list) {
                return Ok(());
            }
            let netns = required_netns(request)?;
            let cached: Value = serde_json::from_str(&network.result_json).map_err(|e| {
                CniError::InvalidConfig {
                    origin: format!("persisted CNI result of sandbox {}", request.sandbox_id),
                    reason: e.to_string(),
                }
            })?;
            let env = self.env(request, &network.ifname, netns)?;
            let caps = capability_args(request);
            self.list_call(&list, &env, &caps).check(&cached).await
        }
        .await;
        self.observe(Command::Check, started, outcome.is_ok());
        outcome
    }

    fn env(
        &self,
        req: &PodNetworkRequest,
        ifname: &str,
        netns: PathBuf,
    ) -> Result<PluginEnv, CniError> {
        let args = cni_args(&PodArgs {
            namespace: &req.pod_namespace,
            name: &req.pod_name,
            infra_container_id: &req.sandbox_id,
            uid: &req.pod_uid,
        })?;
        Ok(PluginEnv {
            container_id: req.sandbox_id.clone(),
            netns,
            ifname: ifname.to_string(),
            args,
            bin_dirs: self.bin_dirs.clone(),
        })
    }

    fn list_call<'a>(
        &'a self,
        list: &'a NetworkConfigList,
        env: &'a PluginEnv,
        caps: &'a CapabilityArgs,
    ) -> ListCall<'a> {
        ListCall {
            list,
            env,
            caps,
            timeout: self.timeout,
            executor: self.executor.as_ref(),
        }
    }

    fn observe(&self, op: Command, started: Instant, success: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.observe(op, started, success);
        }
    }
}

fn capability_args(req: &PodNetworkRequest) -> CapabilityArgs {
    CapabilityArgs::new(
        &req.port_mappings,
        req.dns.as_ref(),
        req.bandwidth.as_ref(),
        &req.ip_ranges,
    )
}

fn persisted_list(network: &PodNetwork) -> Result<NetworkConfigList, CniError> {
    NetworkConfigList::from_conflist_bytes(
        network.config_list.as_bytes(),
        &format!(
            "persisted with sandbox {} (from {})",
            network.request.sandbox_id,
            network.config_file.display()
        ),
    )
}

/// A netns path that no longer exists (the pod's namespace was unmounted, or the node rebooted)
/// becomes the empty CNI_NETNS that tells plugins to skip in-namespace cleanup.
fn existing_netns(netns: Option<&Path>) -> PathBuf {
    match netns {
        Some(path) if !path.as_os_str().is_empty() && path.exists() => path.to_path_buf(),
        _ => PathBuf::new(),
    }
}

/// ADD and CHECK work inside the namespace: it has to be there.
fn required_netns(req: &PodNetworkRequest) -> Result<PathBuf, CniError> {
    let Some(netns) = &req.netns else {
        return Err(CniError::InvalidRequest("no netns path".to_string()));
    };
    if !netns.is_absolute() {
        return Err(CniError::InvalidRequest(format!(
            "netns path {} is not absolute",
            netns.display()
        )));
    }
    if !netns.exists() {
        return Err(CniError::NetnsMissing {
            path: netns.clone(),
        });
    }
    Ok(netns.clone())
}
