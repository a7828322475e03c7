//! Starting, talking to and stopping one berthd.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use berth_cri_api::v1::image_service_client::ImageServiceClient;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::leaks;

/// Where test directories go: on disk, short enough for socket paths.
const E2E_BASE: &str = "/var/tmp/berth-e2e";
/// Debian's containernetworking-plugins.
const CNI_BIN_DIR: &str = "/usr/lib/cni";
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// How to start berthd.
#[derive(Debug, Clone)]
pub struct Options {
    /// Write a per-test CNI network config (own bridge, subnet and IPAM data dir).
    pub cni: bool,
    /// Extra configuration, written as a drop-in (`config.d/50-test.toml`).
    pub dropin: String,
    /// Delay the answer of the last CNI plugin (portmap) on ADD by a few seconds, after it did its
    /// work: a window to crash berthd between the CNI ADD and RunPodSandbox's answer.
    pub slow_cni_result: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cni: true,
            dropin: String::new(),
            slow_cni_result: false,
        }
    }
}

/// A berthd running for one test.
pub struct Berthd {
    pub name: String,
    /// Everything of this test lives below here.
    pub dir: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config_file: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_ipam_dir: PathBuf,
    pub metrics_address: SocketAddr,
    pub log_file: PathBuf,
    /// Extra environment for the next launches (e.g. `BERTH_FAILPOINTS`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Berthd {
    /// Runs the `berth` CLI against this berthd; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let out = Command::new(berth_binary()?)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running berth")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Starts berthd with default options.
    pub async fn start(name: &str) -> anyhow::Result<Berthd> {
        Self::start_with(name, Options::default()).await
    }

    pub async fn start_with(name: &str, options: Options) -> anyhow::Result<Berthd> {
        let mut berthd = Self::prepare(name, &options)?;
        berthd.launch().await?;
        Ok(berthd)
    }

    /// Lays out the test's directories and config without starting berthd (for tests of startup itself).
    pub fn prepare(name: &str, options: &Options) -> anyhow::Result<Berthd> {
        std::fs::create_dir_all(E2E_BASE)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(E2E_BASE)?
            .keep();
        let root = dir.join("root");
        let state = dir.join("state");
        let socket = state.join("berth.sock");
        let etc = dir.join("etc");
        let config_file = etc.join("config.toml");
        let cni_conf_dir = dir.join("cni/net.d");
        let cni_ipam_dir = dir.join("cni/ipam");
        std::fs::create_dir_all(etc.join("config.d"))?;
        std::fs::create_dir_all(&cni_conf_dir)?;
        let metrics_address = free_port()?;
        let mut bin_dirs = vec![PathBuf::from(CNI_BIN_DIR)];
        if options.slow_cni_result {
            let slow = dir.join("cni/bin");
            std::fs::create_dir_all(&slow)?;
            let wrapper = slow.join("portmap");
            // The real plugin does the work; only its answer is held back.
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nout=$({CNI_BIN_DIR}/portmap)\nrc=$?\n[ \"$CNI_COMMAND\" = ADD ] && sleep 5\nprintf '%s' \"$out\"\nexit $rc\n"
                ),
            )?;
            std::fs::set_permissions(
                &wrapper,
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )?;
            bin_dirs.insert(0, slow);
        }
        std::fs::write(
            &config_file,
            format!(
                "root = {root:?}\nstate = {state:?}\nlisten = \"unix://{socket}\"\n\n\
                 [log]\nlevel = \"debug\"\n\n[metrics]\naddress = \"{metrics_address}\"\n\n\
                 [cni]\nconf_dir = {cni_conf_dir:?}\nbin_dirs = {bin_dirs:?}\n",
                socket = socket.display(),
            ),
        )?;
        if !options.dropin.is_empty() {
            std::fs::write(etc.join("config.d/50-test.toml"), &options.dropin)?;
        }
        let berthd = Berthd {
            name: name.to_string(),
            log_file: dir.join("berthd.log"),
            dir,
            root,
            state,
            socket,
            config_file,
            cni_conf_dir,
            cni_ipam_dir,
            metrics_address,
            env: Vec::new(),
            child: None,
        };
        if options.cni {
            berthd.write_cni_config()?;
        }
        Ok(berthd)
    }

    /// A short id unique to this test, used in names of host objects (bridge, cgroups, netns).
    pub fn test_id(&self) -> String {
        let base = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix: String = base
            .rsplit('-')
            .next()
            .unwrap_or("x")
            .chars()
            .take(6)
            .collect();
        format!("e2e{}", suffix.to_ascii_lowercase())
    }

    /// The test's own CNI bridge.
    pub fn bridge_name(&self) -> String {
        format!("br-{}", self.test_id()).chars().take(15).collect()
    }

    /// A bridge + host-local network private to this test.
    pub fn write_cni_config(&self) -> anyhow::Result<()> {
        let id = self.test_id();
        let subnet = id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
            % 250
            + 1;
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("berth-{id}"),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge_name(),
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.cni_ipam_dir,
                        "ranges": [[{"subnet": format!("10.89.{subnet}.0/24")}]],
                        "routes": [{"dst": "0.0.0.0/0"}]
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "bandwidth", "capabilities": {"bandwidth": true}}
            ]
        });
        std::fs::write(
            self.cni_conf_dir.join("10-berth-e2e.conflist"),
            serde_json::to_vec_pretty(&conf)?,
        )?;
        Ok(())
    }

    /// Starts the daemon and waits until it answers Version.
    pub async fn launch(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("berthd is already running");
        }
        let child = self.spawn(&[])?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Spawns berthd with this test's config plus `extra` arguments, without waiting.
    pub fn spawn(&self, extra: &[&str]) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)?;
        Command::new(berthd_binary()?)
            .arg("--config")
            .arg(&self.config_file)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .context("spawning berthd")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("berthd exited during startup ({status}):\n{}", self.log());
            }
            if self.socket.exists()
                && let Ok(mut client) = self.runtime().await
                && client.version(cri::VersionRequest::default()).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("berthd did not answer within 15s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let path = self.socket.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        });
        Ok(Endpoint::try_from("http://[::]:0")?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .connect_with_connector(connector)
            .await?)
    }

    pub async fn runtime(&self) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        Ok(RuntimeServiceClient::new(self.channel().await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    pub async fn images(&self) -> anyhow::Result<ImageServiceClient<Channel>> {
        Ok(ImageServiceClient::new(self.channel().await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// `/metrics` as text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let (status, body) = crate::http_get(self.metrics_address, "/metrics")?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(body)
    }

    /// SIGTERM and wait (15 s at most) for the exit status.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("berthd is not running");
        };
        signal(&child, libc::SIGTERM)?;
        wait_timeout(&mut child, Duration::from_secs(15))
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops berthd (it must exit 0), checks that nothing is left behind and removes the test dir.
    pub fn finish(self) {
        let name = self.name.clone();
        if let Err(e) = self.try_finish() {
            panic!("test {name}: {e:#}");
        }
    }

    /// [`Berthd::finish`] returning what went wrong instead of panicking (the dir is kept then).
    pub fn try_finish(mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            let status = self.stop().context("stopping berthd")?;
            if !status.success() {
                bail!("berthd exited with {status}:\n{}", self.log());
            }
        }
        if let Err(leaks) = leaks::check(&self.dir, &self.test_id()) {
            bail!("left things behind:\n{leaks}");
        }
        self.remove_host_leftovers();
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Berthd {
    /// The test's CNI bridge: the bridge plugin never deletes one (other pods may use it).
    /// (The pod cgroup parent all tests share, like kubelet's `/kubepods`, is removed by
    /// `make e2e` once no test runs: removing it here could race another test's RunPodSandbox.)
    fn remove_host_leftovers(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge_name()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // A failed test must not leave a daemon running; keep its dir and log for the post-mortem.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("berthd log kept at {}", self.log_file.display());
        }
        self.remove_host_leftovers();
    }
}

/// The berthd binary: $BERTHD_BIN, else the one cargo built beside this test binary.
pub fn berthd_binary() -> anyhow::Result<PathBuf> {
    binary("berthd", "BERTHD_BIN", "berthd")
}

/// The berth CLI: $BERTH_BIN, else the one cargo built beside this test binary.
pub fn berth_binary() -> anyhow::Result<PathBuf> {
    binary("berth", "BERTH_BIN", "berth")
}

fn binary(name: &str, env: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .context("locating the target dir")?;
    if !candidate.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p {package}`, which `make test` does) or set {env}",
            candidate.display()
        );
    }
    Ok(candidate)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    // Bind port 0 and release it; berthd binds it a moment later. Good enough for tests.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

// kill(2): Child::kill only sends SIGKILL.
#[allow(unsafe_code)]
pub fn signal(child: &Child, signal: i32) -> anyhow::Result<()> {
    // SAFETY: kill(2) on a pid we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("signalling berthd");
    }
    Ok(())
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
