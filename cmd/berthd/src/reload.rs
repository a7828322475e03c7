//! Configuration reload on SIGHUP (`systemctl reload berthd`).
//!
//! The files are read again exactly as at start (same `--config`, drop-ins and flags). What can
//! change live is applied: the registry configuration (hosts, mirrors, credentials, CA and client
//! certificates, `config_path`), `image.pinned` and `log.level`. Everything is checked before
//! anything is applied, so an invalid configuration (bad TOML, unknown key, unreadable CA file, bad
//! `hosts.toml`) is rejected whole and the running one stays. Other settings that differ from what
//! berthd runs with (socket, root, state, runtimes, CNI, ...) are logged as needing a restart and
//! left alone. Pulls in flight keep the registry configuration they started with.

use std::collections::BTreeSet;

use anyhow::Context;
use berth_config::Config;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::Cli;
use crate::logging::LogControl;

/// Installs the SIGHUP handler. Call it early: until it exists SIGHUP's default action
/// terminates berthd.
pub fn listen() -> anyhow::Result<Signal> {
    signal(SignalKind::hangup()).context("installing the SIGHUP handler")
}

/// Everything a reload reads and changes.
pub struct Reloader {
    pub cli: Cli,
    /// The configuration berthd started with: what needs a restart is compared to it.
    pub running: Config,
    pub images: berth_image::ImageService,
    pub log: LogControl,
    pub metrics: berth_metrics::ConfigMetrics,
}

/// Reloads at each SIGHUP until `stop` resolves.
pub async fn watch(
    mut hangup: Signal,
    reloader: Reloader,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            received = hangup.recv() => {
                if received.is_none() {
                    return;
                }
                crate::notify::reloading();
                tracing::info!("SIGHUP: reloading the configuration");
                // Reading files and CA bundles is blocking work, but small and rare.
                let result = tokio::task::block_in_place(|| reloader.reload());
                match result {
                    Ok(needs_restart) => {
                        reloader.metrics.reloaded(!needs_restart.is_empty());
                    }
                    Err(e) => {
                        reloader.metrics.reload_failed();
                        tracing::error!(error = format!("{e:#}"), "configuration reload rejected; the previous configuration stays in effect");
                    }
                }
                crate::notify::reloaded();
            }
        }
    }
}

impl Reloader {
    /// Loads, checks and applies; returns the keys whose change waits for a restart.
    fn reload(&self) -> anyhow::Result<Vec<String>> {
        let loaded = self.cli.load_config()?;
        let new = loaded.config;
        // Built (CA files, client certificates, hosts.toml read) before anything is applied.
        let registry =
            berth_registry::Client::new(new.registry.clone()).context("configuring registries")?;
        // The level first: the one step that could still fail leaves nothing half-applied.
        self.log.set_level(new.log.level)?;
        self.images.set_registry(registry);
        self.images.set_pinned(new.image.pinned.clone());
        let needs_restart = restart_only_changes(&self.running, &new);
        if needs_restart.is_empty() {
            tracing::info!(sources = ?loaded.sources, "configuration reloaded");
        } else {
            tracing::warn!(
                keys = ?needs_restart,
                "configuration reloaded; these changes need a restart and are not applied: {}",
                needs_restart.join(", ")
            );
        }
        Ok(needs_restart)
    }
}

/// Dotted keys that differ between `running` and `new`, leaving out what a reload applies.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<String> {
    let without_live = |c: &Config| {
        let mut c = c.clone();
        c.registry = Default::default();
        c.image.pinned.clear();
        c.log.level = Default::default();
        toml::Table::try_from(c).unwrap_or_default()
    };
    let mut keys = BTreeSet::new();
    diff("", &without_live(running), &without_live(new), &mut keys);
    keys.into_iter().collect()
}

fn diff(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut BTreeSet<String>) {
    for key in a.keys().chain(b.keys()) {
        let path = format!("{prefix}{key}");
        match (a.get(key), b.get(key)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                diff(&format!("{path}."), x, y, out)
            }
            (x, y) if x != y => {
                out.insert(path);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_are_not_restart_changes() {
        let running = Config::default();
        let mut new = running.clone();
        new.log.level = berth_config::LogLevel::Debug;
        new.image.pinned.push("busybox".into());
        new.registry
            .hosts
            .insert("docker.io".into(), Default::default());
        assert!(restart_only_changes(&running, &new).is_empty());
        new.root = "/elsewhere".into();
        new.cni.bin_dirs.push("/x".into());
        new.log.format = berth_config::LogFormat::Json;
        assert_eq!(
            restart_only_changes(&running, &new),
            ["cni.bin_dirs", "log.format", "root"]
        );
    }
}
