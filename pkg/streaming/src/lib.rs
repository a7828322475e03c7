//! The CRI streaming server: the HTTP endpoint behind the URLs that CRI `Exec`, `Attach` and
//! `PortForward` return.
//!
//! kubelet asks berthd for a URL, then it (or kubectl, through the apiserver) connects to that URL
//! and speaks one of the Kubernetes streaming protocols: SPDY/3.1 (`v4.channel.k8s.io` ... for
//! exec/attach, `portforward.k8s.io` for port-forward) or WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`, the base64 variants, ...). This crate speaks all of them the way kubelet's
//! own streaming server does, so any Kubernetes client works unchanged.
//!
//! It knows nothing of containers: a [`Backend`] (implemented in `pkg/cri`) starts an exec,
//! attaches, or dials a port in a pod, and hands back plain async byte streams ([`Process`],
//! [`tokio::net::TcpStream`]). The URL carries a random single-use token that maps to the request
//! the CRI call described, so the URL is all a client needs and nothing else is trusted from it.
//!
//! Layout: [`StreamingServer`] (`server.rs`) binds, serves HTTP and routes; `token.rs` keeps the
//! pending requests; `negotiate.rs` picks the protocol; `spdy_*.rs` and `ws*.rs` run sessions;
//! `remotecommand.rs` is the exec/attach logic both transports share; `status.rs` formats the
//! final status; `guard.rs` enforces the idle timeout and tears sessions down.

mod backend;
mod config;
mod error;
mod guard;
mod handler;
mod negotiate;
mod portforward;
mod remotecommand;
mod server;
mod spdy_exec;
mod spdy_portforward;
mod status;
mod token;
mod ws;
mod ws_exec;
mod ws_portforward;

pub use backend::{AttachTarget, Backend, BoxFuture, ExecTarget, Process};
pub use config::{StreamingConfig, TlsFiles};
pub use error::StreamingError;
pub use server::StreamingServer;
pub use token::MAX_IN_FLIGHT;
