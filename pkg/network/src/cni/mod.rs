//! The runtime side of the CNI specification (<https://github.com/containernetworking/cni/blob/main/SPEC.md>):
//! choosing the network configuration, running plugins with the right environment and stdin, and
//! chaining them for ADD, DEL and CHECK.
//!
//! [`Cni`] is the entry point; the rest is exposed for callers that need the pieces (readiness,
//! `crictl info`-style reporting, tests).

mod args;
mod config;
mod error;
// kill(2) of a timed-out plugin's process group.
#[allow(unsafe_code)]
mod exec;
mod list;
mod metrics;
mod network;
mod result;
mod runtime_config;
mod version;

pub use args::{Command, DEFAULT_IFNAME, PluginEnv, PodArgs, check_container_id, cni_args};
pub use config::{NetworkConfigList, PluginConfig, SelectedNetwork, find_plugin, load_network};
pub use error::CniError;
pub use exec::{PluginCall, PluginExecutor, ProcessExecutor};
pub use metrics::CniMetrics;
pub use network::{Cni, PodNetwork, PodNetworkRequest};
pub use result::{CniResult, Interface, IpConfig, PluginError, ResultDns, Route};
pub use runtime_config::{Bandwidth, CapabilityArgs, Dns, PortMapping, Protocol};
pub use version::{PluginVersions, SUPPORTED_VERSIONS, Version};

#[cfg(test)]
mod tests;
