//! Arbitrary text as berthd's configuration file, through the whole loader (parse, per-file
//! check, merge over the defaults, validation).
//!
//! Properties: nothing panics; a configuration that loads also serializes (`to_json`).
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::OnceLock;

use berth_config::{Overrides, load};
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.toml");
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let path = file();
    std::fs::write(path, data).expect("write config");
    if let Ok(loaded) = load(Some(path), &Overrides::default()) {
        assert_eq!(loaded.sources, std::slice::from_ref(path));
        let _ = loaded.config.to_json();
    }
});
