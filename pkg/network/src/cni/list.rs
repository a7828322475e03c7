//! ADD, DEL, CHECK and VERSION on a network configuration list (spec section "Network
//! configuration list runtime semantics").

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::cni::config::{NetworkConfigList, PluginConfig, find_plugin};
use crate::cni::exec::{PluginCall, PluginExecutor};
use crate::cni::result::CniResult;
use crate::cni::runtime_config::{CapabilityArgs, plugin_stdin};
use crate::cni::version::{PluginVersions, SUPPORTED_VERSIONS, Version};
use crate::cni::{CniError, Command, PluginEnv};

/// The result of a successful ADD: parsed for the caller, raw for persisting and `prevResult`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AddResult {
    pub result: CniResult,
    pub raw: Value,
}

/// One pod's invocation of one list.
pub(crate) struct ListCall<'a> {
    pub list: &'a NetworkConfigList,
    pub env: &'a PluginEnv,
    pub caps: &'a CapabilityArgs,
    pub timeout: Duration,
    pub executor: &'a dyn PluginExecutor,
}

impl ListCall<'_> {
    async fn call(
        &self,
        plugin: &PluginConfig,
        command: Command,
        prev_result: Option<&Value>,
    ) -> Result<Vec<u8>, CniError> {
        let path = find_plugin(&self.env.bin_dirs, plugin.plugin_type())?;
        let stdin = plugin_stdin(self.list, plugin, self.caps, prev_result);
        let env = self.env.vars(command);
        tracing::debug!(
            plugin = plugin.plugin_type(),
            %command,
            container_id = %self.env.container_id,
            "invoking CNI plugin"
        );
        self.executor
            .run(PluginCall {
                path: &path,
                plugin: plugin.plugin_type(),
                command,
                env: &env,
                stdin: &stdin,
                timeout: self.timeout,
            })
            .await
    }

    /// Each plugin in order, each getting the previous one's result; the last result is the list's.
    /// If plugin k fails, the whole list is deleted in reverse so nothing the first k-1 plugins set
    /// up (an IP, a veth, iptables rules) outlives the failed setup; the ADD error is returned.
    pub async fn add(&self) -> Result<AddResult, CniError> {
        let mut last: Option<AddResult> = None;
        for plugin in self.list.plugins() {
            let prev = last.as_ref().map(|r| &r.raw);
            let outcome = self
                .call(plugin, Command::Add, prev)
                .await
                .and_then(|out| parse_result(plugin, &out));
            match outcome {
                Ok(result) => last = Some(result),
                Err(error) => {
                    if let Err(rollback) = self.del(last.as_ref().map(|r| &r.raw)).await {
                        tracing::warn!(
                            network = self.list.name(),
                            container_id = %self.env.container_id,
                            error = %rollback,
                            "rolling back a failed CNI ADD"
                        );
                    }
                    return Err(error);
                }
            }
        }
        last.ok_or_else(|| CniError::InvalidConfig {
            origin: self.list.name().to_string(),
            reason: "no plugins".to_string(),
        })
    }

    /// Every plugin in reverse order, even after one failed: plugins' DEL is idempotent, so deleting
    /// what was never (fully) added is fine, while stopping early would leak what later plugins hold.
    pub async fn del(&self, cached: Option<&Value>) -> Result<(), CniError> {
        let mut errors = Vec::new();
        for plugin in self.list.plugins().iter().rev() {
            if let Err(e) = self.call(plugin, Command::Del, cached).await {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::Teardown { errors })
        }
    }

    /// Each plugin in order with the cached ADD result; skipped (Ok) when the list disables CHECK
    /// or predates it (< 0.4.0), as the spec requires.
    pub async fn check(&self, cached: &Value) -> Result<(), CniError> {
        if !check_applies(self.list) {
            return Ok(());
        }
        for plugin in self.list.plugins() {
            self.call(plugin, Command::Check, Some(cached)).await?;
        }
        Ok(())
    }
}

pub(crate) fn check_applies(list: &NetworkConfigList) -> bool {
    !list.disable_check() && Version::parse(list.cni_version()).is_some_and(|v| v >= Version::CHECK)
}

fn parse_result(plugin: &PluginConfig, out: &[u8]) -> Result<AddResult, CniError> {
    CniResult::parse(out)
        .map(|(result, raw)| AddResult { result, raw })
        .map_err(|reason| CniError::PluginOutput {
            plugin: plugin.plugin_type().to_string(),
            command: Command::Add,
            reason,
            output: crate::cni::error::excerpt(out),
        })
}

/// Asks a plugin which spec versions it speaks.
pub(crate) async fn plugin_versions(
    executor: &dyn PluginExecutor,
    bin_dirs: &[PathBuf],
    plugin_type: &str,
    timeout: Duration,
) -> Result<PluginVersions, CniError> {
    let path = find_plugin(bin_dirs, plugin_type)?;
    let env = PluginEnv {
        container_id: String::new(),
        netns: PathBuf::new(),
        ifname: String::new(),
        args: String::new(),
        bin_dirs: bin_dirs.to_vec(),
    }
    .vars(Command::Version);
    let latest = SUPPORTED_VERSIONS.last().copied().unwrap_or("1.0.0");
    let stdin = serde_json::json!({ "cniVersion": latest }).to_string();
    let out = executor
        .run(PluginCall {
            path: &path,
            plugin: plugin_type,
            command: Command::Version,
            env: &env,
            stdin: stdin.as_bytes(),
            timeout,
        })
        .await?;
    serde_json::from_slice(&out).map_err(|e| CniError::PluginOutput {
        plugin: plugin_type.to_string(),
        command: Command::Version,
        reason: format!("not a VERSION result: {e}"),
        output: crate::cni::error::excerpt(&out),
    })
}

/// Checks, by VERSION, that every plugin of the list speaks the list's version; plugins that do not
/// otherwise fail ADD with a generic "incompatible CNI versions" error that does not say which.
pub(crate) async fn validate_versions(
    executor: &dyn PluginExecutor,
    list: &NetworkConfigList,
    bin_dirs: &[PathBuf],
    timeout: Duration,
) -> Result<(), CniError> {
    for plugin in list.plugins() {
        let versions = plugin_versions(executor, bin_dirs, plugin.plugin_type(), timeout).await?;
        if !versions.supports(list.cni_version()) {
            return Err(CniError::IncompatibleVersion {
                plugin: plugin.plugin_type().to_string(),
                version: list.cni_version().to_string(),
                supported: versions.supported_versions,
            });
        }
    }
    Ok(())
}
