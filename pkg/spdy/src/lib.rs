//! SPDY/3.1 for the Kubernetes streaming protocols (exec, attach, port-forward).
//!
//! kubectl, the apiserver and kubelet speak SPDY/3.1 through Go's `moby/spdystream` after an
//! HTTP/1.1 `Upgrade: SPDY/3.1`; no Rust crate implements the server side, so this one does:
//!
//! - [`frame`]: parsing and encoding of every SPDY/3 frame, incremental, bounded, panic-free.
//! - [`headers`]: name/value header blocks with the session-wide zlib contexts and the SPDY/3
//!   dictionary ([`DICTIONARY`]).
//! - [`Session`]: an async session (tokio) in server or client role with streams, half-close,
//!   RST_STREAM, flow control tuned for spdystream's lack of it, PING, GOAWAY and stream limits.
//!   Its module documentation lists what the real peer does and how this crate copes.
//!
//! # The HTTP upgrade (done by the caller, e.g. pkg/streaming)
//!
//! As Kubernetes does it (`k8s.io/apimachinery/pkg/util/httpstream{,/spdy}`):
//!
//! - The client sends (kubectl: `POST`) with `Connection: Upgrade`, `Upgrade: SPDY/3.1` and one
//!   `X-Stream-Protocol-Version` header line per protocol it supports, most preferred first
//!   (exec/attach: `v4.channel.k8s.io`, `v3.channel.k8s.io`, `v2.channel.k8s.io`,
//!   `channel.k8s.io`; port-forward: `portforward.k8s.io`). Values may also be comma-separated.
//! - The server checks that `Connection` contains `upgrade` and `Upgrade` contains `spdy/3.1`
//!   (both case-insensitive), else `400`. Negotiation picks the **first client protocol** the
//!   server also supports. No `X-Stream-Protocol-Version` at all: error. No common protocol:
//!   `403 Forbidden` with one `X-Accepted-Stream-Protocol-Versions` header per server protocol.
//! - Success: `101 Switching Protocols` with `Connection: Upgrade`, `Upgrade: SPDY/3.1` and
//!   `X-Stream-Protocol-Version: <chosen>`. The client requires status 101 and those two headers
//!   (case-insensitive), then speaks SPDY on the same connection. Bytes the HTTP server already
//!   buffered past the request belong to the SPDY session (hyper's `Upgraded` keeps them).
//! - Then `Session::server(upgraded, SessionConfig::default())`. The client opens every stream
//!   (`streamtype`: `error`, `stdin`, `stdout`, `stderr`, `resize`; port-forward `error`/`data`
//!   with `port` and `requestid`), one at a time, waiting up to 30 s for each SYN_REPLY: reply at
//!   once. When the client is done it resets (RST_STREAM CANCEL) all its streams and sends
//!   GOAWAY, so a reset at the end is normal (`recv()` gives `None`, `AsyncRead` an
//!   `io::ErrorKind::ConnectionReset`). When the server is done, finish the streams, then
//!   [`Session::go_away`] (the Go side stops reading as soon as it sees GOAWAY).

mod dictionary;
mod error;
pub mod frame;
pub mod headers;
mod session;

pub use error::SpdyError;
pub use frame::{GoAwayStatus, RstStatus};
pub use headers::{DICTIONARY, Headers};
pub use session::{RecvStream, SendStream, Session, SessionConfig, Stream};
