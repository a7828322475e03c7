//! Parsing of OCI layouts and docker archives, and refusal of broken ones.

use std::fs;

use serde_json::json;

use super::*;

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn blob_name(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", Digest::of(bytes).hex())
}

struct Layout {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
    index: Vec<u8>,
}

fn layout(ref_name: &str) -> Layout {
    let layer = b"not really a tar, but digests do not care".to_vec();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"diff").as_str()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::of(&layer).as_str(), "size": layer.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": Digest::of(&manifest).as_str(), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": ref_name}}],
    }))
    .unwrap();
    Layout {
        config,
        layer,
        manifest,
        index,
    }
}

fn read(archive: &[u8]) -> Result<Vec<Candidate>, ImageError> {
    let dir = tempfile::tempdir().unwrap();
    let files = extract(archive, dir.path())?;
    candidates(&files)
}

#[test]
fn an_oci_layout_gives_its_images_and_names() {
    let l = layout("busybox:1");
    let archive = tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("./index.json", &l.index),
        (&blob_name(&l.config), &l.config),
        (&blob_name(&l.layer), &l.layer),
        (&blob_name(&l.manifest), &l.manifest),
    ]);
    let found = read(&archive).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].names[0].to_string(), "docker.io/library/busybox:1");
    assert_eq!(found[0].config_digest, Digest::of(&l.config));
    assert_eq!(found[0].layers.len(), 1);
    assert_eq!(
        found[0].layers[0].expected,
        Some((Digest::of(&l.layer), l.layer.len() as u64))
    );
}

#[test]
fn a_bare_tag_names_nothing() {
    let l = layout("latest");
    let archive = tar_of(&[
        ("index.json", &l.index),
        (&blob_name(&l.config), &l.config),
        (&blob_name(&l.layer), &l.layer),
        (&blob_name(&l.manifest), &l.manifest),
    ]);
    assert!(read(&archive).unwrap()[0].names.is_empty());
}

#[test]
fn a_tampered_manifest_or_config_is_refused() {
    let l = layout("x:1");
    let mut bad_config = l.config.clone();
    bad_config[0] = b' ';
    let archive = tar_of(&[
        ("index.json", &l.index),
        (&blob_name(&l.config), &bad_config),
        (&blob_name(&l.manifest), &l.manifest),
    ]);
    assert!(matches!(
        read(&archive),
        Err(ImageError::DigestMismatch { .. })
    ));
    let missing = tar_of(&[("index.json", &l.index)]);
    let err = read(&missing).unwrap_err().to_string();
    assert!(err.contains("not in the archive"), "{err}");
}

#[test]
fn garbage_and_empty_archives_are_refused() {
    assert!(matches!(
        read(b"this is not a tar archive at all, not even close to one"),
        Err(ImageError::ArchiveTar { .. })
    ));
    let err = read(&tar_of(&[("hello", b"x")])).unwrap_err().to_string();
    assert!(err.contains("neither an OCI image layout"), "{err}");
    // The tar crate will not write such a name: put it in the header by hand.
    let mut header = tar::Header::new_ustar();
    let name = b"a/../../index.json";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(2);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"{}"[..]).unwrap();
    let err = read(&builder.into_inner().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("climbs out"), "{err}");
}

#[test]
fn a_docker_archive_gives_its_images_with_symlinked_layers() {
    let config = serde_json::to_vec(&json!({
        "rootfs": {"type": "layers", "diff_ids": ["sha256:aa", "sha256:aa"]},
    }))
    .unwrap();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["localhost:5000/app:2"],
        "Layers": ["one/layer.tar", "two/layer.tar"],
    }]))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", manifest.as_slice()),
        (config_name.as_str(), config.as_slice()),
        ("one/layer.tar", b"layer".as_slice()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data).unwrap();
    }
    let mut link = tar::Header::new_ustar();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, "two/layer.tar", "../one/layer.tar")
        .unwrap();
    let archive = builder.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = extract(archive.as_slice(), dir.path()).unwrap();
    let found = candidates(&files).unwrap();
    assert_eq!(found[0].names[0].to_string(), "localhost:5000/app:2");
    assert_eq!(found[0].layers.len(), 2);
    assert_eq!(found[0].layers[0].path, found[0].layers[1].path);
    assert_eq!(fs::read(&found[0].layers[1].path).unwrap(), b"layer");

    // A config whose name is not its digest is refused.
    let renamed = serde_json::to_vec(&json!([{
        "Config": format!("{}.json", Digest::of(b"other").hex()),
        "Layers": [],
    }]))
    .unwrap();
    let other_name = format!("{}.json", Digest::of(b"other").hex());
    let archive = tar_of(&[("manifest.json", &renamed), (&other_name, &config)]);
    assert!(matches!(
        read(&archive),
        Err(ImageError::DigestMismatch { .. })
    ));
}
