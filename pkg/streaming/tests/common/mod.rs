//! Test harness: a backend that runs local processes and dials local ports, and minimal SPDY and
//! WebSocket clients (the real berth-spdy client role and tokio-tungstenite).
#![allow(dead_code)]

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_spdy::{Headers, RecvStream, SendStream, Session, SessionConfig};
use berth_streaming::{
    AttachTarget, Backend, BoxFuture, ExecTarget, Process, StreamingConfig, StreamingServer,
};
use bytes::Bytes;
use futures_core::Stream as _;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// What the backend saw.
#[derive(Default)]
pub struct Record {
    pub resizes: Mutex<Vec<(u16, u16)>>,
    pub started: AtomicUsize,
    pub dropped: AtomicUsize,
    pub pids: Mutex<Vec<u32>>,
    pub port_forwards: Mutex<Vec<(String, u16)>>,
    pub changed: Notify,
}

impl Record {
    pub fn live(&self) -> usize {
        self.started.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }

    /// Waits until no process is alive (all dropped).
    pub async fn wait_all_dropped(&self, within: Duration) {
        tokio::time::timeout(within, async {
            loop {
                let notified = self.changed.notified();
                if self.started.load(Ordering::SeqCst) > 0 && self.live() == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("processes still alive");
    }

    pub async fn wait_resizes(&self, n: usize, within: Duration) -> Vec<(u16, u16)> {
        tokio::time::timeout(within, async {
            loop {
                let notified = self.changed.notified();
                let r = self.resizes.lock().unwrap().clone();
                if r.len() >= n {
                    return r;
                }
                notified.await;
            }
        })
        .await
        .expect("resizes not seen")
    }
}

/// Counts the process as dropped when the `Process` (its exit future) goes away.
struct DropProbe(Arc<Record>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Runs commands locally: exec runs `cmd`, attach runs `sh -c <container_id>`; port-forward to
/// pod "pod-1" dials 127.0.0.1:port, anything else fails; exec of `["fail"]` fails to start.
pub struct LocalBackend {
    pub record: Arc<Record>,
}

impl LocalBackend {
    fn spawn(
        &self,
        argv: Vec<String>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<Process, String> {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        if program == "fail" {
            return Err("runtime exploded".to_string());
        }
        let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(pipe(stdin))
            .stdout(pipe(stdout))
            .stderr(pipe(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(pid) = child.id() {
            self.record.pids.lock().unwrap().push(pid);
        }
        self.record.started.fetch_add(1, Ordering::SeqCst);
        let probe = DropProbe(self.record.clone());
        let record = self.record.clone();
        let stdin_pipe = child.stdin.take();
        let stdout_pipe = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        Ok(Process {
            stdin: stdin_pipe.map(|p| Box::pin(p) as Pin<Box<dyn AsyncWrite + Send>>),
            stdout: stdout_pipe.map(|p| Box::pin(p) as Pin<Box<dyn AsyncRead + Send>>),
            stderr: stderr_pipe.map(|p| Box::pin(p) as Pin<Box<dyn AsyncRead + Send>>),
            resize: Some(Box::new(move |w, h| {
                record.resizes.lock().unwrap().push((w, h));
                record.changed.notify_waiters();
            })),
            exit: Box::pin(async move {
                let _probe = probe;
                let status = child.wait().await.map_err(|e| e.to_string())?;
                Ok(status.code().unwrap_or(128 + 9))
            }),
        })
    }
}

impl Backend for LocalBackend {
    fn exec(&self, t: ExecTarget) -> BoxFuture<'_, Result<Process, String>> {
        Box::pin(async move { self.spawn(t.cmd, t.stdin, t.stdout, t.stderr) })
    }

    fn attach(&self, t: AttachTarget) -> BoxFuture<'_, Result<Process, String>> {
        Box::pin(async move {
            let argv = vec!["sh".to_string(), "-c".to_string(), t.container_id];
            self.spawn(argv, t.stdin, t.stdout, t.stderr)
        })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<TcpStream, String>> {
        let pod = pod_sandbox_id.to_string();
        Box::pin(async move {
            self.record
                .port_forwards
                .lock()
                .unwrap()
                .push((pod.clone(), port));
            if pod != "pod-1" {
                return Err(format!("pod {pod} not found"));
            }
            TcpStream::connect(("127.0.0.1", port))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

pub struct Harness {
    pub server: StreamingServer,
    pub record: Arc<Record>,
    pub stop: Option<oneshot::Sender<()>>,
    pub serving: tokio::task::JoinHandle<()>,
}

pub async fn start() -> Harness {
    start_with(StreamingConfig::default()).await
}

pub async fn start_with(config: StreamingConfig) -> Harness {
    let record = Arc::new(Record::default());
    let backend = Arc::new(LocalBackend {
        record: record.clone(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let (server, serving) = StreamingServer::bind(config, backend, async {
        let _ = stopped.await;
    })
    .await
    .expect("bind");
    let serving = tokio::spawn(serving);
    Harness {
        server,
        record,
        stop: Some(stop),
        serving,
    }
}

pub fn exec(cmd: &[&str], stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecTarget {
    ExecTarget {
        container_id: "c1".to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout,
        stderr,
    }
}

/// Splits `http://host:port/path?query` into the address and the request target.
pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    (host.parse().expect("address"), path.to_string())
}

/// A raw HTTP/1.1 response head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends a request with `headers` and reads the response head (byte by byte, so nothing after
/// it is consumed); for non-101 answers also the body.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    target: &str,
    headers: &[(&str, &str)],
) -> Head {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await.expect("response head");
        head.push(b[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut head = Head {
        status,
        headers,
        body: String::new(),
    };
    if status != 101 {
        let len: usize = head
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await.unwrap();
        head.body = String::from_utf8(body).unwrap();
    }
    head
}

/// A SPDY upgrade offering `protocols`; the session on success, the refusal otherwise.
pub async fn spdy_connect(url: &str, protocols: &[&str]) -> Result<(Session, String), Head> {
    let (addr, target) = split_url(url);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
    for p in protocols {
        headers.push(("X-Stream-Protocol-Version", p));
    }
    let head = request(&mut tcp, &target, &headers).await;
    if head.status != 101 {
        return Err(head);
    }
    let chosen = head
        .header("x-stream-protocol-version")
        .unwrap_or("")
        .to_string();
    Ok((Session::client(tcp, SessionConfig::default()), chosen))
}

pub async fn open(
    session: &Session,
    kind: &str,
    extra: &[(&str, &str)],
) -> (RecvStream, SendStream) {
    let mut headers: Headers = vec![("streamtype".to_string(), kind.to_string())];
    for (k, v) in extra {
        headers.push((k.to_string(), v.to_string()));
    }
    session
        .open_stream(headers, false)
        .await
        .expect("open stream")
        .split()
}

pub async fn read_all<R: AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = r.read_to_end(&mut out).await;
    out
}

/// The result of an exec over SPDY.
#[derive(Debug)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub status: String,
}

/// Runs a whole SPDY exec/attach session the way client-go does: error stream first, then the
/// others; stdin written then closed.
pub async fn spdy_run(
    url: &str,
    protocol: &str,
    input: Option<&[u8]>,
    stdout: bool,
    stderr: bool,
) -> Ran {
    let (session, chosen) = spdy_connect(url, &[protocol]).await.expect("upgrade");
    assert_eq!(chosen, protocol);
    let (error, _error_send) = open(&session, "error", &[]).await;
    let stdin = match input {
        Some(_) => Some(open(&session, "stdin", &[]).await),
        None => None,
    };
    let out = if stdout {
        Some(open(&session, "stdout", &[]).await)
    } else {
        None
    };
    let err = if stderr {
        Some(open(&session, "stderr", &[]).await)
    } else {
        None
    };
    if let (Some((_, mut send)), Some(data)) = (stdin, input) {
        send.send(data).await.unwrap();
        send.finish().await.unwrap();
    }
    let (stdout, stderr, status) = tokio::join!(
        async {
            match out {
                Some((recv, _)) => read_all(recv).await,
                None => Vec::new(),
            }
        },
        async {
            match err {
                Some((recv, _)) => read_all(recv).await,
                None => Vec::new(),
            }
        },
        read_all(error),
    );
    Ran {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        status: String::from_utf8_lossy(&status).into_owned(),
    }
}

pub type Ws = WebSocketStream<TcpStream>;

/// A WebSocket connection offering `protocols` (none: no header).
pub async fn ws_connect(url: &str, protocols: &[&str]) -> Result<(Ws, Option<String>), String> {
    let (addr, target) = split_url(url);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}{target}")
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    let (ws, response) = tokio_tungstenite::client_async(req, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    Ok((ws, chosen))
}

pub async fn ws_send(ws: &mut Ws, message: Message) {
    poll_fn(|cx| Pin::new(&mut *ws).poll_ready(cx))
        .await
        .unwrap();
    Pin::new(&mut *ws).start_send(message).unwrap();
    poll_fn(|cx| Pin::new(&mut *ws).poll_flush(cx))
        .await
        .unwrap();
}

/// Next data message (Ping/Pong skipped); None at close or EOF.
pub async fn ws_recv(ws: &mut Ws) -> Option<Message> {
    loop {
        match poll_fn(|cx| Pin::new(&mut *ws).poll_next(cx)).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(m)) => return Some(m),
        }
    }
}

/// Collects channel-framed binary messages until the server closes: (channel, payload) list.
pub async fn ws_collect(ws: &mut Ws) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(20), ws_recv(ws))
        .await
        .expect("websocket timed out")
    {
        match m {
            Message::Binary(b) => out.push((b[0], b[1..].to_vec())),
            Message::Text(t) => {
                use base64::Engine;
                let t = t.as_str();
                let ch = t.as_bytes()[0] - b'0';
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&t[1..])
                    .unwrap();
                out.push((ch, data));
            }
            _ => {}
        }
    }
    out
}

/// Concatenated payload of one channel.
pub fn channel(messages: &[(u8, Vec<u8>)], ch: u8) -> Vec<u8> {
    messages
        .iter()
        .filter(|(c, _)| *c == ch)
        .flat_map(|(_, d)| d.clone())
        .collect()
}

pub fn binary(ch: u8, data: &[u8]) -> Message {
    let mut v = vec![ch];
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

/// Whether a pid still runs (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Polls `cond` until true or the timeout.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
