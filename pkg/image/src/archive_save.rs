//! `save`: images as an OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/...`).
//!
//! Pulled layers are not kept as blobs (they are streamed into their snapshots), so a layer whose
//! blob is not in the content store is written afresh from its snapshot: an uncompressed OCI layer
//! tar ([`berth_snapshot::write_layer_tar`], deterministic for one snapshot) whose digest is its
//! diff ID. That diff ID differs from the original's, so such an image is saved with a new config
//! (its `rootfs.diff_ids` replaced, nothing else touched) and a new manifest: its image id and
//! manifest digest in the archive are not the ones it has here. Layers whose blob Berth keeps
//! (made by `commit`, or loaded by `load`) are written byte for byte with their own digests, and
//! an image none of whose layers had to be rewritten keeps its config and manifest, so a loaded
//! image saves back identically.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use berth_snapshot::ChunkWriter;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::archive_util::{HashWriter, Lease, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Staging};
use crate::commit::manifest_json;
use crate::record::{ImageRecord, LayerRecord};
use crate::{Digest, ImageError, ImageService};

/// Bytes per message of a saved archive.
pub const SAVE_CHUNK: usize = 1024 * 1024;

/// Where a blob's bytes come from.
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// One image as it goes into the archive.
struct Planned {
    manifest_digest: Digest,
    manifest_size: u64,
    manifest_media_type: String,
    names: Vec<String>,
}

impl ImageService {
    /// Streams an OCI image-layout tar of the images with these ids, in chunks of
    /// [`SAVE_CHUNK`] bytes; an error ends the stream. Stops when the receiver is dropped.
    pub fn save(&self, ids: Vec<String>) -> mpsc::Receiver<Result<Bytes, ImageError>> {
        let (tx, rx) = mpsc::channel(2);
        let service = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter::new(tx.clone(), SAVE_CHUNK);
            let result = service
                .save_to(&ids, &mut out)
                .and_then(|()| out.flush().map_err(ImageError::from_save));
            if let Err(e) = result {
                // A receiver that went away is why it failed; nobody is left to tell.
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }

    /// Writes an OCI image-layout tar of the images with these ids to `out`.
    pub fn save_to(&self, ids: &[String], out: impl Write) -> Result<(), ImageError> {
        let inner = &self.inner;
        let records: Vec<ImageRecord> = ids
            .iter()
            .map(|id| {
                inner
                    .catalog()
                    .get(id)
                    .cloned()
                    .ok_or_else(|| ImageError::InvalidImage {
                        reference: id.clone(),
                        reason: "no such image".into(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let chains = records
            .iter()
            .flat_map(|r| r.layers.iter().map(|l| l.chain_id.clone()))
            .collect();
        let _lease = Lease::take(inner, chains);
        let staging = Staging::new(inner, "save")?;
        let mut blobs: BTreeMap<Digest, (u64, Source)> = BTreeMap::new();
        let mut planned = Vec::new();
        for record in &records {
            planned.push(self.plan(record, &staging, &mut blobs)?);
        }
        write_layout(out, &planned, blobs)
    }

    /// Gathers one image's blobs, writing afresh the layers whose blob is not kept.
    fn plan(
        &self,
        record: &ImageRecord,
        staging: &Staging,
        blobs: &mut BTreeMap<Digest, (u64, Source)>,
    ) -> Result<Planned, ImageError> {
        let inner = &self.inner;
        let config_digest = Digest::parse(&record.id)?;
        let config = inner.content.read(&config_digest)?;
        let mut layers = Vec::with_capacity(record.layers.len());
        let mut rewritten = false;
        for layer in &record.layers {
            let digest = Digest::parse(&layer.digest)?;
            if inner.content.has(&digest) {
                blobs.insert(
                    digest.clone(),
                    (layer.size, Source::File(inner.content.path(&digest))),
                );
                layers.push(layer.clone());
                continue;
            }
            let snapshot = inner.snapshots.get(&layer.chain_id).ok_or_else(|| {
                ImageError::Snapshot(berth_snapshot::SnapshotError::NotFound {
                    chain_id: layer.chain_id.clone(),
                })
            })?;
            let path = staging.dir.join(format!("layer-{}", blobs.len()));
            let file = File::create(&path).map_err(crate::archive_util::io_at("create", &path))?;
            let (written, _) = berth_snapshot::write_layer_tar(
                &snapshot.diff_dir,
                HashWriter::new(BufWriter::new(file)),
            )?;
            let (mut file, digest, size) = written.finish();
            file.flush()
                .map_err(crate::archive_util::io_at("write", &path))?;
            rewritten |= digest.as_str() != layer.diff_id;
            layers.push(LayerRecord {
                digest: digest.to_string(),
                diff_id: digest.to_string(),
                chain_id: layer.chain_id.clone(),
                size,
                media_type: OCI_LAYER_TAR.to_string(),
            });
            blobs.insert(digest, (size, Source::File(path)));
        }
        let stored_manifest = Digest::parse(&record.manifest_digest)
            .ok()
            .filter(|d| inner.content.has(d));
        let (config_digest, manifest, media_type) = match stored_manifest {
            Some(digest) if !rewritten => {
                let bytes = inner.content.read(&digest)?;
                let media_type = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                    .unwrap_or_else(|| OCI_MANIFEST.to_string());
                blobs.insert(
                    config_digest.clone(),
                    (config.len() as u64, Source::Bytes(config)),
                );
                (config_digest, bytes, media_type)
            }
            _ => {
                let config = if rewritten {
                    with_diff_ids(&config, &layers)?
                } else {
                    config
                };
                let digest = Digest::of(&config);
                let manifest = manifest_json(&digest, config.len() as u64, &layers)?;
                blobs.insert(digest.clone(), (config.len() as u64, Source::Bytes(config)));
                (digest, manifest, OCI_MANIFEST.to_string())
            }
        };
        let manifest_digest = Digest::of(&manifest);
        let manifest_size = manifest.len() as u64;
        blobs.insert(
            manifest_digest.clone(),
            (manifest_size, Source::Bytes(manifest)),
        );
        tracing::debug!(image = %record.id, saved_as = %config_digest, rewritten, "image planned for save");
        Ok(Planned {
            manifest_digest,
            manifest_size,
            manifest_media_type: media_type,
            names: record.repo_tags.clone(),
        })
    }
}

/// The config with `rootfs.diff_ids` set to the layers' (rewritten) diff IDs.
fn with_diff_ids(config: &[u8], layers: &[LayerRecord]) -> Result<Vec<u8>, ImageError> {
    let mut value: Value =
        serde_json::from_slice(config).map_err(|source| ImageError::InvalidConfig { source })?;
    value["rootfs"] = json!({
        "type": "layers",
        "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&value).map_err(ImageError::encode("image config"))
}

/// The `index.json` naming each image: `org.opencontainers.image.ref.name` and
/// `io.containerd.image.name` both carry the full normalised name (`docker.io/library/x:1`), which
/// skopeo (`oci-archive:FILE:NAME`), containerd's import and `berth load` all take; an image
/// without a name gets one entry without annotations.
fn index_json(planned: &[Planned]) -> Result<Vec<u8>, ImageError> {
    let mut manifests = Vec::new();
    for image in planned {
        let descriptor = json!({
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.as_str(),
            "size": image.manifest_size,
        });
        if image.names.is_empty() {
            manifests.push(descriptor.clone());
        }
        for name in &image.names {
            let mut named = descriptor.clone();
            named["annotations"] = json!({
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name,
            });
            manifests.push(named);
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    serde_json::to_vec(&index).map_err(ImageError::encode("index.json"))
}

fn write_layout(
    out: impl Write,
    planned: &[Planned],
    blobs: BTreeMap<Digest, (u64, Source)>,
) -> Result<(), ImageError> {
    let mut tar = tar::Builder::new(out);
    let fail = ImageError::from_save;
    let dir = |tar: &mut tar::Builder<_>, name: &str| {
        let mut header = header(0, tar::EntryType::Directory, 0o755);
        tar.append_data(&mut header, name, io::empty())
            .map_err(fail)
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut h = header(layout.len() as u64, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, "oci-layout", &layout[..])
        .map_err(fail)?;
    dir(&mut tar, "blobs/")?;
    dir(&mut tar, "blobs/sha256/")?;
    for (digest, (size, source)) in blobs {
        let name = format!("blobs/sha256/{}", digest.hex());
        let mut h = header(size, tar::EntryType::Regular, 0o644);
        match source {
            Source::Bytes(bytes) => tar.append_data(&mut h, &name, bytes.as_slice()),
            Source::File(path) => {
                let file = File::open(&path).map_err(crate::archive_util::io_at("open", &path))?;
                // Exactly the size the header says, even if the file changed meanwhile (then
                // the digest check of whoever reads the archive tells).
                let data = io::Read::take(file, size);
                tar.append_data(&mut h, &name, data)
            }
        }
        .map_err(fail)?;
    }
    let index = index_json(planned)?;
    let mut h = header(index.len() as u64, tar::EntryType::Regular, 0o644);
    tar.append_data(&mut h, "index.json", index.as_slice())
        .map_err(fail)?;
    tar.into_inner().map_err(fail)?.flush().map_err(fail)
}

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header
}

impl ImageError {
    /// Writing the archive's tar stream failed (a client that went away included).
    fn from_save(source: io::Error) -> ImageError {
        ImageError::Io {
            op: "write",
            path: PathBuf::from("<saved archive>"),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_each_tag_with_both_annotations() {
        let planned = vec![
            Planned {
                manifest_digest: Digest::of(b"m"),
                manifest_size: 1,
                manifest_media_type: OCI_MANIFEST.into(),
                names: vec!["docker.io/library/a:1".into(), "localhost:5000/b:2".into()],
            },
            Planned {
                manifest_digest: Digest::of(b"n"),
                manifest_size: 1,
                manifest_media_type: OCI_MANIFEST.into(),
                names: vec![],
            },
        ];
        let index: Value = serde_json::from_slice(&index_json(&planned).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 3);
        assert_eq!(
            manifests[1]["annotations"]["org.opencontainers.image.ref.name"],
            "localhost:5000/b:2"
        );
        assert_eq!(
            manifests[0]["annotations"]["io.containerd.image.name"],
            "docker.io/library/a:1"
        );
        assert!(manifests[2].get("annotations").is_none());
    }

    #[test]
    fn rewritten_layers_replace_the_diff_ids_only() {
        let config =
            br#"{"config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:old"]}}"#;
        let layer = LayerRecord {
            digest: "sha256:new".into(),
            diff_id: "sha256:new".into(),
            chain_id: "sha256:new".into(),
            size: 1,
            media_type: OCI_LAYER_TAR.into(),
        };
        let v: Value = serde_json::from_slice(&with_diff_ids(config, &[layer]).unwrap()).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:new"]));
        assert_eq!(v["config"]["Cmd"], json!(["sh"]));
    }
}
