//! Pod volumes on the host, as kubelet lays them out under /var/lib/kubelet/pods: hostPath as
//! named, emptyDir a directory of the play's own, configMap/secret/projected directories of
//! files written from the manifest's objects (mounted read-only). All of the play's directories
//! are below [`Paths::dir`], which `--down` removes.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;

use super::manifest::{Container, KeyToPath};
use super::parse::{Data, Manifest, PlayPod};

/// Where one play keeps its files: `<state-dir>/<project>`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(state_root: &Path, project: &str) -> Paths {
        Paths {
            dir: state_root.join(project),
        }
    }
    pub fn pod(&self, pod: &str) -> PathBuf {
        self.dir.join("pods").join(pod)
    }
    pub fn volume(&self, pod: &str, volume: &str) -> PathBuf {
        self.pod(pod).join("volumes").join(volume)
    }
    /// The pod's /etc/hosts (see `hosts.rs`).
    pub fn hosts(&self, pod: &str) -> PathBuf {
        self.pod(pod).join("hosts")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("play.json")
    }
    pub fn supervisor_pid(&self) -> PathBuf {
        self.dir.join("supervisor.pid")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
}

/// A file of a configMap, secret or projected volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// What a volume is on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Host {
        path: PathBuf,
        type_: String,
    },
    Empty(PathBuf),
    Files {
        dir: PathBuf,
        files: Vec<VolumeFile>,
    },
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Host { path, .. } => path,
            Source::Empty(p) | Source::Files { dir: p, .. } => p,
        }
    }
    fn read_only(&self) -> bool {
        matches!(self, Source::Files { .. })
    }
}

/// A relative path that stays beneath its directory (no `..`, not absolute).
fn beneath(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The default mode of configMap and secret volume files, as the API defaults it.
const DEFAULT_MODE: u32 = 0o644;

fn files(
    data: &Data,
    items: &[KeyToPath],
    mode: u32,
    at: &str,
    what: &str,
) -> anyhow::Result<Vec<VolumeFile>> {
    if items.is_empty() {
        return Ok(data
            .iter()
            .map(|(k, v)| VolumeFile {
                path: k.clone(),
                data: v.clone(),
                mode,
            })
            .collect());
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(v) = data.get(&item.key) else {
            bail!("{at}.items[{i}].key: {what} has no key {:?}", item.key);
        };
        if !beneath(&item.path) {
            bail!(
                "{at}.items[{i}].path: {:?} must be relative, without '..'",
                item.path
            );
        }
        out.push(VolumeFile {
            path: item.path.clone(),
            data: v.clone(),
            mode: item.mode.unwrap_or(mode),
        });
    }
    Ok(out)
}

/// Each volume of the pod, by name, checked against the manifest (nothing is made yet).
pub fn plan(
    manifest: &Manifest,
    pod: &PlayPod,
    paths: &Paths,
    warnings: &mut Vec<String>,
) -> anyhow::Result<BTreeMap<String, Source>> {
    let doc = &pod.doc;
    let key = |name: &str| (pod.namespace.clone(), name.to_string());
    let mut out = BTreeMap::new();
    for (i, v) in pod.spec.volumes.iter().enumerate() {
        let at = format!("{}.volumes[{i}]", pod.spec_path);
        let dir = paths.volume(&pod.name, &v.name);
        let missing = |what: &str, name: &str| {
            anyhow::anyhow!(
                "{doc}: {at}: {what} {name:?} is not defined in the manifest (namespace {})",
                pod.namespace
            )
        };
        let sources = [
            v.host_path.is_some(),
            v.empty_dir.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
            v.projected.is_some(),
        ];
        let source = match sources.iter().filter(|s| **s).count() {
            0 => bail!(
                "{doc}: {at}: volume {:?} has no source berth play supports (hostPath, emptyDir, configMap, secret, projected)",
                v.name
            ),
            1 => {
                if let Some(h) = &v.host_path {
                    if !h.path.starts_with('/') {
                        bail!("{doc}: {at}.hostPath.path: {:?} must be absolute", h.path);
                    }
                    Source::Host {
                        path: PathBuf::from(&h.path),
                        type_: h.type_.clone().unwrap_or_default(),
                    }
                } else if v.empty_dir.is_some() {
                    Source::Empty(dir)
                } else if let Some(cm) = &v.config_map {
                    let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
                    let files = match manifest.config_maps.get(&key(&cm.name)) {
                        Some(data) => files(
                            data,
                            &cm.items,
                            mode,
                            &format!("{doc}: {at}.configMap"),
                            "the ConfigMap",
                        )?,
                        None if cm.optional => Vec::new(),
                        None => return Err(missing("ConfigMap", &cm.name)),
                    };
                    Source::Files { dir, files }
                } else if let Some(s) = &v.secret {
                    let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
                    let files = match manifest.secrets.get(&key(&s.secret_name)) {
                        Some(data) => files(
                            data,
                            &s.items,
                            mode,
                            &format!("{doc}: {at}.secret"),
                            "the Secret",
                        )?,
                        None if s.optional => Vec::new(),
                        None => return Err(missing("Secret", &s.secret_name)),
                    };
                    Source::Files { dir, files }
                } else if let Some(p) = &v.projected {
                    let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
                    let mut all = Vec::new();
                    for (j, s) in p.sources.iter().enumerate() {
                        let here = format!("{doc}: {at}.projected.sources[{j}]");
                        let (what, items, data) = match (&s.config_map, &s.secret) {
                            (Some(c), None) => {
                                ("ConfigMap", c, manifest.config_maps.get(&key(&c.name)))
                            }
                            (None, Some(c)) => ("Secret", c, manifest.secrets.get(&key(&c.name))),
                            // serviceAccountToken, downwardAPI: warned about when parsed.
                            _ => continue,
                        };
                        match data {
                            Some(data) => all.extend(files(
                                data,
                                &items.items,
                                mode,
                                &format!("{here}.{}", what.to_ascii_lowercase()),
                                what,
                            )?),
                            None if items.optional => {}
                            // A pod taken from a cluster projects kube-root-ca.crt and the like, which the
                            // manifest does not have: the volume goes without them.
                            None => warnings.push(format!(
                                "{here}: {what} {:?} is not defined in the manifest: the projected volume goes without it",
                                items.name
                            )),
                        }
                    }
                    Source::Files { dir, files: all }
                } else {
                    unreachable!("one source is set")
                }
            }
            _ => bail!("{doc}: {at}: volume {:?} has more than one source", v.name),
        };
        out.insert(v.name.clone(), source);
    }
    Ok(out)
}

/// The container's CRI mounts for its volumeMounts.
pub fn mounts(
    pod: &PlayPod,
    container: &Container,
    at: &str,
    sources: &BTreeMap<String, Source>,
) -> anyhow::Result<Vec<cri::Mount>> {
    let doc = &pod.doc;
    let mut out = Vec::new();
    for (i, m) in container.volume_mounts.iter().enumerate() {
        let here = format!("{at}.volumeMounts[{i}]");
        let Some(source) = sources.get(&m.name) else {
            bail!("{doc}: {here}.name: the pod has no volume {:?}", m.name);
        };
        if !m.mount_path.starts_with('/') {
            bail!(
                "{doc}: {here}.mountPath: {:?} must be absolute",
                m.mount_path
            );
        }
        let mut host = source.path().to_path_buf();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if !beneath(sub) {
                bail!("{doc}: {here}.subPath: {sub:?} must be relative, without '..'");
            }
            host = host.join(sub);
        }
        let propagation = match m.mount_propagation.as_deref() {
            None | Some("None") => cri::MountPropagation::PropagationPrivate,
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            Some(other) => bail!(
                "{doc}: {here}.mountPropagation: {other:?} is not None, HostToContainer or Bidirectional"
            ),
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only || source.read_only(),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(out)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    // The umask must not narrow the mode the manifest asked for.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Makes the pod's volumes on the host and checks hostPath types, as kubelet does.
pub fn make(pod: &PlayPod, sources: &BTreeMap<String, Source>) -> anyhow::Result<()> {
    for (name, source) in sources {
        let what = format!("{}: volume {name:?}", pod.doc);
        match source {
            Source::Empty(dir) => std::fs::create_dir_all(dir)
                .with_context(|| format!("{what}: creating {}", dir.display()))?,
            Source::Files { dir, files } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{what}: creating {}", dir.display()))?;
                for f in files {
                    write_file(&dir.join(&f.path), &f.data, f.mode)
                        .with_context(|| what.clone())?;
                }
            }
            Source::Host { path, type_ } => host_path(path, type_).with_context(|| what.clone())?,
        }
    }
    // subPaths of writable volumes are made when missing, as kubelet makes them.
    let all = pod.spec.init_containers.iter().chain(&pod.spec.containers);
    for m in all.flat_map(|c| &c.volume_mounts) {
        if let (Some(Source::Empty(dir) | Source::Host { path: dir, .. }), Some(sub)) =
            (sources.get(&m.name), m.sub_path.as_deref())
            && beneath(sub)
            && !dir.join(sub).exists()
        {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating subPath {}", dir.join(sub).display()))?;
        }
    }
    Ok(())
}

fn host_path(path: &Path, type_: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path);
    let is = |check: fn(&std::fs::Metadata) -> bool| meta.as_ref().is_ok_and(check);
    let ok = match type_ {
        "" => true,
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            std::fs::metadata(path).is_ok_and(|m| m.is_dir())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                write_file(path, b"", 0o644)?;
            }
            std::fs::metadata(path).is_ok_and(|m| m.is_file())
        }
        "Directory" => is(|m| m.is_dir()),
        "File" => is(|m| m.is_file()),
        "Socket" => is(|m| m.file_type().is_socket()),
        "CharDevice" => is(|m| m.file_type().is_char_device()),
        "BlockDevice" => is(|m| m.file_type().is_block_device()),
        other => bail!(
            "hostPath type {other:?} is not one of DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice"
        ),
    };
    if !ok {
        bail!("hostPath {} is not a {type_}", path.display());
    }
    Ok(())
}

use std::os::unix::fs::DirBuilderExt;
