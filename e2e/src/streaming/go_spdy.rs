//! A second, independent SPDY remote-command client: `e2e/peers/spdy/main.go`, built at test time
//! on Debian's spdystream (the SPDY library kubelet, kubectl and client-go use). It does on the
//! wire what client-go's `remotecommand.NewSPDYExecutor` does, so tests see Berth as kubectl does,
//! not only through Berth's own client.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

/// Debian's Go 1.19 (package golang-1.19-go); `BERTH_E2E_GO` overrides it.
const GO: &str = "/usr/lib/go-1.19/bin/go";
/// Debian's golang-github-docker-spdystream-dev.
const GOPATH_LIBS: &str = "/usr/share/gocode";
const SPDYSTREAM: &str = "/usr/share/gocode/src/github.com/docker/spdystream/connection.go";
const INSTALL_HINT: &str = "run hack/install-deps.sh (packages golang-1.19-go and \
     golang-github-docker-spdystream-dev)";

/// The client, built once per test binary.
pub struct GoSpdyClient {
    bin: PathBuf,
}

/// One session of the client.
#[derive(Debug, Clone)]
pub struct GoSpdyOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Written to stdin (needs `stdin`), `repeat` times.
    pub input: String,
    pub repeat: usize,
    /// Half-close stdin only once stdout shows this; `None`: right after `input`.
    pub close_after: Option<String>,
    /// For the whole session, after which the client gives up (and says it timed out).
    pub timeout: Duration,
}

impl Default for GoSpdyOptions {
    fn default() -> Self {
        GoSpdyOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            input: String::new(),
            repeat: 1,
            close_after: None,
            timeout: Duration::from_secs(20),
        }
    }
}

/// What the client saw.
#[derive(Debug, Clone)]
pub struct GoSpdyResult {
    pub protocol: String,
    pub stdout: String,
    pub stderr: String,
    /// The error stream's content: a metav1.Status in JSON (v4), `Null` if it was empty or not JSON.
    pub status: Value,
    pub raw_status: String,
    /// From stdin's FIN to the end of the session.
    pub ended_after: Duration,
    /// Why the session did not end cleanly (empty if it did).
    pub error: String,
    /// Why half-closing stdin failed, if it did (as in client-go, not a failure of the session:
    /// the server may have ended it already).
    pub half_close_error: String,
    pub timed_out: bool,
    /// The client's exit code: 0 ended, 2 timed out, 1 other failure.
    pub exit_code: i32,
}

impl GoSpdyResult {
    /// The session ended by itself and the status says Success.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 && self.status["status"] == "Success"
    }

    /// The exit code a v4 status reports (0 for Success).
    pub fn command_exit_code(&self) -> Option<i64> {
        if self.status["status"] == "Success" {
            return Some(0);
        }
        if self.status["reason"] != "NonZeroExitCode" {
            return None;
        }
        self.status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }
}

impl GoSpdyClient {
    /// The client of this test binary, built on first use under `tmp` (a test's
    /// `CARGO_TARGET_TMPDIR`, so the binary and Go's build cache stay in `target/`). Panics when
    /// the toolchain or spdystream is missing: that is a broken test rig, never a reason to skip.
    pub fn get(tmp: &Path) -> &'static GoSpdyClient {
        static CLIENT: OnceLock<GoSpdyClient> = OnceLock::new();
        CLIENT.get_or_init(|| {
            GoSpdyClient::build(&tmp.join("go-spdy"))
                .unwrap_or_else(|e| panic!("building the Go SPDY client: {e:#}"))
        })
    }

    fn build(dir: &Path) -> anyhow::Result<GoSpdyClient> {
        let go = std::env::var_os("BERTH_E2E_GO").map_or_else(|| PathBuf::from(GO), PathBuf::from);
        if !go.exists() {
            bail!("no Go toolchain at {}: {INSTALL_HINT}", go.display());
        }
        if !Path::new(SPDYSTREAM).exists() {
            bail!("spdystream is not installed ({SPDYSTREAM} is missing): {INSTALL_HINT}");
        }
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/spdy/main.go");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Built under a name of its own, then renamed: another test binary running at the same
        // time may be using the previous one.
        let bin = dir.join("spdy-remotecommand");
        let building = dir.join(format!("spdy-remotecommand.{}", std::process::id()));
        // GOPATH mode: Debian's Go packages are a GOPATH tree, and there is no module proxy.
        let out = std::process::Command::new(&go)
            .arg("build")
            .arg("-o")
            .arg(&building)
            .arg(&source)
            .env("GO111MODULE", "off")
            .env(
                "GOPATH",
                format!("{}:{GOPATH_LIBS}", dir.join("gopath").display()),
            )
            .env("GOCACHE", dir.join("cache"))
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .output()
            .with_context(|| format!("running {}", go.display()))?;
        if !out.status.success() {
            bail!(
                "go build {} failed ({}): {}\n({INSTALL_HINT} if a package is missing)",
                source.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::rename(&building, &bin)
            .with_context(|| format!("renaming {} into place", building.display()))?;
        Ok(GoSpdyClient { bin })
    }

    /// Runs one session against `url` (from a CRI Exec or Attach response).
    pub async fn run(&self, url: &str, options: &GoSpdyOptions) -> anyhow::Result<GoSpdyResult> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(format!("-url={url}"))
            .arg(format!("-stdin={}", options.stdin))
            .arg(format!("-stdout={}", options.stdout))
            .arg(format!("-stderr={}", options.stderr))
            .arg(format!("-input={}", options.input))
            .arg(format!("-repeat={}", options.repeat))
            .arg(format!("-timeout={}ms", options.timeout.as_millis()))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(marker) = &options.close_after {
            cmd.arg(format!("-close-after={marker}"));
        }
        // The client gives up by itself; this only guards against a client that hangs.
        let out = tokio::time::timeout(options.timeout + Duration::from_secs(10), cmd.output())
            .await
            .context("the Go SPDY client did not exit")?
            .context("running the Go SPDY client")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let json: Value = serde_json::from_str(text.trim()).with_context(|| {
            format!(
                "the Go SPDY client printed no result ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let field = |name: &str| json[name].as_str().unwrap_or_default().to_string();
        let raw_status = field("status");
        Ok(GoSpdyResult {
            protocol: field("protocol"),
            stdout: field("stdout"),
            stderr: field("stderr"),
            status: serde_json::from_str(&raw_status).unwrap_or(Value::Null),
            raw_status,
            ended_after: Duration::from_millis(json["ended_after_ms"].as_u64().unwrap_or(0)),
            error: field("error"),
            half_close_error: field("half_close_error"),
            timed_out: json["timed_out"].as_bool().unwrap_or(false),
            exit_code: out.status.code().unwrap_or(-1),
        })
    }
}
