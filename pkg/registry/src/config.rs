//! The registry section of berthd's configuration: the types live in `berth-config` (the one
//! config model); this module names them for the registry client.

pub use berth_config::{Mirror, RegistryConfig, RegistryHost};

/// Key of the catch-all entry in [`RegistryConfig::hosts`].
pub const CATCH_ALL: &str = RegistryConfig::CATCH_ALL;
