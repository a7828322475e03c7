//! The Container Device Interface (CDI, github.com/cncf-tags/container-device-interface): vendors
//! describe devices in spec files (`*.json`, `*.yaml` in `/etc/cdi` and `/var/run/cdi`), a
//! container asks for them by fully qualified name (`vendor.com/class=name`), and the runtime
//! applies the edits the spec gives for them (env, device nodes, mounts, hooks, groups).
//!
//! This crate parses and validates spec files ([`spec`]), indexes the devices of the spec
//! directories with CDI's priority rules ([`Registry`], [`Catalog`]) and resolves requested names
//! into one merged, self-contained [`Resolved`] value (device nodes already stat'ed) that the
//! container keeps in its record: a restarted berthd does not need the spec files again.
//! Applying the edits to the OCI spec is berth-spec's job.

mod error;
mod name;
mod registry;
pub mod spec;

pub use error::CdiError;
pub use name::{ANNOTATION_PREFIX, QualifiedName, names_from_annotations};
pub use registry::{Catalog, DEFAULT_SPEC_DIRS, Registry};
pub use spec::{ContainerEdits, DeviceNode, Hook, Mount};

use serde::{Deserialize, Serialize};

/// What a container got from CDI: the devices it asked for, in order, and their merged edits
/// (each device's, then each involved spec's common edits once), device nodes completed from the
/// host. Empty for a container without CDI devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    pub devices: Vec<String>,
    pub edits: ContainerEdits,
}

impl Resolved {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}
