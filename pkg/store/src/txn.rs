//! Multi-record write transactions.

use redb::{Table, WriteTransaction};

use crate::error::StoreError;
use crate::record::Record;
use crate::tables;

/// An open write transaction, handed to the closure of [`crate::Store::write`].
///
/// Reads through it see the transaction's own uncommitted writes. Nothing becomes visible to other
/// readers, or durable, until the closure returns `Ok` and the commit succeeds; if the closure
/// returns `Err` (or panics) every change is discarded.
///
/// An error returned by one of these methods does not by itself abort the transaction: a closure
/// may, for instance, treat [`StoreError::AlreadyExists`] from [`WriteTxn::insert_new`] as
/// expected and carry on. A storage failure, however, leaves redb unable to commit, and the commit
/// then fails.
pub struct WriteTxn<'a> {
    txn: &'a WriteTransaction,
}

impl<'a> WriteTxn<'a> {
    pub(crate) fn new(txn: &'a WriteTransaction) -> Self {
        WriteTxn { txn }
    }

    /// Opens `R`'s table. redb allows each table to be open once per transaction at a time, so
    /// every method opens it for just its own duration.
    fn table<R: Record>(&self) -> Result<Table<'_, &'static str, &'static [u8]>, StoreError> {
        Ok(self.txn.open_table(tables::record_table(R::KIND))?)
    }

    /// Inserts or replaces `rec`.
    pub fn put<R: Record>(&mut self, rec: &R) -> Result<(), StoreError> {
        tables::put(&mut self.table::<R>()?, rec)
    }

    /// Inserts `rec`; fails with [`StoreError::AlreadyExists`] if its id is taken.
    pub fn insert_new<R: Record>(&mut self, rec: &R) -> Result<(), StoreError> {
        tables::insert_new(&mut self.table::<R>()?, rec)
    }

    /// Removes the record with this id, without decoding it. Returns whether it existed.
    pub fn delete<R: Record>(&mut self, id: &str) -> Result<bool, StoreError> {
        tables::delete(&mut self.table::<R>()?, id)
    }

    /// The record with this id, including changes made earlier in this transaction.
    pub fn get<R: Record>(&self, id: &str) -> Result<Option<R>, StoreError> {
        tables::get(&self.table::<R>()?, id)
    }

    /// Every record of this kind, in id order, as [`crate::Store::list`].
    pub fn list<R: Record>(&self) -> Result<Vec<R>, StoreError> {
        tables::list(&self.table::<R>()?)
    }

    /// As [`crate::Store::ids_with_prefix`], within this transaction.
    pub fn ids_with_prefix<R: Record>(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        tables::ids_with_prefix(&self.table::<R>()?, prefix)
    }

    /// As [`crate::Store::resolve_prefix`], within this transaction.
    pub fn resolve_prefix<R: Record>(&self, prefix: &str) -> Result<String, StoreError> {
        tables::resolve_prefix(&self.table::<R>()?, R::KIND, prefix)
    }
}
