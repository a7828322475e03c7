//! The store handle: opening the database and the one-call operations.

use std::cell::Cell;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use redb::{Database, DatabaseError, ReadOnlyTable, ReadableDatabase};

use crate::error::StoreError;
use crate::record::{Record, RecordKind};
use crate::schema::{self, Init};
use crate::tables;
use crate::txn::WriteTxn;

/// Upper bound on redb's page cache. redb defaults to 1 GiB; berthd's metadata is a few MiB, and a
/// node agent should not be able to grow that large by accident.
const CACHE_SIZE: usize = 64 * 1024 * 1024;

/// Handle to the metadata store.
///
/// Cheap to clone (an `Arc`), `Send + Sync`: open it once at startup and share clones. Opening the
/// same file twice fails with [`StoreError::Locked`], because redb locks the whole file.
///
/// Every call is synchronous and may touch the disk; from async code, run it on a blocking thread.
/// Writes are serialized (redb has a single writer): a write waits for the one in progress, and
/// each commit is durable (fsync'd) before it returns. Reads run concurrently with each other and
/// with a write, each on a consistent snapshot of the last commit.
///
/// Records are listed and scanned in id order (bytewise).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Whether redb had to repair the file when this handle opened it.
    recovered: bool,
    /// The thread inside [`Store::write`], if any, so a nested write on that thread fails with
    /// [`StoreError::NestedWrite`] instead of waiting for itself forever.
    writer: Mutex<Option<ThreadId>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating the file (mode 0600) and any missing parent directories
    /// if needed.
    ///
    /// A new database gets every table and the current schema version; an older schema is
    /// migrated; a newer one is refused with [`StoreError::SchemaTooNew`] without touching the file.
    /// A file that was not closed cleanly (berthd crashed or was killed) is repaired by redb first,
    /// which reads the whole file; every transaction committed before the crash is kept.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        prepare_file(path)?;
        let (db, recovered) = open_database(path)?;

        // Schema check and creation in one transaction: on any error it is dropped uncommitted,
        // so a refused file is left exactly as it was.
        let init = (|| {
            let txn = db.begin_write()?;
            let init = schema::init(&txn)?;
            txn.commit()?;
            Ok(init)
        })()
        .map_err(|e| match e {
            // Give low-level failures the file's name; schema verdicts speak for themselves.
            StoreError::Db(source) => StoreError::Open {
                path: path.to_owned(),
                source,
            },
            other => other,
        })?;
        match init {
            Init::Created { version } => {
                tracing::info!(path = %path.display(), version, "created metadata store");
            }
            Init::Current { version } => {
                tracing::info!(path = %path.display(), version, recovered, "opened metadata store");
            }
            Init::Migrated { from, to } => {
                tracing::info!(path = %path.display(), from, to, "migrated metadata store");
            }
        }

        Ok(Store {
            inner: Arc::new(Inner {
                db,
                path: path.to_owned(),
                recovered,
                writer: Mutex::new(None),
            }),
        })
    }

    /// Closes the database, recording a clean shutdown so that the next [`Store::open`] needs no
    /// repair (and [`Store::recovered`] is false then).
    ///
    /// Dropping the last clone does the same but cannot report a failure. This consumes the
    /// handle and refuses with [`StoreError::InUse`] while other clones exist: a clone still held
    /// (by a task, a service, a reference cycle) would keep the file open and locked, and the
    /// caller should know rather than believe the store closed.
    pub fn close(self) -> Result<(), StoreError> {
        let inner = Arc::try_unwrap(self.inner).map_err(|inner| StoreError::InUse {
            path: inner.path.clone(),
            handles: Arc::strong_count(&inner) - 1,
        })?;
        let path = inner.path;
        inner.db.close().map_err(|e| StoreError::Close {
            path,
            source: e.into(),
        })?;
        tracing::debug!("metadata store closed");
        Ok(())
    }

    /// The path this store was opened with.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the file had not been closed cleanly and redb repaired it during [`Store::open`].
    /// Nothing committed is lost by a repair; this is for logs and metrics.
    pub fn recovered(&self) -> bool {
        self.inner.recovered
    }

    /// The schema version recorded in the database (after [`Store::open`], always
    /// [`crate::SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let meta = txn.open_table(schema::meta_table())?;
        schema::read_version_from(&meta)?.ok_or_else(|| StoreError::SchemaInvalid {
            reason: "schema version is missing".to_owned(),
        })
    }

    /// Inserts or replaces `rec`. Durable when this returns `Ok`.
    pub fn put<R: Record>(&self, rec: &R) -> Result<(), StoreError> {
        self.write(|txn| txn.put(rec))
    }

    /// Inserts `rec`; fails with [`StoreError::AlreadyExists`] if a record with its id exists.
    /// Durable when this returns `Ok`.
    pub fn insert_new<R: Record>(&self, rec: &R) -> Result<(), StoreError> {
        self.write(|txn| txn.insert_new(rec))
    }

    /// Removes the record with this id. Returns whether it existed. The record is not decoded, so
    /// this also removes records reported as [`StoreError::Corrupt`].
    pub fn delete<R: Record>(&self, id: &str) -> Result<bool, StoreError> {
        self.write(|txn| txn.delete::<R>(id))
    }

    /// The record with exactly this id, if any.
    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>, StoreError> {
        self.read(R::KIND, |table| tables::get(table, id))
    }

    /// Every record of this kind, in id order. A record that cannot be decoded fails the whole
    /// call with [`StoreError::Corrupt`] naming it, rather than being left out; use
    /// [`Store::scan`] to get the others anyway.
    pub fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        self.read(R::KIND, tables::list)
    }

    /// Every record of this kind, in id order, each decoded separately: a corrupt record yields
    /// its own `Err(StoreError::Corrupt)` without hiding the others. For startup recovery, where
    /// one bad record should be reported (and possibly deleted) rather than stop the daemon.
    pub fn scan<R: Record>(&self) -> Result<Vec<Result<R, StoreError>>, StoreError> {
        self.read(R::KIND, tables::scan)
    }

    /// The ids of this kind starting with `prefix`, in order. The empty prefix lists every id.
    /// Records are not decoded.
    pub fn ids_with_prefix<R: Record>(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.read(R::KIND, |table| tables::ids_with_prefix(table, prefix))
    }

    /// Resolves an id or unique id prefix, as the CRI allows for container and sandbox ids.
    ///
    /// - an id that exists exactly is returned, even if it is also a prefix of other ids;
    /// - otherwise exactly one id starting with `prefix` is returned;
    /// - none: [`StoreError::NotFound`]; several: [`StoreError::Ambiguous`] listing them;
    /// - the empty prefix: [`StoreError::InvalidId`].
    pub fn resolve_prefix<R: Record>(&self, prefix: &str) -> Result<String, StoreError> {
        self.read(R::KIND, |table| {
            tables::resolve_prefix(table, R::KIND, prefix)
        })
    }

    /// Runs `f` in one write transaction, committing (durably) if it returns `Ok` and discarding
    /// every change if it returns `Err` or panics.
    ///
    /// Use it to change several records atomically, e.g. insert a container and update its
    /// sandbox. Inside `f`, use the [`WriteTxn`]: a write through the `Store` on the same thread
    /// fails with [`StoreError::NestedWrite`] (it would wait for this transaction forever), and a
    /// read through the `Store` does not see this transaction's changes. Keep `f` short: it blocks
    /// every other writer.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        WriterGuard::check(&self.inner.writer)?;
        let txn = self.inner.db.begin_write()?;
        let _writer = WriterGuard::claim(&self.inner.writer);
        match f(&mut WriteTxn::new(&txn)) {
            Ok(value) => {
                txn.commit()?;
                Ok(value)
            }
            Err(err) => {
                if let Err(abort) = txn.abort() {
                    // The changes are discarded either way; the caller's error is the useful one.
                    tracing::warn!(error = %abort, "aborting metadata store transaction failed");
                }
                Err(err)
            }
        }
    }

    /// Runs `f` on `kind`'s table in a fresh read transaction (a snapshot of the last commit).
    fn read<T>(
        &self,
        kind: RecordKind,
        f: impl FnOnce(&ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(tables::record_table(kind))?;
        f(&table)
    }
}

/// Creates the parent directories and the file itself, so that the file gets mode 0600 (redb
/// would create it 0644 minus umask): the metadata names every image, pod and container on the
/// node. An existing file is left as it is.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::CreateFile {
            path: path.to_owned(),
            source,
        })
}

/// Opens (or initializes, if empty) the redb file. Returns whether redb had to repair it.
fn open_database(path: &Path) -> Result<(Database, bool), StoreError> {
    // The callback is only invoked when the file needs repair; remember that for the caller.
    let repaired = Rc::new(Cell::new(false));
    let seen = Rc::clone(&repaired);
    let shown = path.display().to_string();
    let db = Database::builder()
        .set_cache_size(CACHE_SIZE)
        .set_repair_callback(move |session| {
            if !seen.replace(true) {
                tracing::warn!(path = %shown, "metadata store was not closed cleanly; repairing");
            }
            tracing::debug!(progress = session.progress(), "metadata store repair");
        })
        .create(path)
        .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.to_owned(),
            },
            other => StoreError::Open {
                path: path.to_owned(),
                source: other.into(),
            },
        })?;
    Ok((db, repaired.get()))
}

/// Marks the current thread as the store's writer for as long as it lives.
struct WriterGuard<'a> {
    writer: &'a Mutex<Option<ThreadId>>,
    me: ThreadId,
}

impl<'a> WriterGuard<'a> {
    /// Fails if the current thread already holds the write transaction. Called before waiting
    /// for it, so that the wait cannot be on ourselves.
    fn check(writer: &Mutex<Option<ThreadId>>) -> Result<(), StoreError> {
        if *lock(writer) == Some(thread::current().id()) {
            return Err(StoreError::NestedWrite);
        }
        Ok(())
    }

    /// Records the current thread as the writer. Called once redb has granted the write
    /// transaction, so the slot only ever names the thread that really holds it (a thread still
    /// waiting must not be named, or the holder's nested write would go undetected).
    fn claim(writer: &'a Mutex<Option<ThreadId>>) -> Self {
        let me = thread::current().id();
        *lock(writer) = Some(me);
        WriterGuard { writer, me }
    }
}

/// The mutex only guards a plain value that is always valid, so a poisoned lock is fine to use.
/// It is held only to read or set that value, never while waiting for redb.
fn lock(writer: &Mutex<Option<ThreadId>>) -> std::sync::MutexGuard<'_, Option<ThreadId>> {
    writer.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // The next writer may already have claimed the slot (redb hands over the transaction at
        // commit, before this guard drops): only clear it if it still names us.
        let mut slot = lock(self.writer);
        if *slot == Some(self.me) {
            *slot = None;
        }
    }
}
