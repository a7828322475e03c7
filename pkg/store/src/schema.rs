//! The `meta` table, the schema version and migrations.
//!
//! The schema version describes the layout of the whole database (which tables exist, their redb
//! types, how records are encoded). Changes that serde absorbs on its own (a new record field with
//! `#[serde(default)]`) do not need a new version; anything else does, plus a migration.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use crate::error::StoreError;
use crate::record::RecordKind;
use crate::tables::record_table;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// Small bookkeeping values, keyed by name. The values are raw bytes, so the table's redb type
/// never has to change whatever gets stored here later: this table is the one thing every past and
/// future build must be able to open, since it is where they find out whether they can read the
/// rest.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Key of the schema version in [`META`]; the value is a little-endian `u32`.
const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Upgrades the database by one schema version, inside the open-time write transaction.
pub(crate) type Migration = fn(&WriteTransaction) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` upgrades a database from version `i + 1` to `i + 2`. To change the schema,
/// append a migration here and bump [`SCHEMA_VERSION`]; the assertion below keeps the two in step.
const MIGRATIONS: &[Migration] = &[];

const _: () = assert!(MIGRATIONS.len() + 1 == SCHEMA_VERSION as usize);

/// What [`init`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Init {
    /// A new database: tables created, version written.
    Created { version: u32 },
    /// Already at the current version.
    Current { version: u32 },
    /// Upgraded from an older version.
    Migrated { from: u32, to: u32 },
}

/// Brings the database to the current schema: creates a new one, or checks and upgrades an
/// existing one. Runs inside the caller's write transaction, so a failure anywhere (including a
/// migration half-way through) leaves the file exactly as it was, provided the caller does not
/// commit on error.
pub(crate) fn init(txn: &WriteTransaction) -> Result<Init, StoreError> {
    init_with(txn, MIGRATIONS)
}

/// [`init`] with an explicit migration list, so the migration machinery can be tested before any
/// real migration exists. The current version is `migrations.len() + 1`.
fn init_with(txn: &WriteTransaction, migrations: &[Migration]) -> Result<Init, StoreError> {
    let current = current_version(migrations);
    let outcome = match read_version(txn)? {
        None => {
            ensure_no_records(txn)?;
            Init::Created { version: current }
        }
        Some(found) if found > current => {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: current,
            });
        }
        Some(found) if found == current => Init::Current { version: current },
        Some(found) => {
            migrate(txn, found, migrations)?;
            Init::Migrated {
                from: found,
                to: current,
            }
        }
    };
    // After any migration, so migrations see the old layout; harmless if the tables exist.
    for kind in RecordKind::ALL {
        txn.open_table(record_table(kind))?;
    }
    if !matches!(outcome, Init::Current { .. }) {
        write_version(txn, current)?;
    }
    Ok(outcome)
}

fn current_version(migrations: &[Migration]) -> u32 {
    // A list of four billion migrations does not fit in a binary, let alone in this file.
    u32::try_from(migrations.len()).map_or(u32::MAX, |n| n.saturating_add(1))
}

/// Runs the migrations from `found` up to the current version, in order.
fn migrate(txn: &WriteTransaction, found: u32, migrations: &[Migration]) -> Result<(), StoreError> {
    // `found` is at least 1 (checked by `read_version`) and below the current version.
    let skip = usize::try_from(found - 1).unwrap_or(usize::MAX);
    for (from, migration) in (found..).zip(migrations.iter().skip(skip)) {
        tracing::info!(from, to = from + 1, "migrating metadata store schema");
        migration(txn).map_err(|e| StoreError::Migration {
            from,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// A new database has no version yet. It must then also have no records: records without a
/// version came from something that is not this store, and guessing their layout could destroy
/// them.
fn ensure_no_records(txn: &WriteTransaction) -> Result<(), StoreError> {
    for kind in RecordKind::ALL {
        let table = txn.open_table(record_table(kind))?;
        if !redb::ReadableTableMetadata::is_empty(&table)? {
            return Err(StoreError::SchemaInvalid {
                reason: format!(
                    "table {:?} holds records but the schema version is missing",
                    kind.table_name()
                ),
            });
        }
    }
    Ok(())
}

/// Reads the schema version from any table that can read [`META`].
pub(crate) fn read_version_from<T>(meta: &T) -> Result<Option<u32>, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let Some(bytes) = meta.get(SCHEMA_VERSION_KEY)? else {
        return Ok(None);
    };
    let bytes = bytes.value();
    let raw: [u8; 4] = bytes.try_into().map_err(|_| StoreError::SchemaInvalid {
        reason: format!("schema version is {} bytes long, expected 4", bytes.len()),
    })?;
    match u32::from_le_bytes(raw) {
        0 => Err(StoreError::SchemaInvalid {
            reason: "schema version is 0".to_owned(),
        }),
        version => Ok(Some(version)),
    }
}

fn read_version(txn: &WriteTransaction) -> Result<Option<u32>, StoreError> {
    read_version_from(&txn.open_table(META)?)
}

fn write_version(txn: &WriteTransaction, version: u32) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    meta.insert(SCHEMA_VERSION_KEY, version.to_le_bytes().as_slice())?;
    Ok(())
}

/// The definition of [`META`], for read transactions.
pub(crate) const fn meta_table() -> TableDefinition<'static, &'static str, &'static [u8]> {
    META
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, ReadableDatabase};

    const MARKS: TableDefinition<&str, u32> = TableDefinition::new("test_marks");

    fn mark(txn: &WriteTransaction, name: &str) -> Result<(), StoreError> {
        txn.open_table(MARKS)?.insert(name, 1)?;
        Ok(())
    }

    fn to_2(txn: &WriteTransaction) -> Result<(), StoreError> {
        mark(txn, "to_2")
    }
    fn to_3(txn: &WriteTransaction) -> Result<(), StoreError> {
        mark(txn, "to_3")
    }
    fn fail(_: &WriteTransaction) -> Result<(), StoreError> {
        Err(StoreError::SchemaInvalid {
            reason: "test migration failed".to_owned(),
        })
    }

    fn db_at(version: Option<u32>) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.db")).unwrap();
        if let Some(v) = version {
            let txn = db.begin_write().unwrap();
            write_version(&txn, v).unwrap();
            txn.commit().unwrap();
        }
        (dir, db)
    }

    fn version(db: &Database) -> Option<u32> {
        let txn = db.begin_read().unwrap();
        read_version_from(&txn.open_table(META).unwrap()).unwrap()
    }

    fn marks(db: &Database) -> Vec<String> {
        let txn = db.begin_read().unwrap();
        let Ok(table) = txn.open_table(MARKS) else {
            return Vec::new();
        };
        table
            .iter()
            .unwrap()
            .map(|e| e.unwrap().0.value().to_owned())
            .collect()
    }

    #[test]
    fn new_database_gets_current_version_and_tables() {
        let (_dir, db) = db_at(None);
        let txn = db.begin_write().unwrap();
        assert_eq!(init(&txn).unwrap(), Init::Created { version: 1 });
        txn.commit().unwrap();
        assert_eq!(version(&db), Some(SCHEMA_VERSION));
        let txn = db.begin_read().unwrap();
        for kind in RecordKind::ALL {
            txn.open_table(record_table(kind)).unwrap();
        }
    }

    #[test]
    fn migrations_run_in_order_from_the_stored_version() {
        let (_dir, db) = db_at(Some(1));
        let txn = db.begin_write().unwrap();
        let got = init_with(&txn, &[to_2, to_3]).unwrap();
        txn.commit().unwrap();
        assert_eq!(got, Init::Migrated { from: 1, to: 3 });
        assert_eq!(version(&db), Some(3));
        assert_eq!(marks(&db), ["to_2", "to_3"]);

        // Starting from 2 runs only the second migration.
        let (_dir, db) = db_at(Some(2));
        let txn = db.begin_write().unwrap();
        init_with(&txn, &[fail, to_3]).unwrap();
        txn.commit().unwrap();
        assert_eq!(marks(&db), ["to_3"]);
    }

    #[test]
    fn failed_migration_leaves_database_unchanged() {
        let (_dir, db) = db_at(Some(1));
        let txn = db.begin_write().unwrap();
        let err = init_with(&txn, &[to_2, fail]).unwrap_err();
        drop(txn); // never committed, as Store::open does on error
        assert!(
            matches!(err, StoreError::Migration { from: 2, .. }),
            "{err:?}"
        );
        assert_eq!(version(&db), Some(1));
        assert!(marks(&db).is_empty());
    }

    #[test]
    fn newer_version_is_refused() {
        let (_dir, db) = db_at(Some(SCHEMA_VERSION + 1));
        let txn = db.begin_write().unwrap();
        let err = init(&txn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_version_is_invalid() {
        let (_dir, db) = db_at(None);
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_VERSION_KEY, b"x".as_slice())
            .unwrap();
        assert!(matches!(
            init(&txn).unwrap_err(),
            StoreError::SchemaInvalid { .. }
        ));

        let (_dir, db) = db_at(Some(0));
        let txn = db.begin_write().unwrap();
        assert!(matches!(
            init(&txn).unwrap_err(),
            StoreError::SchemaInvalid { .. }
        ));
    }

    #[test]
    fn records_without_version_are_refused() {
        let (_dir, db) = db_at(None);
        let txn = db.begin_write().unwrap();
        txn.open_table(record_table(RecordKind::Container))
            .unwrap()
            .insert("c1", b"{}".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let txn = db.begin_write().unwrap();
        assert!(matches!(
            init(&txn).unwrap_err(),
            StoreError::SchemaInvalid { .. }
        ));
    }
}
