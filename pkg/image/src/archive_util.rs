//! Pieces shared by commit, save and load: hashing writers, staging directories under the content
//! store's `ingest/` (emptied when berthd opens the store, so an interrupted load or save leaves
//! nothing for long), leases on snapshots being made, and registering a new image under names.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_registry::Reference;
use sha2::{Digest as _, Sha256};

use crate::record::{ImageRecord, LayerRecord, record};
use crate::{Digest, ImageError, Inner};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub(crate) const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Manifests, indexes and configs are small; a larger one in an archive is refused rather than
/// read into memory.
pub(crate) const MAX_JSON_SIZE: u64 = 8 * 1024 * 1024;

/// Passes bytes through to `inner` and hashes them.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub(crate) fn finish(self) -> (W, Digest, u64) {
        let digest = Digest::parse(&format!("sha256:{}", hex::encode(self.hasher.finalize())))
            .unwrap_or_else(|_| Digest::of(b""));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The digest and size of a file, read as a stream.
pub(crate) fn hash_file(path: &Path) -> Result<(Digest, u64), ImageError> {
    let mut file = File::open(path).map_err(io_at("open", path))?;
    let mut hasher = HashWriter::new(io::sink());
    io::copy(&mut file, &mut hasher).map_err(io_at("read", path))?;
    let (_, digest, size) = hasher.finish();
    Ok((digest, size))
}

/// Reads a small JSON document, refusing one over [`MAX_JSON_SIZE`].
pub(crate) fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(io_at("open", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_at("read", path))?;
    if bytes.len() as u64 > MAX_JSON_SIZE {
        return Err(invalid(format!(
            "{what} is larger than {MAX_JSON_SIZE} bytes"
        )));
    }
    Ok(bytes)
}

/// A closure for `map_err` naming the failed operation and its path (cloned only on failure).
pub(crate) fn io_at<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An archive that is not what it claims to be.
pub(crate) fn invalid(reason: String) -> ImageError {
    ImageError::InvalidImage {
        reference: "archive".into(),
        reason,
    }
}

/// A directory under `<root>/content/ingest/`, removed with everything in it when dropped.
pub(crate) struct Staging {
    pub(crate) dir: PathBuf,
}

impl Staging {
    pub(crate) fn new(inner: &Inner, what: &str) -> Result<Staging, ImageError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = inner
            .root
            .join("content/ingest")
            .join(format!("{what}-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(io_at("create", &dir))?;
        Ok(Staging { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing a staging directory");
        }
    }
}

/// Moves a verified file into the content store as blob `digest` (same filesystem: a rename).
pub(crate) fn store_blob(inner: &Inner, digest: &Digest, file: &Path) -> Result<(), ImageError> {
    let target = inner.content.path(digest);
    if target.is_file() {
        return Ok(());
    }
    File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(io_at("sync", file))?;
    fs::rename(file, &target).map_err(io_at("rename to", &target))
}

/// Keeps garbage collection off snapshots (and so their ancestors) while an image is being made
/// on them; released when dropped.
pub(crate) struct Lease {
    inner: Arc<Inner>,
    chain_ids: Vec<String>,
}

impl Lease {
    pub(crate) fn take(inner: &Arc<Inner>, chain_ids: Vec<String>) -> Lease {
        inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(chain_ids.iter().cloned());
        Lease {
            inner: inner.clone(),
            chain_ids,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.chain_ids {
            if let Some(pos) = leases.iter().position(|l| l == id) {
                leases.swap_remove(pos);
            }
        }
    }
}

/// What a new image (committed or loaded) is recorded with.
pub(crate) struct NewImage {
    pub(crate) id: Digest,
    pub(crate) manifest_digest: Digest,
    pub(crate) size: u64,
    pub(crate) layers: Vec<LayerRecord>,
    pub(crate) user: String,
}

/// Records `image` under each of `names` (tags move here from whichever image held them, as a
/// pull's do), or without a name when there is none.
pub(crate) async fn register(
    inner: &Arc<Inner>,
    names: &[Reference],
    image: NewImage,
) -> Result<ImageRecord, ImageError> {
    let mut recorded = None;
    for name in names {
        recorded = Some(
            record(
                inner,
                name,
                image.manifest_digest.as_str(),
                image.id.as_str(),
                image.manifest_digest.as_str(),
                image.size,
                image.layers.clone(),
                image.user.clone(),
            )
            .await?,
        );
    }
    if let Some(record) = recorded {
        return Ok(record);
    }
    let _guard = inner.metadata.lock().await;
    if let Some(existing) = inner.catalog().get(image.id.as_str()) {
        return Ok(existing.clone());
    }
    let record = ImageRecord {
        id: image.id.to_string(),
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        manifest_digest: image.manifest_digest.to_string(),
        size: image.size,
        layers: image.layers,
        user: image.user,
        created_at_ns: now().0,
    };
    let (store, to_write) = (inner.store.clone(), record.clone());
    tokio::task::spawn_blocking(move || store.put(&to_write))
        .await
        .map_err(ImageError::task("image store"))??;
    inner.catalog_mut().insert(record.clone());
    Ok(record)
}

/// Now as unix nanoseconds and as RFC 3339 UTC (`2026-12-07T10:12:48Z`), as image configs say
/// `created`.
pub(crate) fn now() -> (i64, String) {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    // i64 nanoseconds reach the year 2262.
    let ns = i64::try_from(ns).unwrap_or(i64::MAX);
    (ns, rfc3339(ns))
}

/// Unix nanoseconds as RFC 3339 UTC to the second (`2026-12-07T10:12:48Z`).
pub fn rfc3339(unix_ns: i64) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_writer_hashes_what_passes() {
        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        let (inner, digest, size) = w.finish();
        assert_eq!(inner, b"hello");
        assert_eq!(digest, Digest::of(b"hello"));
        assert_eq!(size, 5);
    }

    #[test]
    fn now_is_rfc3339() {
        let (_, text) = now();
        assert_eq!(text.len(), 20);
        assert!(text.starts_with("20") && text.ends_with('Z'), "{text}");
        assert_eq!(&text[10..11], "T");
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_500_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_796_637_168 * 1_000_000_000),
            "2026-12-07T09:52:48Z"
        );
    }
}
