//! Lets a unix-socket gRPC server accept requests whatever their HTTP/2 `:authority` says.
//!
//! Over a unix socket there is no host, so clients put something else in `:authority`: grpc-go as
//! kubelet 1.26–1.29 and crictl ≤ 1.29 dial it sends the socket path itself
//! (`/run/berth/berth.sock`), grpcio ≥ 1.57 the percent-encoded path, grpc-java the raw path,
//! others `localhost`, an empty string or nothing. h2 (under hyper and tonic) parses `:authority`
//! as a URI authority and resets the stream with `PROTOCOL_ERROR` when that fails, before the
//! server sees the request; h2 has no option to relax that. containerd and CRI-O accept any
//! `:authority` on their sockets, and so must Berth.
//!
//! [`AuthorityFilter`] wraps each accepted connection and rewrites only the client's header blocks:
//! it decodes every HEADERS/CONTINUATION block with HPACK (its own decoder; the client's dynamic
//! table is tracked), leaves out an `:authority` that h2 would refuse (checked with the same
//! `http::uri::Authority` parser h2 uses), and re-encodes the block for h2 as literals that never
//! touch h2's dynamic table. Every other byte, header and frame goes through unchanged, so h2
//! still checks everything else it checks (pseudo-headers, header names, framing, flow control).
//! A request whose authority was dropped reaches the server as one without an authority, which
//! HTTP/2 allows.
//!
//! Whatever the filter cannot parse (a header block that fails to decode, an oversized frame, a
//! CONTINUATION out of place) is handed to h2 exactly as received and the rest of the connection
//! is passed through untouched, so h2 reports the error it would have reported anyway.

mod hpack;
mod huffman;
mod io;
mod rewrite;

pub use io::AuthorityFilter;
pub use rewrite::{DEFAULT_MAX_FRAME_SIZE, Rewriter};
