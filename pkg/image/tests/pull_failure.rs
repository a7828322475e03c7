//! A failed pull leaves nothing a later pull trips over: a retry behaves as if the failed attempt
//! never happened. The images are served by a small stand-in registry on 127.0.0.1 (plain HTTP,
//! as Berth uses for loopback registries) that sends the big layer slowly, so it is still
//! downloading when another layer fails to unpack.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_image::{ImageError, ImageMetrics, ImageService};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// The big layer is sent in pieces this big, with a pause after each.
const SLOW_CHUNK: usize = 32 * 1024;
const SLOW_PAUSE: Duration = Duration::from_millis(4);

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic incompressible bytes.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()[0]
        })
        .collect()
}

fn entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    // Written into the header directly: the builder refuses the hostile `..` names.
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    builder.append(&h, data).unwrap();
}

fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        entry(&mut builder, name, data);
    }
    builder.into_inner().unwrap()
}

/// Blobs by digest and manifests by `repo:tag`, served over HTTP/1.1 with keep-alive.
#[derive(Default)]
struct Registry {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, Vec<u8>>,
    /// Blobs sent slowly.
    slow: Vec<String>,
    /// Blobs sent only after a pause.
    delayed: Vec<String>,
}

impl Registry {
    fn image(&mut self, repo_tag: &str, layers: &[&Vec<u8>]) {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let descriptors: Vec<_> = layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": LAYER, "digest": digest(l), "size": l.len()}))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(&config),
                "size": config.len(),
            },
            "layers": descriptors,
        }))
        .unwrap();
        self.blobs.insert(digest(&config), config);
        for l in layers {
            self.blobs.insert(digest(l), l.to_vec());
        }
        self.manifests.insert(repo_tag.to_string(), manifest);
    }

    async fn serve(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let registry = Arc::new(self);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(registry.clone().connection(conn));
            }
        });
        addr
    }

    async fn connection(self: Arc<Self>, mut conn: TcpStream) {
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let request = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end);
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            if self.respond(&mut conn, &path).await.is_err() {
                return; // the client hung up mid-blob
            }
        }
    }

    async fn respond(&self, conn: &mut TcpStream, path: &str) -> std::io::Result<()> {
        let (body, content_type, slow) = if let Some((repo, tag)) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.split_once("/manifests/"))
        {
            let m = self.manifests.get(&format!("{repo}:{tag}"));
            (m, "application/vnd.oci.image.manifest.v1+json", false)
        } else if let Some((_, d)) = path.split_once("/blobs/") {
            let slow = self.slow.iter().any(|s| s == d);
            (self.blobs.get(d), "application/octet-stream", slow)
        } else {
            (None, "text/plain", false)
        };
        let Some(body) = body else {
            let head = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
            return conn.write_all(head.as_bytes()).await;
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ndocker-content-digest: {}\r\n\r\n",
            body.len(),
            digest(body)
        );
        if path
            .split_once("/blobs/")
            .is_some_and(|(_, d)| self.delayed.iter().any(|s| s == d))
        {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        conn.write_all(head.as_bytes()).await?;
        if !slow {
            return conn.write_all(body).await;
        }
        for piece in body.chunks(SLOW_CHUNK) {
            conn.write_all(piece).await?;
            conn.flush().await?;
            tokio::time::sleep(SLOW_PAUSE).await;
        }
        Ok(())
    }
}

struct Host {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    images: ImageService,
}

fn open_service() -> Host {
    open_service_with(Default::default())
}

// unsafe: geteuid, to refuse running without root.
#[allow(unsafe_code)]
fn open_service_with(config: berth_config::ImageConfig) -> Host {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "pull tests must run as root");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = berth_store::Store::open(tmp.path().join("meta.redb")).unwrap();
    let registry = berth_registry::Client::new(Default::default()).unwrap();
    let metrics = ImageMetrics::register(&prometheus::Registry::new()).unwrap();
    let images = ImageService::open(&root, config, registry, store, metrics).unwrap();
    Host {
        _tmp: tmp,
        root,
        images,
    }
}

/// What a failed pull must not leave: staged layers, ingest files.
fn assert_no_leftovers(host: &Host) {
    for dir in ["snapshots/tmp", "content/ingest"] {
        let left: Vec<_> = std::fs::read_dir(host.root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "{dir} holds {left:?}");
    }
}

fn assert_unpack_error(result: Result<berth_image::ImageRecord, ImageError>) {
    let err = result.expect_err("the bad layer must fail the pull");
    let text = err.to_string();
    assert!(
        text.contains("unsafe path") && text.contains("../escape"),
        "the unpacker's own error is reported, not a consequence of it: {text}"
    );
}

struct Layers {
    big: Vec<u8>,
    bad: Vec<u8>,
    good: Vec<u8>,
    /// Big and bad from its first entry: the unpacker stops while the download is young.
    big_bad: Vec<u8>,
}

fn layers() -> Layers {
    let payload = noise(6 << 20, 7);
    Layers {
        big: layer(&[("big/payload", &payload)]),
        bad: layer(&[("ok", b"ok"), ("../escape", b"x")]),
        good: layer(&[("app/ok", b"fixed")]),
        big_bad: layer(&[("../escape", b"x"), ("big/payload", &payload)]),
    }
}

/// The bad layer fails while the big one is still downloading; the fixed image, which shares
/// the big layer, then pulls at once as if the failed attempt never happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_an_unpack_failure_sharing_a_big_layer() {
    let l = layers();
    let mut registry = Registry::default();
    registry.image("test/app:bad", &[&l.big, &l.bad]);
    registry.image("test/app:fixed", &[&l.big, &l.good]);
    registry.slow.push(digest(&l.big));
    let addr = registry.serve().await;
    let host = open_service();

    assert_unpack_error(
        host.images
            .pull(&format!("{addr}/test/app:bad"), None)
            .await,
    );
    assert_no_leftovers(&host);
    let record = host
        .images
        .pull(&format!("{addr}/test/app:fixed"), None)
        .await
        .expect("the fixed image pulls right after the failure");
    assert_eq!(record.layers.len(), 2);
    for layer in &record.layers {
        assert!(host.images.snapshotter().exists(&layer.chain_id));
    }
    assert_no_leftovers(&host);
}

/// The failing layer is the big one: the unpacker gives up on its first entry while most of the
/// blob is still on the wire. Every attempt reports the unpacker's error (never a size
/// mismatch of however many bytes had arrived by then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_a_big_bad_layer_report_the_same_error() {
    let l = layers();
    let mut registry = Registry::default();
    registry.image("test/bigbad:1", &[&l.good, &l.big_bad]);
    registry.slow.push(digest(&l.big_bad));
    let addr = registry.serve().await;
    let host = open_service();
    for _ in 0..3 {
        assert_unpack_error(
            host.images
                .pull(&format!("{addr}/test/bigbad:1"), None)
                .await,
        );
        assert_no_leftovers(&host);
    }
}

/// A good image pulled while a bad one sharing its big layer is in flight: the good pull must not
/// inherit the bad pull's cancellation of the shared download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_good_pull_survives_a_failing_pull_sharing_a_layer() {
    let l = layers();
    let mut registry = Registry::default();
    registry.image("test/app:bad", &[&l.big, &l.bad]);
    registry.image("test/app:fixed", &[&l.big, &l.good]);
    registry.slow.push(digest(&l.big));
    // The bad layer fails only once the good pull has joined the big layer's download.
    registry.delayed.push(digest(&l.bad));
    let addr = registry.serve().await;
    let host = open_service();

    let bad = {
        let images = host.images.clone();
        let reference = format!("{addr}/test/app:bad");
        tokio::spawn(async move { images.pull(&reference, None).await })
    };
    // Let the bad pull start the big layer's download, so the good pull joins it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let good = host
        .images
        .pull(&format!("{addr}/test/app:fixed"), None)
        .await;
    assert_unpack_error(bad.await.unwrap());
    let record = good.expect("the good pull is not failed by the bad one");
    for layer in &record.layers {
        assert!(host.images.snapshotter().exists(&layer.chain_id));
    }
    assert_no_leftovers(&host);
}

/// A decompression bomb: a gzip layer of about 20 KiB that expands 1000× to a 20 MiB tar. With
/// `[image] max_layer_unpacked_bytes` at 1 MiB the pull fails with an error naming the cap, and
/// the partial snapshot is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_layer_is_refused_at_the_unpacked_size_cap() {
    use std::io::Write as _;
    let tar = layer(&[("zeros", &vec![0u8; 20 << 20])]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(
        bomb.len() * 500 < tar.len(),
        "expands {}x",
        tar.len() / bomb.len()
    );
    let mut registry = Registry::default();
    registry.image("test/bomb:1", &[&bomb]);
    let addr = registry.serve().await;
    let config = berth_config::ImageConfig {
        max_layer_unpacked_bytes: 1 << 20,
        ..Default::default()
    };
    let host = open_service_with(config);
    let err = host
        .images
        .pull(&format!("{addr}/test/bomb:1"), None)
        .await
        .expect_err("the bomb must fail the pull");
    let text = err.to_string();
    assert!(
        text.contains("more than 1048576 bytes"),
        "the cap is named: {text}"
    );
    assert_no_leftovers(&host);
    assert!(host.images.snapshotter().list().unwrap().is_empty());
}

/// Manifest and index bombs: an index listing 100,000 manifests (about 17 MB) is refused by the
/// 4 MiB manifest cap before it is buffered or parsed; an image config declared over 8 MiB is
/// refused before it is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_and_config_bombs_are_refused_by_their_size_caps() {
    let entries: Vec<_> = (0..100_000u32)
        .map(|i| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&i.to_le_bytes()),
                "size": 1000,
                "platform": {"architecture": "amd64", "os": "linux"},
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    assert!(index.len() > 4 << 20);
    let huge_config = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(b"never fetched"),
            "size": 1u64 << 40,
        },
        "layers": [],
    }))
    .unwrap();
    let mut registry = Registry::default();
    registry.manifests.insert("test/index:1".into(), index);
    registry
        .manifests
        .insert("test/config:1".into(), huge_config);
    let addr = registry.serve().await;
    let host = open_service();

    let err = host
        .images
        .pull(&format!("{addr}/test/index:1"), None)
        .await
        .expect_err("index bomb");
    assert!(err.to_string().contains("limit"), "{err}");
    let err = host
        .images
        .pull(&format!("{addr}/test/config:1"), None)
        .await
        .expect_err("config bomb");
    assert!(err.to_string().contains("larger than"), "{err}");
    assert_no_leftovers(&host);
}

/// Deeply nested JSON (100,000 levels) in a manifest, an index or a config fails with a parse
/// error (serde_json's recursion limit where the value is parsed, a type error or a plain skip
/// elsewhere), never a stack overflow.
#[test]
fn deeply_nested_json_is_a_parse_error() {
    let deep = |field: &str, open: &str, close: &str| {
        let mut body = format!("{{\"schemaVersion\": 2, \"{field}\": ");
        body.push_str(&open.repeat(100_000));
        body.push_str(&close.repeat(100_000));
        body.push('}');
        body.into_bytes()
    };
    let clear = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        assert!(text.starts_with("invalid manifest"), "{text}");
    };
    for field in ["config", "manifests", "layers", "unknown"] {
        for body in [deep(field, "[", "]"), deep(field, "{\"a\":", "}")] {
            for media_type in [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
            ] {
                // An unknown field is skipped: that body is an (empty) index or a bad manifest.
                if let Err(err) = berth_registry::parse_manifest("test/deep:1", media_type, &body) {
                    clear(&err);
                }
            }
            let _ = berth_registry::parse_config("deep", &body);
            let _ = berth_registry::manifest::detect_media_type(None, &body);
        }
    }
}
