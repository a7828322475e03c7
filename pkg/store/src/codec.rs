//! How records become bytes and back.
//!
//! JSON, because it is self-describing: a field added later with `#[serde(default)]` reads fine
//! from an old record, and an old build skips fields it does not know. The extra bytes do not
//! matter at berthd's scale (thousands of records of a few KiB).

use crate::error::{CorruptError, StoreError};
use crate::record::{Record, RecordKind};

/// Rejects ids the store will not use as keys.
///
/// Only the empty id is refused: it is always a caller bug, and as a key it would be a prefix of
/// every other id. Everything else (length, alphabet) is the owning crate's policy.
pub(crate) fn validate_id(kind: RecordKind, id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::InvalidId {
            kind,
            id: String::new(),
            reason: "id must not be empty",
        });
    }
    Ok(())
}

/// Serializes `rec` after checking its id.
pub(crate) fn encode<R: Record>(rec: &R) -> Result<Vec<u8>, StoreError> {
    validate_id(R::KIND, rec.id())?;
    serde_json::to_vec(rec).map_err(|source| StoreError::Encode {
        kind: R::KIND,
        id: rec.id().to_owned(),
        source,
    })
}

/// Deserializes the record stored under `key`, and checks that it still reports that key as its
/// id: a mismatch means the bytes belong somewhere else (or the type's `id()` changed meaning),
/// and handing such a record out would let a later `put` silently write it under another key.
pub(crate) fn decode<R: Record>(key: &str, bytes: &[u8]) -> Result<R, StoreError> {
    let corrupt = |source| StoreError::Corrupt {
        kind: R::KIND,
        id: key.to_owned(),
        source,
    };
    let rec: R = serde_json::from_slice(bytes).map_err(|e| corrupt(CorruptError::Decode(e)))?;
    if rec.id() != key {
        return Err(corrupt(CorruptError::IdMismatch {
            found: rec.id().to_owned(),
        }));
    }
    Ok(rec)
}
