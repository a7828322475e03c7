//! Arbitrary bytes as a manifest, index or image config, through the parsers a pull runs on
//! what a registry serves: media-type detection, `parse_manifest` under every supported (and an
//! unsupported) media type, platform selection from an index, and `parse_config`.
//!
//! Properties: nothing panics; a parsed manifest's descriptors all carry valid digests.
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_registry::manifest::detect_media_type;
use berth_registry::{Digest, ManifestKind, parse_config, parse_manifest, select_platform};
use libfuzzer_sys::fuzz_target;

const MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "text/html",
];

fuzz_target!(|data: &[u8]| {
    let _ = detect_media_type(None, data);
    let _ = detect_media_type(Some("application/json; charset=utf-8"), data);
    for media_type in MEDIA_TYPES {
        match parse_manifest("fuzz/image:tag", media_type, data) {
            Ok(ManifestKind::Image(m)) => {
                assert!(Digest::parse(&m.config.digest).is_ok());
                for layer in &m.layers {
                    assert!(Digest::parse(&layer.digest).is_ok());
                }
            }
            Ok(ManifestKind::Index(index)) => {
                for d in &index.manifests {
                    assert!(Digest::parse(&d.digest).is_ok());
                }
                let _ = select_platform(&index, "linux", "amd64", None);
                let _ = select_platform(&index, "linux", "arm", Some("v7"));
            }
            Err(_) => {}
        }
    }
    if let Ok(config) = parse_config("fuzz", data) {
        let _ = format!("{config:?}");
    }
});
