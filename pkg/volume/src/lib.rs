//! Named volumes, as `docker volume` keeps them: directories under berthd's root
//! (`<root>/volumes/<name>/_data`) that containers mount by host path, with labels and a creation
//! time kept beside them (`volume.json`; see `disk.rs` for how a crash never leaves half a
//! volume).
//!
//! A volume is in use while any container, running or not, has a mount whose host path is its
//! data dir or lies beneath it; such a volume is never removed (docker refuses the same, even
//! with `-f`). Who mounts what comes from a [`MountUsers`] the caller provides (berthd's
//! containers), so this crate knows nothing of containers.

mod disk;
mod error;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use error::VolumeError;

/// Longest name accepted: the scratch dir `.tmp-<name>-<16 hex>` must fit a file name (255).
pub const MAX_NAME_LEN: usize = 200;

/// One container mount, as far as volumes care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountUser {
    pub container_id: String,
    pub container_name: String,
    pub host_path: PathBuf,
}

/// Lists the host paths containers mount (all containers, whatever their state).
pub trait MountUsers: Send + Sync {
    fn mounts(&self) -> Vec<MountUser>;
}

/// A volume and who uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub name: String,
    /// The data dir: what `run -v NAME:/path` mounts.
    pub mountpoint: PathBuf,
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_at_ns: i64,
    /// IDs of the containers mounting it, sorted.
    pub used_by: Vec<String>,
}

/// `label=KEY` (the label is set) or `label=KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
}

impl LabelFilter {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (&self.value, labels.get(&self.key)) {
            (None, found) => found.is_some(),
            (Some(want), found) => found == Some(want),
        }
    }
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pruned {
    pub names: Vec<String>,
    /// Bytes of the regular files their data dirs held.
    pub reclaimed_bytes: u64,
}

/// The volumes of one berthd. Cheap to clone. Its calls do blocking filesystem work: call them
/// from a blocking task.
#[derive(Clone)]
pub struct Volumes {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Every volume's metadata; changes hold this lock from the check to the rename, so two
    /// calls can never both create, or remove, one name.
    volumes: Mutex<BTreeMap<String, disk::Meta>>,
    users: Arc<dyn MountUsers>,
}

/// docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !first_ok || !rest_ok {
        return Err(VolumeError::InvalidName(name.to_string()));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(VolumeError::NameTooLong {
            name: name.to_string(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    if let Some(key) = labels.keys().find(|k| k.trim().is_empty()) {
        return Err(VolumeError::EmptyLabelKey(key.clone()));
    }
    Ok(())
}

/// `path` with `.` and `..` resolved lexically (a CRI host path need not be canonical).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

impl Volumes {
    /// Opens (making it if needed) `<root>/volumes`, finishing what a crash interrupted.
    pub fn open(root: &Path, users: Arc<dyn MountUsers>) -> Result<Volumes, VolumeError> {
        let dir = root.join("volumes");
        let volumes = disk::load(&dir)?;
        tracing::info!(count = volumes.len(), dir = %dir.display(), "volumes loaded");
        Ok(Volumes {
            inner: Arc::new(Inner {
                dir,
                volumes: Mutex::new(volumes),
                users,
            }),
        })
    }

    /// Where volumes live (`<root>/volumes`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, disk::Meta>> {
        self.inner.volumes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        self.inner.dir.join(name).join(disk::DATA_DIR)
    }

    /// Containers (by ID) whose mounts are `name`'s data dir or beneath it.
    fn users_of(&self, name: &str, mounts: &[MountUser]) -> Vec<MountUser> {
        let data = self.mountpoint(name);
        let canonical = std::fs::canonicalize(&data).unwrap_or_else(|_| data.clone());
        let mut users: Vec<MountUser> = mounts
            .iter()
            .filter(|m| {
                let host = lexical(&m.host_path);
                // Also through symlinks: a mount of a link to the data dir uses it too.
                let resolved = std::fs::canonicalize(&host).unwrap_or_else(|_| host.clone());
                host.starts_with(&data) || resolved.starts_with(&canonical)
            })
            .cloned()
            .collect();
        users.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        users.dedup_by(|a, b| a.container_id == b.container_id);
        users
    }

    fn view(&self, meta: &disk::Meta, mounts: &[MountUser]) -> Volume {
        Volume {
            name: meta.name.clone(),
            mountpoint: self.mountpoint(&meta.name),
            labels: meta.labels.clone(),
            created_at_ns: meta.created_at,
            used_by: self
                .users_of(&meta.name, mounts)
                .into_iter()
                .map(|u| u.container_id)
                .collect(),
        }
    }

    /// Makes a volume; `None` or an empty name gets a generated one (64 hex digits, as docker's
    /// anonymous volumes). `AlreadyExists` if the name is taken.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume, VolumeError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => disk::random_hex(32)?,
        };
        validate_name(&name)?;
        validate_labels(&labels)?;
        let mut volumes = self.lock();
        if volumes.contains_key(&name) {
            return Err(VolumeError::AlreadyExists(name));
        }
        let meta = disk::Meta {
            name: name.clone(),
            labels,
            created_at: berth_clock::now_ns(),
        };
        disk::create(&self.inner.dir, &meta)?;
        volumes.insert(name.clone(), meta.clone());
        tracing::info!(volume = %name, "volume created");
        Ok(self.view(&meta, &[]))
    }

    /// One volume, with its users.
    pub fn inspect(&self, name: &str) -> Result<Volume, VolumeError> {
        let meta = self
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        Ok(self.view(&meta, &self.inner.users.mounts()))
    }

    /// The volumes every filter matches, by name.
    pub fn list(&self, filters: &[LabelFilter]) -> Vec<Volume> {
        let mounts = self.inner.users.mounts();
        let metas: Vec<disk::Meta> = self
            .lock()
            .values()
            .filter(|m| filters.iter().all(|f| f.matches(&m.labels)))
            .cloned()
            .collect();
        metas.iter().map(|m| self.view(m, &mounts)).collect()
    }

    /// Removes a volume and its data, unless a container mounts it (`InUse`).
    pub fn remove(&self, name: &str) -> Result<u64, VolumeError> {
        let mut volumes = self.lock();
        if !volumes.contains_key(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        // Checked under the lock: no removal of this volume can interleave. (A container being
        // created right now with this path is not listed yet; as with docker's references, the
        // CLI that creates it made or found the volume just before.)
        let users = self.users_of(name, &self.inner.users.mounts());
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                containers: users
                    .iter()
                    .map(|u| {
                        if u.container_name.is_empty() {
                            u.container_id.clone()
                        } else {
                            format!("{} ({})", u.container_name, short(&u.container_id))
                        }
                    })
                    .collect(),
            });
        }
        let bytes = disk::remove(&self.inner.dir, name)?;
        volumes.remove(name);
        tracing::info!(volume = %name, bytes, "volume removed");
        Ok(bytes)
    }

    /// Removes every volume no container uses (among those the filters match).
    pub fn prune(&self, filters: &[LabelFilter]) -> Result<Pruned, VolumeError> {
        let mut volumes = self.lock();
        let mounts = self.inner.users.mounts();
        let unused: Vec<String> = volumes
            .values()
            .filter(|m| filters.iter().all(|f| f.matches(&m.labels)))
            .filter(|m| self.users_of(&m.name, &mounts).is_empty())
            .map(|m| m.name.clone())
            .collect();
        let mut pruned = Pruned::default();
        for name in unused {
            pruned.reclaimed_bytes += disk::remove(&self.inner.dir, &name)?;
            volumes.remove(&name);
            pruned.names.push(name);
        }
        tracing::info!(
            volumes = pruned.names.len(),
            bytes = pruned.reclaimed_bytes,
            "volumes pruned"
        );
        Ok(pruned)
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
