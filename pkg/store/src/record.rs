//! What the store persists: the record kinds and the trait a record type implements.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The kinds of object berthd persists. Each kind has its own redb table, so ids only need to be
/// unique within a kind and a scan of one kind never reads another's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Pulled images (table `images`).
    Image,
    /// Pod sandboxes (table `sandboxes`).
    Sandbox,
    /// Containers (table `containers`).
    Container,
}

impl RecordKind {
    /// Every kind, in a fixed order; [`crate::Store::open`] creates a table for each.
    pub const ALL: [RecordKind; 3] = [
        RecordKind::Image,
        RecordKind::Sandbox,
        RecordKind::Container,
    ];

    /// The name of this kind's redb table. Part of the on-disk format: never rename one without a
    /// schema migration.
    pub const fn table_name(self) -> &'static str {
        match self {
            RecordKind::Image => "images",
            RecordKind::Sandbox => "sandboxes",
            RecordKind::Container => "containers",
        }
    }

    /// The singular noun used in error messages ("container", ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordKind::Image => "image",
            RecordKind::Sandbox => "sandbox",
            RecordKind::Container => "container",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A type the store can persist, keyed by [`Record::id`] in the table of [`Record::KIND`].
///
/// Records are stored as JSON. To stay readable by older and newer builds, give every field added
/// after the first release `#[serde(default)]`, and never rename or retype a field in place: add a
/// new one (or write a schema migration). Unknown fields are ignored on decode unless the type
/// opts into `#[serde(deny_unknown_fields)]`, which would make a downgrade unable to read records
/// written by a newer build, so don't.
///
/// Exactly one record type should exist per [`RecordKind`]; two types sharing a kind would read
/// each other's records.
pub trait Record: Serialize + DeserializeOwned {
    /// The table this record type lives in.
    const KIND: RecordKind;

    /// The primary key. Must be non-empty and must not change for the life of the object: the
    /// store checks on every read that a decoded record still reports the id it is stored under.
    fn id(&self) -> &str;
}
