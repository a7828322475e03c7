//! Berth's own gRPC API, served by berthd on the CRI socket beside `runtime.v1`
//! (`proto/images/v1/images.proto`): the generated types, client and server.

/// `berth.images.v1`: pull progress (`PullWithProgress`, `WatchPull`).
#[allow(clippy::all, missing_docs)]
pub mod images {
    pub mod v1 {
        tonic::include_proto!("berth.images.v1");
    }
}

/// `berth.containers.v1`: kill, top and copying files (`Kill`, `Top`, `StatPath`, `CopyFrom`,
/// `CopyTo`).
#[allow(clippy::all, missing_docs)]
pub mod containers {
    pub mod v1 {
        tonic::include_proto!("berth.containers.v1");
    }
}

/// `berth.volumes.v1`: named volumes (`Create`, `Inspect`, `List`, `Remove`, `Prune`).
#[allow(clippy::all, missing_docs)]
pub mod volumes {
    pub mod v1 {
        tonic::include_proto!("berth.volumes.v1");
    }
}

/// `berth.registries.v1`: registry logins (`Login`, `Logout`, `List`).
#[allow(clippy::all, missing_docs)]
pub mod registries {
    pub mod v1 {
        tonic::include_proto!("berth.registries.v1");
    }
}
