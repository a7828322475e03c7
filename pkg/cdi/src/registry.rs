//! The devices of the spec directories, with CDI's priority rules: directories are listed in
//! increasing priority (by default /etc/cdi, then /var/run/cdi), so a device defined in a later
//! directory replaces one of the same name from an earlier directory; two files of the same
//! directory defining the same device is a conflict, and the device cannot be used. Files are
//! read in lexical order; a missing directory is simply empty.
//!
//! The directories are read again at each resolution (CreateContainer), so a vendor's new or
//! updated spec file needs no restart and no watcher.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::spec::{self, ContainerEdits, DeviceNode, Spec};
use crate::{CdiError, QualifiedName, Resolved};

/// The standard spec directories, lowest priority first.
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// Where spec files are found.
#[derive(Debug, Clone)]
pub struct Registry {
    dirs: Vec<PathBuf>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(DEFAULT_SPEC_DIRS.iter().map(PathBuf::from).collect())
    }
}

impl Registry {
    /// `dirs` in increasing priority.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Registry { dirs }
    }

    /// Reads every spec file of the directories.
    pub fn scan(&self) -> Catalog {
        let mut catalog = Catalog {
            dirs: self.dirs.clone(),
            devices: BTreeMap::new(),
            broken: Vec::new(),
        };
        for (priority, dir) in self.dirs.iter().enumerate() {
            catalog.scan_dir(priority, dir);
        }
        catalog
    }

    /// [`scan`](Self::scan), then [`Catalog::resolve`].
    pub fn resolve(&self, names: &[String]) -> Result<Resolved, CdiError> {
        self.scan().resolve(names)
    }
}

#[derive(Debug)]
enum Slot {
    Device {
        priority: usize,
        path: PathBuf,
        spec: Arc<Spec>,
        index: usize,
    },
    /// Defined by a file that parsed but is invalid.
    Invalid {
        priority: usize,
        path: PathBuf,
        reason: String,
    },
    Conflict {
        priority: usize,
        files: Vec<PathBuf>,
    },
}

impl Slot {
    fn priority(&self) -> usize {
        match self {
            Slot::Device { priority, .. }
            | Slot::Invalid { priority, .. }
            | Slot::Conflict { priority, .. } => *priority,
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        match self {
            Slot::Device { path, .. } | Slot::Invalid { path, .. } => vec![path.clone()],
            Slot::Conflict { files, .. } => files.clone(),
        }
    }
}

/// The devices found by one scan.
#[derive(Debug)]
pub struct Catalog {
    dirs: Vec<PathBuf>,
    /// By qualified name.
    devices: BTreeMap<String, Slot>,
    /// Files (or directories) that could not be read or parsed at all, with why: which devices
    /// they meant to define is unknown.
    broken: Vec<(PathBuf, String)>,
}

impl Catalog {
    fn scan_dir(&mut self, priority: usize, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.broken.push((dir.to_path_buf(), e.to_string()));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| spec::is_spec_file(p) && !p.is_dir())
            .collect();
        files.sort();
        for path in files {
            let parsed = fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|data| spec::parse(&path, &data));
            let spec = match parsed {
                Ok(spec) => spec,
                Err(reason) => {
                    self.broken.push((path, reason));
                    continue;
                }
            };
            let validity = spec.validate();
            let spec = Arc::new(spec);
            for (index, device) in spec.devices.iter().enumerate() {
                let name = format!("{}={}", spec.kind, device.name);
                let slot = match &validity {
                    Ok(()) => Slot::Device {
                        priority,
                        path: path.clone(),
                        spec: spec.clone(),
                        index,
                    },
                    Err(reason) => Slot::Invalid {
                        priority,
                        path: path.clone(),
                        reason: reason.clone(),
                    },
                };
                self.insert(name, slot);
            }
            if let Err(reason) = validity
                && spec.devices.is_empty()
            {
                self.broken.push((path, reason));
            }
        }
    }

    fn insert(&mut self, name: String, slot: Slot) {
        let Some(existing) = self.devices.get(&name) else {
            self.devices.insert(name, slot);
            return;
        };
        let (old, new) = (existing.priority(), slot.priority());
        if new > old {
            self.devices.insert(name, slot);
        } else if new == old {
            let mut files = existing.files();
            files.extend(slot.files());
            files.dedup();
            self.devices.insert(
                name,
                Slot::Conflict {
                    priority: new,
                    files,
                },
            );
        }
    }

    /// The qualified names of the usable devices.
    pub fn device_names(&self) -> Vec<&str> {
        self.devices
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Device { .. }))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The edits of the named devices (duplicates dropped, first one kept): each device's in
    /// order, then the common edits of each spec involved, once. Device nodes get their host
    /// path, type, numbers and mode from the host where the spec leaves them out.
    pub fn resolve(&self, names: &[String]) -> Result<Resolved, CdiError> {
        let mut seen = BTreeSet::new();
        let mut resolved = Resolved::default();
        // Spec files involved, in first use order, with the first device that used each.
        let mut specs: Vec<(&Path, &Arc<Spec>, &str)> = Vec::new();
        for name in names {
            if !seen.insert(name.as_str()) {
                continue;
            }
            QualifiedName::parse(name)?;
            let (path, spec, index) = match self.devices.get(name) {
                Some(Slot::Device {
                    path, spec, index, ..
                }) => (path, spec, *index),
                Some(Slot::Invalid { path, reason, .. }) => {
                    return Err(CdiError::InvalidSpec {
                        name: name.clone(),
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                }
                Some(Slot::Conflict { files, .. }) => {
                    return Err(CdiError::Conflict {
                        name: name.clone(),
                        files: files.clone(),
                    });
                }
                None => return Err(self.unknown(name)),
            };
            let device = &spec.devices[index];
            if let Some(what) = device
                .container_edits
                .unsupported()
                .or(spec.container_edits.unsupported())
            {
                return Err(CdiError::Unsupported {
                    name: name.clone(),
                    what: what.into(),
                });
            }
            resolved
                .edits
                .append(&completed(name, &device.container_edits)?);
            resolved.devices.push(name.clone());
            if !specs.iter().any(|(p, ..)| *p == path.as_path()) {
                specs.push((path, spec, name));
            }
        }
        for (_, spec, first) in specs {
            resolved
                .edits
                .append(&completed(first, &spec.container_edits)?);
        }
        Ok(resolved)
    }

    fn unknown(&self, name: &str) -> CdiError {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        let problems: String = self
            .broken
            .iter()
            .map(|(p, why)| format!("; unreadable spec file {}: {why}", p.display()))
            .collect();
        CdiError::UnknownDevice {
            name: name.into(),
            dirs: dirs.join(", "),
            problems,
        }
    }
}

/// `edits` with every device node completed from the host.
fn completed(name: &str, edits: &ContainerEdits) -> Result<ContainerEdits, CdiError> {
    let mut edits = edits.clone();
    for node in &mut edits.device_nodes {
        complete(node).map_err(|source| CdiError::DeviceNode {
            name: name.into(),
            path: node.host_path.clone().unwrap_or_default().into(),
            source,
        })?;
    }
    Ok(edits)
}

/// Fills what the spec left out of a device node from the host node (as the reference
/// implementation does): the host path (the container path), the type, the numbers and the
/// mode. A node whose spec gives the type and numbers is not looked at.
fn complete(node: &mut DeviceNode) -> std::io::Result<()> {
    let host = node
        .host_path
        .get_or_insert_with(|| node.path.clone())
        .clone();
    let numbered = node.major.is_some() && node.minor.is_some();
    if node.r#type.as_deref() == Some("p") || (node.r#type.is_some() && numbered) {
        return Ok(());
    }
    let meta = fs::metadata(&host)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Err(std::io::Error::other("not a device node"));
    };
    match node.r#type.as_deref() {
        None => node.r#type = Some(typ.into()),
        // `u` (unbuffered character device) is a character device on the host.
        Some(t) if t == typ || (t == "u" && typ == "c") => {}
        Some(t) => {
            return Err(std::io::Error::other(format!(
                "the spec says type {t:?}, the host node is {typ:?}"
            )));
        }
    }
    if typ != "p" && !numbered {
        let rdev = meta.rdev();
        node.major = Some(nix::sys::stat::major(rdev) as i64);
        node.minor = Some(nix::sys::stat::minor(rdev) as i64);
    }
    if node.file_mode.is_none() {
        node.file_mode = Some(meta.mode() & 0o777);
    }
    Ok(())
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
