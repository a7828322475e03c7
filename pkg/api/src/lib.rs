//! Berth's own gRPC API, served by berthd on the CRI socket beside `runtime.v1`
//! (`proto/images/v1/images.proto`): the generated types, client and server.

/// `berth.images.v1`: pull progress (`PullWithProgress`, `WatchPull`).
#[allow(clippy::all, missing_docs)]
pub mod images {
    pub mod v1 {
        tonic::include_proto!("berth.images.v1");
    }
}
