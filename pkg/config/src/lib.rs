//! Berth's configuration.
//!
//! Sources, in increasing precedence: the embedded defaults, the main file (`/etc/berth/config.toml`),
//! drop-ins (`config.d/*.toml` beside it, in lexical order) and command-line flags. Every file is checked
//! on its own before merging, so an unknown key or a wrong type is reported with the file and the key that
//! caused it; the merged result is validated once more as a whole. berthd refuses to start on any error,
//! so it never runs half-configured.

mod cdi;
mod error;
pub mod hosts_dir;
mod load;
mod model;
mod registry;

pub use cdi::CdiConfig;
pub use error::ConfigError;
pub use load::{DEFAULT_CONFIG_PATH, Loaded, Overrides, load};
pub use model::{
    CgroupConfig, CgroupDriver, CniConfig, Config, GrpcConfig, ImageConfig, LogConfig, LogFormat,
    LogLevel, MetricsConfig, RuntimeConfig, RuntimeHandler, SeccompConfig, SeccompDefault,
    StreamingConfig,
};
pub use registry::{DEFAULT_AUTH_FILE, Mirror, RegistryConfig, RegistryHost, check_headers};

/// The full default configuration as documented TOML (what `berthd config default` prints).
///
/// A unit test proves that parsing this text yields exactly [`Config::default`] and that it mentions
/// every key, so the documentation cannot drift from the code.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");
