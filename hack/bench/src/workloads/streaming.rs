//! Streaming workloads: what `kubectl exec` and `kubectl port-forward` cost on a node.
//!
//! * `exec-sync`: one pod with a running busybox container (`sleep 3600`), made in setup; each
//!   iteration is a CRI ExecSync of `true` (timeout 10 s), checked for exit code 0. This is what
//!   kubelet's exec probes do.
//! * `exec-session`: the same pod and container; each iteration sets up and runs a whole exec
//!   session the way kubelet's client (client-go's SPDY executor) does: CRI Exec (`true`, stdout
//!   and stderr) for a URL, TCP connect to it, `Upgrade: SPDY/3.1` offering
//!   `v4.channel.k8s.io`, the error, stdout and stderr streams (each waiting for its
//!   SYN_REPLY), then until the session ends with the Status (exit code 0). Timed as one
//!   operation (`session`) and by phase.
//! * `port-forward-throughput`: one pod running the test httpd (`--httpd-image`, port 8080)
//!   made in setup. Each iteration moves `/bytes/<--forward-bytes>` (default 100 MB) twice, with
//!   two SPDY (`portforward.k8s.io`) clients in alternating order; each time: CRI PortForward,
//!   connect to the URL, open a data+error stream pair to port 8080, `GET` with
//!   `Connection: close`.
//!   - `transfer-kubectl-like`: [`PlainForward`], which like moby/spdystream (kubectl's and
//!     kubelet's SPDY library) does no flow control at all;
//!   - `transfer-flow-controlled`: `berth_e2e`'s strict SPDY/3.1 client, which credits the
//!     default 64 KiB stream and session windows back with WINDOW_UPDATEs once the server sent
//!     SETTINGS (Berth's does; containerd's spdystream-based server sends none and ignores
//!     windows, so there both clients behave alike).
//!
//!   A transfer is timed from sending the request to the last body byte; every byte is counted,
//!   and it fails unless the body is exactly the requested size, the stream then ends cleanly and
//!   nothing came on the error stream. The throughput table shows MB/s (10^6 bytes per second)
//!   at the median, fastest and slowest transfer.
//!
//! The exec client is `berth_e2e::streaming`, written independently of Berth's server and
//! validated against containerd 1.6's (Kubernetes' own) streaming server; the kubectl-like
//! port-forward client uses its frame codec. Clients run on the driver's (single-threaded by
//! default) runtime, on the same machine as the runtime: their CPU time is part of every figure,
//! alike for both runtimes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_cri_api::v1 as cri;
use berth_e2e::streaming::{
    ExecOptions, ExecSession as Session, ExecStatus, SpdyPortForwarder, SpdyVersion, StreamOptions,
    Transport,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::containers::container_config;
use super::in_pod::{create_start_untimed, run_setup_pod};
use super::pods::{remove_run, run_id};
use super::spdystream::PlainForward;
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

/// ExecSync's timeout, in seconds.
pub const EXEC_TIMEOUT_SECS: i64 = 10;

/// How long setup waits for the container to be RUNNING and the httpd to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on one exec session and on one port-forward transfer.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);

/// The test httpd's port (hack/images/httpd.c).
pub const HTTPD_PORT: u16 = 8080;

/// A pod with one running container, made in setup and shared by the iterations.
struct Target {
    run_id: String,
    image: String,
    /// (pod id, container id).
    ids: Mutex<Option<(String, String)>>,
}

impl Target {
    fn new(image: &str) -> Target {
        Target {
            run_id: run_id(),
            image: image.to_string(),
            ids: Mutex::new(None),
        }
    }

    fn ids(&self) -> Option<(String, String)> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Pull the image, run the pod, create and start the container with `command` (empty: the
    /// image's entrypoint), wait until it is RUNNING.
    async fn setup(&self, clients: &mut Clients, command: &[&str]) -> Result<()> {
        let (pod_id, pod) = run_setup_pod(clients, &self.run_id, &self.image).await?;
        let mut config = container_config(&self.run_id, &self.image, "target");
        config.command = command.iter().map(|s| s.to_string()).collect();
        let what = "the workload's container";
        let id = create_start_untimed(clients, &pod_id, &pod, config, what).await?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let status = clients
                .runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .context("ContainerStatus")?
                .into_inner()
                .status
                .map(|s| s.state)
                .unwrap_or(-1);
            if status == cri::ContainerState::ContainerRunning as i32 {
                break;
            }
            if status == cri::ContainerState::ContainerExited as i32 {
                bail!("the workload's container exited instead of running");
            }
            if Instant::now() >= deadline {
                bail!("the workload's container is not RUNNING after {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        *self.ids.lock().unwrap_or_else(|e| e.into_inner()) = Some((pod_id, id));
        Ok(())
    }
}

const EXEC_SYNC: &str = "ExecSync";

/// `exec-sync`: ExecSync of `true` in a running container.
pub struct ExecSync {
    target: Target,
}

impl ExecSync {
    pub fn new(opts: &WorkloadOpts) -> ExecSync {
        ExecSync {
            target: Target::new(&opts.container_image),
        }
    }
}

impl Workload for ExecSync {
    fn name(&self) -> &'static str {
        "exec-sync"
    }

    fn ops(&self) -> &'static [&'static str] {
        &[EXEC_SYNC]
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(self.target.setup(clients, &["sleep", "3600"]))
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        _iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let Some((_, id)) = self.target.ids() else {
                rec.fail(EXEC_SYNC, "no container (setup failed)");
                return;
            };
            let req = cri::ExecSyncRequest {
                container_id: id,
                cmd: vec!["true".into()],
                timeout: EXEC_TIMEOUT_SECS,
            };
            let Some(resp) = rec.call(EXEC_SYNC, clients.runtime.exec_sync(req)).await else {
                return;
            };
            if resp.exit_code != 0 {
                rec.fail(
                    EXEC_SYNC,
                    format!(
                        "exit code {} (stderr {:?})",
                        resp.exit_code,
                        String::from_utf8_lossy(&resp.stderr)
                    ),
                );
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove_run(clients, &self.target.run_id))
    }
}

const SESSION: &str = "session";
const EXEC: &str = "Exec";
const CONNECT: &str = "connect+upgrade+streams";
const RUN: &str = "run+status";

/// `exec-session`: CRI Exec + a whole SPDY v4 session of `true`.
pub struct ExecSessionSetup {
    target: Target,
}

impl ExecSessionSetup {
    pub fn new(opts: &WorkloadOpts) -> ExecSessionSetup {
        ExecSessionSetup {
            target: Target::new(&opts.container_image),
        }
    }
}

impl Workload for ExecSessionSetup {
    fn name(&self) -> &'static str {
        "exec-session"
    }

    fn ops(&self) -> &'static [&'static str] {
        &[SESSION, EXEC, CONNECT, RUN]
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(self.target.setup(clients, &["sleep", "3600"]))
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        _iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let Some((_, id)) = self.target.ids() else {
                rec.fail(SESSION, "no container (setup failed)");
                return;
            };
            let transport = Transport::Spdy(SpdyVersion::V4);
            let options = ExecOptions {
                stdout: true,
                stderr: true,
                timeout: SESSION_TIMEOUT,
                ..ExecOptions::default()
            };
            let streams: StreamOptions = options.streams();
            let req = cri::ExecRequest {
                container_id: id,
                cmd: vec!["true".into()],
                tty: false,
                stdin: false,
                stdout: true,
                stderr: true,
                audit_request_id: String::new(),
            };
            let t0 = Instant::now();
            let Some(resp) = rec.call(EXEC, clients.runtime.exec(req)).await else {
                rec.skipped(&[CONNECT, RUN]);
                rec.sequence_failed(SESSION, "Exec failed");
                return;
            };
            let t1 = Instant::now();
            let session = match tokio::time::timeout(
                SESSION_TIMEOUT,
                Session::open(&resp.url, transport, streams),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    rec.fail(CONNECT, format!("{e:#}"));
                    rec.fail(SESSION, "connecting failed");
                    return;
                }
                Err(_) => {
                    rec.fail(CONNECT, format!("timed out after {SESSION_TIMEOUT:?}"));
                    rec.fail(SESSION, "connecting timed out");
                    return;
                }
            };
            let t2 = Instant::now();
            let out = match session.wait(SESSION_TIMEOUT).await {
                Ok(out) => out,
                Err(e) => {
                    rec.fail(RUN, format!("{e:#}"));
                    rec.fail(SESSION, "the session failed");
                    return;
                }
            };
            let t3 = Instant::now();
            if out.status != ExecStatus::Exited(0) {
                rec.fail(RUN, format!("not exit 0: {}", out.summary()));
                rec.fail(SESSION, "not exit 0");
                return;
            }
            rec.sample(CONNECT, t2 - t1);
            rec.sample(RUN, t3 - t2);
            rec.sample(SESSION, t3 - t0);
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove_run(clients, &self.target.run_id))
    }
}

const TRANSFER_PLAIN: &str = "transfer-kubectl-like";
const TRANSFER_STRICT: &str = "transfer-flow-controlled";
const PORT_FORWARD: &str = "PortForward";
const FORWARD_CONNECT: &str = "connect+open";

/// `port-forward-throughput`: one big HTTP GET through a SPDY port-forward.
pub struct PortForwardThroughput {
    target: Target,
    bytes: u64,
}

impl PortForwardThroughput {
    pub fn new(opts: &WorkloadOpts) -> PortForwardThroughput {
        PortForwardThroughput {
            target: Target::new(&opts.httpd_image),
            bytes: opts.forward_bytes,
        }
    }
}

/// The port-forward URL of `pod_id` for [`HTTPD_PORT`].
async fn forward_url(clients: &mut Clients, pod_id: &str) -> Result<String, tonic::Status> {
    clients
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod_id.to_string(),
            port: vec![HTTPD_PORT as i32],
        })
        .await
        .map(|r| r.into_inner().url)
}

/// What a GET through a stream gave: (status, Content-Length, body bytes) and when the last body
/// byte (by Content-Length) arrived.
#[derive(Debug)]
struct Fetched {
    status: u16,
    content_length: Option<u64>,
    body: u64,
    last_byte: Option<Instant>,
}

/// Follows an HTTP/1.1 response as it arrives: parses the head, counts body bytes without keeping
/// them, notes when the last one (by Content-Length) came.
#[derive(Debug, Default)]
struct ResponseCounter {
    head: Vec<u8>,
    parsed: Option<(u16, Option<u64>)>,
    body: u64,
    last_byte: Option<Instant>,
}

impl ResponseCounter {
    fn feed(&mut self, mut data: &[u8]) -> Result<()> {
        if self.parsed.is_none() {
            self.head.extend_from_slice(data);
            let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.head.len() > 64 * 1024 {
                    bail!("no end of the HTTP response head in 64 KiB");
                }
                return Ok(());
            };
            self.parsed = Some(parse_head(&self.head[..end])?);
            self.body = (self.head.len() - end - 4) as u64;
            data = &[];
        }
        self.body += data.len() as u64;
        if self.last_byte.is_none()
            && let Some((_, Some(len))) = self.parsed
            && self.body >= len
        {
            self.last_byte = Some(Instant::now());
        }
        Ok(())
    }

    fn finish(self) -> Result<Fetched> {
        let Some((status, content_length)) = self.parsed else {
            bail!(
                "the stream ended before a response head: {:?}",
                String::from_utf8_lossy(&self.head[..self.head.len().min(300)])
            );
        };
        Ok(Fetched {
            status,
            content_length,
            body: self.body,
            last_byte: self.last_byte,
        })
    }
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// `GET path` with `Connection: close` over a byte stream; reads to its end.
async fn fetch<S>(stream: &mut S, path: &str) -> Result<Fetched>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(get_request(path).as_bytes()).await?;
    stream.flush().await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut counter = ResponseCounter::default();
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .context("reading the response")?;
        if n == 0 {
            break;
        }
        counter.feed(&buf[..n])?;
    }
    counter.finish()
}

/// The same GET through the spdystream-like client; `Err` also for an abnormal end.
async fn fetch_plain(forward: &mut PlainForward, path: &str) -> Result<(Fetched, String)> {
    forward.send(get_request(path).as_bytes()).await?;
    let mut counter = ResponseCounter::default();
    let received = forward.receive(|data| counter.feed(data)).await?;
    if let Some(why) = received.abnormal_end {
        bail!("{why} (error stream: {:?})", received.error);
    }
    Ok((counter.finish()?, received.error))
}

/// Status code and Content-Length of an HTTP/1.1 response head (without the blank line).
fn parse_head(head: &[u8]) -> Result<(u16, Option<u64>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Ok((status, length))
}

/// Setup's readiness check: GET /healthz through a port-forward answers 200.
async fn httpd_answers(clients: &mut Clients, pod_id: &str) -> Result<()> {
    let url = forward_url(clients, pod_id).await?;
    let forwarder = SpdyPortForwarder::connect(&url).await?;
    let mut stream = forwarder.open(HTTPD_PORT).await?;
    let got = tokio::time::timeout(Duration::from_secs(5), fetch(&mut stream, "/healthz"))
        .await
        .context("GET /healthz timed out")??;
    if got.status != 200 || got.body != 3 {
        bail!(
            "GET /healthz: status {}, {} body bytes{}",
            got.status,
            got.body,
            stream
                .error()
                .map(|e| format!(", error stream: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Client {
    /// [`PlainForward`]: no flow control, like kubectl's spdystream.
    Plain,
    /// `berth_e2e`'s [`SpdyPortForwarder`]: strict SPDY/3.1 flow control with 64 KiB windows.
    Strict,
}

impl PortForwardThroughput {
    /// PortForward, connect, then one GET of `self.bytes` through `client`, each recorded.
    async fn transfer(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        pod_id: &str,
        client: Client,
    ) {
        let op = match client {
            Client::Plain => TRANSFER_PLAIN,
            Client::Strict => TRANSFER_STRICT,
        };
        let req = cri::PortForwardRequest {
            pod_sandbox_id: pod_id.to_string(),
            port: vec![HTTPD_PORT as i32],
        };
        let Some(resp) = rec
            .call(PORT_FORWARD, clients.runtime.port_forward(req))
            .await
        else {
            rec.skipped(&[FORWARD_CONNECT, op]);
            return;
        };
        let path = format!("/bytes/{}", self.bytes);
        let t0 = Instant::now();
        let result = match client {
            Client::Plain => {
                let connected = tokio::time::timeout(
                    SESSION_TIMEOUT,
                    PlainForward::connect(&resp.url, HTTPD_PORT),
                )
                .await;
                let mut forward = match connected {
                    Ok(Ok(f)) => f,
                    Ok(Err(e)) => return rec.fail(FORWARD_CONNECT, format!("{e:#}")),
                    Err(_) => return rec.fail(FORWARD_CONNECT, "timed out"),
                };
                rec.sample(FORWARD_CONNECT, t0.elapsed());
                let t1 = Instant::now();
                tokio::time::timeout(TRANSFER_TIMEOUT, fetch_plain(&mut forward, &path))
                    .await
                    .map(|r| r.map(|(got, error)| (got, (!error.is_empty()).then_some(error), t1)))
            }
            Client::Strict => {
                let opened = async {
                    let forwarder = SpdyPortForwarder::connect(&resp.url).await?;
                    forwarder.open(HTTPD_PORT).await
                };
                let mut stream = match tokio::time::timeout(SESSION_TIMEOUT, opened).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return rec.fail(FORWARD_CONNECT, format!("{e:#}")),
                    Err(_) => return rec.fail(FORWARD_CONNECT, "timed out"),
                };
                rec.sample(FORWARD_CONNECT, t0.elapsed());
                let t1 = Instant::now();
                tokio::time::timeout(TRANSFER_TIMEOUT, fetch(&mut stream, &path))
                    .await
                    .map(|r| r.map(|got| (got, stream.error(), t1)))
            }
        };
        let (got, error, t1) = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return rec.fail(op, format!("{e:#}")),
            Err(_) => return rec.fail(op, format!("not done within {TRANSFER_TIMEOUT:?}")),
        };
        match (got.status, got.content_length, got.last_byte, error) {
            (200, Some(len), Some(last), None) if len == self.bytes && got.body == self.bytes => {
                rec.sample(op, last - t1);
            }
            (_, _, _, error) => rec.fail(
                op,
                format!(
                    "GET {path}: status {}, Content-Length {:?}, {} body bytes instead of {}{}",
                    got.status,
                    got.content_length,
                    got.body,
                    self.bytes,
                    error
                        .map(|e| format!(", error stream: {e}"))
                        .unwrap_or_default()
                ),
            ),
        }
    }
}

impl Workload for PortForwardThroughput {
    fn name(&self) -> &'static str {
        "port-forward-throughput"
    }

    fn ops(&self) -> &'static [&'static str] {
        &[
            TRANSFER_PLAIN,
            TRANSFER_STRICT,
            PORT_FORWARD,
            FORWARD_CONNECT,
        ]
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            // The image's entrypoint: /httpd on 0.0.0.0:8080.
            self.target.setup(clients, &[]).await?;
            let (pod_id, _) = self.target.ids().context("no pod")?;
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                match httpd_answers(clients, &pod_id).await {
                    Ok(()) => return Ok(()),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(e.context(format!(
                            "the httpd did not answer through port-forward within {READY_TIMEOUT:?}"
                        )));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
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
            let Some((pod_id, _)) = self.target.ids() else {
                rec.fail(TRANSFER_PLAIN, "no pod (setup failed)");
                rec.fail(TRANSFER_STRICT, "no pod (setup failed)");
                return;
            };
            // Both clients every iteration, in alternating order.
            let order = if iter.is_multiple_of(2) {
                [Client::Plain, Client::Strict]
            } else {
                [Client::Strict, Client::Plain]
            };
            for client in order {
                self.transfer(clients, rec, &pod_id, client).await;
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove_run(clients, &self.target.run_id))
    }

    fn transfers(&self) -> Vec<(&'static str, u64)> {
        vec![(TRANSFER_PLAIN, self.bytes), (TRANSFER_STRICT, self.bytes)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_heads() {
        let (status, len) =
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: x\r\ncontent-length: 42").unwrap();
        assert_eq!((status, len), (200, Some(42)));
        assert_eq!(parse_head(b"HTTP/1.1 404 Not Found").unwrap(), (404, None));
        assert!(parse_head(b"garbage").is_err());
    }

    #[tokio::test]
    async fn fetch_counts_the_body_and_marks_its_last_byte() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let serve = tokio::spawn(async move {
            let mut req = [0u8; 256];
            let n = server.read(&mut req).await.unwrap();
            assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /bytes/5000 "));
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
                .await
                .unwrap();
            for _ in 0..5 {
                server.write_all(&[b'a'; 1000]).await.unwrap();
            }
        });
        let got = fetch(&mut client, "/bytes/5000").await.unwrap();
        serve.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.content_length, Some(5000));
        assert_eq!(got.body, 5000);
        assert!(got.last_byte.is_some());

        // A short body never reaches its last byte.
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let mut req = [0u8; 256];
            let _ = server.read(&mut req).await;
            let _ = server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await;
        });
        let got = fetch(&mut client, "/x").await.unwrap();
        assert_eq!((got.body, got.last_byte.is_none()), (3, true));
    }
}
