//! Network readiness: a usable CNI configuration exists.
//!
//! Kubelet will not start non-host-network pods while the runtime reports NetworkReady=false, so the check
//! is real: the lexically first configuration file that parses and whose plugins all exist in a bin dir
//! makes the network ready; anything else keeps it not ready with a reason saying why.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkReadiness {
    pub ready: bool,
    /// CamelCase reason for the NetworkReady condition (empty when ready).
    pub reason: String,
    pub message: String,
    /// The configuration file that would be used.
    pub config_file: Option<PathBuf>,
    pub network_name: Option<String>,
}

pub const REASON_NOT_READY: &str = "NetworkPluginNotReady";

#[derive(Deserialize)]
struct Plugin {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct ConfFile {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    plugins: Option<Vec<Plugin>>,
}

/// Checks `conf_dir` for a usable network configuration with plugins found in `bin_dirs`.
pub fn cni_readiness(conf_dir: &Path, bin_dirs: &[PathBuf]) -> NetworkReadiness {
    let not_ready = |message: String| NetworkReadiness {
        ready: false,
        reason: REASON_NOT_READY.to_string(),
        message,
        config_file: None,
        network_name: None,
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "conflist" || e == "conf" || e == "json")
            })
            .collect(),
        Err(e) => {
            return not_ready(format!(
                "cannot read CNI config dir {}: {e}",
                conf_dir.display()
            ));
        }
    };
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        match check_file(&file, bin_dirs) {
            Ok(name) => {
                return NetworkReadiness {
                    ready: true,
                    reason: String::new(),
                    message: format!("using CNI network {name:?} from {}", file.display()),
                    config_file: Some(file),
                    network_name: Some(name),
                };
            }
            Err(problem) => problems.push(format!("{}: {problem}", file.display())),
        }
    }
    if problems.is_empty() {
        not_ready(format!(
            "no CNI network configuration found in {}",
            conf_dir.display()
        ))
    } else {
        not_ready(format!(
            "no valid CNI network configuration in {}: {}",
            conf_dir.display(),
            problems.join("; ")
        ))
    }
}

fn check_file(file: &Path, bin_dirs: &[PathBuf]) -> Result<String, String> {
    let text = std::fs::read(file).map_err(|e| e.to_string())?;
    let conf: ConfFile = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let name = conf
        .name
        .filter(|n| !n.is_empty())
        .ok_or("no network name")?;
    let is_list = file.extension().is_some_and(|e| e == "conflist");
    let types: Vec<String> = match (is_list, conf.plugins, conf.kind) {
        (true, Some(plugins), _) if !plugins.is_empty() => {
            plugins.into_iter().map(|p| p.kind).collect()
        }
        (true, _, _) => return Err("a .conflist needs a non-empty \"plugins\" list".into()),
        (false, _, Some(kind)) => vec![kind],
        (false, _, None) => return Err("no plugin \"type\"".into()),
    };
    for kind in types {
        let found = bin_dirs.iter().any(|dir| dir.join(&kind).is_file());
        if !found {
            return Err(format!("plugin {kind:?} not found in the CNI bin dirs"));
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for plugin in ["bridge", "loopback"] {
            std::fs::write(bin.join(plugin), "").unwrap();
        }
        (dir, conf, bin)
    }

    #[test]
    fn missing_dir_is_not_ready() {
        let r = cni_readiness(Path::new("/nonexistent/berth"), &[]);
        assert!(!r.ready);
        assert_eq!(r.reason, REASON_NOT_READY);
    }

    #[test]
    fn empty_dir_is_not_ready() {
        let (_d, conf, bin) = setup();
        let r = cni_readiness(&conf, &[bin]);
        assert!(!r.ready);
        assert!(
            r.message.contains("no CNI network configuration"),
            "{}",
            r.message
        );
    }

    #[test]
    fn first_valid_file_wins() {
        let (_d, conf, bin) = setup();
        std::fs::write(conf.join("00-broken.conflist"), "{").unwrap();
        std::fs::write(
            conf.join("10-missing-plugin.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"nope"}]}"#,
        )
        .unwrap();
        std::fs::write(
            conf.join("20-good.conflist"),
            r#"{"cniVersion":"1.0.0","name":"good","plugins":[{"type":"bridge"},{"type":"loopback"}]}"#,
        )
        .unwrap();
        std::fs::write(
            conf.join("30-later.conf"),
            r#"{"cniVersion":"0.4.0","name":"later","type":"bridge"}"#,
        )
        .unwrap();
        let r = cni_readiness(&conf, &[bin]);
        assert!(r.ready, "{}", r.message);
        assert_eq!(r.network_name.as_deref(), Some("good"));
    }

    #[test]
    fn single_plugin_conf() {
        let (_d, conf, bin) = setup();
        std::fs::write(
            conf.join("10-single.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"bridge"}"#,
        )
        .unwrap();
        assert!(cni_readiness(&conf, &[bin]).ready);
    }
}
