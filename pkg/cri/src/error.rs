//! Every error that reaches a CRI caller is mapped to a gRPC status here, and only here.

use berth_network::NetworkError;
use berth_store::StoreError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The RPC exists in CRI but Berth does not implement it yet.
    #[error("{method} is not implemented by berth {version} yet", version = crate::RUNTIME_VERSION)]
    Unimplemented { method: &'static str },
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CriError {
    fn code(&self) -> Code {
        match self {
            CriError::Unimplemented { .. } => Code::Unimplemented,
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::Network(NetworkError::InvalidCidr { .. }) => Code::InvalidArgument,
            CriError::Network(NetworkError::Persist { .. }) => Code::Internal,
            CriError::Store(e) => store_code(e),
        }
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::NotFound { .. } => Code::NotFound,
        StoreError::AlreadyExists { .. } => Code::AlreadyExists,
        StoreError::Ambiguous { .. } | StoreError::InvalidId { .. } => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// The gRPC code's canonical name (as in grpc-go), used as the `code` metric label.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_names_the_method() {
        let status = Status::from(CriError::Unimplemented {
            method: "RunPodSandbox",
        });
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(status.message().contains("RunPodSandbox"));
    }

    #[test]
    fn bad_cidr_is_invalid_argument() {
        let err = berth_network::PodCidrs::parse("nope").unwrap_err();
        assert_eq!(
            Status::from(CriError::from(err)).code(),
            Code::InvalidArgument
        );
    }
}
