//! `Status`: the RuntimeReady and NetworkReady conditions, runtime handlers, and verbose info.
//!
//! kubelet polls Status every few seconds and gates pod creation on it, so the conditions are computed
//! from the real state each time (cheap checks: a stat per handler binary, one directory listing).

use std::collections::HashMap;

use berth_cri_api::v1 as cri;

use crate::Shared;

const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

impl Shared {
    pub(crate) fn status(&self, verbose: bool) -> cri::StatusResponse {
        let config = &self.deps.config;
        let runtime = self.runtime_condition();
        let network = berth_network::cni_readiness(&config.cni.conf_dir, &config.cni.bin_dirs);
        let network_condition = cri::RuntimeCondition {
            r#type: NETWORK_READY.to_string(),
            status: network.ready,
            reason: network.reason.clone(),
            message: network.message.clone(),
        };
        // True only when berthd's startup probes idmapped a directory and an overlay layer on
        // its root dir's filesystem (kubelet then allows `hostUsers: false` pods here), and
        // made a recursively read-only clone of a scratch tmpfs tree (kubelet then honours
        // `recursiveReadOnly: Enabled`/`IfPossible`). Berth makes those mounts itself, so
        // every handler gets the same answer.
        let features = Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: self
                .deps
                .containers
                .recursive_read_only_unsupported()
                .is_none(),
            user_namespaces: self.deps.containers.user_namespaces_unsupported().is_none(),
        });
        // The empty name stands for the default handler, as kubelet expects.
        let runtime_handlers = std::iter::once(String::new())
            .chain(config.runtime.handlers.keys().cloned())
            .map(|name| cri::RuntimeHandler { name, features })
            .collect();
        let mut info = HashMap::new();
        if verbose {
            info.insert("config".to_string(), config.to_json());
            let sources: Vec<String> = self
                .deps
                .config_sources
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            info.insert(
                "configSources".to_string(),
                serde_json::Value::from(sources).to_string(),
            );
            info.insert("podCIDR".to_string(), self.deps.pod_cidrs.get().to_string());
            info.insert(
                "cniConfig".to_string(),
                network
                    .config_file
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
            info.insert("version".to_string(), crate::RUNTIME_VERSION.to_string());
            // What the security context can use on this host: seccomp is always there (runc
            // applies it with libseccomp); AppArmor and SELinux only where the kernel has them.
            let security = serde_json::json!({
                "seccomp": true,
                "seccompDefaultProfile": config.seccomp.default_profile,
                "lsm": self.lsm,
            });
            info.insert("security".to_string(), security.to_string());
        }
        cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network_condition],
            }),
            info,
            runtime_handlers,
            features: Some(cri::RuntimeFeatures {
                // Strict and Merge are honoured and ContainerStatus reports the user.
                supplemental_groups_policy: true,
                // Not claimed: a user-namespaced pod on the node's network is not tested here,
                // and kubelet refuses such pods when this is false.
                user_namespaces_host_network: false,
            }),
        }
    }

    /// Ready when the metadata store answers and the default handler's binary is executable.
    fn runtime_condition(&self) -> cri::RuntimeCondition {
        let condition = |status: bool, reason: &str, message: String| cri::RuntimeCondition {
            r#type: RUNTIME_READY.to_string(),
            status,
            reason: reason.to_string(),
            message,
        };
        if let Err(e) = self.deps.store.schema_version() {
            return condition(false, "MetadataStoreUnavailable", e.to_string());
        }
        if let Some(problem) = self.deps.containers.monitor_problem() {
            return condition(false, "ContainerMonitorMissing", problem);
        }
        let config = &self.deps.config;
        let Some((name, handler)) = config.default_handler() else {
            // Config validation guarantees the default handler exists; report rather than panic.
            return condition(
                false,
                "RuntimeHandlerMissing",
                format!(
                    "default handler {:?} is not configured",
                    config.runtime.default_handler
                ),
            );
        };
        match handler.resolve_binary() {
            Some(path) => condition(
                true,
                "",
                format!("default handler {name:?} uses {}", path.display()),
            ),
            None => condition(
                false,
                "RuntimeHandlerMissing",
                format!(
                    "default handler {name:?}: OCI runtime binary {} not found or not executable",
                    handler.path.display()
                ),
            ),
        }
    }
}
