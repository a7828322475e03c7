//! What Berth remembers about an image, persisted in the metadata store.

use serde::{Deserialize, Serialize};

/// One image, identified by its config digest (the image ID kubelet sees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Config digest, `sha256:...`.
    pub id: String,
    /// Normalized `registry/repository:tag` names pointing at this image.
    pub repo_tags: Vec<String>,
    /// `registry/repository@sha256:...`: the digest each name resolved to (an index for multi-platform images).
    pub repo_digests: Vec<String>,
    /// The platform manifest the layers came from.
    pub manifest_digest: String,
    /// Compressed layers plus config, as the registry serves them (what containerd reports too).
    pub size: u64,
    pub layers: Vec<LayerRecord>,
    /// The config's `User`, e.g. `1000`, `berth`, `1000:1000`.
    #[serde(default)]
    pub user: String,
    /// When the image was first pulled, unix nanoseconds.
    pub created_at_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Compressed blob digest, as in the manifest.
    pub digest: String,
    /// Uncompressed tar digest, as in the config's rootfs.
    pub diff_id: String,
    /// The snapshot holding this layer (and, through its parents, everything below).
    pub chain_id: String,
    pub size: u64,
    pub media_type: String,
}

impl berth_store::Record for ImageRecord {
    const KIND: berth_store::RecordKind = berth_store::RecordKind::Image;
    fn id(&self) -> &str {
        &self.id
    }
}

impl ImageRecord {
    /// The snapshot a container's rootfs is built on.
    pub fn top_chain_id(&self) -> Option<&str> {
        self.layers.last().map(|l| l.chain_id.as_str())
    }

    /// uid and username for CRI: a numeric `User` (or its uid part) is a uid, anything else a name.
    pub fn cri_user(&self) -> (Option<i64>, String) {
        let user = self.user.split(':').next().unwrap_or("");
        match user.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) if user.is_empty() => (None, String::new()),
            Err(_) => (None, user.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str) -> ImageRecord {
        ImageRecord {
            id: String::new(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest_digest: String::new(),
            size: 0,
            layers: vec![],
            user: user.to_string(),
            created_at_ns: 0,
        }
    }

    #[test]
    fn cri_user_forms() {
        assert_eq!(record("").cri_user(), (None, String::new()));
        assert_eq!(record("1000").cri_user(), (Some(1000), String::new()));
        assert_eq!(record("1000:1000").cri_user(), (Some(1000), String::new()));
        assert_eq!(record("berth").cri_user(), (None, "berth".to_string()));
        assert_eq!(
            record("berth:extra").cri_user(),
            (None, "berth".to_string())
        );
    }
}
