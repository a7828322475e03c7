//! Container IDs: 64 random hex characters, addressed by any unique prefix.

use std::io::Read;

use crate::error::ContainerError;

pub fn generate() -> Result<String, ContainerError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ContainerError::io("read", "/dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The one ID among `ids` that `prefix` starts (an exact match wins).
pub fn resolve<'a>(
    ids: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Result<String, ContainerError> {
    if prefix.is_empty() {
        return Err(ContainerError::InvalidArgument(
            "a container ID is required".into(),
        ));
    }
    if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ContainerError::NotFound(prefix.to_string()));
    }
    let mut found: Option<&String> = None;
    for id in ids {
        if id == prefix {
            return Ok(id.clone());
        }
        if id.starts_with(prefix) {
            if found.is_some() {
                return Err(ContainerError::InvalidArgument(format!(
                    "container ID prefix {prefix:?} is ambiguous"
                )));
            }
            found = Some(id);
        }
    }
    found
        .cloned()
        .ok_or_else(|| ContainerError::NotFound(prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let ids = ["abc1".to_string(), "abc2".to_string(), "def".to_string()];
        assert_eq!(resolve(ids.iter(), "def").unwrap(), "def");
        assert_eq!(resolve(ids.iter(), "abc1").unwrap(), "abc1");
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
