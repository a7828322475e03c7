//! Pod networking.
//!
//! Today: the pod CIDR kubelet hands over in `UpdateRuntimeConfig` (kept for the CNI `ipRanges` capability),
//! and network readiness, i.e. whether a usable CNI configuration exists. Pod network setup through CNI
//! plugins lands with the sandboxes.

mod cidr;
mod readiness;

pub use cidr::{Cidr, PodCidrStore, PodCidrs};
pub use readiness::{NetworkReadiness, cni_readiness};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid pod CIDR {value:?}: {reason}")]
    InvalidCidr { value: String, reason: String },
    #[error("persisting pod CIDR to {path}: {source}")]
    Persist {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
