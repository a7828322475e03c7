//! The stdin-EOF sessions (issue 13) that `tests/streaming_stdin_eof.rs` holds Berth to and
//! `tests/streaming_stdin_eof_containerd.rs` checks on containerd, the reference: written once,
//! so that both send the same input through the Go SPDY client ([`super::go_spdy`], what kubectl
//! uses) and expect the same output.

use std::time::Duration;

use anyhow::{Context, ensure};

use super::StreamOptions;
use super::go_spdy::{GoSpdyClient, GoSpdyOptions, GoSpdyResult};

/// Stdin, stdout and stderr, no tty: as `kubectl attach -i` and `kubectl exec -i` ask.
pub const ALL_STREAMS: StreamOptions = StreamOptions {
    stdin: true,
    stdout: true,
    stderr: true,
    tty: false,
};

/// How soon a session must end once its stdin is closed and the command is done.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Runs one session with the Go client; fails (with what the client saw) unless the session ended
/// by itself, within [`PROMPT`] of stdin's FIN.
pub async fn go_session(
    client: &GoSpdyClient,
    url: &str,
    options: &GoSpdyOptions,
) -> anyhow::Result<GoSpdyResult> {
    let out = client.run(url, options).await.context("Go SPDY client")?;
    // The client exits 0 only when the session ended: no error, no timeout.
    ensure!(
        out.exit_code == 0 && !out.timed_out && out.error.is_empty(),
        "the session did not end: {out:?}"
    );
    ensure!(
        out.ended_after < PROMPT,
        "the session ended {:?} after stdin was closed: {out:?}",
        out.ended_after
    );
    Ok(out)
}

/// A session both runs make: what the Go client sends, and the stdout it must see.
pub struct EofSession {
    pub options: GoSpdyOptions,
    /// All of stdout, exactly.
    pub stdout: &'static str,
}

impl EofSession {
    /// Attach to a `stdin_once` container running `sh`: `echo hello`, then stdin's FIN, which ends
    /// `sh` (so the container) and the session.
    pub fn attach_stdin_once_sh() -> EofSession {
        EofSession {
            options: GoSpdyOptions {
                input: "echo hello\n".into(),
                ..Default::default()
            },
            stdout: "hello\n",
        }
    }

    /// Attach to a container echoing lines as `got <line>`, without `stdin_once`: FIN once the
    /// reply came back ends the attachment, not the container.
    pub fn attach_line_reader() -> EofSession {
        EofSession {
            options: GoSpdyOptions {
                input: "one\n".into(),
                close_after: Some("got one\n".into()),
                ..Default::default()
            },
            stdout: "got one\n",
        }
    }

    /// Exec `cat`: the line comes back, then FIN ends `cat` and the session.
    pub fn exec_cat() -> EofSession {
        EofSession {
            options: GoSpdyOptions {
                input: "data-line\n".into(),
                close_after: Some("data-line\n".into()),
                ..Default::default()
            },
            stdout: "data-line\n",
        }
    }

    /// Fails unless `out` has exactly the expected stdout and a Success status.
    pub fn check(&self, out: &GoSpdyResult) -> anyhow::Result<()> {
        ensure!(out.stdout == self.stdout && out.succeeded(), "{out:?}");
        Ok(())
    }
}
