//! The redb tables and the record operations on them.
//!
//! Every operation here is written once against redb's table traits, so that [`crate::Store`]
//! (one short transaction per call) and [`crate::WriteTxn`] (many calls in one transaction) share
//! the same code and the same error reporting.

use redb::{ReadableTable, Table, TableDefinition};

use crate::codec::{decode, encode, validate_id};
use crate::error::StoreError;
use crate::record::{Record, RecordKind};

/// Record tables map an id to the record's encoded bytes. Values are `&[u8]`, not `&str`, so the
/// encoding can change in a migration without changing the table's redb type.
pub(crate) type RecordTableDef = TableDefinition<'static, &'static str, &'static [u8]>;

/// The table holding records of `kind`.
pub(crate) const fn record_table(kind: RecordKind) -> RecordTableDef {
    TableDefinition::new(kind.table_name())
}

/// Returns the record stored under `id`, if any.
pub(crate) fn get<R, T>(table: &T, id: &str) -> Result<Option<R>, StoreError>
where
    R: Record,
    T: ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(id)? {
        Some(bytes) => decode(id, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// Decodes every record, in id order. Each entry is either the record or the reason it could not
/// be decoded; only a failure of the table itself fails the whole scan.
pub(crate) fn scan<R, T>(table: &T) -> Result<Vec<Result<R, StoreError>>, StoreError>
where
    R: Record,
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, bytes) = entry?;
        out.push(decode(key.value(), bytes.value()));
    }
    Ok(out)
}

/// Decodes every record, in id order, failing on the first that cannot be decoded.
pub(crate) fn list<R, T>(table: &T) -> Result<Vec<R>, StoreError>
where
    R: Record,
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, bytes) = entry?;
        out.push(decode(key.value(), bytes.value())?);
    }
    Ok(out)
}

/// The ids starting with `prefix`, in order. A range scan from `prefix` that stops at the first
/// key without it: keys are ordered bytewise, so all keys sharing a prefix are contiguous.
pub(crate) fn ids_with_prefix<T>(table: &T, prefix: &str) -> Result<Vec<String>, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let mut ids = Vec::new();
    for entry in table.range::<&str>(prefix..)? {
        let (key, _) = entry?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        ids.push(key.to_owned());
    }
    Ok(ids)
}

/// Resolves a user-supplied id or unique id prefix to a full id.
///
/// An id that exists exactly wins even when it is also a prefix of other ids: otherwise a record
/// whose id prefixes another's could never be addressed at all. The empty prefix is refused
/// rather than resolved, since "match anything" is never what a caller meant.
pub(crate) fn resolve_prefix<T>(
    table: &T,
    kind: RecordKind,
    prefix: &str,
) -> Result<String, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    validate_id(kind, prefix)?;
    if table.get(prefix)?.is_some() {
        return Ok(prefix.to_owned());
    }
    let mut matches = ids_with_prefix(table, prefix)?;
    match matches.len() {
        0 => Err(StoreError::NotFound {
            kind,
            query: prefix.to_owned(),
        }),
        1 => Ok(matches.swap_remove(0)),
        _ => Err(StoreError::Ambiguous {
            kind,
            prefix: prefix.to_owned(),
            matches,
        }),
    }
}

/// Inserts or replaces `rec`.
pub(crate) fn put<R: Record>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    rec: &R,
) -> Result<(), StoreError> {
    let bytes = encode(rec)?;
    table.insert(rec.id(), bytes.as_slice())?;
    Ok(())
}

/// Inserts `rec`, refusing to replace an existing record with the same id.
pub(crate) fn insert_new<R: Record>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    rec: &R,
) -> Result<(), StoreError> {
    // Encode first so an unencodable record is reported as such even when the id is taken.
    let bytes = encode(rec)?;
    // Check before inserting: `insert` would already have replaced the old value by the time it
    // told us there was one.
    if table.get(rec.id())?.is_some() {
        return Err(StoreError::AlreadyExists {
            kind: R::KIND,
            id: rec.id().to_owned(),
        });
    }
    table.insert(rec.id(), bytes.as_slice())?;
    Ok(())
}

/// Removes the record stored under `id`, without decoding it (so corrupt records can be removed).
/// Returns whether it existed.
pub(crate) fn delete(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    id: &str,
) -> Result<bool, StoreError> {
    Ok(table.remove(id)?.is_some())
}
