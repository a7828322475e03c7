//! Registries for image tests: the shared read-only one `hack/` runs on 127.0.0.1:5000 (with the
//! digests `hack/test-images.sh` recorded), and private `docker-registry` instances a test may corrupt.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const SHARED: &str = "127.0.0.1:5000";
pub const AUTH: &str = "127.0.0.1:5001";
pub const AUTH_USER: &str = "berth";
pub const AUTH_PASSWORD: &str = "berth-secret";

fn test_dir() -> PathBuf {
    PathBuf::from(std::env::var("BERTH_TEST_DIR").unwrap_or_else(|_| "/var/tmp/berth-test".into()))
}

/// The digest `hack/test-images.sh` recorded for `reference` (e.g. `127.0.0.1:5000/berth-test/busybox:latest`,
/// or with `#linux/amd64` for one entry of an index).
pub fn recorded_digest(reference: &str) -> anyhow::Result<String> {
    let path = test_dir().join("images/digests.txt");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} (run hack/test-images.sh)", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(reference)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
        .with_context(|| format!("{reference} not in {}", path.display()))
}

/// The OCI layout the test images were built in (one tag per image), for pushing copies.
pub fn test_layout() -> PathBuf {
    test_dir().join("images/oci")
}

/// A registry of the test's own, on a free port, with storage under `dir`.
pub struct PrivateRegistry {
    pub address: String,
    pub storage: PathBuf,
    child: Child,
}

impl PrivateRegistry {
    pub fn start(dir: &Path) -> anyhow::Result<PrivateRegistry> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let storage = dir.join("registry-data");
        std::fs::create_dir_all(&storage)?;
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (hack/install-deps.sh installs it)")?;
        let registry = PrivateRegistry {
            address: format!("127.0.0.1:{port}"),
            storage,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            if Instant::now() > deadline {
                bail!("private registry on {} did not start", registry.address);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }

    /// Pushes `layout:tag` (an OCI layout dir) as `<this registry>/<name>`, digests preserved.
    pub fn push(&self, layout: &Path, tag: &str, name: &str) -> anyhow::Result<()> {
        let out = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}", self.address))
            .output()?;
        if !out.status.success() {
            bail!(
                "skopeo push failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Where the registry keeps a blob's bytes (to tamper with them).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
