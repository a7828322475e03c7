//! `load`: images from an archive, verified like pulled ones and unpacked by the same code.
//!
//! Three phases, so that a bad archive leaves nothing behind:
//! 1. extract the stream into a staging dir under `content/ingest/` (disk, never memory);
//! 2. check every blob against its digest and size, each config against its layers, and unpack
//!    every missing layer (the unpacker checks its diff ID) without committing it;
//! 3. only then commit the snapshots in order, move the blobs into the content store and record
//!    the images under their names.
//!
//! Layer blobs are kept in the content store (docker archives' plain tars too), so an image saved
//! after it was loaded is written with the same digests.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use berth_registry::Reference;
use berth_snapshot::UnpackedLayer;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::archive_load::{Candidate, candidates, extract};
use crate::archive_util::{
    Lease, NewImage, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, Staging, hash_file, invalid,
    io_at, register, store_blob,
};
use crate::channel_reader::ChannelReader;
use crate::commit::{blocking, manifest_json};
use crate::decompress::{Compression, decoder, layer_compression, sniff};
use crate::record::LayerRecord;
use crate::{Digest, ImageError, ImageService, Inner};

/// A piece of an archive being loaded, or the error that ends its stream.
pub type ArchiveChunk = Result<Bytes, std::io::Error>;

/// An image a load brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image id (config digest).
    pub id: String,
    /// The normalised names it was recorded under.
    pub names: Vec<String>,
}

/// A candidate whose blobs passed their checks.
#[derive(Debug)]
struct Verified {
    candidate: Candidate,
    layers: Vec<LayerRecord>,
    user: String,
}

impl ImageService {
    /// Loads the images of the archive arriving on `chunks` (an error on the channel aborts the
    /// load). All or nothing.
    pub async fn load(
        &self,
        chunks: mpsc::Receiver<ArchiveChunk>,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        let inner = self.inner.clone();
        let staging = Arc::new(Staging::new(&inner, "load")?);
        let (verified, unpacked, lease) = {
            let (inner, staging) = (inner.clone(), staging.clone());
            blocking(move || {
                let mut reader = ChannelReader::new(chunks);
                let files = extract(&mut reader, &staging.dir)?;
                // Whatever follows the end-of-archive blocks (tar pads to whole records) is read,
                // so the sender never waits on a reader that left; an error it reports still
                // fails the load.
                reader
                    .drain()
                    .map_err(|source| ImageError::ArchiveStream { source })?;
                let verified = candidates(&files)?
                    .into_iter()
                    .map(verify)
                    .collect::<Result<Vec<_>, _>>()?;
                let chains = verified
                    .iter()
                    .flat_map(|v| v.layers.iter().map(|l| l.chain_id.clone()))
                    .collect();
                let lease = Lease::take(&inner, chains);
                let unpacked = unpack_missing(&inner, &verified)?;
                Ok((verified, unpacked, lease))
            })
            .await?
        };
        {
            blocking(move || {
                for (chain_id, parent, layer) in unpacked {
                    layer.commit(&chain_id, parent.as_deref())?;
                }
                Ok(())
            })
            .await?;
        }
        let mut loaded = Vec::new();
        for image in verified {
            loaded.push(record_loaded(&inner, image).await?);
        }
        drop(lease);
        // What is left of the archive (its JSON documents, links) can be many files.
        let _ = tokio::task::spawn_blocking(move || drop(staging)).await;
        Ok(loaded)
    }
}

/// Checks a candidate's layer blobs (digest and size, as a pull does) and that its config
/// lists one diff ID per layer.
fn verify(candidate: Candidate) -> Result<Verified, ImageError> {
    let config = berth_registry::parse_config(candidate.config_digest.as_str(), &candidate.config)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != candidate.layers.len() {
        return Err(invalid(format!(
            "image {} has {} layers but its config lists {} diff IDs",
            candidate.config_digest,
            candidate.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut parent: Option<String> = None;
    for (layer, diff_id) in candidate.layers.iter().zip(diff_ids) {
        Digest::parse(diff_id)?;
        let (digest, size) = hash_file(&layer.path)?;
        if let Some((expected, expected_size)) = &layer.expected {
            if *expected != digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("layer {expected} in the archive"),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
            if *expected_size != size {
                return Err(ImageError::SizeMismatch {
                    what: format!("layer {expected} in the archive"),
                    expected: *expected_size,
                    actual: size,
                });
            }
        }
        let media_type = match &layer.media_type {
            Some(declared) => declared.clone(),
            None => {
                let mut prefix = [0u8; 4];
                let n = std::io::Read::read(
                    &mut File::open(&layer.path).map_err(io_at("open", &layer.path))?,
                    &mut prefix,
                )
                .map_err(io_at("read", &layer.path))?;
                match sniff(&prefix[..n]) {
                    Compression::Gzip => OCI_LAYER_GZIP,
                    Compression::Zstd => OCI_LAYER_ZSTD,
                    Compression::None => OCI_LAYER_TAR,
                }
                .to_string()
            }
        };
        let chain_id = berth_snapshot::chain_id(parent.as_deref(), diff_id);
        layers.push(LayerRecord {
            digest: digest.to_string(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            size,
            media_type,
        });
        parent = Some(chain_id);
    }
    let user = config
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    Ok(Verified {
        candidate,
        layers,
        user,
    })
}

type Staged = (String, Option<String>, UnpackedLayer);

/// Unpacks (without committing) every layer no snapshot has yet, bottom first; a layer two images
/// share is unpacked once.
fn unpack_missing(inner: &Inner, images: &[Verified]) -> Result<Vec<Staged>, ImageError> {
    let mut staged: Vec<Staged> = Vec::new();
    let mut seen = HashSet::new();
    for image in images {
        let mut parent: Option<String> = None;
        for (record, file) in image.layers.iter().zip(&image.candidate.layers) {
            let chain_id = record.chain_id.clone();
            if !inner.snapshots.exists(&chain_id) && seen.insert(chain_id.clone()) {
                let input = File::open(&file.path).map_err(io_at("open", &file.path))?;
                let declared = layer_compression(&record.media_type)?;
                let decoded = decoder(declared, BufReader::with_capacity(256 * 1024, input))?;
                let layer = inner.snapshots.unpack(&record.diff_id, decoded)?;
                staged.push((chain_id.clone(), parent.clone(), layer));
            }
            parent = Some(chain_id);
        }
    }
    Ok(staged)
}

/// Moves the image's blobs into the content store and records it.
async fn record_loaded(inner: &Arc<Inner>, image: Verified) -> Result<LoadedImage, ImageError> {
    let Verified {
        candidate,
        layers,
        user,
    } = image;
    let manifest = match candidate.manifest {
        Some(bytes) => bytes,
        None => manifest_json(
            &candidate.config_digest,
            candidate.config.len() as u64,
            &layers,
        )?,
    };
    let manifest_digest = Digest::of(&manifest);
    {
        let (inner, layers) = (inner.clone(), layers.clone());
        let files: Vec<_> = candidate.layers.iter().map(|l| l.path.clone()).collect();
        let (config_digest, config) = (candidate.config_digest.clone(), candidate.config.clone());
        let (manifest_digest, manifest) = (manifest_digest.clone(), manifest.clone());
        blocking(move || {
            for (layer, path) in layers.iter().zip(&files) {
                // Shared by two images (or linked twice): already moved by the first.
                if path.exists() {
                    store_blob(&inner, &Digest::parse(&layer.digest)?, path)?;
                }
            }
            inner.content.write(&config_digest, &config)?;
            inner.content.write(&manifest_digest, &manifest)
        })
        .await?;
    }
    let size = candidate.config.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();
    let names: Vec<Reference> = candidate.names;
    let record = register(
        inner,
        &names,
        NewImage {
            id: candidate.config_digest,
            manifest_digest,
            size,
            layers,
            user,
        },
    )
    .await?;
    let names: Vec<String> = names.iter().map(Reference::to_string).collect();
    tracing::info!(image = %record.id, ?names, "loaded image");
    Ok(LoadedImage {
        id: record.id,
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive_load::LayerFile;

    fn candidate(
        dir: &std::path::Path,
        layer: &[u8],
        expected: &[u8],
        diff_ids: usize,
    ) -> Candidate {
        let path = dir.join("layer");
        std::fs::write(&path, layer).unwrap();
        let diff = Digest::of(b"diff");
        let ids: Vec<&str> = (0..diff_ids).map(|_| diff.as_str()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": ids},
            "config": {"User": "1000"},
        }))
        .unwrap();
        Candidate {
            names: vec![],
            config_digest: Digest::of(&config),
            config,
            manifest: None,
            layers: vec![LayerFile {
                path,
                expected: Some((Digest::of(expected), expected.len() as u64)),
                media_type: None,
            }],
        }
    }

    #[test]
    fn layers_are_checked_against_their_digests_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let good = verify(candidate(dir.path(), b"\x1f\x8blayer", b"\x1f\x8blayer", 1)).unwrap();
        assert_eq!(good.layers[0].media_type, OCI_LAYER_GZIP);
        assert_eq!(good.layers[0].digest, Digest::of(b"\x1f\x8blayer").as_str());
        assert_eq!(good.user, "1000");
        let tampered = verify(candidate(dir.path(), b"layeR", b"layer", 1));
        assert!(
            matches!(tampered, Err(ImageError::DigestMismatch { .. })),
            "{tampered:?}"
        );
        let miscounted = verify(candidate(dir.path(), b"layer", b"layer", 2));
        let err = miscounted.err().unwrap().to_string();
        assert!(err.contains("2 diff IDs"), "{err}");
    }
}
