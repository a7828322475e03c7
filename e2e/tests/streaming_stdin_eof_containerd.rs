//! What `streaming_stdin_eof.rs` expects of Berth, checked against the reference: containerd 1.6's
//! CRI plugin, driven by the same Go client on spdystream (what kubectl uses) with the same sessions
//! (`berth_e2e::streaming::stdin_eof`). Ignored by default (it needs a running containerd and no
//! berthd); to rerun it:
//!
//! ```sh
//! hack/registry.sh start && hack/test-images.sh        # the test registry on 127.0.0.1:5000
//! export BERTH_BENCH_DIR=/tmp/berth-stream-ctrd        # a private containerd, stopped afterwards
//! hack/bench/containerd.sh start && eval "$(hack/bench/containerd.sh env)"
//! cargo test -p berth-e2e --test streaming_stdin_eof_containerd -- --ignored --nocapture
//! hack/bench/containerd.sh stop
//! ```

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure};
use berth_cri_api::v1 as cri;
use berth_e2e::containerd::{Checks, ReferencePod, container_config};
use berth_e2e::containers::busybox;
use berth_e2e::streaming::cri::{attach_url, exec_url};
use berth_e2e::streaming::go_spdy::GoSpdyClient;
use berth_e2e::streaming::stdin_eof::{ALL_STREAMS, EofSession, go_session};

/// A busybox container with stdin open, closed at its first attachment's EOF if `stdin_once`.
fn stdin_container(name: &str, command: &[&str], stdin_once: bool) -> cri::ContainerConfig {
    let mut config = container_config(name, &busybox(), command);
    config.stdin = true;
    config.stdin_once = stdin_once;
    config
}

/// Runs one of the sessions Berth's test makes, with the same checks on how it ended and on its
/// output; prints what the Go client saw.
async fn eof_session(url: &str, session: EofSession) -> anyhow::Result<()> {
    let client = GoSpdyClient::get(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let out = go_session(client, url, &session.options).await?;
    println!("     {out:?}");
    session.check(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start); see the file's doc"]
async fn containerd_ends_sessions_at_stdin_eof_as_berth_does() {
    ReferencePod::run("stdin-eof-ref", &[busybox()])
        .await
        .check_then_remove(Duration::from_secs(120), checks)
        .await;
}

async fn checks(r: &mut ReferencePod, c: &mut Checks) {
    let once = r
        .run_container(stdin_container("once", &["sh"], true))
        .await;
    let result = async {
        let url = attach_url(&mut r.rt, &once, ALL_STREAMS).await?;
        eof_session(&url, EofSession::attach_stdin_once_sh()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (state, code) = r.state(&once).await?;
        ensure!(
            state == cri::ContainerState::ContainerExited as i32 && code == 0,
            "state {state}, exit code {code}"
        );
        Ok(())
    }
    .await;
    c.check(
        "stdin_once attach: stdin FIN ends sh and the session",
        result,
    );

    let reader = r
        .run_container(stdin_container(
            "reader",
            &["sh", "-c", "while read l; do echo \"got $l\"; done"],
            false,
        ))
        .await;
    let result = async {
        let url = attach_url(&mut r.rt, &reader, ALL_STREAMS).await?;
        eof_session(&url, EofSession::attach_line_reader()).await?;
        let (state, _) = r.state(&reader).await?;
        if state != cri::ContainerState::ContainerRunning as i32 {
            bail!("the container stopped (state {state})");
        }
        Ok(())
    }
    .await;
    c.check(
        "attach without stdin_once: stdin FIN ends the attachment only",
        result,
    );

    let result = async {
        let url = exec_url(&mut r.rt, &reader, &["cat"], ALL_STREAMS).await?;
        eof_session(&url, EofSession::exec_cat()).await
    }
    .await;
    c.check("exec cat: stdin FIN ends cat and the session", result);
}
