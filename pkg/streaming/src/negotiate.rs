//! Which protocol a request speaks, decided from its headers the way Kubernetes decides.
//!
//! SPDY (`httpstream.Handshake`): the client lists `X-Stream-Protocol-Version`s (one or more
//! headers, comma-separated values allowed); the first one in the client's order that the server
//! supports wins (Kubernetes iterates the client's list, and clients list newest first); none in
//! common is a 403 listing both sides, no header at all a 400. WebSocket (`wsstream`): the same
//! rule on `Sec-WebSocket-Protocol`, where offering nothing means plain `channel.k8s.io`.

use hyper::HeaderMap;
use hyper::StatusCode;

/// SPDY exec/attach protocols, newest first (kubelet's `SupportedStreamingProtocols`).
pub(crate) const SPDY_REMOTECOMMAND: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// SPDY port-forward protocols.
pub(crate) const SPDY_PORTFORWARD: &[&str] = &["portforward.k8s.io"];

/// WebSocket exec/attach subprotocols.
pub(crate) const WS_REMOTECOMMAND: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// WebSocket port-forward subprotocols: kubelet's two, the `v4.portforward.k8s.io` alias, and
/// SPDY tunnelled in WebSocket binary messages (kubectl's `PortForwardWebsockets`).
pub(crate) const WS_PORTFORWARD: &[&str] = &[
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "v4.portforward.k8s.io",
    SPDY_TUNNEL,
];
pub(crate) const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// A request refused before any upgrade: the HTTP status and a human-readable body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: StatusCode,
    pub message: String,
    /// `X-Accepted-Stream-Protocol-Versions` values to send back (SPDY mismatch only).
    pub accepted: &'static [&'static str],
}

impl Rejection {
    pub(crate) fn bad_request(message: impl Into<String>) -> Rejection {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            accepted: &[],
        }
    }
}

/// The exec/attach protocol version, which fixes the streams expected and the status format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub(crate) fn from_protocol(name: &str) -> Version {
        match name {
            "v5.channel.k8s.io" => Version::V5,
            "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => Version::V4,
            "v3.channel.k8s.io" => Version::V3,
            "v2.channel.k8s.io" => Version::V2,
            _ => Version::V1,
        }
    }
}

/// Comma-separated values of every `name` header, trimmed, empties dropped.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Go's `%v` of a `[]string`.
fn go_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("[{}]", items.join(" "))
}

/// `Connection` includes the `upgrade` token.
fn connection_upgrade(headers: &HeaderMap) -> bool {
    header_list(headers, "connection")
        .iter()
        .any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// `Upgrade: websocket` with `Connection: upgrade` (wsstream's `IsWebSocketRequest`).
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    header_str(headers, "upgrade").eq_ignore_ascii_case("websocket") && connection_upgrade(headers)
}

/// `httpstream.Handshake`: the chosen `X-Stream-Protocol-Version`.
pub(crate) fn spdy_protocol(
    headers: &HeaderMap,
    server: &'static [&'static str],
) -> Result<&'static str, Rejection> {
    let client = header_list(headers, "x-stream-protocol-version");
    if client.is_empty() {
        return Err(Rejection::bad_request(
            "unable to upgrade: X-Stream-Protocol-Version is required",
        ));
    }
    for offered in &client {
        if let Some(chosen) = server.iter().find(|s| **s == offered.as_str()) {
            return Ok(chosen);
        }
    }
    Err(Rejection {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "unable to upgrade: unable to negotiate protocol: client supports {}, server accepts {}",
            go_list(&client),
            go_list(server)
        ),
        accepted: server,
    })
}

/// The SPDY upgrade headers (`Connection: Upgrade`, `Upgrade: SPDY/3.1`) are there.
pub(crate) fn spdy_upgrade(headers: &HeaderMap) -> Result<(), Rejection> {
    let upgrade = header_str(headers, "upgrade").to_ascii_lowercase();
    if connection_upgrade(headers) && upgrade.contains("spdy/3.1") {
        Ok(())
    } else {
        Err(Rejection::bad_request(format!(
            "unable to upgrade: missing upgrade headers in request (Connection: {:?}, Upgrade: {:?}); \
             expected Connection: Upgrade and Upgrade: SPDY/3.1 or websocket",
            header_str(headers, "connection"),
            header_str(headers, "upgrade"),
        )))
    }
}

/// The WebSocket subprotocol: `None` when the client offered none (plain `channel.k8s.io`
/// semantics, and no `Sec-WebSocket-Protocol` in the answer).
pub(crate) fn websocket_protocol(
    headers: &HeaderMap,
    server: &'static [&'static str],
) -> Result<Option<&'static str>, Rejection> {
    let client = header_list(headers, "sec-websocket-protocol");
    if client.is_empty() {
        return Ok(None);
    }
    for offered in &client {
        if let Some(chosen) = server.iter().find(|s| **s == offered.as_str()) {
            return Ok(Some(chosen));
        }
    }
    Err(Rejection {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "unable to upgrade websocket connection: requested protocol(s) are not supported: {}; supports {}",
            go_list(&client),
            go_list(server)
        ),
        accepted: &[],
    })
}

/// The `Sec-WebSocket-Accept` for the request's key, after checking the version.
pub(crate) fn websocket_accept(headers: &HeaderMap) -> Result<String, Rejection> {
    if header_str(headers, "sec-websocket-version").trim() != "13" {
        return Err(Rejection::bad_request(
            "unable to upgrade websocket connection: Sec-WebSocket-Version must be 13",
        ));
    }
    let key = header_str(headers, "sec-websocket-key").trim();
    if key.is_empty() {
        return Err(Rejection::bad_request(
            "unable to upgrade websocket connection: Sec-WebSocket-Key is required",
        ));
    }
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn spdy_picks_the_first_client_protocol_the_server_knows() {
        let h = headers(&[
            ("x-stream-protocol-version", "v5.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
        ]);
        assert_eq!(
            spdy_protocol(&h, SPDY_REMOTECOMMAND).unwrap(),
            "v4.channel.k8s.io"
        );
        let h = headers(&[(
            "x-stream-protocol-version",
            "v2.channel.k8s.io, channel.k8s.io",
        )]);
        assert_eq!(
            spdy_protocol(&h, SPDY_REMOTECOMMAND).unwrap(),
            "v2.channel.k8s.io"
        );
    }

    #[test]
    fn spdy_mismatch_is_403_and_missing_is_400() {
        let h = headers(&[("x-stream-protocol-version", "v9.channel.k8s.io")]);
        let r = spdy_protocol(&h, SPDY_PORTFORWARD).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            r.message,
            "unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io], server accepts [portforward.k8s.io]"
        );
        let r = spdy_protocol(&HeaderMap::new(), SPDY_PORTFORWARD).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn websocket_detection_and_protocols() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
        ]);
        assert!(is_websocket(&h));
        assert_eq!(
            websocket_protocol(&h, WS_REMOTECOMMAND).unwrap(),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(
            websocket_protocol(&HeaderMap::new(), WS_REMOTECOMMAND).unwrap(),
            None
        );
        let bad = headers(&[("sec-websocket-protocol", "nope")]);
        assert_eq!(
            websocket_protocol(&bad, WS_REMOTECOMMAND)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert!(!is_websocket(&headers(&[("upgrade", "websocket")])));
    }

    #[test]
    fn accept_key_from_the_rfc() {
        let h = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(
            websocket_accept(&h).unwrap(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
