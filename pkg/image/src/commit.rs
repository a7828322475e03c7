//! `commit`: a container's writable layer becomes a new layer on top of its image.
//!
//! The upper dir is written as an OCI layer tar ([`berth_snapshot::write_layer_tar`]: overlay
//! whiteouts become `.wh.` files), gzip-compressed into the content store (its digest and the
//! uncompressed diff ID computed on the way, in one pass), then unpacked from that blob as a
//! snapshot on top of the image's top layer by the unpacker pulls use (which checks the diff ID
//! again). The new config is the image's with the diff ID appended to `rootfs.diff_ids` and a
//! history entry; the manifest is a new OCI manifest. The layer blob is kept, so `save` writes
//! it byte for byte.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use berth_registry::Reference;
use serde_json::{Value, json};

use crate::archive_util::{
    HashWriter, Lease, NewImage, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Staging, io_at,
    register, store_blob,
};
use crate::record::{ImageRecord, LayerRecord};
use crate::{Digest, ImageError, ImageService};

/// What to commit a container's changes as.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `NAME[:TAG]`, normalised as pulls normalise names; `None` for an image without a name.
    pub reference: Option<String>,
    /// The history entry's author and comment.
    pub author: String,
    pub message: String,
    /// The history entry's `created_by` (what made the layer).
    pub created_by: String,
    /// The pod's user namespace mapping, when the container has one: its upper dir holds host
    /// ids, written to the layer as the container's.
    pub ids: berth_snapshot::IdMap,
}

/// A committed image.
#[derive(Debug, Clone)]
pub struct Committed {
    pub record: ImageRecord,
    /// The normalised name, if one was given.
    pub reference: Option<String>,
    pub layer_digest: String,
    pub diff_id: String,
}

impl ImageService {
    /// Commits the overlay upper dir `upper` of a container whose rootfs is built on image
    /// `image_id` as a new image. The container's snapshot must be protected from garbage
    /// collection by its owner (the container layer does) while this runs.
    pub async fn commit(
        &self,
        image_id: &str,
        upper: &Path,
        options: CommitOptions,
    ) -> Result<Committed, ImageError> {
        let name = match options.reference.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => {
                let parsed = Reference::parse(r)?;
                if parsed.digest.is_some() {
                    return Err(ImageError::InvalidImage {
                        reference: r.to_string(),
                        reason: "a committed image is named by NAME[:TAG], not a digest".into(),
                    });
                }
                Some(parsed)
            }
        };
        let inner = &self.inner;
        let base =
            inner
                .catalog()
                .get(image_id)
                .cloned()
                .ok_or_else(|| ImageError::InvalidImage {
                    reference: image_id.to_string(),
                    reason: "the container's image is no longer present".into(),
                })?;
        let base_config = inner.content.read(&Digest::parse(&base.id)?)?;
        let parent = base.top_chain_id().map(str::to_string);

        let (staging, upper_dir) = (Staging::new(inner, "commit")?, upper.to_path_buf());
        let blob_path = staging.dir.join("layer.tar.gz");
        let written = {
            let (path, ids) = (blob_path.clone(), options.ids.clone());
            blocking(move || write_layer(&upper_dir, &path, &ids)).await?
        };
        let (blob_digest, blob_size, diff_id) = written;
        let chain_id = berth_snapshot::chain_id(parent.as_deref(), diff_id.as_str());
        let _lease = Lease::take(inner, vec![chain_id.clone()]);
        {
            let (inner2, path, diff, chain, parent, digest) = (
                inner.clone(),
                blob_path.clone(),
                diff_id.clone(),
                chain_id.clone(),
                parent.clone(),
                blob_digest.clone(),
            );
            blocking(move || {
                let file = File::open(&path).map_err(io_at("open", &path))?;
                let decoded = crate::decompress::decoder(
                    crate::decompress::Compression::Gzip,
                    std::io::BufReader::new(file),
                )?;
                inner2
                    .snapshots
                    .apply_layer(&chain, parent.as_deref(), diff.as_str(), decoded)?;
                store_blob(&inner2, &digest, &path)
            })
            .await?;
        }

        let (_, created) = crate::archive_util::now();
        let config = new_config(&base_config, diff_id.as_str(), &created, &options)?;
        let config_digest = Digest::of(&config);
        let mut layers = base.layers.clone();
        layers.push(LayerRecord {
            digest: blob_digest.to_string(),
            diff_id: diff_id.to_string(),
            chain_id: chain_id.clone(),
            size: blob_size,
            media_type: OCI_LAYER_GZIP.to_string(),
        });
        let manifest = manifest_json(&config_digest, config.len() as u64, &layers)?;
        let manifest_digest = Digest::of(&manifest);
        inner.content.write(&config_digest, &config)?;
        inner.content.write(&manifest_digest, &manifest)?;
        let size = config.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();
        let image = NewImage {
            id: config_digest,
            manifest_digest,
            size,
            layers,
            user: base.user.clone(),
        };
        let names: Vec<Reference> = name.iter().cloned().collect();
        let record = register(inner, &names, image).await?;
        tracing::info!(image = %record.id, base = %base.id, layer = %blob_digest, "committed container changes");
        Ok(Committed {
            record,
            reference: name.map(|n| n.to_string()),
            layer_digest: blob_digest.to_string(),
            diff_id: diff_id.to_string(),
        })
    }
}

/// Writes `upper` as a gzip layer blob at `path`: (blob digest, blob size, diff ID).
fn write_layer(
    upper: &Path,
    path: &Path,
    ids: &berth_snapshot::IdMap,
) -> Result<(Digest, u64, Digest), ImageError> {
    let file = File::create(path).map_err(io_at("create", path))?;
    let blob = HashWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let gzip = flate2::write::GzEncoder::new(blob, flate2::Compression::default());
    let (gzip, stats) = berth_snapshot::write_layer_tar_mapped(upper, HashWriter::new(gzip), ids)?;
    let (gzip, diff_id, _) = gzip.finish();
    let blob = gzip.finish().map_err(io_at("write", path))?;
    let (mut buffered, digest, size) = blob.finish();
    buffered.flush().map_err(io_at("write", path))?;
    tracing::debug!(
        entries = stats.entries,
        content_bytes = stats.content_bytes,
        whiteouts = stats.whiteouts,
        "container layer written"
    );
    Ok((digest, size, diff_id))
}

/// The base config with the new layer's diff ID and a history entry; everything else (env,
/// cmd, entrypoint, ...) kept as it was.
pub(crate) fn new_config(
    base: &[u8],
    diff_id: &str,
    created: &str,
    options: &CommitOptions,
) -> Result<Vec<u8>, ImageError> {
    let bad = |reason: String| ImageError::InvalidImage {
        reference: "image config".into(),
        reason,
    };
    let mut config: Value =
        serde_json::from_slice(base).map_err(|source| ImageError::InvalidConfig { source })?;
    let object = config
        .as_object_mut()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let rootfs = object
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        Some(ids) => ids.push(json!(diff_id)),
        None => rootfs["diff_ids"] = json!([diff_id]),
    }
    let mut entry = serde_json::Map::new();
    entry.insert("created".into(), json!(created));
    if !options.created_by.is_empty() {
        entry.insert("created_by".into(), json!(options.created_by));
    }
    if !options.author.is_empty() {
        entry.insert("author".into(), json!(options.author));
        object.insert("author".into(), json!(options.author));
    }
    if !options.message.is_empty() {
        entry.insert("comment".into(), json!(options.message));
    }
    match object.get_mut("history").and_then(Value::as_array_mut) {
        Some(history) => history.push(Value::Object(entry)),
        None => {
            object.insert("history".into(), json!([entry]));
        }
    }
    object.insert("created".into(), json!(created));
    serde_json::to_vec(&config).map_err(ImageError::encode("image config"))
}

/// An OCI manifest for `config` and `layers`.
pub(crate) fn manifest_json(
    config: &Digest,
    config_size: u64,
    layers: &[LayerRecord],
) -> Result<Vec<u8>, ImageError> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.as_str(), "size": config_size},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest, "size": l.size,
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).map_err(ImageError::encode("image manifest"))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ImageError::task("blocking"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_gets_the_layer_and_a_history_entry_and_keeps_the_rest() {
        let base = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Entrypoint":["/init"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"base"}]}"#;
        let options = CommitOptions {
            author: "me".into(),
            message: "msg".into(),
            created_by: "berth commit".into(),
            ..Default::default()
        };
        let out = new_config(base, "sha256:bb", "2026-01-01T00:00:00Z", &options).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"], json!(["sha256:aa", "sha256:bb"]));
        assert_eq!(v["config"]["Env"], json!(["PATH=/bin"]));
        assert_eq!(v["config"]["Cmd"], json!(["sh"]));
        assert_eq!(v["config"]["Entrypoint"], json!(["/init"]));
        assert_eq!(v["history"][1]["author"], "me");
        assert_eq!(v["history"][1]["comment"], "msg");
        assert_eq!(v["history"][1]["created_by"], "berth commit");
        assert_eq!(v["history"][1]["created"], "2026-01-01T00:00:00Z");
        assert_eq!(v["created"], "2026-01-01T00:00:00Z");
        assert!(new_config(b"[]", "sha256:bb", "x", &options).is_err());
    }
}
