//! `berth kill`, `wait`, `start -a`, `top` and `cp` against a real berthd, and its
//! `berth.containers.v1` service's error codes through a plain gRPC client. `cp` archives are
//! checked by a peer that is not Berth's: Python's `tarfile` reads what CopyFrom writes and writes
//! what CopyTo reads. Every test ends with the leak check.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cp;
mod kill;
mod top;
mod userns;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_api::containers::v1::containers_client::ContainersClient;
use berth_e2e::registry::SHARED;
use berth_e2e::{Berthd, berth_binary, wait_timeout};
use serde_json::Value;

/// Long enough for a debug berth on a busy 2-core machine; a hang still fails the test.
pub const LONG: Duration = Duration::from_secs(60);

pub fn busybox() -> String {
    format!("{SHARED}/berth-test/busybox:latest")
}

/// Runs berth with `input` on stdin; returns (exit code, stdout bytes, stderr).
pub fn berth_io(berthd: &Berthd, args: &[&str], input: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = Command::new(berth_binary().expect("the berth binary"))
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning berth");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_timeout(&mut child, LONG).expect("berth to exit");
    let _ = writer.join();
    (
        status.code(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// `berth ARGS` that must succeed; its stdout.
pub fn ok(berthd: &Berthd, args: &[&str]) -> String {
    let (ok, out, err) = berthd.cli(args).expect("running berth");
    assert!(ok, "berth {args:?}: {err}");
    out
}

/// `berth ARGS` that must fail with berth's own code (125); its stderr.
pub fn fails(berthd: &Berthd, args: &[&str]) -> String {
    let (code, out, err) = berth_io(berthd, args, b"");
    assert_eq!(
        code,
        Some(125),
        "berth {args:?}: {}{err}",
        String::from_utf8_lossy(&out)
    );
    err
}

pub fn run_detached(berthd: &Berthd, name: &str, script: &str) -> String {
    let logs = berthd.dir.join("cli-logs");
    let logs = logs.to_string_lossy();
    let id = ok(
        berthd,
        &[
            "run",
            "-d",
            "--name",
            name,
            "--log-dir",
            &logs,
            &busybox(),
            "sh",
            "-c",
            script,
        ],
    );
    id.trim().to_string()
}

pub fn inspect(berthd: &Berthd, id: &str) -> Value {
    serde_json::from_str(&ok(berthd, &["inspect", id])).expect("inspect prints JSON")
}

pub fn remove_everything(berthd: &Berthd) {
    for id in ok(berthd, &["ps", "-a", "-q"]).split_whitespace() {
        ok(berthd, &["rm", "-f", id]);
    }
    for pod in ok(berthd, &["pods", "-q"]).split_whitespace() {
        ok(berthd, &["stopp", pod]);
        ok(berthd, &["rmp", pod]);
    }
}

pub async fn service(berthd: &Berthd) -> ContainersClient<tonic::transport::Channel> {
    ContainersClient::new(berthd.channel().await.expect("a channel to berthd"))
}

pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// What Python's tarfile reads in an archive: name -> {type, size, uid, gid, mode, link, data}.
pub const PY_READ: &str = r#"
import json, sys, tarfile
out = {}
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:
    for m in t:
        data = t.extractfile(m).read().hex() if m.isreg() else None
        out[m.name] = {"type": m.type.decode(), "size": m.size, "uid": m.uid, "gid": m.gid,
                       "mode": m.mode, "link": m.linkname, "data": data}
print(json.dumps(out))
"#;

pub fn python(script: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(out.status.success(), "python3 failed");
    out.stdout
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
