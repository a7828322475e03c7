//! Image workloads: what kubelet's image manager does.
//!
//! * `pull-cold`: PullImage of an image that is not present. Each iteration first removes the
//!   image (untimed), so every timed pull downloads and unpacks every layer. Both runtimes delete
//!   content and snapshots synchronously on RemoveImage, so nothing is left to reuse. After the
//!   pull, the network floor: `curl` fetches the image's manifest(s), config and layer blobs from
//!   the registry into /dev/null, [`PULL_PARALLEL`] at a time as the runtimes do (`curl-blobs`) and
//!   one at a time (`curl-blobs-seq`), and once more piping each layer into `tar -x` in a scratch
//!   dir beside the runtime's (`curl|tar`: download and unpack overlapped, no sync). The same on
//!   both sides of a run, so the table shows both runtimes against the same floor.
//! * `pull-warm`: PullImage of an image whose layers are all present (kubelet's `Always` pull
//!   policy on a node that has the image): resolve the manifest, find everything local, record.
//! * `image-queries`: ImageStatus by tag and ListImages on a store of `many_count` images
//!   (`<many_repo>:img-<i>`, made by `hack/bench/many-images.sh`), which kubelet calls on every
//!   pod start and every image GC pass.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use berth_cri_api::v1::{
    ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest, RemoveImageRequest,
};

use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

fn pull_request(image: &str) -> PullImageRequest {
    PullImageRequest {
        image: spec(image),
        auth: None,
        sandbox_config: None,
    }
}

async fn pull(clients: &mut Clients, image: &str) -> Result<()> {
    clients
        .image
        .pull_image(pull_request(image))
        .await
        .with_context(|| format!("pulling {image}"))?;
    Ok(())
}

async fn remove(clients: &mut Clients, image: &str) -> Result<()> {
    clients
        .image
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .with_context(|| format!("removing {image}"))?;
    Ok(())
}

/// Layer downloads at a time in the network floor: berthd's `image.max_concurrent_downloads` and
/// containerd's CRI `max_concurrent_downloads` both default to 3 (pkg/image/src/pull.rs holds one
/// permit per layer from its first byte until it is unpacked and synced).
const PULL_PARALLEL: usize = 3;

const OP_PULL: &str = "PullImage";
const OP_CURL: &str = "curl-blobs";
const OP_CURL_SEQ: &str = "curl-blobs-seq";
const OP_CURL_TAR: &str = "curl|tar";

/// What a runtime sends when it resolves a tag: either kind of index or manifest.
const MANIFEST_ACCEPT: &str = "Accept: application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `pull-cold` (the image is removed, untimed, before every timed pull) or `pull-warm` (pulled once
/// in setup, so every timed pull finds all layers present).
pub struct Pull {
    image: String,
    cold: bool,
    /// Bytes of the config and layer blobs of the last resolved manifest (the throughput table).
    blob_bytes: AtomicU64,
    /// Scratch dir of `curl|tar` (removed after each use).
    scratch: PathBuf,
}

impl Pull {
    pub fn cold(opts: &WorkloadOpts) -> Pull {
        Pull::new(opts, true)
    }

    pub fn warm(opts: &WorkloadOpts) -> Pull {
        Pull::new(opts, false)
    }

    fn new(opts: &WorkloadOpts, cold: bool) -> Pull {
        // Beside the runtimes' roots (run.sh: $BERTH_BENCH_DIR), on the same filesystem.
        let base = std::env::var_os("BERTH_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-bench"));
        Pull {
            image: opts.image.clone(),
            cold,
            blob_bytes: AtomicU64::new(0),
            scratch: base.join(format!("curl-tar-{}", std::process::id())),
        }
    }

    /// The network floor of one cold pull, each op timed from the first manifest request to the
    /// last blob's end (manifest resolution included, as in PullImage).
    async fn floor(&self, iter: u64, rec: &mut Recorder) {
        // Per iteration: concurrent iterations (`-c`) must not share it.
        let scratch = self.scratch.join(iter.to_string());
        for (op, parallel, untar) in [
            (OP_CURL, PULL_PARALLEL, false),
            (OP_CURL_SEQ, 1, false),
            (OP_CURL_TAR, PULL_PARALLEL, true),
        ] {
            let start = Instant::now();
            let res = async {
                let reg = RegistryRef::parse(&self.image)?;
                let blobs = reg.resolve().await?;
                self.blob_bytes
                    .store(blobs.iter().map(|b| b.size).sum(), Ordering::Relaxed);
                let jobs = blobs
                    .iter()
                    .enumerate()
                    .map(|(i, b)| reg.blob_job(b, untar.then(|| scratch.join(i.to_string()))))
                    .collect::<Result<Vec<_>>>()?;
                if untar {
                    for i in 0..blobs.len() {
                        std::fs::create_dir_all(scratch.join(i.to_string()))
                            .with_context(|| format!("creating {}", scratch.display()))?;
                    }
                }
                run_jobs(jobs, parallel).await
            }
            .await;
            let elapsed = start.elapsed();
            if untar {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            match res {
                Ok(()) => rec.sample(op, elapsed),
                Err(e) => rec.fail(op, format!("{e:#}")),
            }
        }
    }
}

impl Workload for Pull {
    fn name(&self) -> &'static str {
        if self.cold { "pull-cold" } else { "pull-warm" }
    }

    fn ops(&self) -> &'static [&'static str] {
        if self.cold {
            &[OP_PULL, OP_CURL, OP_CURL_SEQ, OP_CURL_TAR]
        } else {
            &[OP_PULL]
        }
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            if self.cold {
                Ok(())
            } else {
                pull(clients, &self.image).await
            }
        })
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if self.cold
                && let Err(e) = remove(clients, &self.image).await
            {
                rec.fail(OP_PULL, format!("{e:#}"));
                return;
            }
            rec.call(OP_PULL, clients.image.pull_image(pull_request(&self.image)))
                .await;
            if self.cold {
                self.floor(iter, rec).await;
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        let _ = std::fs::remove_dir_all(&self.scratch);
        Box::pin(remove(clients, &self.image))
    }

    fn transfers(&self) -> Vec<(&'static str, u64)> {
        let bytes = self.blob_bytes.load(Ordering::Relaxed);
        if !self.cold || bytes == 0 {
            return Vec::new();
        }
        [OP_PULL, OP_CURL, OP_CURL_SEQ, OP_CURL_TAR]
            .into_iter()
            .map(|op| (op, bytes))
            .collect()
    }
}

/// An image reference split for the registry's HTTP API (plain HTTP to a loopback registry,
/// HTTPS otherwise; no authentication).
#[derive(Debug, PartialEq)]
struct RegistryRef {
    /// `http://HOST/v2/NAME`
    base: String,
    /// Tag or digest.
    reference: String,
}

/// A blob the pull fetches.
#[derive(Debug)]
struct Blob {
    digest: String,
    media_type: String,
    size: u64,
}

impl RegistryRef {
    fn parse(image: &str) -> Result<RegistryRef> {
        let Some((host, rest)) = image.split_once('/') else {
            bail!("{image}: no registry host (the network floor needs HOST/NAME[:TAG])");
        };
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            bail!("{image}: no registry host (the network floor needs HOST/NAME[:TAG])");
        }
        let (name, reference) = if let Some((name, digest)) = rest.split_once('@') {
            (name, digest)
        } else {
            match rest.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag),
                _ => (rest, "latest"),
            }
        };
        let loopback = ["127.", "localhost", "[::1]"]
            .iter()
            .any(|p| host.starts_with(p));
        let scheme = if loopback { "http" } else { "https" };
        Ok(RegistryRef {
            base: format!("{scheme}://{host}/v2/{name}"),
            reference: reference.to_string(),
        })
    }

    /// The config and layers of the host platform's manifest (through an index if the tag names one).
    async fn resolve(&self) -> Result<Vec<Blob>> {
        let mut manifest = self.manifest(&self.reference).await?;
        if let Some(entries) = manifest.get("manifests").and_then(|m| m.as_array()) {
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            };
            let digest = entries
                .iter()
                .find(|e| e["platform"]["os"] == "linux" && e["platform"]["architecture"] == arch)
                .and_then(|e| e["digest"].as_str())
                .with_context(|| format!("{}: no linux/{arch} entry in the index", self.base))?
                .to_string();
            manifest = self.manifest(&digest).await?;
        }
        let blob = |v: &serde_json::Value| -> Result<Blob> {
            Ok(Blob {
                digest: v["digest"]
                    .as_str()
                    .context("descriptor without digest")?
                    .into(),
                media_type: v["mediaType"].as_str().unwrap_or_default().into(),
                size: v["size"].as_u64().unwrap_or(0),
            })
        };
        let mut blobs = vec![blob(&manifest["config"])?];
        for layer in manifest["layers"]
            .as_array()
            .context("manifest without layers")?
        {
            blobs.push(blob(layer)?);
        }
        Ok(blobs)
    }

    async fn manifest(&self, reference: &str) -> Result<serde_json::Value> {
        let url = format!("{}/manifests/{reference}", self.base);
        let out = tokio::process::Command::new("curl")
            .args(["-sfSL", "--max-time", "60", "-H", MANIFEST_ACCEPT, &url])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running curl (is it installed?)")?;
        if !out.status.success() {
            bail!(
                "curl {url}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| format!("{url}: not JSON"))
    }

    /// The command that fetches one blob: into /dev/null, or (a layer, `untar`) into `tar -x` in
    /// that dir.
    fn blob_job(&self, blob: &Blob, untar: Option<PathBuf>) -> Result<Vec<String>> {
        let url = format!("{}/blobs/{}", self.base, blob.digest);
        let curl = |out: &str| {
            vec![
                "curl".into(),
                "-sfSL".into(),
                "--max-time".into(),
                "600".into(),
                "-o".into(),
                out.to_string(),
                url.clone(),
            ]
        };
        let Some(dir) = untar.filter(|_| blob.media_type.contains(".layer.")) else {
            return Ok(curl("/dev/null"));
        };
        let decompress = if blob.media_type.ends_with("+zstd") {
            "--zstd"
        } else if blob.media_type.ends_with("gzip") {
            "-z"
        } else {
            ""
        };
        // pipefail: a failed download must fail the job, not pass for a short tar.
        let script = format!(
            "set -o pipefail; curl -sfSL --max-time 600 '{url}' | tar -x {decompress} -f - -C '{}'",
            dir.display()
        );
        Ok(vec!["bash".into(), "-c".into(), script])
    }
}

/// Runs every command, `parallel` at a time; the first failure is the result (all still run).
async fn run_jobs(jobs: Vec<Vec<String>>, parallel: usize) -> Result<()> {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (jobs, next) = (jobs.clone(), next.clone());
        workers.spawn(async move {
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(argv) = jobs.get(i) else { break };
                let out = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .await;
                let err = match out {
                    Ok(o) if o.status.success() => continue,
                    Ok(o) => format!(
                        "{}: {} {}",
                        argv.join(" "),
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                    Err(e) => format!("running {}: {e}", argv[0]),
                };
                first_error.get_or_insert(err);
            }
            first_error
        });
    }
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Some(e)) => {
                first_error.get_or_insert(e);
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(format!("job task: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}

pub struct ImageQueries {
    names: Vec<String>,
}

impl ImageQueries {
    pub fn new(opts: &WorkloadOpts) -> ImageQueries {
        let names = (0..opts.many_count)
            .map(|i| format!("{}:img-{i}", opts.many_repo))
            .collect();
        ImageQueries { names }
    }
}

impl Workload for ImageQueries {
    fn name(&self) -> &'static str {
        "image-queries"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["ImageStatus", "ListImages"]
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            for name in &self.names {
                pull(clients, name).await?;
            }
            Ok(())
        })
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if self.names.is_empty() {
                rec.fail("ImageStatus", "no images (--many-count 0)");
                return;
            }
            let name = &self.names[usize::try_from(iter % self.names.len() as u64).unwrap_or(0)];
            let req = ImageStatusRequest {
                image: spec(name),
                verbose: false,
            };
            let status = rec
                .call("ImageStatus", clients.image.image_status(req))
                .await;
            if status.is_some_and(|s| s.image.is_none()) {
                rec.fail("ImageStatus", format!("{name} not found"));
            }
            let list = rec
                .call(
                    "ListImages",
                    clients
                        .image
                        .list_images(ListImagesRequest { filter: None }),
                )
                .await;
            if let Some(list) = list
                && list.images.len() < self.names.len()
            {
                rec.fail(
                    "ListImages",
                    format!(
                        "{} images listed, expected {}",
                        list.images.len(),
                        self.names.len()
                    ),
                );
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            for name in &self.names {
                remove(clients, name).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references_for_the_registry_api() {
        let r = RegistryRef::parse("127.0.0.1:5000/berth-test/big10:latest").unwrap();
        assert_eq!(r.base, "http://127.0.0.1:5000/v2/berth-test/big10");
        assert_eq!(r.reference, "latest");
        let r = RegistryRef::parse("localhost:5000/a/b").unwrap();
        assert_eq!(
            (r.base.as_str(), r.reference.as_str()),
            ("http://localhost:5000/v2/a/b", "latest")
        );
        let r = RegistryRef::parse("registry.example/x@sha256:ab").unwrap();
        assert_eq!(r.base, "https://registry.example/v2/x");
        assert_eq!(r.reference, "sha256:ab");
        assert!(RegistryRef::parse("busybox:latest").is_err());
        assert!(RegistryRef::parse("library/busybox").is_err());
    }
}
