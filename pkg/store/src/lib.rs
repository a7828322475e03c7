//! Berth's embedded metadata store.
//!
//! berthd keeps the state it must not lose across restarts (images, pod sandboxes, containers) in
//! one [redb](https://www.redb.org) database at `<root>/berth.db`. Each capability crate defines
//! its own record struct and implements [`Record`] for it; this crate gives every [`RecordKind`]
//! its own table and a small synchronous API over them:
//!
//! ```no_run
//! use berth_store::{Record, RecordKind, Store};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Sandbox {
//!     id: String,
//!     name: String,
//!     #[serde(default)] // added later: old records still decode
//!     ready: bool,
//! }
//!
//! impl Record for Sandbox {
//!     const KIND: RecordKind = RecordKind::Sandbox;
//!     fn id(&self) -> &str {
//!         &self.id
//!     }
//! }
//!
//! # fn main() -> Result<(), berth_store::StoreError> {
//! let store = Store::open("/var/lib/berth/berth.db")?;
//! store.insert_new(&Sandbox { id: "4f2a9c".into(), name: "web".into(), ready: false })?;
//! let id = store.resolve_prefix::<Sandbox>("4f2")?;
//! let sandbox: Option<Sandbox> = store.get(&id)?;
//! # let _ = sandbox;
//! # Ok(())
//! # }
//! ```
//!
//! Guarantees:
//! - every write is one redb transaction, durable (fsync'd) when the call returns; several records
//!   change atomically through [`Store::write`];
//! - a crash or `SIGKILL` at any point loses at most the transaction in flight: on the next open
//!   redb repairs the file and every earlier commit is intact (a test kills a writer process
//!   repeatedly to check this);
//! - a record that cannot be decoded is reported as [`StoreError::Corrupt`] naming its table and
//!   id, never skipped silently;
//! - a database written by a newer schema is refused ([`StoreError::SchemaTooNew`]) rather than
//!   misread.

mod cache;
mod codec;
mod error;
mod filter;
mod ids;
mod one_at_a_time;
mod record;
mod schema;
mod store;
mod tables;
mod txn;

pub use cache::{RecordCache, RecordLock};
pub use error::{CorruptError, StoreError};
pub use filter::{ListFilter, Listed};
pub use ids::{IdLookup, generate_id, resolve_id};
pub use one_at_a_time::OneAtATime;
pub use record::{Record, RecordKind};
pub use schema::SCHEMA_VERSION;
pub use store::Store;
pub use txn::WriteTxn;

/// The file name berthd uses for the store inside its root directory.
pub const DB_FILE_NAME: &str = "berth.db";

// The handle is shared across threads and errors travel through `anyhow`/tasks: keep both
// thread-safe, checked at compile time.
const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<StoreError>();
};
