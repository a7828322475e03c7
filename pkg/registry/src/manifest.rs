//! Serde types for what registries serve: OCI image manifests and indexes,
//! Docker v2 schema 2 manifests and manifest lists (the same JSON shapes
//! under different media types), image configs, and descriptors.
//!
//! Parsing is lenient about unknown fields (Docker configs carry plenty) but
//! strict about what we rely on: the media type must be one we support and
//! every descriptor's digest must be a valid one.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::digest::Digest;
use crate::error::RegistryError;

/// Media types we fetch, parse or hand to the caller.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// The `Accept` header for manifest requests. It must list the OCI types:
    /// docker-registry 2.8 answers 404 for an OCI manifest otherwise.
    pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

use media_type as mt;

/// Deserializes JSON `null` as the type's default (Docker writes
/// `"Env": null`, `"Labels": null`...).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A pointer to content: what it is, its digest and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// The platform an image (or an index entry) is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        default,
        rename = "os.features",
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An OCI image manifest or a Docker v2 schema 2 manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index or a Docker manifest list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// An image config (OCI `config.v1` / Docker `container.image.v1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
}

/// The runtime defaults an image carries. `Entrypoint`/`Cmd` stay `Option`
/// because "unset" and "empty" differ when merged with a pod spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Keys are paths; values are empty objects.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// Keys are `port/proto`; values are empty objects.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// The uncompressed layer digests, bottom first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

/// A parsed manifest document: either a single image or an index of them.
#[derive(Clone, Debug, PartialEq, Eq)]
// One of these exists per manifest fetch; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ManifestKind {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// Only what's needed to classify a document whose media type is unknown.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// The media type of a manifest body: the `Content-Type` the registry sent,
/// unless it is missing or generic (`application/json`...), in which case
/// the body's own `mediaType`, else its schema version and shape.
pub fn detect_media_type(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let header = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|c| {
            !c.is_empty()
                && !matches!(
                    c.as_str(),
                    "application/json" | "text/plain" | "application/octet-stream"
                )
        });
    if header.is_some() {
        return header;
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    if let Some(m) = probe.media_type {
        return Some(m);
    }
    match probe.schema_version {
        Some(1) => Some(mt::DOCKER_SCHEMA1.into()),
        _ if probe.manifests.is_some() => Some(mt::OCI_INDEX.into()),
        _ if probe.config.is_some() => Some(mt::OCI_MANIFEST.into()),
        _ => None,
    }
}

/// Parses a manifest or index body of `media_type`. `reference` names it
/// in errors. Schema 1 and unknown types are refused.
pub fn parse_manifest(
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Result<ManifestKind, RegistryError> {
    let unsupported = |detail: &str| RegistryError::UnsupportedMediaType {
        reference: reference.to_string(),
        media_type: media_type.to_string(),
        detail: detail.to_string(),
    };
    let what = || format!("manifest of {reference} ({media_type})");
    let invalid = |reason: String| RegistryError::InvalidManifest {
        what: what(),
        reason,
    };
    let is_index = match media_type {
        mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => false,
        mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => true,
        mt::DOCKER_SCHEMA1 | mt::DOCKER_SCHEMA1_SIGNED => {
            return Err(unsupported(
                "schema 1 manifests are not supported (deprecated since 2017); \
                 re-push the image with a current tool to get a schema 2 or OCI manifest",
            ));
        }
        _ => {
            return Err(unsupported(
                "expected an OCI image manifest/index or a Docker v2 schema 2 manifest/list",
            ));
        }
    };
    // The body's own mediaType, when present, must agree on what kind of
    // document this is: an index served as a manifest (or the reverse) is
    // a confused or malicious registry.
    let unparsable = |source| RegistryError::ParseManifest {
        what: what(),
        source,
    };
    let probe: Probe = serde_json::from_slice(body).map_err(unparsable)?;
    if probe.schema_version == Some(1) {
        return Err(unsupported(
            "body is a schema 1 manifest, which is not supported",
        ));
    }
    if let Some(body_mt) = &probe.media_type {
        let body_is_index = matches!(body_mt.as_str(), mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST);
        let body_is_image = matches!(body_mt.as_str(), mt::OCI_MANIFEST | mt::DOCKER_MANIFEST);
        if (is_index && !body_is_index) || (!is_index && !body_is_image) {
            return Err(invalid(format!("body says its mediaType is {body_mt:?}")));
        }
    }
    if probe.schema_version != Some(2) {
        return Err(invalid(format!(
            "schemaVersion is {:?}, expected 2",
            probe.schema_version
        )));
    }
    let check = |d: &Descriptor| {
        Digest::parse(&d.digest)
            .map(|_| ())
            .map_err(|e| invalid(format!("descriptor {}: {e}", d.media_type)))
    };
    if is_index {
        let index: ImageIndex = serde_json::from_slice(body).map_err(unparsable)?;
        index.manifests.iter().try_for_each(check)?;
        Ok(ManifestKind::Index(index))
    } else {
        let m: ImageManifest = serde_json::from_slice(body).map_err(unparsable)?;
        check(&m.config)?;
        m.layers.iter().try_for_each(check)?;
        Ok(ManifestKind::Image(m))
    }
}

/// Parses an image config blob.
pub fn parse_config(what: &str, body: &[u8]) -> Result<ImageConfig, RegistryError> {
    serde_json::from_slice(body).map_err(|source| RegistryError::ParseManifest {
        what: format!("image config {what}"),
        source,
    })
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
