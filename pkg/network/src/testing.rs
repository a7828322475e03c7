//! A fake CNI plugin executor for unit tests (here and in crates that set up pod networks): it
//! answers plugin calls with canned results or injected faults instead of running binaries, and
//! records every call, so tests can check which ADDs, DELs and CHECKs a runtime made and whether
//! an address reserved by an ADD was released again.
//!
//! Behind the `testing` feature: only dev-dependencies enable it.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::cni::{CniError, Command, PluginCall, PluginExecutor};

/// The plugins of the list [`FakePlugins::write_network`] writes, in list order. The first one
/// stands for the plugin with IPAM: its ADD reserves the pod's address, its DEL releases it.
pub const PLUGINS: [&str; 2] = ["bridge", "portmap"];
/// The name of that list.
pub const NETWORK: &str = "fake-pods";

/// One recorded plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInvocation {
    pub plugin: String,
    pub command: Command,
    /// CNI_CONTAINERID (the sandbox ID).
    pub container_id: String,
    /// CNI_NETNS; empty when the runtime told the plugin the namespace is gone.
    pub netns: String,
    /// Whether the plugin got a `prevResult`.
    pub prev_result: bool,
}

/// What an injected fault does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The plugin fails with a CNI error and changes nothing.
    Error,
    /// The plugin does its work, then the caller dies: the calling task panics, as if berthd was
    /// killed before it could read (let alone persist) the plugin's answer.
    Crash,
}

#[derive(Default)]
struct State {
    calls: Vec<PluginInvocation>,
    faults: Vec<(String, Command, Fault)>,
    /// Container ID → reserved address, as an IPAM plugin's store would have it.
    leases: BTreeMap<String, String>,
    next_host: u32,
}

/// The fake executor. Share it (`Arc`) between the [`crate::Cni`] under test and the test.
#[derive(Default)]
pub struct FakePlugins {
    state: Mutex<State>,
}

impl FakePlugins {
    pub fn new() -> Arc<FakePlugins> {
        Arc::new(FakePlugins::default())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every later `command` call of `plugin` end with `fault`.
    pub fn inject(&self, plugin: &str, command: Command, fault: Fault) {
        self.state()
            .faults
            .push((plugin.to_string(), command, fault));
    }

    /// Removes every injected fault.
    pub fn heal(&self) {
        self.state().faults.clear();
    }

    pub fn calls(&self) -> Vec<PluginInvocation> {
        self.state().calls.clone()
    }

    /// The (plugin, command) pairs called for one container, in order.
    pub fn commands_for(&self, container_id: &str) -> Vec<(String, Command)> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.container_id == container_id)
            .map(|c| (c.plugin.clone(), c.command))
            .collect()
    }

    /// Container IDs holding an address that no DEL has released: what would leak.
    pub fn leased(&self) -> Vec<String> {
        self.state().leases.keys().cloned().collect()
    }

    /// Writes a conf dir with one list of [`PLUGINS`] (CNI 1.0.0, CHECK enabled) and a bin dir
    /// with a stub executable for each (the runtime looks plugins up before calling them), under
    /// `dir`; returns (conf dir, bin dir).
    pub fn write_network(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        let conf_dir = dir.join("net.d");
        let bin_dir = dir.join("bin");
        std::fs::create_dir_all(&conf_dir)?;
        std::fs::create_dir_all(&bin_dir)?;
        let list = json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {"type": PLUGINS[0], "bridge": "cni0", "ipam": {"type": "host-local"}},
                {"type": PLUGINS[1], "capabilities": {"portMappings": true}},
            ],
        });
        std::fs::write(conf_dir.join("10-fake.conflist"), list.to_string())?;
        for plugin in PLUGINS {
            let path = bin_dir.join(plugin);
            std::fs::write(&path, "#!/bin/sh\nexit 1\n")?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok((conf_dir, bin_dir))
    }

    fn answer(&self, call: &PluginCall<'_>) -> Result<Vec<u8>, CniError> {
        let env = |key: &str| {
            call.env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let stdin: Value = serde_json::from_slice(call.stdin).unwrap_or(Value::Null);
        let prev = stdin.get("prevResult").cloned();
        let invocation = PluginInvocation {
            plugin: call.plugin.to_string(),
            command: call.command,
            container_id: env("CNI_CONTAINERID"),
            netns: env("CNI_NETNS"),
            prev_result: prev.is_some(),
        };
        let mut state = self.state();
        state.calls.push(invocation.clone());
        let fault = state
            .faults
            .iter()
            .find(|(p, c, _)| p == call.plugin && *c == call.command)
            .map(|(_, _, f)| *f);
        if fault == Some(Fault::Error) {
            return Err(CniError::Plugin {
                plugin: call.plugin.to_string(),
                command: call.command,
                code: 11,
                msg: "injected failure".into(),
                details: String::new(),
            });
        }
        let ipam = call.plugin == PLUGINS[0];
        let out = match call.command {
            Command::Version => json!({
                "cniVersion": "1.0.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            }),
            Command::Add => match prev {
                Some(prev) => prev,
                None => {
                    let address = match state.leases.get(&invocation.container_id) {
                        Some(address) => address.clone(),
                        None => {
                            state.next_host += 1;
                            let address = format!("10.88.0.{}", state.next_host + 1);
                            if ipam {
                                state
                                    .leases
                                    .insert(invocation.container_id.clone(), address.clone());
                            }
                            address
                        }
                    };
                    json!({
                        "cniVersion": stdin.get("cniVersion").cloned().unwrap_or(json!("1.0.0")),
                        "interfaces": [{"name": "eth0", "sandbox": invocation.netns}],
                        "ips": [{"address": format!("{address}/16"), "gateway": "10.88.0.1", "interface": 0}],
                    })
                }
            },
            Command::Del => {
                if ipam {
                    state.leases.remove(&invocation.container_id);
                }
                Value::Null
            }
            Command::Check => Value::Null,
        };
        drop(state);
        if fault == Some(Fault::Crash) {
            panic!(
                "injected crash after CNI {} of {} for {}",
                call.command, call.plugin, invocation.container_id
            );
        }
        Ok(if out.is_null() {
            Vec::new()
        } else {
            out.to_string().into_bytes()
        })
    }
}

impl PluginExecutor for FakePlugins {
    fn run<'a>(
        &'a self,
        call: PluginCall<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, CniError>> + Send + 'a>> {
        Box::pin(async move { self.answer(&call) })
    }
}
