//! Sandbox IDs (see `berth_store::resolve_id`), with sandbox errors.

use berth_store::IdLookup;

use crate::error::SandboxError;

pub fn generate() -> Result<String, SandboxError> {
    berth_store::generate_id().map_err(|source| SandboxError::Io {
        op: "read",
        path: "/dev/urandom".into(),
        source,
    })
}

/// Why `prefix` names no single sandbox, as a sandbox error.
pub fn lookup_error(e: IdLookup, prefix: &str) -> SandboxError {
    match e {
        IdLookup::Empty => SandboxError::MissingId,
        IdLookup::NotFound => SandboxError::NotFound(prefix.to_string()),
        IdLookup::Ambiguous { matches } => SandboxError::Ambiguous {
            prefix: prefix.to_string(),
            matches,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_failures_map_to_sandbox_errors() {
        assert!(matches!(
            lookup_error(IdLookup::Ambiguous { matches: 2 }, "abc"),
            SandboxError::Ambiguous { matches: 2, .. }
        ));
        assert!(matches!(
            lookup_error(IdLookup::NotFound, "../x"),
            SandboxError::NotFound(_)
        ));
        assert!(matches!(
            lookup_error(IdLookup::Empty, ""),
            SandboxError::MissingId
        ));
        assert_eq!(generate().unwrap().len(), 64);
    }
}
