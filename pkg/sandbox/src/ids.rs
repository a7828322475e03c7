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

/// The one ID among `ids` that `prefix` starts (an exact match wins).
pub fn resolve<'a>(
    ids: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Result<String, SandboxError> {
    berth_store::resolve_id(ids, prefix).map_err(|e| match e {
        IdLookup::Empty => SandboxError::InvalidArgument("a pod sandbox ID is required".into()),
        IdLookup::NotFound => SandboxError::NotFound(prefix.to_string()),
        IdLookup::Ambiguous { matches } => SandboxError::Ambiguous {
            prefix: prefix.to_string(),
            matches,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_failures_map_to_sandbox_errors() {
        let ids = ["abc1".to_string(), "abc2".to_string(), "def".to_string()];
        assert_eq!(resolve(ids.iter(), "d").unwrap(), "def");
        assert!(matches!(
            resolve(ids.iter(), "abc"),
            Err(SandboxError::Ambiguous { matches: 2, .. })
        ));
        assert!(matches!(
            resolve(ids.iter(), "../x"),
            Err(SandboxError::NotFound(_))
        ));
        assert!(matches!(
            resolve(ids.iter(), ""),
            Err(SandboxError::InvalidArgument(_))
        ));
        assert_eq!(generate().unwrap().len(), 64);
    }
}
