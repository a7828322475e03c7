//! Sandbox IDs: 64 random hex characters, addressed by any unique prefix.

use std::io::Read;

use crate::error::SandboxError;

/// A new random ID (256 bits from the kernel's CSPRNG, like containerd's and CRI-O's).
pub fn generate() -> Result<String, SandboxError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| SandboxError::Io {
            op: "read",
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The one ID among `ids` that `prefix` starts (an exact match wins).
pub fn resolve<'a>(
    ids: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Result<String, SandboxError> {
    if prefix.is_empty() {
        return Err(SandboxError::InvalidArgument(
            "a pod sandbox ID is required".into(),
        ));
    }
    if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SandboxError::NotFound(prefix.to_string()));
    }
    let mut found: Vec<&String> = Vec::new();
    for id in ids {
        if id == prefix {
            return Ok(id.clone());
        }
        if id.starts_with(prefix) {
            found.push(id);
        }
    }
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(SandboxError::NotFound(prefix.to_string())),
        many => Err(SandboxError::Ambiguous {
            prefix: prefix.to_string(),
            matches: many.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_prefixes_resolve() {
        let a = generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let ids = ["abc1".to_string(), "abc2".to_string(), "def".to_string()];
        assert_eq!(resolve(ids.iter(), "d").unwrap(), "def");
        assert!(matches!(
            resolve(ids.iter(), "abc"),
            Err(SandboxError::Ambiguous { matches: 2, .. })
        ));
        assert!(matches!(
            resolve(ids.iter(), "f"),
            Err(SandboxError::NotFound(_))
        ));
        assert!(matches!(
            resolve(ids.iter(), "../x"),
            Err(SandboxError::NotFound(_))
        ));
        assert!(matches!(
            resolve(ids.iter(), ""),
            Err(SandboxError::InvalidArgument(_))
        ));
    }
}
