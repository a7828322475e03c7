//! Object IDs as CRI shows them: 64 random hex characters (256 bits from the kernel's CSPRNG, like
//! containerd's and CRI-O's), addressed by any unique prefix. Shared by sandboxes and containers,
//! which keep their records in memory and resolve prefixes there.

use std::io::Read;

/// Why a prefix names no single ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdLookup {
    /// The prefix is empty.
    Empty,
    /// No ID starts with it (or it can't be part of an ID).
    NotFound,
    /// Several IDs start with it.
    Ambiguous { matches: usize },
}

/// A new random ID.
pub fn generate_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The one ID among `ids` that `prefix` starts (an exact match wins).
pub fn resolve_id<'a>(
    ids: impl Iterator<Item = &'a String>,
    prefix: &str,
) -> Result<String, IdLookup> {
    if prefix.is_empty() {
        return Err(IdLookup::Empty);
    }
    if prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(IdLookup::NotFound);
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
        [] => Err(IdLookup::NotFound),
        many => Err(IdLookup::Ambiguous {
            matches: many.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_prefixes_resolve() {
        let a = generate_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        let ids = ["abc1".to_string(), "abc2".to_string(), "def".to_string()];
        assert_eq!(resolve_id(ids.iter(), "def").unwrap(), "def");
        assert_eq!(resolve_id(ids.iter(), "abc1").unwrap(), "abc1");
        assert_eq!(
            resolve_id(ids.iter(), "abc"),
            Err(IdLookup::Ambiguous { matches: 2 })
        );
        assert_eq!(resolve_id(ids.iter(), "zzz"), Err(IdLookup::NotFound));
        assert_eq!(resolve_id(ids.iter(), "9"), Err(IdLookup::NotFound));
        assert_eq!(resolve_id(ids.iter(), ""), Err(IdLookup::Empty));
    }
}
