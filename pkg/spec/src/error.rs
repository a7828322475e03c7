//! The crate's error type.

/// Why a spec could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The request or the image is unusable as given (unknown username, relative container path,
    /// bad stop signal, bad env key...). berth-cri maps it to gRPC `INVALID_ARGUMENT`.
    #[error("{0}")]
    InvalidArgument(String),

    /// A filesystem operation on the host failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// oci-spec refused to build a part of the spec, or the spec could not be serialized.
    #[error("building the OCI spec: {0}")]
    Build(String),
}

impl SpecError {
    /// Whether the caller's input (the CRI request or the image) is at fault, not the host.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, SpecError::InvalidArgument(_))
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        SpecError::InvalidArgument(msg.into())
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SpecError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<oci_spec::OciSpecError> for SpecError {
    fn from(e: oci_spec::OciSpecError) -> Self {
        SpecError::Build(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_invalid_argument() {
        assert!(SpecError::invalid("x").is_invalid_argument());
        let io = SpecError::io("reading x", std::io::Error::other("boom"));
        assert!(!io.is_invalid_argument());
        assert_eq!(io.to_string(), "reading x: boom");
        assert!(!SpecError::Build("b".into()).is_invalid_argument());
    }
}
