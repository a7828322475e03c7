//! Command line. Flags override the configuration files.

use std::net::SocketAddr;
use std::path::PathBuf;

use berth_config::{LogFormat, LogLevel, Overrides};
use clap::{Parser, Subcommand};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "berthd",
    version,
    about = "Berth: a Kubernetes CRI container runtime",
    long_about = "Berth serves the CRI runtime.v1 RuntimeService and ImageService on a unix socket. \
                  Configuration: /etc/berth/config.toml plus /etc/berth/config.d/*.toml; flags override both."
)]
pub struct Cli {
    /// Main configuration file (default /etc/berth/config.toml; drop-ins are read from config.d/ beside it).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Persistent data directory.
    #[arg(long, value_name = "DIR", global = true)]
    pub root: Option<PathBuf>,
    /// Volatile state directory.
    #[arg(long, value_name = "DIR", global = true)]
    pub state: Option<PathBuf>,
    /// CRI endpoint, e.g. unix:///run/berth/berth.sock.
    #[arg(long, value_name = "ADDRESS", global = true)]
    pub listen: Option<String>,
    /// Prometheus metrics address, e.g. 127.0.0.1:9190.
    #[arg(long, value_name = "ADDRESS", global = true)]
    pub metrics_address: Option<SocketAddr>,
    /// error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<LogLevel>,
    /// text or json.
    #[arg(long, value_name = "FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum ConfigAction {
    /// Print the full default configuration as documented TOML.
    Default,
    /// Print the effective configuration (files, drop-ins and flags applied).
    Show,
    /// Print the Berth configuration equivalent to another runtime's, with comments on what has
    /// no equivalent.
    Migrate {
        /// containerd's config.toml (version 2, containerd 1.x, or version 3, containerd 2.x).
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/etc/containerd/config.toml"
        )]
        from_containerd: PathBuf,
    },
}

impl Cli {
    pub fn load_config(&self) -> Result<berth_config::Loaded, berth_config::ConfigError> {
        let overrides = Overrides {
            root: self.root.clone(),
            state: self.state.clone(),
            listen: self.listen.clone(),
            metrics_address: self.metrics_address,
            log_level: self.log_level,
            log_format: self.log_format,
        };
        berth_config::load(self.config.as_deref(), &overrides)
    }
}
