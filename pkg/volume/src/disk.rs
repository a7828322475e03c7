//! The on-disk form of volumes, and the steps that keep it consistent across crashes.
//!
//! `<root>/volumes/<name>/` holds `volume.json` (name, labels, creation time) and `_data/` (what
//! containers see). A volume is made complete in a scratch dir `.tmp-<name>-<rand>` (data dir,
//! metadata written and fsynced) and then renamed to `<name>`: a crash leaves either no volume
//! or a whole one, plus scratch to delete at the next start. Removal renames `<name>` to
//! `.rm-<name>-<rand>` first (the volume is gone at once, atomically) and then deletes the tree,
//! which the next start finishes if a crash interrupts it. Names never start with `.`, so the
//! scratch dirs can't be mistaken for volumes.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::VolumeError;

pub(crate) const META_FILE: &str = "volume.json";
pub(crate) const DATA_DIR: &str = "_data";
const TMP_PREFIX: &str = ".tmp-";
const RM_PREFIX: &str = ".rm-";

/// What `volume.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
}

/// 16 random hex digits (scratch dir suffixes) or 64 (generated names, as docker's anonymous ones).
pub(crate) fn random_hex(bytes: usize) -> Result<String, VolumeError> {
    let mut buf = vec![0u8; bytes];
    let path = Path::new("/dev/urandom");
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(VolumeError::io("read", path))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn sync_dir(dir: &Path) -> Result<(), VolumeError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(VolumeError::io("fsync", dir))
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<(), VolumeError> {
    let path = dir.join(META_FILE);
    let bytes = serde_json::to_vec_pretty(meta).map_err(|source| VolumeError::Metadata {
        op: "encode",
        path: path.clone(),
        source,
    })?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(VolumeError::io("create", &path))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(VolumeError::io("write", &path))
}

/// Makes the volume `meta.name` under `dir`, whole or not at all.
pub(crate) fn create(dir: &Path, meta: &Meta) -> Result<PathBuf, VolumeError> {
    let scratch = dir.join(format!("{TMP_PREFIX}{}-{}", meta.name, random_hex(8)?));
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o711);
    builder
        .create(&scratch)
        .map_err(VolumeError::io("create", &scratch))?;
    let made = (|| {
        let data = scratch.join(DATA_DIR);
        // 0755 as docker's: readable by a container's non-root user, writable by root.
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&data)
            .map_err(VolumeError::io("create", &data))?;
        write_meta(&scratch, meta)?;
        sync_dir(&scratch)?;
        let target = dir.join(&meta.name);
        fs::rename(&scratch, &target).map_err(VolumeError::io("rename", &target))?;
        sync_dir(dir)?;
        Ok(target)
    })();
    if made.is_err() {
        let _ = fs::remove_dir_all(&scratch);
    }
    made
}

/// Removes the volume `name` under `dir`; returns the bytes its files held.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<u64, VolumeError> {
    let path = dir.join(name);
    let doomed = dir.join(format!("{RM_PREFIX}{name}-{}", random_hex(8)?));
    fs::rename(&path, &doomed).map_err(VolumeError::io("rename", &path))?;
    sync_dir(dir)?;
    let bytes = tree_size(&doomed.join(DATA_DIR));
    fs::remove_dir_all(&doomed).map_err(VolumeError::io("remove", &doomed))?;
    Ok(bytes)
}

/// Bytes of the regular files below `path`, never following symlinks; unreadable parts count 0.
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.size() } else { 0 };
    }
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| tree_size(&e.path()))
        .sum()
}

/// Reads every volume under `dir`, first finishing what a crash interrupted: scratch of creations
/// and removals is deleted; a volume dir whose metadata is missing or unreadable (made by hand,
/// or damaged) is completed with fresh metadata rather than deleted, since its data may matter.
pub(crate) fn load(dir: &Path) -> Result<BTreeMap<String, Meta>, VolumeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(VolumeError::io("create", dir))?;
    let mut volumes = BTreeMap::new();
    let entries = fs::read_dir(dir).map_err(VolumeError::io("read", dir))?;
    for entry in entries {
        let entry = entry.map_err(VolumeError::io("read", dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) || name.starts_with(RM_PREFIX) {
            tracing::info!(path = %path.display(), "removing what an interrupted volume create or remove left");
            fs::remove_dir_all(&path).map_err(VolumeError::io("remove", &path))?;
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || crate::validate_name(&name).is_err() {
            tracing::warn!(path = %path.display(), "not a volume; left alone");
            continue;
        }
        let meta = match read_meta(&path) {
            Ok(meta) if meta.name == name => meta,
            found => {
                tracing::warn!(path = %path.display(), problem = ?found.err().map(|e| e.to_string()), "volume metadata missing or unreadable; writing it afresh (labels are lost)");
                complete(&path, &name)?
            }
        };
        volumes.insert(name, meta);
    }
    sync_dir(dir)?;
    Ok(volumes)
}

fn read_meta(path: &Path) -> Result<Meta, VolumeError> {
    let file = path.join(META_FILE);
    let bytes = fs::read(&file).map_err(VolumeError::io("read", &file))?;
    serde_json::from_slice(&bytes).map_err(|source| VolumeError::Metadata {
        op: "decode",
        path: file,
        source,
    })
}

fn complete(path: &Path, name: &str) -> Result<Meta, VolumeError> {
    let data = path.join(DATA_DIR);
    if !data.is_dir() {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&data)
            .map_err(VolumeError::io("create", &data))?;
    }
    let created_at = fs::metadata(path)
        .map(|m| m.mtime().saturating_mul(1_000_000_000))
        .unwrap_or_else(|_| berth_clock::now_ns());
    let meta = Meta {
        name: name.to_string(),
        labels: BTreeMap::new(),
        created_at,
    };
    let file = path.join(META_FILE);
    match fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(VolumeError::io("remove", &file)(e)),
    }
    write_meta(path, &meta)?;
    sync_dir(path)?;
    Ok(meta)
}
