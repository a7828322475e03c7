//! Network readiness: a usable CNI configuration exists.
//!
//! Kubelet will not start non-host-network pods while the runtime reports NetworkReady=false, so the check
//! is real: it is the configuration selection pod network setup uses ([`crate::cni::load_network`]), so
//! "ready" means setup would find a configuration that parses, has a supported version and whose plugins
//! all exist in a bin dir.

use std::path::{Path, PathBuf};

use crate::cni::load_network;

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

/// Checks `conf_dir` for a usable network configuration with plugins found in `bin_dirs`.
pub fn cni_readiness(conf_dir: &Path, bin_dirs: &[PathBuf]) -> NetworkReadiness {
    match load_network(conf_dir, bin_dirs) {
        Ok(selected) => NetworkReadiness {
            ready: true,
            reason: String::new(),
            message: format!(
                "using CNI network {:?} from {}",
                selected.list.name(),
                selected.config_file.display()
            ),
            network_name: Some(selected.list.name().to_string()),
            config_file: Some(selected.config_file),
        },
        Err(e) => NetworkReadiness {
            ready: false,
            reason: REASON_NOT_READY.to_string(),
            message: e.to_string(),
            config_file: None,
            network_name: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        for plugin in ["bridge", "loopback"] {
            std::fs::write(bin.join(plugin), "").unwrap();
            std::fs::set_permissions(bin.join(plugin), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        // Present but not executable: exec would fail, so it does not count.
        std::fs::write(bin.join("noexec"), "").unwrap();
        (dir, conf, bin)
    }

    #[test]
    fn missing_dir_is_not_ready() {
        let r = cni_readiness(Path::new("/nonexistent/berth"), &[]);
        assert!(!r.ready);
        assert_eq!(r.reason, REASON_NOT_READY);
        assert!(r.message.contains("cannot read"), "{}", r.message);
    }

    #[test]
    fn empty_dir_is_not_ready() {
        let (_d, conf, bin) = setup();
        let r = cni_readiness(&conf, &[bin]);
        assert!(!r.ready);
        assert!(
            r.message.contains("no .conflist, .conf or .json file"),
            "{}",
            r.message
        );
    }

    #[test]
    fn first_valid_file_wins() {
        let (_d, conf, bin) = setup();
        std::fs::write(conf.join("00-broken.conflist"), "{").unwrap();
        std::fs::write(
            conf.join("05-old.conflist"),
            r#"{"cniVersion":"0.2.0","name":"old","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            conf.join("10-missing-plugin.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"nope"}]}"#,
        )
        .unwrap();
        std::fs::write(
            conf.join("15-noexec.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"noexec"}]}"#,
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
        assert!(r.config_file.unwrap().ends_with("20-good.conflist"));
    }

    #[test]
    fn reasons_name_every_skipped_file() {
        let (_d, conf, bin) = setup();
        std::fs::write(conf.join("00-broken.conflist"), "{").unwrap();
        std::fs::write(
            conf.join("10-missing-plugin.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"nope"}]}"#,
        )
        .unwrap();
        let r = cni_readiness(&conf, &[bin]);
        assert!(!r.ready);
        assert!(
            r.message.contains("00-broken.conflist: not JSON"),
            "{}",
            r.message
        );
        assert!(r.message.contains("\"nope\" not found"), "{}", r.message);
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
