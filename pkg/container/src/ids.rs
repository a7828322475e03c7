//! Container IDs (see `berth_store::resolve_id`), with container errors.

use berth_store::IdLookup;

use crate::error::ContainerError;

pub fn generate() -> Result<String, ContainerError> {
    berth_store::generate_id().map_err(ContainerError::io("read", "/dev/urandom"))
}

/// Why `prefix` names no single container, as a container error.
pub fn lookup_error(e: IdLookup, prefix: &str) -> ContainerError {
    match e {
        IdLookup::Empty => ContainerError::MissingId,
        IdLookup::NotFound => ContainerError::NotFound(prefix.to_string()),
        IdLookup::Ambiguous { matches } => ContainerError::Ambiguous {
            prefix: prefix.to_string(),
            matches,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_failures_map_to_container_errors() {
        assert!(matches!(
            lookup_error(IdLookup::Ambiguous { matches: 2 }, "abc"),
            ContainerError::Ambiguous { matches: 2, .. }
        ));
        assert!(matches!(
            lookup_error(IdLookup::NotFound, "zzz"),
            ContainerError::NotFound(_)
        ));
        assert!(matches!(
            lookup_error(IdLookup::Empty, ""),
            ContainerError::MissingId
        ));
        assert_eq!(generate().unwrap().len(), 64);
    }
}
