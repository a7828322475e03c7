//! From a reference to what a pull fetches: the platform's manifest (through an index if the
//! reference names one), the verified config, and the layers with their chain IDs.

use std::sync::Arc;

use berth_registry::{Credentials, Descriptor, Endpoint, Manifest, ManifestKind, Reference};

use crate::decompress::layer_compression;
use crate::record::LayerRecord;
use crate::source::PullSource;
use crate::{Digest, ImageError, Inner};

/// Image configs are small; refuse absurd ones rather than buffering them.
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// A reference resolved to everything its pull needs.
pub(super) struct Resolved {
    /// What the reference resolved to (an index's digest for multi-platform images).
    pub(super) resolved_digest: String,
    pub(super) manifest_digest: Digest,
    pub(super) config_digest: Digest,
    /// The endpoint that served the manifest: it has the blobs.
    pub(super) endpoint: Endpoint,
    /// Manifest order, bottom first.
    pub(super) layers: Vec<LayerRecord>,
    /// Compressed layers plus config.
    pub(super) size: u64,
    /// The config's `User`.
    pub(super) user: String,
    /// The index (if any), manifest and config: written to the content store only once the
    /// whole pull succeeded, so a failed pull leaves nothing behind.
    pub(super) blobs: Vec<(Digest, Vec<u8>)>,
}

pub(super) async fn resolve(
    inner: &Arc<Inner>,
    source: &dyn PullSource,
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<Resolved, ImageError> {
    let top = source.fetch_manifest(reference, credentials).await?;
    let resolved_digest = top.digest.clone();
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let manifest = platform_manifest(source, reference, credentials, top, &mut blobs).await?;
    let ManifestKind::Image(parsed) = &manifest.kind else {
        return Err(ImageError::InvalidImage {
            reference: reference.to_string(),
            reason: "the index entry for this platform is itself an index".into(),
        });
    };
    let manifest_digest = Digest::parse(&manifest.digest)?;
    let config_digest = Digest::parse(&parsed.config.digest)?;

    let config_bytes = fetch_config(
        inner,
        source,
        reference,
        &parsed.config,
        Some(&manifest.endpoint),
        credentials,
    )
    .await?;
    let config = berth_registry::parse_config(config_digest.as_str(), &config_bytes)?;
    let layers = layer_records(reference, &parsed.layers, &config.rootfs.diff_ids)?;
    blobs.push((manifest_digest.clone(), manifest.bytes.to_vec()));
    blobs.push((config_digest.clone(), config_bytes.to_vec()));
    Ok(Resolved {
        resolved_digest,
        manifest_digest,
        config_digest,
        endpoint: manifest.endpoint.clone(),
        size: parsed.config.size + layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        user: config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default(),
        blobs,
    })
}

/// `top` itself when it is an image manifest; for an index, the manifest of this host's
/// platform (the index joins `blobs`).
async fn platform_manifest(
    source: &dyn PullSource,
    reference: &Reference,
    credentials: Option<&Credentials>,
    top: Manifest,
    blobs: &mut Vec<(Digest, Vec<u8>)>,
) -> Result<Manifest, ImageError> {
    let ManifestKind::Index(index) = &top.kind else {
        return Ok(top);
    };
    let host = berth_registry::host_platform();
    let chosen = berth_registry::select_platform(
        index,
        &host.os,
        &host.architecture,
        host.variant.as_deref(),
    )?;
    let pinned = reference.with_digest(chosen.digest.clone());
    let chosen = source.fetch_manifest(&pinned, credentials).await?;
    blobs.push((Digest::parse(&top.digest)?, top.bytes.to_vec()));
    Ok(chosen)
}

/// The manifest's layers paired with the config's diff IDs, each with its chain ID.
fn layer_records(
    reference: &Reference,
    layers: &[Descriptor],
    diff_ids: &[String],
) -> Result<Vec<LayerRecord>, ImageError> {
    if diff_ids.len() != layers.len() {
        return Err(ImageError::InvalidImage {
            reference: reference.to_string(),
            reason: format!(
                "manifest lists {} layers but the config has {} diff IDs",
                layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut records = Vec::with_capacity(diff_ids.len());
    let mut parent: Option<String> = None;
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        layer_compression(&layer.media_type)?;
        Digest::parse(&layer.digest)?;
        Digest::parse(diff_id)?;
        let chain_id = berth_snapshot::chain_id(parent.as_deref(), diff_id);
        records.push(LayerRecord {
            digest: layer.digest.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        });
        parent = Some(chain_id);
    }
    Ok(records)
}

/// The config blob, from the content store or the registry (coalesced by digest).
async fn fetch_config(
    inner: &Arc<Inner>,
    source: &dyn PullSource,
    reference: &Reference,
    descriptor: &Descriptor,
    endpoint: Option<&Endpoint>,
    credentials: Option<&Credentials>,
) -> Result<Arc<Vec<u8>>, ImageError> {
    let digest = Digest::parse(&descriptor.digest)?;
    if inner.content.has(&digest) {
        return Ok(Arc::new(inner.content.read(&digest)?));
    }
    if descriptor.size > MAX_CONFIG_SIZE {
        return Err(ImageError::InvalidImage {
            reference: reference.to_string(),
            reason: format!(
                "config of {} bytes is larger than {MAX_CONFIG_SIZE}",
                descriptor.size
            ),
        });
    }
    let key = digest.to_string();
    inner
        .blobs
        .run(key, || async {
            let mut blob = source
                .fetch_blob(reference, digest.as_str(), endpoint, credentials)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            // At most MAX_CONFIG_SIZE (checked above), so it fits.
            let mut bytes = Vec::with_capacity(usize::try_from(descriptor.size).unwrap_or(0));
            while let Some(chunk) = blob.next_chunk().await.map_err(|e| Arc::new(e.into()))? {
                if (bytes.len() + chunk.len()) as u64 > descriptor.size {
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            check_size("config", descriptor.size, bytes.len() as u64).map_err(Arc::new)?;
            let actual = Digest::of(&bytes);
            if actual != digest {
                return Err(Arc::new(ImageError::DigestMismatch {
                    what: "config".to_string(),
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                }));
            }
            Ok(Arc::new(bytes))
        })
        .await
        .map_err(ImageError::from)
}

fn check_size(what: &str, expected: u64, actual: u64) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::SizeMismatch {
            what: what.to_string(),
            expected,
            actual,
        })
    }
}
