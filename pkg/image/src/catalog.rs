//! The in-memory catalog of images: every lookup kubelet makes (by ID, tag, digest or short name) is a
//! hash lookup, so ImageStatus and ListImages never touch the disk. The metadata store is the source of
//! truth; the catalog is loaded from it at startup and updated after each committed write.

use std::collections::HashMap;

use berth_registry::Reference;

use crate::record::ImageRecord;

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    by_id: HashMap<String, ImageRecord>,
    /// `registry/repo:tag` -> id
    tags: HashMap<String, String>,
    /// `registry/repo@sha256:...` -> id
    digests: HashMap<String, String>,
}

impl Catalog {
    pub(crate) fn from_records(records: Vec<ImageRecord>) -> Catalog {
        let mut catalog = Catalog::default();
        for record in records {
            catalog.insert(record);
        }
        catalog
    }

    pub(crate) fn insert(&mut self, record: ImageRecord) {
        self.remove(&record.id.clone());
        for tag in &record.repo_tags {
            self.tags.insert(tag.clone(), record.id.clone());
        }
        for digest in &record.repo_digests {
            self.digests.insert(digest.clone(), record.id.clone());
        }
        self.by_id.insert(record.id.clone(), record);
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<ImageRecord> {
        let record = self.by_id.remove(id)?;
        for tag in &record.repo_tags {
            if self.tags.get(tag).is_some_and(|owner| owner == id) {
                self.tags.remove(tag);
            }
        }
        for digest in &record.repo_digests {
            if self.digests.get(digest).is_some_and(|owner| owner == id) {
                self.digests.remove(digest);
            }
        }
        Some(record)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&ImageRecord> {
        self.by_id.get(id)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &ImageRecord> {
        self.by_id.values()
    }

    /// The image currently holding tag `name:tag`.
    pub(crate) fn tagged(&self, tag: &str) -> Option<&ImageRecord> {
        self.tags.get(tag).and_then(|id| self.by_id.get(id))
    }

    /// Resolves what kubelet or a user may pass: an image ID (`sha256:...` or its hex), a name with tag,
    /// digest or both, a short name (`busybox`), or a unique ID prefix (names win over ID prefixes, as
    /// in Docker).
    pub(crate) fn lookup(&self, query: &str) -> Option<&ImageRecord> {
        let query = query.trim();
        if query.is_empty() {
            return None;
        }
        if let Some(record) = self.by_id.get(query) {
            return Some(record);
        }
        let is_hex =
            |s: &str| !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if query.len() == 64 && is_hex(query) {
            return self.by_id.get(&format!("sha256:{query}"));
        }
        if let Ok(reference) = Reference::parse(query) {
            if let Some(digest) = &reference.digest {
                let key = format!("{}@{digest}", reference.name());
                if let Some(id) = self.digests.get(&key) {
                    return self.by_id.get(id);
                }
                // An image ID given as name@digest is not a repo digest; fall through.
            } else if let Some(tag) = &reference.tag
                && let Some(id) = self.tags.get(&format!("{}:{tag}", reference.name()))
            {
                return self.by_id.get(id);
            }
        }
        let prefix = query.strip_prefix("sha256:").unwrap_or(query);
        if prefix.len() >= 4 && is_hex(prefix) {
            let mut matches = self
                .by_id
                .values()
                .filter(|r| r.id["sha256:".len()..].starts_with(prefix));
            if let (Some(only), None) = (matches.next(), matches.next()) {
                return Some(only);
            }
        }
        None
    }
}
