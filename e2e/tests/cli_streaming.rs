//! The `berth` CLI's streaming verbs against a real berthd: `exec` through ExecSync and through a
//! streaming Exec session (stdin, its end, exit codes, a terminal), `attach`, and `port-forward`.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_e2e::containers::poll;
use berth_e2e::registry::SHARED;
use berth_e2e::{Berthd, berth_binary, http_get, wait_timeout};

/// Long enough for a debug berth on a busy 2-core machine; a hang still fails the test.
const LONG: Duration = Duration::from_secs(60);

fn image(name: &str) -> String {
    format!("{SHARED}/berth-test/{name}:latest")
}

/// A `berth` process against this berthd, with piped stdio; killed if the test fails first.
struct Berth {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// Reads a pipe to its end on a thread, so a chatty child never blocks on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    }))
}

fn join(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

impl Berth {
    fn spawn(berthd: &Berthd, args: &[&str]) -> Berth {
        let child = Command::new(berth_binary().expect("the berth binary"))
            .arg("-H")
            .arg(format!("unix://{}", berthd.socket.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning berth");
        Berth {
            child,
            stdout: None,
            stderr: None,
        }
    }

    /// Runs berth with `input` on its stdin (then its end); returns (exit code, stdout, stderr).
    fn run(berthd: &Berthd, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
        let mut berth = Berth::spawn(berthd, args);
        if let Some(mut stdin) = berth.child.stdin.take() {
            // A command that reads no stdin may be gone before it is written: no matter.
            let _ = stdin.write_all(input);
        }
        berth.stdout = drain(berth.child.stdout.take());
        berth.stderr = drain(berth.child.stderr.take());
        berth.wait()
    }

    fn wait(&mut self) -> (Option<i32>, String, String) {
        let status = wait_timeout(&mut self.child, LONG).expect("berth to exit");
        (
            status.code(),
            join(self.stdout.take()),
            join(self.stderr.take()),
        )
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth` with no stdin; returns its stdout, failing the test if it fails.
fn ok(berthd: &Berthd, args: &[&str]) -> String {
    let (ok, out, err) = berthd.cli(args).expect("running berth");
    assert!(ok, "berth {args:?}: {err}");
    out
}

/// `berth run -d [FLAGS] IMAGE COMMAND...` with the test's log dir; returns the container ID.
fn run_detached(
    berthd: &Berthd,
    name: &str,
    flags: &[&str],
    image: &str,
    command: &[&str],
) -> String {
    let logs = berthd.dir.join("cli-logs");
    let logs = logs.to_string_lossy();
    let mut args: Vec<&str> = vec!["run", "-d", "--name", name, "--log-dir", &logs];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(command);
    let id = ok(berthd, &args).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    id
}

/// Removes every container and pod, as a person would after the test.
fn remove_everything(berthd: &Berthd) {
    for id in ok(berthd, &["ps", "-a", "-q"]).split_whitespace() {
        ok(berthd, &["rm", "-f", id]);
    }
    for pod in ok(berthd, &["pods", "-q"]).split_whitespace() {
        ok(berthd, &["stopp", pod]);
        ok(berthd, &["rmp", pod]);
    }
}

const SLEEPER: &str = "trap 'exit 0' TERM; while true; do sleep 0.1; done";

#[tokio::test]
async fn cli_execs_with_exec_sync_and_with_a_stream() {
    let berthd = Berthd::start("cliexec").await.expect("starting berthd");
    let id = run_detached(
        &berthd,
        "sleeper",
        &[],
        &image("busybox"),
        &["sh", "-c", SLEEPER],
    );

    // No -i/-t: ExecSync. Output by stream, the command's exit code.
    let (code, out, err) = Berth::run(
        &berthd,
        &["exec", &id, "sh", "-c", "echo hi; echo oops >&2; exit 3"],
        b"",
    );
    assert_eq!((code, out.as_str()), (Some(3), "hi\n"), "{err}");
    assert!(err.contains("oops"), "{err}");

    // -i: a streaming session. stdin reaches the command, and so does its end (v5's close), or
    // cat would never exit.
    let (code, out, err) = Berth::run(&berthd, &["exec", "-i", "sleeper", "cat"], b"hello\n");
    assert_eq!((code, out.as_str()), (Some(0), "hello\n"), "{err}");
    let (code, out, err) = Berth::run(
        &berthd,
        &["exec", "-i", &id[..12], "sh", "-c", "exit 5"],
        b"",
    );
    assert_eq!((code, out.as_str()), (Some(5), ""), "{err}");
    // stdout and stderr stay apart without a terminal.
    let (code, out, err) = Berth::run(
        &berthd,
        &[
            "exec",
            "-i",
            &id,
            "sh",
            "-c",
            "read x; echo out $x; echo err $x >&2",
        ],
        b"42\n",
    );
    assert_eq!((code, out.as_str()), (Some(0), "out 42\n"), "{err}");
    assert!(err.contains("err 42"), "{err}");
    // -t: the command has a terminal (and berth's stdin, a pipe, is not made raw).
    let (code, out, err) = Berth::run(
        &berthd,
        &[
            "exec",
            "-t",
            &id,
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo tty",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{out} {err}");
    assert!(out.contains("tty"), "{out:?}");
    // A command that can't run fails with the runtime's message.
    let (code, _, err) = Berth::run(&berthd, &["exec", "-i", &id, "/no/such/command"], b"");
    assert_ne!(code, Some(0), "{err}");
    assert!(!err.trim().is_empty());

    remove_everything(&berthd);
    berthd.finish();
}

#[tokio::test]
async fn cli_attaches_to_a_containers_output_and_stdin() {
    let berthd = Berthd::start("cliattach").await.expect("starting berthd");
    // Ticks until /tmp/go exists, then exits 4.
    let ticker = run_detached(
        &berthd,
        "ticker",
        &[],
        &image("busybox"),
        &[
            "sh",
            "-c",
            "while [ ! -e /tmp/go ]; do echo tick; sleep 0.2; done; echo bye; exit 4",
        ],
    );
    let mut attach = Berth::spawn(&berthd, &["attach", "--no-stdin", "ticker"]);
    let mut lines = BufReader::new(attach.child.stdout.take().expect("stdout")).lines();
    attach.stderr = drain(attach.child.stderr.take());
    let first = lines.next().and_then(Result::ok);
    assert_eq!(
        first.as_deref(),
        Some("tick"),
        "{}",
        join(attach.stderr.take())
    );
    // Attached: the container's exit ends the attach, with its exit code.
    ok(&berthd, &["exec", &ticker, "touch", "/tmp/go"]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l == "bye"), "{rest:?}");
    let (code, _, err) = attach.wait();
    assert_eq!(code, Some(4), "{err}");

    // A container with stdin (-i) reads what attach sends; the end of stdin detaches and leaves
    // the container running.
    let reader = run_detached(
        &berthd,
        "reader",
        &["-i"],
        &image("busybox"),
        &["sh", "-c", "while read line; do echo got $line; done"],
    );
    let (code, _, err) = Berth::run(&berthd, &["attach", "reader"], b"hello\n");
    assert_eq!(code, Some(0), "{err}");
    poll(
        LONG,
        "the attached input in the container's log",
        async || {
            ok(&berthd, &["logs", &reader])
                .contains("got hello")
                .then_some(())
        },
    )
    .await;
    let out = ok(&berthd, &["ps", "-q"]);
    assert!(out.contains(&reader[..13]), "detaching stopped it: {out}");

    remove_everything(&berthd);
    berthd.finish();
}

#[tokio::test]
async fn cli_forwards_a_local_port_into_a_pod() {
    let berthd = Berthd::start("cliportfwd").await.expect("starting berthd");
    run_detached(&berthd, "web", &[], &image("httpd"), &[]);

    let mut forward = Berth::spawn(&berthd, &["port-forward", "web", ":8080"]);
    let mut stdout = BufReader::new(forward.child.stdout.take().expect("stdout"));
    forward.stderr = drain(forward.child.stderr.take());
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    let port: u16 = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix(" -> 8080\n"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}: {}", join(forward.stderr.take())));
    // "Handling connection for PORT" lines, read so that berth never blocks on its stdout.
    let handled = drain(Some(stdout));
    let address = ([127, 0, 0, 1], port).into();
    // httpd may still be starting: until then the pod refuses and berth reports it.
    let body = poll(
        LONG,
        "httpd through the forwarded port",
        async || match http_get(address, "/") {
            Ok((200, body)) => Some(body),
            _ => None,
        },
    )
    .await;
    assert!(body.contains("hello from berth httpd"), "{body:?}");
    // Each connection is forwarded on its own; larger answers arrive whole.
    for _ in 0..3 {
        let (status, body) = http_get(address, "/bytes/300000").expect("GET /bytes");
        assert_eq!((status, body.len()), (200, 300000));
    }
    // Ctrl-C stops it.
    let pid = nix::unistd::Pid::from_raw(forward.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT to berth");
    let (code, _, err) = forward.wait();
    assert_eq!(code, Some(0), "{err}");
    let handled = join(handled);
    assert!(
        handled.contains(&format!("Handling connection for {port}")),
        "{handled}"
    );

    remove_everything(&berthd);
    berthd.finish();
}
