//! Request routing: token lookup, protocol negotiation, the `101 Switching Protocols` answer,
//! and the session task that takes over the upgraded connection.
//!
//! The order of checks is kubelet's: the token is consumed first (so even a malformed request
//! uses it up), then the transport is chosen (WebSocket when `Upgrade: websocket`, SPDY
//! otherwise), then the protocol is negotiated. Every refusal is a plain-text HTTP error.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::guard::SessionGuard;
use crate::negotiate::{self, Rejection};
use crate::remotecommand::Target;
use crate::server::Shared;
use crate::token::Request as Pending;
use crate::ws::{self, Codec};
use crate::{spdy_exec, spdy_portforward, ws_exec, ws_portforward};

/// What runs on the upgraded connection.
enum Session {
    SpdyExec(&'static str, Target),
    SpdyPortForward(String),
    WsExec(Option<&'static str>, Target),
    WsPortForward(Codec, String, Vec<u16>),
    WsTunnel(String),
}

impl Session {
    fn name(&self) -> &'static str {
        match self {
            Session::SpdyExec(_, Target::Exec(_)) => "spdy exec",
            Session::SpdyExec(_, Target::Attach(_)) => "spdy attach",
            Session::SpdyPortForward(_) => "spdy port-forward",
            Session::WsExec(_, Target::Exec(_)) => "websocket exec",
            Session::WsExec(_, Target::Attach(_)) => "websocket attach",
            Session::WsPortForward(..) => "websocket port-forward",
            Session::WsTunnel(_) => "spdy-in-websocket port-forward",
        }
    }
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn rejected(r: Rejection) -> Response<Full<Bytes>> {
    let mut response = text(r.status, &r.message);
    for accepted in r.accepted {
        response.headers_mut().append(
            "x-accepted-stream-protocol-versions",
            HeaderValue::from_static(accepted),
        );
    }
    response
}

pub(crate) fn handle(shared: &Arc<Shared>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let mut parts = req.uri().path().trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    }
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            "404 page not found: unknown, already used or expired streaming token",
        )
    };
    let Some(pending) = shared.tokens.consume(token) else {
        return not_found();
    };
    if pending.kind() != kind {
        return not_found();
    }
    let websocket = negotiate::is_websocket(req.headers());
    let prepared = match (pending, websocket) {
        (Pending::Exec(t), false) => spdy(&req, negotiate::SPDY_REMOTECOMMAND)
            .map(|(r, p)| (r, Session::SpdyExec(p, Target::Exec(t)))),
        (Pending::Attach(t), false) => spdy(&req, negotiate::SPDY_REMOTECOMMAND)
            .map(|(r, p)| (r, Session::SpdyExec(p, Target::Attach(t)))),
        (Pending::PortForward(pod), false) => {
            spdy(&req, negotiate::SPDY_PORTFORWARD).map(|(r, _)| (r, Session::SpdyPortForward(pod)))
        }
        (Pending::Exec(t), true) => websocket_upgrade(&req, negotiate::WS_REMOTECOMMAND)
            .map(|(r, p)| (r, Session::WsExec(p, Target::Exec(t)))),
        (Pending::Attach(t), true) => websocket_upgrade(&req, negotiate::WS_REMOTECOMMAND)
            .map(|(r, p)| (r, Session::WsExec(p, Target::Attach(t)))),
        (Pending::PortForward(pod), true) => websocket_upgrade(&req, negotiate::WS_PORTFORWARD)
            .and_then(|(r, p)| match p {
                Some(negotiate::SPDY_TUNNEL) => Ok((r, Session::WsTunnel(pod))),
                p => {
                    let ports = ws_portforward::ports(req.uri().query())?;
                    let codec = if p == Some("v4.base64.channel.k8s.io") {
                        Codec::Base64
                    } else {
                        Codec::Binary
                    };
                    Ok((r, Session::WsPortForward(codec, pod, ports)))
                }
            }),
    };
    let (response, session) = match prepared {
        Ok(prepared) => prepared,
        Err(r) => {
            tracing::debug!(status = %r.status, message = %r.message, "streaming request refused");
            return rejected(r);
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let shared2 = shared.clone();
    shared.tasks.spawn(async move {
        let guard = SessionGuard::new(&shared2.shutdown, shared2.config.idle_timeout);
        let upgraded = tokio::select! {
            upgraded = upgrade => upgraded,
            () = guard.done() => return,
        };
        let io = match upgraded {
            Ok(upgraded) => guard.wrap(TokioIo::new(upgraded)),
            Err(e) => {
                tracing::debug!(error = %e, "streaming upgrade failed");
                return;
            }
        };
        let started = std::time::Instant::now();
        let name = session.name();
        tracing::debug!(session = name, "streaming session started");
        guard.run(run(&shared2, io, session)).await;
        tracing::debug!(
            session = name,
            seconds = started.elapsed().as_secs_f64(),
            "streaming session ended"
        );
    });
    response
}

async fn run<T>(shared: &Shared, io: T, session: Session)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let backend = shared.backend.clone();
    let timeout = shared.config.stream_creation_timeout;
    match session {
        Session::SpdyExec(protocol, target) => {
            spdy_exec::serve(io, protocol, backend, target, timeout).await
        }
        Session::SpdyPortForward(pod) => spdy_portforward::serve(io, backend, pod, timeout).await,
        Session::WsExec(protocol, target) => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws::config())).await;
            ws_exec::serve(ws, protocol, backend, target).await
        }
        Session::WsPortForward(codec, pod, ports) => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws::config())).await;
            ws_portforward::serve(ws, codec, backend, pod, ports).await
        }
        Session::WsTunnel(pod) => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws::config())).await;
            ws_portforward::serve_tunnel(ws, backend, pod, timeout).await
        }
    }
}

/// SPDY: negotiate, check the upgrade headers, answer 101.
fn spdy(
    req: &Request<Incoming>,
    protocols: &'static [&'static str],
) -> Result<(Response<Full<Bytes>>, &'static str), Rejection> {
    let protocol = negotiate::spdy_protocol(req.headers(), protocols)?;
    negotiate::spdy_upgrade(req.headers())?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    headers.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    Ok((response, protocol))
}

/// WebSocket: negotiate the subprotocol, answer 101 with the accept key.
fn websocket_upgrade(
    req: &Request<Incoming>,
    protocols: &'static [&'static str],
) -> Result<(Response<Full<Bytes>>, Option<&'static str>), Rejection> {
    let protocol = negotiate::websocket_protocol(req.headers(), protocols)?;
    let accept = negotiate::websocket_accept(req.headers())?;
    let accept = HeaderValue::from_str(&accept)
        .map_err(|_| Rejection::bad_request("invalid Sec-WebSocket-Key"))?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert("sec-websocket-accept", accept);
    if let Some(protocol) = protocol {
        headers.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    Ok((response, protocol))
}
