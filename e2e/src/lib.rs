//! End-to-end test rig: a real berthd on a private root, state dir, socket and CNI config, CRI clients
//! for it, and a leak check that every test runs after stopping it.
//!
//! Every test does `let berthd = Berthd::start("name")?; ... berthd.finish();` — `finish` stops berthd
//! with SIGTERM, asserts a clean exit, and asserts nothing is left behind (mounts, network namespaces,
//! cgroups, processes and berth-monitors, OCI runtime state, CNI IP reservations). Container tests use
//! [`containers`] on top of the pod helpers in [`pods`].

// The rig is test code: a failed unwrap or expect is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod berthd;
pub mod chaos;
pub mod containerd;
pub mod containers;
mod http;
pub mod leaks;
pub mod oci_layout;
pub mod peers;
pub mod pods;
pub mod prometheus;
pub mod registry;
pub mod security;
pub mod streaming;
pub mod workload;

pub use berthd::{Berthd, Options, berth_binary, berthd_binary, wait_timeout};
pub use http::http_get;
