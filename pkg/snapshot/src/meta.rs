//! On-disk metadata: each snapshot directory carries an `info.json` naming its chain ID.
//!
//! Keeping the mapping inside the snapshot directory (rather than in a separate database)
//! makes a snapshot one unit that appears atomically with a rename and disappears atomically
//! with another; the in-memory index is rebuilt from these files on open.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::{chain_id, validate_digest};
use crate::error::SnapshotError;

/// File name of the metadata inside a snapshot directory.
pub(crate) const INFO_FILE: &str = "info.json";
/// Subdirectory of a snapshot directory holding the layer's diff (an overlay lowerdir).
pub(crate) const DIFF_DIR: &str = "fs";
const FORMAT_VERSION: u32 = 1;

/// A committed snapshot, as recorded on disk and kept in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) version: u32,
    pub(crate) chain_id: String,
    pub(crate) parent: Option<String>,
    pub(crate) diff_id: String,
    /// Bytes of regular-file content in the diff.
    pub(crate) size: u64,
    pub(crate) created_unix_secs: u64,
}

impl Meta {
    pub(crate) fn new(chain_id: &str, parent: Option<&str>, diff_id: &str, size: u64) -> Meta {
        Meta {
            version: FORMAT_VERSION,
            chain_id: chain_id.to_string(),
            parent: parent.map(str::to_string),
            diff_id: diff_id.to_string(),
            size,
            created_unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    pub(crate) fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.created_unix_secs)
    }

    /// Writes `info.json` into `dir`, fsync'd if `sync`.
    pub(crate) fn write(&self, dir: &Path, sync: bool) -> Result<(), SnapshotError> {
        let path = dir.join(INFO_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|source| SnapshotError::EncodeMeta {
            path: path.clone(),
            source,
        })?;
        let mut file = File::create(&path).map_err(|e| SnapshotError::io("create", &path, e))?;
        file.write_all(&json)
            .map_err(|e| SnapshotError::io("write", &path, e))?;
        if sync {
            file.sync_all()
                .map_err(|e| SnapshotError::io("fsync", &path, e))?;
        }
        Ok(())
    }

    /// Reads and validates `info.json` in `dir`.
    fn read(dir: &Path) -> Result<Meta, SnapshotError> {
        let path = dir.join(INFO_FILE);
        let bytes = fs::read(&path).map_err(|e| SnapshotError::io("read", &path, e))?;
        let corrupt = |reason: String| SnapshotError::Corrupt {
            path: path.clone(),
            reason,
        };
        let meta: Meta =
            serde_json::from_slice(&bytes).map_err(|source| SnapshotError::ParseMeta {
                path: path.clone(),
                source,
            })?;
        if meta.version != FORMAT_VERSION {
            return Err(corrupt(format!("unknown format version {}", meta.version)));
        }
        for digest in [
            Some(&meta.chain_id),
            Some(&meta.diff_id),
            meta.parent.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            validate_digest(digest).map_err(|e| SnapshotError::MetaDigest {
                path: path.clone(),
                source: Box::new(e),
            })?;
        }
        if chain_id(meta.parent.as_deref(), &meta.diff_id) != meta.chain_id {
            return Err(corrupt("chain ID does not match parent and diff ID".into()));
        }
        Ok(meta)
    }
}

/// The index rebuilt on open, plus what must be deleted.
pub(crate) struct Loaded {
    /// chain ID → (snapshot dir id, metadata).
    pub(crate) index: HashMap<String, (u64, Meta)>,
    /// Directories under `snapshots/` that are unusable (unparseable name or metadata,
    /// duplicate chain ID, missing ancestor) and must be discarded.
    pub(crate) discard: Vec<PathBuf>,
    /// Highest snapshot dir id seen (including discarded ones).
    pub(crate) max_id: u64,
}

/// Scans `snapshots_dir` and builds the index.
///
/// A damaged snapshot is discarded rather than failing the open: layers are re-pullable, and
/// refusing to start berthd over one bad directory would be worse. Children of a discarded
/// snapshot are discarded too, since their rootfs would be incomplete.
pub(crate) fn load(snapshots_dir: &Path) -> Result<Loaded, SnapshotError> {
    let mut index: HashMap<String, (u64, Meta)> = HashMap::new();
    let mut discard = Vec::new();
    let mut max_id = 0;
    let entries = fs::read_dir(snapshots_dir)
        .map_err(|e| SnapshotError::io("read directory", snapshots_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io("read directory", snapshots_dir, e))?;
        let path = entry.path();
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            tracing::warn!(path = %path.display(), "discarding unexpected entry in snapshots directory");
            discard.push(path);
            continue;
        };
        max_id = max_id.max(id);
        match Meta::read(&path) {
            Ok(meta) => match index.get(&meta.chain_id) {
                Some((other, _)) if *other < id => {
                    tracing::warn!(path = %path.display(), chain_id = %meta.chain_id, "discarding duplicate snapshot");
                    discard.push(path);
                }
                _ => {
                    if let Some((other, _)) = index.insert(meta.chain_id.clone(), (id, meta)) {
                        discard.push(snapshots_dir.join(other.to_string()));
                    }
                }
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unreadable snapshot");
                discard.push(path);
            }
        }
    }
    // Drop snapshots whose parent is gone, until none is left dangling.
    loop {
        let orphans: Vec<String> = index
            .values()
            .filter(|(_, m)| m.parent.as_ref().is_some_and(|p| !index.contains_key(p)))
            .map(|(_, m)| m.chain_id.clone())
            .collect();
        if orphans.is_empty() {
            break;
        }
        for chain_id in orphans {
            if let Some((id, _)) = index.remove(&chain_id) {
                tracing::warn!(%chain_id, "discarding snapshot whose parent is missing");
                discard.push(snapshots_dir.join(id.to_string()));
            }
        }
    }
    Ok(Loaded {
        index,
        discard,
        max_id,
    })
}
