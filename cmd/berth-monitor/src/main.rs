//! berth-monitor: the per-pod process that parents a pod's containers, holds their stdio, writes their
//! CRI logs and records their exits, so containers outlive berthd restarts.
//!
//! berthd starts it with the pod's first container (see README's feature table for the status of
//! container support); it is not meant to be run by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--version" | "-V") => {
            println!("berth-monitor {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "berth-monitor {}: started by berthd for each pod with containers; \
                 container support is not implemented yet",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::FAILURE
        }
    }
}
