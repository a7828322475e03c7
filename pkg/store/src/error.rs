//! The store's error type.

use std::io;
use std::path::PathBuf;

use crate::record::RecordKind;

/// Everything that can go wrong in the store.
///
/// Variants that a caller is expected to act on ([`StoreError::AlreadyExists`],
/// [`StoreError::NotFound`], [`StoreError::Ambiguous`], [`StoreError::InvalidId`],
/// [`StoreError::SchemaTooNew`], [`StoreError::Locked`]) carry structured fields; the rest are
/// for logging and wrap the underlying cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory that should hold the database file could not be created.
    #[error("cannot create metadata store directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The database file could not be created.
    #[error("cannot create metadata store file {path}: {source}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Another [`crate::Store`] (in this process or another one, e.g. a second berthd) has the
    /// file open. redb locks the whole file, so only one handle may exist at a time; clone the
    /// existing [`crate::Store`] instead of opening the path twice.
    #[error("metadata store {path} is already open (by this process or another one)")]
    Locked { path: PathBuf },

    /// redb refused to open the file (not a redb database, unreadable, unrepairable, ...).
    #[error("cannot open metadata store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },

    /// The database was written by a newer berth whose schema this build does not know.
    /// Opening it anyway could misread or clobber data, so the store refuses and leaves the file
    /// untouched; run the newer build (or restore an older backup).
    #[error(
        "metadata store schema version {found} is newer than this build supports ({supported}); refusing to open it"
    )]
    SchemaTooNew { found: u32, supported: u32 },

    /// The `meta` table holds something this build cannot make sense of.
    #[error("metadata store schema is invalid: {reason}")]
    SchemaInvalid { reason: String },

    /// A schema migration failed; the database was left at version `from`.
    #[error("migrating metadata store from schema version {from}: {source}")]
    Migration {
        from: u32,
        #[source]
        source: Box<StoreError>,
    },

    /// [`crate::Store::insert_new`] found a record with the same id.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: RecordKind, id: String },

    /// No record matches an id prefix given to [`crate::Store::resolve_prefix`].
    #[error("no {kind} matches id {query:?}")]
    NotFound { kind: RecordKind, query: String },

    /// Several records match an id prefix and none equals it exactly.
    #[error("{kind} id prefix {prefix:?} is ambiguous: it matches {} ids", matches.len())]
    Ambiguous {
        kind: RecordKind,
        prefix: String,
        /// All matching ids, in key order.
        matches: Vec<String>,
    },

    /// An id the store will not use as a key (for example the empty string).
    #[error("invalid {kind} id {id:?}: {reason}")]
    InvalidId {
        kind: RecordKind,
        id: String,
        reason: &'static str,
    },

    /// A record could not be serialized (e.g. a map with non-string keys).
    #[error("cannot encode {kind} {id:?}: {source}")]
    Encode {
        kind: RecordKind,
        id: String,
        #[source]
        source: serde_json::Error,
    },

    /// A stored record could not be decoded. The record is left in place; it can still be
    /// deleted with [`crate::Store::delete`], which never decodes.
    #[error("{kind} {id:?} in table {table:?} is corrupt: {source}", table = kind.table_name())]
    Corrupt {
        kind: RecordKind,
        id: String,
        #[source]
        source: CorruptError,
    },

    /// A `Store` method that writes was called from inside [`crate::Store::write`] on the same
    /// thread. It would wait forever for the write transaction the caller holds; use the
    /// [`crate::WriteTxn`] passed to the closure instead.
    #[error(
        "nested write: this thread already holds the store's write transaction; use the WriteTxn passed to the closure"
    )]
    NestedWrite,

    /// [`crate::Store::close`] was called while other clones of the handle were still alive.
    /// Nothing was closed: the database closes when the last clone drops, and the next open
    /// repairs it if that never happens (the process exits first). `handles` counts the others.
    #[error("metadata store {path} is still in use by {handles} other handle(s); not closed")]
    InUse { path: PathBuf, handles: usize },

    /// redb could not record the clean shutdown (a write or flush failed). Every commit is
    /// durable regardless; the next open repairs the file.
    #[error("closing metadata store {path}: {source}")]
    Close {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },

    /// The blocking task that ran a store call panicked or was cancelled (the runtime shutting
    /// down).
    #[error("metadata store task: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },

    /// Any other redb failure (I/O, a full disk, a corrupted page, ...).
    #[error("metadata store: {0}")]
    Db(#[source] redb::Error),
}

/// Why a stored record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptError {
    /// The bytes are not valid JSON for the record type.
    #[error("{0}")]
    Decode(#[from] serde_json::Error),
    /// The record decoded, but reports a different id than the key it is stored under.
    #[error("record reports id {found:?}, which is not its key")]
    IdMismatch { found: String },
}

impl StoreError {
    /// Whether this error means "no such record" (as opposed to a failure of the store).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}

/// redb has one error type per operation; they all fold into [`redb::Error`], and from there into
/// [`StoreError::Db`], so `?` works on any redb call.
macro_rules! from_redb {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for StoreError {
                fn from(e: $ty) -> Self {
                    StoreError::Db(e.into())
                }
            }
        )*
    };
}

from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
);
