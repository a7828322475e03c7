//! CRI `runtime.v1` as of cri-api v0.36 (Kubernetes 1.36): the messages, the RuntimeService and
//! ImageService clients and servers, generated from `proto/cri/api.proto` (see its header for the
//! origin). The wire format is backwards compatible, so kubelet 1.26 and later all speak it.

/// `runtime.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
