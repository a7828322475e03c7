//! The crate's error type. Every variant is about the request or the node's spec files, never a
//! transient failure: berth-cri reports all of them as INVALID_ARGUMENT.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    /// A requested name is not a fully qualified CDI device name.
    #[error("invalid CDI device name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    /// A `cdi.k8s.io/` annotation does not hold a list of qualified names.
    #[error("invalid CDI annotation {key:?}: {reason}")]
    InvalidAnnotation { key: String, reason: String },

    /// No spec file defines the device. `problems` lists the spec files that could not be read
    /// (one of them may have been meant to define it).
    #[error("unresolvable CDI device {name:?}: no spec file in {dirs} defines it{problems}")]
    UnknownDevice {
        name: String,
        dirs: String,
        problems: String,
    },

    /// Two spec files of the same priority (the same directory) define the device.
    #[error(
        "CDI device {name:?} is defined by more than one spec file of the same priority: {files:?}"
    )]
    Conflict { name: String, files: Vec<PathBuf> },

    /// The spec file defining the device is invalid.
    #[error("CDI device {name:?}: invalid spec file {}: {reason}", path.display())]
    InvalidSpec {
        name: String,
        path: PathBuf,
        reason: String,
    },

    /// The device asks for something Berth does not do.
    #[error("CDI device {name:?}: {what} is not supported by Berth")]
    Unsupported { name: String, what: String },

    /// A device node of the device could not be inspected on the host to fill in its type and
    /// numbers.
    #[error("CDI device {name:?}: device node {}: {source}", path.display())]
    DeviceNode {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// CDI devices were requested but CDI is disabled in the configuration.
    #[error("CDI devices ({0}) requested but CDI support is disabled (cdi.enabled = false)")]
    Disabled(String),
}
