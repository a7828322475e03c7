//! The listener: binding, optional TLS, HTTP/1.1 connections with upgrades, graceful shutdown.
//!
//! Like `berth_metrics::serve`, [`StreamingServer::bind`] binds at once (a taken port fails
//! startup) and returns the serving future, which runs until the shutdown future resolves. At
//! shutdown it stops accepting, ends every session (their processes are dropped, so execs are
//! killed and attaches detach) and waits a bounded time for the connection tasks to finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{AttachTarget, Backend, ExecTarget};
use crate::config::{StreamingConfig, TlsFiles};
use crate::error::StreamingError;
use crate::handler;
use crate::token::{MAX_IN_FLIGHT, Request, TokenCache};

/// Slow clients get this long to send their request head, and for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for connection tasks.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the connection tasks share.
pub(crate) struct Shared {
    pub config: StreamingConfig,
    pub backend: Arc<dyn Backend>,
    pub tokens: TokenCache,
    /// Fires at shutdown; every session's guard is a child of it.
    pub shutdown: CancellationToken,
    /// Session tasks, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// Hands out streaming URLs and serves them. Cheap to clone.
#[derive(Clone)]
pub struct StreamingServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    base_url: Arc<str>,
}

impl std::fmt::Debug for StreamingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl StreamingServer {
    /// Binds `config.address` (and loads the TLS files) now; returns the server handle and the
    /// serving future, which runs until `shutdown` resolves.
    pub async fn bind(
        config: StreamingConfig,
        backend: Arc<dyn Backend>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(StreamingServer, impl Future<Output = ()> + Send + 'static), StreamingError> {
        let tls = config.tls.as_ref().map(acceptor).transpose()?;
        let address = config.address;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StreamingError::Bind { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StreamingError::Bind { address, source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let sweep_every = config
            .token_ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(30));
        let shared = Arc::new(Shared {
            tokens: TokenCache::new(config.token_ttl, MAX_IN_FLIGHT),
            config,
            backend,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let server = StreamingServer {
            shared: shared.clone(),
            address: bound,
            base_url: Arc::from(format!("{scheme}://{bound}")),
        };
        let serving = serve(shared, listener, tls, shutdown, sweep_every);
        Ok((server, serving))
    }

    /// The address actually bound (the port is real even when the config asked for 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A single-use URL for an exec: `http(s)://addr/exec/<token>`.
    pub fn exec_url(&self, t: ExecTarget) -> Result<String, StreamingError> {
        if t.container_id.is_empty() {
            return Err(StreamingError::InvalidRequest(
                "missing required container_id",
            ));
        }
        if t.cmd.is_empty() {
            return Err(StreamingError::InvalidRequest("cmd must not be empty"));
        }
        check_stdio(t.tty, t.stdin, t.stdout, t.stderr)?;
        self.url(Request::Exec(t))
    }

    /// A single-use URL for an attach: `http(s)://addr/attach/<token>`.
    pub fn attach_url(&self, t: AttachTarget) -> Result<String, StreamingError> {
        if t.container_id.is_empty() {
            return Err(StreamingError::InvalidRequest(
                "missing required container_id",
            ));
        }
        check_stdio(t.tty, t.stdin, t.stdout, t.stderr)?;
        self.url(Request::Attach(t))
    }

    /// A single-use URL for port-forwarding into a pod: `http(s)://addr/portforward/<token>`.
    pub fn port_forward_url(&self, pod_sandbox_id: String) -> Result<String, StreamingError> {
        if pod_sandbox_id.is_empty() {
            return Err(StreamingError::InvalidRequest(
                "missing required pod_sandbox_id",
            ));
        }
        self.url(Request::PortForward(pod_sandbox_id))
    }

    fn url(&self, request: Request) -> Result<String, StreamingError> {
        let kind = request.kind();
        let token = self.shared.tokens.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }
}

/// kubelet's (and containerd's) checks on the requested streams.
fn check_stdio(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), StreamingError> {
    if tty && stderr {
        return Err(StreamingError::InvalidRequest(
            "tty and stderr cannot both be true",
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(StreamingError::InvalidRequest(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, StreamingError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| StreamingError::TlsFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StreamingError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(StreamingError::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| StreamingError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamingError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StreamingError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    sweep_every: Duration,
) {
    tokio::pin!(shutdown);
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = sweep.tick() => shared.tokens.sweep(),
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let task = connection(shared.clone(), tls.clone(), stream);
                    shared.tasks.spawn(task);
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting streaming connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    shared.shutdown.cancel();
    shared.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = shared.tasks.len(),
            "streaming connections still closing at shutdown"
        );
    }
}

async fn connection(shared: Arc<Shared>, tls: Option<TlsAcceptor>, tcp: TcpStream) {
    match tls {
        None => http(shared, tcp).await,
        Some(acceptor) => {
            let accepted = tokio::select! {
                accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => accepted,
                () = shared.shutdown.cancelled() => return,
            };
            match accepted {
                Ok(Ok(stream)) => http(shared, stream).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "streaming TLS handshake failed"),
                Err(_) => tracing::debug!("streaming TLS handshake timed out"),
            }
        }
    }
}

async fn http<I>(shared: Arc<Shared>, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = service_shared.clone();
        async move { Ok::<_, std::convert::Infallible>(handler::handle(&shared, req)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "streaming connection ended");
            }
        }
        () = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}
