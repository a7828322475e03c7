//! Removing images and collecting what no image or container needs any more.

use std::collections::HashSet;
use std::sync::Arc;

use berth_registry::Reference;

use crate::record::ImageRecord;
use crate::{Digest, ImageError, Inner, SnapshotUsers};

enum Removal {
    /// Drop one tag; the image stays.
    Untag(ImageRecord),
    /// Drop the image record.
    Delete(String),
}

pub(crate) async fn remove(
    inner: &Arc<Inner>,
    query: &str,
    containers: &dyn SnapshotUsers,
) -> Result<(), ImageError> {
    let _guard = inner.metadata.lock().await;
    let removal = {
        let catalog = inner.catalog();
        let Some(record) = catalog.lookup(query) else {
            return Ok(());
        };
        let tag = Reference::parse(query)
            .ok()
            .filter(|r| r.digest.is_none())
            .and_then(|r| r.tag.as_ref().map(|t| format!("{}:{t}", r.name())));
        match tag {
            Some(tag) if record.repo_tags.len() > 1 && record.repo_tags.contains(&tag) => {
                let mut kept = record.clone();
                kept.repo_tags.retain(|t| *t != tag);
                let name = tag.rsplit_once(':').map_or(tag.as_str(), |(n, _)| n);
                // The repo digest goes with the last tag of its repository.
                if !kept
                    .repo_tags
                    .iter()
                    .any(|t| t.starts_with(&format!("{name}:")))
                {
                    kept.repo_digests
                        .retain(|d| !d.starts_with(&format!("{name}@")));
                }
                Removal::Untag(kept)
            }
            _ => Removal::Delete(record.id.clone()),
        }
    };
    let store = inner.store.clone();
    match removal {
        Removal::Untag(kept) => {
            let to_write = kept.clone();
            blocking(move || store.put(&to_write).map_err(ImageError::from)).await?;
            tracing::info!(image = %kept.id, untagged = query, "untagged image");
            inner.catalog_mut().insert(kept);
        }
        Removal::Delete(id) => {
            let key = id.clone();
            blocking(move || {
                store
                    .delete::<ImageRecord>(&key)
                    .map(|_| ())
                    .map_err(ImageError::from)
            })
            .await?;
            inner.catalog_mut().remove(&id);
            tracing::info!(image = %id, "removed image");
            collect(inner, containers).await?;
        }
    }
    Ok(())
}

/// Deletes content blobs and snapshots that no image references, no container uses and no pull in
/// flight relies on. Snapshots go top-down (children before parents).
async fn collect(inner: &Arc<Inner>, containers: &dyn SnapshotUsers) -> Result<(), ImageError> {
    let (wanted_blobs, wanted_chains) = {
        let catalog = inner.catalog();
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for record in catalog.all() {
            blobs.insert(record.id.clone());
            blobs.insert(record.manifest_digest.clone());
            for repo_digest in &record.repo_digests {
                if let Some((_, digest)) = repo_digest.rsplit_once('@') {
                    blobs.insert(digest.to_string());
                }
            }
            chains.extend(record.layers.iter().map(|l| l.chain_id.clone()));
            // Layer blobs kept by commit and load (pulled layers have none).
            blobs.extend(record.layers.iter().map(|l| l.digest.clone()));
        }
        (blobs, chains)
    };
    let mut protected = wanted_chains;
    protected.extend(
        inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned(),
    );
    protected.extend(containers.in_use());
    let inner = inner.clone();
    blocking(move || {
        for digest in inner.content.list()? {
            if !wanted_blobs.contains(digest.as_str()) {
                inner.content.delete(&digest)?;
            }
        }
        // A protected snapshot keeps its ancestors: walk parents of everything protected.
        let snapshots = inner.snapshots.list()?;
        let parent_of: std::collections::HashMap<String, Option<String>> = snapshots
            .iter()
            .map(|s| (s.chain_id.clone(), s.parent.clone()))
            .collect();
        let mut keep = HashSet::new();
        for id in &protected {
            let mut cursor = Some(id.clone());
            while let Some(id) = cursor {
                if !keep.insert(id.clone()) {
                    break;
                }
                cursor = parent_of.get(&id).cloned().flatten();
            }
        }
        // Remove leaves first, repeatedly, until nothing removable is left.
        let mut doomed: HashSet<String> = parent_of
            .keys()
            .filter(|id| !keep.contains(*id))
            .cloned()
            .collect();
        while !doomed.is_empty() {
            let leaves: Vec<String> = doomed
                .iter()
                .filter(|id| {
                    !parent_of.iter().any(|(child, parent)| {
                        doomed.contains(child) && parent.as_ref() == Some(*id)
                    })
                })
                .cloned()
                .collect();
            if leaves.is_empty() {
                break;
            }
            for id in leaves {
                inner.snapshots.remove(&id)?;
                doomed.remove(&id);
            }
        }
        Ok(())
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ImageError::task("blocking"))?
}

#[allow(dead_code)]
fn _digest_used(d: &Digest) -> &str {
    d.as_str()
}
