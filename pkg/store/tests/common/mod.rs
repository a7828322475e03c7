//! Record types and helpers shared by the integration tests. They stand in for the structs the
//! image, sandbox and container crates define.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_store::{Record, RecordKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub size: u64,
}

impl Record for Image {
    const KIND: RecordKind = RecordKind::Image;
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub containers: Vec<String>,
}

impl Record for Sandbox {
    const KIND: RecordKind = RecordKind::Sandbox;
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Record for Container {
    const KIND: RecordKind = RecordKind::Container;
    fn id(&self) -> &str {
        &self.id
    }
}

pub fn image(id: &str) -> Image {
    Image {
        id: id.to_owned(),
        repo_tags: vec![format!("registry.example/{id}:latest")],
        size: 42 * id.len() as u64,
    }
}

pub fn sandbox(id: &str) -> Sandbox {
    Sandbox {
        id: id.to_owned(),
        name: format!("pod-{id}"),
        containers: Vec::new(),
    }
}

pub fn container(id: &str, sandbox_id: &str) -> Container {
    Container {
        id: id.to_owned(),
        sandbox_id: sandbox_id.to_owned(),
        name: format!("ctr-{id}"),
        labels: BTreeMap::from([("io.kubernetes.pod.name".to_owned(), sandbox_id.to_owned())]),
    }
}

/// A temporary directory and the database path inside it.
pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create tempdir");
    let path = dir.path().join("berth.db");
    (dir, path)
}

/// Writes raw bytes into a record table, bypassing the store, to fake damage or an old/new
/// format. The store must not have the file open.
pub fn raw_insert(path: &Path, table: &str, key: &str, value: &[u8]) {
    let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new(table);
    let db = redb::Database::create(path).expect("open raw");
    let txn = db.begin_write().expect("begin raw write");
    txn.open_table(def)
        .expect("open raw table")
        .insert(key, value)
        .expect("raw insert");
    txn.commit().expect("commit raw write");
}

/// Reads raw bytes from a table, bypassing the store.
pub fn raw_get(path: &Path, table: &str, key: &str) -> Option<Vec<u8>> {
    use redb::ReadableDatabase;
    let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new(table);
    let db = redb::Database::create(path).expect("open raw");
    let txn = db.begin_read().expect("begin raw read");
    let table = txn.open_table(def).expect("open raw table");
    table.get(key).expect("raw get").map(|v| v.value().to_vec())
}
