//! Measures `apply_layer` throughput on ~65 MB layers of random (incompressible) content.
//!
//! Run as root, in release mode:
//! `cargo run --release -p berth-snapshot --example throughput [dir]`
//! (`dir` defaults to a temp dir under /var/tmp; use the disk berthd will use). Prints MB/s of
//! tar bytes for a big-files layer and a small-files layer, with and without the final sync.
//! Writes `big.tar`/`small.tar` next to the root so the same tars can be timed with GNU tar.

// A measuring tool run by hand: failing loudly on the first error is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use berth_snapshot::{Options, Snapshotter, chain_id};
use sha2::{Digest, Sha256};

const TOTAL: usize = 65 << 20;

/// xorshift64*: fast, dependency-free, incompressible enough for a throughput test.
struct Rng(u64);
impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn build(file_size: usize, rng: &mut Rng) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::with_capacity(TOTAL + (TOTAL / file_size + 1) * 1024));
    let mut data = vec![0u8; file_size];
    for i in 0..TOTAL / file_size {
        rng.fill(&mut data);
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(file_size as u64);
        header.set_mtime(1_600_000_000);
        let path = format!("d{:03}/f{i:06}", i / 256);
        builder
            .append_data(&mut header, path, &data[..])
            .expect("build tar");
    }
    builder.into_inner().expect("build tar")
}

fn measure(root: &Path, name: &str, tar: &[u8], sync: bool) {
    let mut options = Options::default();
    options.sync = sync;
    let dir = root.join(format!("{name}-{}", if sync { "sync" } else { "nosync" }));
    let s = Snapshotter::open_with(&dir, options).expect("open snapshotter");
    let diff_id = format!(
        "sha256:{}",
        Sha256::digest(tar)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let chain = chain_id(None, &diff_id);
    let start = Instant::now();
    s.apply_layer(&chain, None, &diff_id, tar)
        .expect("apply layer");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:>6} layer, sync={sync:<5}: {:.1} MB in {:.3} s = {:.0} MB/s",
        tar.len() as f64 / 1e6,
        secs,
        tar.len() as f64 / 1e6 / secs
    );
    s.remove(&chain).expect("remove");
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp".into());
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let big = build(1 << 20, &mut rng); // 65 × 1 MiB
    let small = build(8 << 10, &mut rng); // 8320 × 8 KiB
    std::fs::write(tmp.path().join("big.tar"), &big).expect("write tar");
    std::fs::write(tmp.path().join("small.tar"), &small).expect("write tar");
    for sync in [false, true] {
        measure(tmp.path(), "big", &big, sync);
        measure(tmp.path(), "small", &small, sync);
    }
    if std::env::var_os("KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
}
