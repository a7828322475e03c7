//! Container IDs (see `berth_store::resolve_id`), with container errors.

use berth_store::IdLookup;

use crate::error::ContainerError;

pub fn generate() -> Result<String, ContainerError> {
    berth_store::generate_id().map_err(ContainerError::io("read", "/dev/urandom"))
}

/// The one ID among `ids` that `prefix` starts (an exact match wins).
pub fn resolve<'a>(
    ids: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Result<String, ContainerError> {
    berth_store::resolve_id(ids, prefix).map_err(|e| match e {
        IdLookup::Empty => ContainerError::InvalidArgument("a container ID is required".into()),
        IdLookup::NotFound => ContainerError::NotFound(prefix.to_string()),
        IdLookup::Ambiguous { matches } => ContainerError::InvalidArgument(format!(
            "container ID prefix {prefix:?} is ambiguous: it matches {matches} containers"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_failures_map_to_container_errors() {
        let ids = ["abc1".to_string(), "abc2".to_string()];
        assert!(matches!(
            resolve(ids.iter(), "abc"),
            Err(ContainerError::InvalidArgument(_))
        ));
        assert!(matches!(
            resolve(ids.iter(), "zzz"),
            Err(ContainerError::NotFound(_))
        ));
        assert!(matches!(
            resolve(ids.iter(), ""),
            Err(ContainerError::InvalidArgument(_))
        ));
        assert_eq!(generate().unwrap().len(), 64);
    }
}
