//! Reading image archives: the tar is extracted entry by entry into a staging directory (files
//! under numbered names, never under the archive's own paths, so no entry can reach outside
//! it), then read as an OCI image layout (`index.json`, `blobs/sha256/...`: what `berth save`,
//! `skopeo copy ... oci-archive:` and `buildah push ... oci-archive:` write) or a docker archive
//! (`manifest.json` naming `Config` and `Layers` files: `docker save`, `skopeo copy ...
//! docker-archive:`). A file holding both (docker 25+) is read as the OCI layout.
//!
//! What comes out is a list of [`Candidate`] images whose small documents (index, manifest,
//! config) are verified against their digests; layers are verified and unpacked by
//! `archive_import`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_registry::manifest::{ImageIndex, ManifestKind, media_type as mt};
use berth_registry::{Reference, parse_manifest};
use serde::Deserialize;

use crate::archive_util::{invalid, io_at, read_small};
use crate::{Digest, ImageError};

/// Links are followed at most this many times (a loop of them is a broken archive).
const MAX_LINK_HOPS: usize = 16;

/// The archive's regular files, by their normalised path in the archive.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    files: HashMap<String, PathBuf>,
    /// Symlinks and hard links: path → the archive path they point at.
    links: HashMap<String, String>,
}

impl Extracted {
    pub(crate) fn get(&self, name: &str) -> Option<&Path> {
        let mut name = name.to_string();
        for _ in 0..MAX_LINK_HOPS {
            if let Some(path) = self.files.get(&name) {
                return Some(path);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn require(&self, name: &str, what: &str) -> Result<&Path, ImageError> {
        self.get(name)
            .ok_or_else(|| invalid(format!("{what} {name:?} is not in the archive")))
    }
}

/// `a/./b//c` → `a/b/c`; `..`, or a path that is empty, is refused.
fn normalise(raw: &[u8]) -> Result<Option<String>, ImageError> {
    let text = std::str::from_utf8(raw).map_err(|_| {
        invalid(format!(
            "entry {:?}: not UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })?;
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(format!("entry {text:?} climbs out of the archive"))),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Extracts the tar read from `input` into `dir`.
pub(crate) fn extract(input: impl Read, dir: &Path) -> Result<Extracted, ImageError> {
    let not_tar = |source: io::Error| ImageError::ArchiveTar { source };
    let mut archive = tar::Archive::new(input);
    let mut out = Extracted::default();
    for (n, entry) in archive.entries().map_err(not_tar)?.enumerate() {
        let mut entry = entry.map_err(not_tar)?;
        let Some(name) = normalise(&entry.path_bytes())? else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let path = dir.join(format!("f{n}"));
                let mut file = File::create(&path).map_err(io_at("create", &path))?;
                io::copy(&mut entry, &mut file).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => not_tar(e),
                    _ => ImageError::Io {
                        op: "write",
                        path: path.clone(),
                        source: e,
                    },
                })?;
                out.links.remove(&name);
                out.files.insert(name, path);
            }
            kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(format!("link {name:?} has no target")))?;
                // A symlink is relative to its directory (docker save links duplicate layers
                // as `../<id>/layer.tar`); a hard link names an archive path.
                let joined = match (kind, name.rsplit_once('/')) {
                    (tar::EntryType::Symlink, Some((parent, _))) if !target.starts_with(b"/") => {
                        [parent.as_bytes(), b"/", &target].concat()
                    }
                    _ => target.to_vec(),
                };
                if let Some(target) = normalise_link(&joined) {
                    out.files.remove(&name);
                    out.links.insert(name, target);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Resolves `..` inside a link target; `None` when it leaves the archive.
fn normalise_link(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// A layer file in the archive.
#[derive(Debug, Clone)]
pub(crate) struct LayerFile {
    pub(crate) path: PathBuf,
    /// The blob digest the archive promises (layouts; `blobs/sha256/<hex>` paths of docker
    /// archives); `None` when only the diff ID can check it.
    pub(crate) expected: Option<(Digest, u64)>,
    /// The declared media type (layouts), or `None` to decide from the data.
    pub(crate) media_type: Option<String>,
}

/// One image found in the archive.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) names: Vec<Reference>,
    pub(crate) config_digest: Digest,
    pub(crate) config: Vec<u8>,
    /// The manifest as the archive has it (layouts); docker archives get one made.
    pub(crate) manifest: Option<Vec<u8>>,
    pub(crate) layers: Vec<LayerFile>,
}

/// Reads the images an extracted archive holds.
pub(crate) fn candidates(files: &Extracted) -> Result<Vec<Candidate>, ImageError> {
    if files.get("index.json").is_some() {
        oci_layout(files)
    } else if files.get("manifest.json").is_some() {
        docker_archive(files)
    } else {
        Err(invalid(
            "neither an OCI image layout (no index.json) nor a docker archive (no manifest.json)"
                .into(),
        ))
    }
}

/// A blob of an OCI layout, checked against its descriptor.
fn small_blob(
    files: &Extracted,
    digest: &str,
    size: u64,
    what: &str,
) -> Result<Vec<u8>, ImageError> {
    let digest = Digest::parse(digest)?;
    let path = files.require(&format!("blobs/sha256/{}", digest.hex()), what)?;
    let bytes = read_small(path, what)?;
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            what: format!("{what} in the archive"),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    if bytes.len() as u64 != size {
        return Err(ImageError::SizeMismatch {
            what: format!("{what} {digest} in the archive"),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn oci_layout(files: &Extracted) -> Result<Vec<Candidate>, ImageError> {
    if let Some(path) = files.get("oci-layout") {
        #[derive(Deserialize)]
        struct Layout {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let layout: Layout =
            serde_json::from_slice(&read_small(path, "oci-layout")?).map_err(|source| {
                ImageError::ArchiveJson {
                    document: "oci-layout",
                    source,
                }
            })?;
        if !layout.version.starts_with("1.") {
            return Err(invalid(format!(
                "unsupported image layout version {:?}",
                layout.version
            )));
        }
    }
    let index_bytes = read_small(files.require("index.json", "the index")?, "index.json")?;
    let index: ImageIndex =
        serde_json::from_slice(&index_bytes).map_err(|source| ImageError::ArchiveJson {
            document: "index.json",
            source,
        })?;
    let mut found: Vec<Candidate> = Vec::new();
    for descriptor in &index.manifests {
        let mut bytes = small_blob(files, &descriptor.digest, descriptor.size, "manifest")?;
        let mut media_type = descriptor.media_type.clone();
        let mut digest = Digest::parse(&descriptor.digest)?;
        if media_type == mt::OCI_INDEX || media_type == mt::DOCKER_MANIFEST_LIST {
            let ManifestKind::Index(nested) = parse_manifest("archive", &media_type, &bytes)?
            else {
                return Err(invalid("an index entry is not an index".into()));
            };
            let host = berth_registry::host_platform();
            let chosen = berth_registry::select_platform(
                &nested,
                &host.os,
                &host.architecture,
                host.variant.as_deref(),
            )?;
            bytes = small_blob(files, &chosen.digest, chosen.size, "manifest")?;
            media_type = chosen.media_type.clone();
            digest = Digest::parse(&chosen.digest)?;
        }
        let ManifestKind::Image(manifest) = parse_manifest("archive", &media_type, &bytes)? else {
            return Err(invalid(format!(
                "manifest {digest} is an index inside an index"
            )));
        };
        let names = descriptor_names(&descriptor.annotations);
        if let Some(existing) = found.iter_mut().find(|c| {
            c.manifest
                .as_deref()
                .is_some_and(|m| Digest::of(m) == digest)
        }) {
            existing.names.extend(names);
            continue;
        }
        let config = small_blob(
            files,
            &manifest.config.digest,
            manifest.config.size,
            "config",
        )?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            crate::decompress::layer_compression(&layer.media_type)?;
            let blob = Digest::parse(&layer.digest)?;
            let path = files.require(&format!("blobs/sha256/{}", blob.hex()), "layer")?;
            layers.push(LayerFile {
                path: path.to_path_buf(),
                expected: Some((blob, layer.size)),
                media_type: Some(layer.media_type.clone()),
            });
        }
        found.push(Candidate {
            names,
            config_digest: Digest::parse(&manifest.config.digest)?,
            config,
            manifest: Some(bytes),
            layers,
        });
    }
    if found.is_empty() {
        return Err(invalid("index.json lists no image".into()));
    }
    Ok(found)
}

/// The name an index entry gives: containerd's full name, else the OCI ref name when it is a
/// reference (`busybox:1`, `host/x:tag`); a bare tag (`latest`) names nothing we can use.
fn descriptor_names(annotations: &std::collections::BTreeMap<String, String>) -> Vec<Reference> {
    let full = annotations.get("io.containerd.image.name");
    let ref_name = annotations
        .get("org.opencontainers.image.ref.name")
        .filter(|r| r.contains(':') || r.contains('/'));
    match full.or(ref_name).map(|n| Reference::parse(n)) {
        Some(Ok(reference)) if reference.digest.is_none() => vec![reference],
        Some(_) => {
            tracing::warn!(
                ?annotations,
                "an archive's image name is not a usable reference; loaded without it"
            );
            Vec::new()
        }
        None => Vec::new(),
    }
}

#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The digest a docker archive's file name promises: `<hex>.json`, `<hex>/layer.tar`,
/// `blobs/sha256/<hex>`.
fn named_digest(path: &str) -> Option<Digest> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn docker_archive(files: &Extracted) -> Result<Vec<Candidate>, ImageError> {
    let bytes = read_small(
        files.require("manifest.json", "the manifest")?,
        "manifest.json",
    )?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::ArchiveJson {
            document: "manifest.json",
            source,
        })?;
    if entries.is_empty() {
        return Err(invalid("manifest.json lists no image".into()));
    }
    let mut found = Vec::new();
    for entry in entries {
        let config_name = normalise(entry.config.as_bytes())?.unwrap_or_default();
        let config = read_small(files.require(&config_name, "config")?, "config")?;
        let config_digest = Digest::of(&config);
        if let Some(expected) = named_digest(&config_name)
            && expected != config_digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("config {config_name} in the archive"),
                expected: expected.to_string(),
                actual: config_digest.to_string(),
            });
        }
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let name = normalise(layer.as_bytes())?.unwrap_or_default();
            let path = files.require(&name, "layer")?;
            let expected = named_digest(&name)
                .map(|d| -> Result<_, ImageError> {
                    let size = std::fs::metadata(path).map_err(io_at("stat", path))?.len();
                    Ok((d, size))
                })
                .transpose()?;
            layers.push(LayerFile {
                path: path.to_path_buf(),
                expected,
                media_type: None,
            });
        }
        let mut names = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            match Reference::parse(&tag) {
                Ok(r) if r.digest.is_none() => names.push(r),
                _ => return Err(invalid(format!("RepoTags entry {tag:?} is not NAME:TAG"))),
            }
        }
        found.push(Candidate {
            names,
            config_digest,
            config,
            manifest: None,
            layers,
        });
    }
    Ok(found)
}

#[cfg(test)]
#[path = "archive_load_tests.rs"]
mod tests;
