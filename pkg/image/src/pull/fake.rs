//! A registry in memory for the pull tests, and the test images it serves. It counts requests,
//! and can hold a blob back (until a [`Gate`] opens), break a blob's stream half-way or corrupt
//! one byte of it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use berth_registry::manifest::media_type;
use berth_registry::{Credentials, Endpoint, Manifest, Reference, RegistryError};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::watch;

use crate::Digest;
use crate::source::{BlobChunks, Fetching, PullSource};

/// Blobs are served in chunks this big.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    /// The stream breaks after half the blob.
    BreakMidway,
    /// The last byte of the blob is wrong.
    Corrupt,
}

/// Holds a blob's first chunk back until [`Gate::open`].
pub(super) struct Gate(watch::Sender<bool>);

impl Gate {
    pub(super) fn open(&self) {
        self.0.send_replace(true);
    }
}

pub(super) struct FakeRegistry {
    endpoint: Endpoint,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By `repository:tag` and by digest: (media type, bytes).
    manifests: HashMap<String, (String, Bytes)>,
    blobs: HashMap<String, Bytes>,
    /// Requests by `repository:tag` or digest.
    requests: HashMap<String, usize>,
    faults: HashMap<String, Fault>,
    gates: HashMap<String, watch::Receiver<bool>>,
}

/// A layer blob and what its uncompressed tar hashes to.
pub(super) struct TestLayer {
    pub(super) blob: Vec<u8>,
    pub(super) diff_id: String,
    pub(super) media_type: &'static str,
}

impl TestLayer {
    pub(super) fn digest(&self) -> String {
        Digest::of(&self.blob).to_string()
    }
}

/// An uncompressed layer of regular files, owned by the current user (so unpacking it needs no
/// root).
pub(super) fn plain_layer(files: &[(&str, &str)]) -> TestLayer {
    let tar = tar_of(files);
    TestLayer {
        diff_id: Digest::of(&tar).to_string(),
        blob: tar,
        media_type: media_type::OCI_LAYER,
    }
}

/// [`plain_layer`], gzip-compressed.
pub(super) fn gzip_layer(files: &[(&str, &str)]) -> TestLayer {
    use std::io::Write;
    let tar = tar_of(files);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar).unwrap();
    TestLayer {
        diff_id: Digest::of(&tar).to_string(),
        blob: encoder.finish().unwrap(),
        media_type: media_type::OCI_LAYER_GZIP,
    }
}

fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_path(name).unwrap();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, content.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// What [`FakeRegistry::push_image`] stored.
pub(super) struct Pushed {
    pub(super) manifest_digest: String,
    pub(super) manifest_size: usize,
    pub(super) config_digest: String,
}

impl FakeRegistry {
    pub(super) fn new(endpoint: Endpoint) -> FakeRegistry {
        FakeRegistry {
            endpoint,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn put_blob(&self, bytes: Vec<u8>) -> String {
        let digest = Digest::of(&bytes).to_string();
        self.state().blobs.insert(digest.clone(), bytes.into());
        digest
    }

    fn put_manifest(&self, repository: &str, tag: &str, media_type: &str, body: Vec<u8>) -> String {
        let digest = Digest::of(&body).to_string();
        let entry = (media_type.to_string(), Bytes::from(body));
        let mut state = self.state();
        state.manifests.insert(digest.clone(), entry.clone());
        state.manifests.insert(format!("{repository}:{tag}"), entry);
        digest
    }

    /// An image manifest (tagged `repository:tag`), its config (user `1000`) and its layers.
    pub(super) fn push_image(&self, repository: &str, tag: &str, layers: &[&TestLayer]) -> Pushed {
        let host = berth_registry::host_platform();
        let config = serde_json::to_vec(&json!({
            "architecture": host.architecture,
            "os": host.os,
            "config": {"User": "1000"},
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
        }))
        .unwrap();
        let config_size = config.len();
        let config_digest = self.put_blob(config);
        let descriptors: Vec<_> = layers
            .iter()
            .map(|l| {
                let digest = self.put_blob(l.blob.clone());
                json!({"mediaType": l.media_type, "digest": digest, "size": l.blob.len()})
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {
                "mediaType": media_type::OCI_CONFIG,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": descriptors,
        }))
        .unwrap();
        let manifest_size = manifest.len();
        let manifest_digest =
            self.put_manifest(repository, tag, media_type::OCI_MANIFEST, manifest);
        Pushed {
            manifest_digest,
            manifest_size,
            config_digest,
        }
    }

    /// An index (tagged `repository:tag`) listing `image` for this host and another manifest
    /// for a platform that is not this one.
    pub(super) fn push_index(&self, repository: &str, tag: &str, image: &Pushed) -> String {
        let host = berth_registry::host_platform();
        let other = Digest::of(b"not this platform").to_string();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [
                {
                    "mediaType": media_type::OCI_MANIFEST,
                    "digest": other,
                    "size": 1,
                    "platform": {"architecture": "amd64", "os": "windows"},
                },
                {
                    "mediaType": media_type::OCI_MANIFEST,
                    "digest": image.manifest_digest,
                    "size": image.manifest_size,
                    "platform": host,
                },
            ],
        }))
        .unwrap();
        self.put_manifest(repository, tag, media_type::OCI_INDEX, index)
    }

    /// How many requests asked for `key` (`repository:tag` or a digest).
    pub(super) fn requests(&self, key: &str) -> usize {
        self.state().requests.get(key).copied().unwrap_or(0)
    }

    pub(super) fn fail(&self, digest: &str, fault: Fault) {
        self.state().faults.insert(digest.to_string(), fault);
    }

    pub(super) fn heal(&self, digest: &str) {
        self.state().faults.remove(digest);
    }

    /// Holds every stream of `digest` back until the gate opens.
    pub(super) fn hold(&self, digest: &str) -> Gate {
        let (tx, rx) = watch::channel(false);
        self.state().gates.insert(digest.to_string(), rx);
        Gate(tx)
    }

    fn count(state: &mut State, key: &str) {
        *state.requests.entry(key.to_string()).or_default() += 1;
    }
}

impl PullSource for FakeRegistry {
    fn fetch_manifest<'a>(
        &'a self,
        reference: &'a Reference,
        _credentials: Option<&'a Credentials>,
    ) -> Fetching<'a, Manifest> {
        Box::pin(async move {
            let key = match (&reference.digest, &reference.tag) {
                (Some(digest), _) => digest.clone(),
                (None, tag) => format!("{}:{}", reference.repository, tag.as_deref().unwrap_or("")),
            };
            let (media_type, bytes) = {
                let mut state = self.state();
                FakeRegistry::count(&mut state, &key);
                state.manifests.get(&key).cloned()
            }
            .ok_or_else(|| RegistryError::NotFound {
                reference: reference.to_string(),
                tried: self.endpoint.url().to_string(),
            })?;
            let kind = berth_registry::parse_manifest(&reference.to_string(), &media_type, &bytes)?;
            let digest = Digest::of(&bytes).to_string();
            Ok(Manifest {
                reference: reference.with_digest(digest.clone()),
                bytes,
                media_type,
                digest,
                endpoint: self.endpoint.clone(),
                kind,
            })
        })
    }

    fn fetch_blob<'a>(
        &'a self,
        reference: &'a Reference,
        digest: &'a str,
        _preferred: Option<&'a Endpoint>,
        _credentials: Option<&'a Credentials>,
    ) -> Fetching<'a, Box<dyn BlobChunks>> {
        Box::pin(async move {
            let mut state = self.state();
            FakeRegistry::count(&mut state, digest);
            let blob =
                state
                    .blobs
                    .get(digest)
                    .cloned()
                    .ok_or_else(|| RegistryError::BlobNotFound {
                        repository: reference.name(),
                        digest: digest.to_string(),
                        tried: self.endpoint.url().to_string(),
                    })?;
            let chunks = chunks(blob, state.faults.get(digest).copied(), &self.endpoint);
            Ok(Box::new(FakeBlob {
                chunks,
                gate: state.gates.get(digest).cloned(),
            }) as Box<dyn BlobChunks>)
        })
    }
}

/// The chunks a blob is served as, with `fault` applied.
fn chunks(
    blob: Bytes,
    fault: Option<Fault>,
    endpoint: &Endpoint,
) -> VecDeque<Result<Bytes, RegistryError>> {
    let blob = match fault {
        Some(Fault::Corrupt) => {
            let mut bytes = blob.to_vec();
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xff;
            }
            Bytes::from(bytes)
        }
        Some(Fault::BreakMidway) => blob.slice(..blob.len() / 2),
        None => blob,
    };
    let mut chunks: VecDeque<_> = blob
        .chunks(CHUNK)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    if matches!(fault, Some(Fault::BreakMidway)) {
        chunks.push_back(Err(RegistryError::Http {
            endpoint: endpoint.to_string(),
            url: endpoint.url().to_string(),
            status: 502,
            body: "the connection broke mid-blob".into(),
        }));
    }
    chunks
}

struct FakeBlob {
    chunks: VecDeque<Result<Bytes, RegistryError>>,
    gate: Option<watch::Receiver<bool>>,
}

impl BlobChunks for FakeBlob {
    fn next_chunk(&mut self) -> Fetching<'_, Option<Bytes>> {
        Box::pin(async move {
            if let Some(mut gate) = self.gate.take() {
                // Err: the test dropped the gate without opening it; serve anyway.
                let _ = gate.wait_for(|open| *open).await;
            }
            self.chunks.pop_front().transpose()
        })
    }
}
