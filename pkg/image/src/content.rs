//! The content store: manifests, indexes and image configs by digest.
//!
//! Blobs are written to a temp file under `ingest/`, fsynced, verified and renamed into
//! `blobs/sha256/<hex>`, so a blob path only ever holds complete, verified content. Layer blobs are not
//! kept here: they are streamed straight into their snapshot (verified on the way), which saves a full
//! write and read of every layer and the disk space of a second copy.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Digest, ImageError};

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store and drops ingests left by an interrupted berthd.
    pub fn open(root: &Path) -> Result<ContentStore, ImageError> {
        let blobs = root.join("blobs/sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).map_err(ImageError::io("create", &blobs))?;
        if ingest.exists() {
            fs::remove_dir_all(&ingest).map_err(ImageError::io("remove", &ingest))?;
        }
        fs::create_dir_all(&ingest).map_err(ImageError::io("create", &ingest))?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Reads a blob and checks it still matches its digest (these blobs are small).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(|source| ImageError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` under `digest` after checking they match. Idempotent.
    pub fn write(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
        let actual = Digest::of(bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: "blob".to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let target = self.path(digest);
        if target.is_file() {
            return Ok(());
        }
        let tmp = tempfile_in(&self.ingest, digest.hex())?;
        let mut file = File::create(&tmp).map_err(|source| ImageError::Io {
            op: "create",
            path: tmp.clone(),
            source,
        })?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|source| ImageError::Io {
                op: "write",
                path: tmp.clone(),
                source,
            })?;
        fs::rename(&tmp, &target).map_err(|source| ImageError::Io {
            op: "rename to",
            path: target.clone(),
            source,
        })?;
        Ok(())
    }

    /// Deletes a blob; false if it was not there.
    pub fn delete(&self, digest: &Digest) -> Result<bool, ImageError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(ImageError::Io {
                op: "remove",
                path,
                source,
            }),
        }
    }

    /// Every stored blob's digest.
    pub fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let entries = fs::read_dir(&self.blobs).map_err(|source| ImageError::Io {
            op: "list",
            path: self.blobs.clone(),
            source,
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok()
            })
            .collect())
    }

    /// Bytes (allocated blocks) and inodes used by stored blobs.
    pub fn usage(&self) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = fs::read_dir(&self.blobs) else {
            return (0, 0);
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .fold((0, 0), |(bytes, inodes), m| {
                (bytes + m.blocks() * 512, inodes + 1)
            })
    }
}

fn tempfile_in(dir: &Path, name: &str) -> Result<PathBuf, ImageError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("{name}.{}.{n}", std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_verify_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"{}");
        assert!(!store.has(&d));
        store.write(&d, b"{}").unwrap();
        store.write(&d, b"{}").unwrap();
        assert_eq!(store.read(&d).unwrap(), b"{}");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);
        assert!(store.usage().1 == 1);
        // Wrong content for a digest is refused and nothing is stored.
        let other = Digest::of(b"other");
        assert!(matches!(
            store.write(&other, b"tampered"),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(!store.has(&other));
        // Corruption on disk is detected on read.
        fs::write(store.path(&d), b"{ }").unwrap();
        assert!(store.read(&d).is_err());
        assert!(store.delete(&d).unwrap());
        assert!(!store.delete(&d).unwrap());
    }

    #[test]
    fn interrupted_ingests_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        ContentStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("ingest/partial"), b"half").unwrap();
        ContentStore::open(dir.path()).unwrap();
        assert!(!dir.path().join("ingest/partial").exists());
    }
}
