//! Pod networking.
//!
//! The pod CIDR kubelet hands over in `UpdateRuntimeConfig` (kept for the CNI `ipRanges` capability),
//! network readiness (whether a usable CNI configuration exists), and the CNI runtime that sets up and
//! tears down pod networks by running CNI plugins ([`cni::Cni`]).

mod cidr;
pub mod cni;
mod readiness;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use cidr::{Cidr, PodCidrStore, PodCidrs};
pub use cni::{
    Bandwidth, Cni, CniError, CniMetrics, Dns, PodNetwork, PodNetworkRequest, PortMapping, Protocol,
};
pub use readiness::{NetworkReadiness, cni_readiness};

use std::path::PathBuf;

/// Errors of the pod CIDR store. CNI errors are [`CniError`], kept apart so that callers matching on
/// this enum exhaustively (the CRI layer's gRPC code mapping) are not broken by CNI variants.
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
