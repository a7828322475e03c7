//! Exec and attach through the real monitor and runc, with the async client. Needs root, runc and
//! a built monitor, like tests/monitor.rs; each test prints why it skips otherwise.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Shared with tests/monitor.rs, which uses the helpers this file does not.
#[allow(dead_code)]
mod common;

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_monitor_api::{
    AttachEvent, Attachment, ExecRequest, MonitorError, attach, close_stdin, exec, read_exit_file,
};
use common::{Fixture, eventually, json_str, prerequisites};

/// Waits for the monitor's post-activity trim (at most once a second) before measuring memory.
const TRIM_SETTLE: Duration = Duration::from_millis(1600);
const LONG: Duration = Duration::from_secs(20);

fn exec_request(fx: &Fixture, id: &str, args: &[&str], tty: bool) -> ExecRequest {
    let args: Vec<String> = args.iter().map(|a| json_str(a)).collect();
    let process = format!(
        r#"{{"terminal": {tty}, "user": {{"uid": 0, "gid": 0}}, "args": [{}], "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/"}}"#,
        args.join(", ")
    );
    ExecRequest {
        container_id: id.to_string(),
        runtime_path: fx.runc.to_string_lossy().into_owned(),
        runtime_args: vec![
            "--root".into(),
            fx.tmp.path().join("runc").to_string_lossy().into_owned(),
        ],
        process_json: process.into_bytes(),
        tty,
        timeout_ms: 30_000,
        ..Default::default()
    }
}

/// Reads `fd` to EOF (off the tokio workers: the descriptors are blocking).
async fn read_all(fd: OwnedFd) -> String {
    tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut fs::File::from(fd), &mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

/// Reads `fd` (a pipe or a pty master, blocking or not) until the text read contains `needle`;
/// EIO (a master whose terminal closed) counts as EOF.
// poll and read on the pty: a raw fd, no File to own it.
#[allow(unsafe_code)]
fn read_until(fd: &OwnedFd, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {needle:?} in {:?}",
            String::from_utf8_lossy(&out)
        );
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EIO)) {
            panic!(
                "EOF before {needle:?} in {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// write(2) to the pty: a raw fd, no File to own it.
#[allow(unsafe_code)]
fn write_all(fd: &OwnedFd, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: writing from a live slice.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                data[done..].as_ptr().cast(),
                data.len() - done,
            )
        };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        done += n as usize;
    }
}

// ioctl(TIOCSWINSZ) on the test's pty.
#[allow(unsafe_code)]
fn set_winsize(fd: &OwnedFd, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(r, 0);
}

/// The exec files (process JSON, pid file, runtime log, console socket) left in the monitor
/// directory.
fn exec_files(fx: &Fixture) -> Vec<String> {
    fs::read_dir(&fx.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".exec"))
        .collect()
}

fn pid_gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Attach output until it contains `needle` (panics on an exit or error first).
async fn output_until(att: &mut Attachment, needle: &str) -> String {
    let mut seen = String::new();
    let collect = async {
        while !seen.contains(needle) {
            match att.next().await {
                Ok(AttachEvent::Stdout(d) | AttachEvent::Stderr(d)) => {
                    seen.push_str(&String::from_utf8_lossy(&d))
                }
                other => panic!("waiting for {needle:?} after {seen:?}: {other:?}"),
            }
        }
    };
    if tokio::time::timeout(LONG, collect).await.is_err() {
        panic!("no {needle:?} in attach output");
    }
    seen
}

/// Attach events until the exit; its exit code.
async fn exit_of(att: &mut Attachment) -> i32 {
    let drain = async {
        loop {
            match att.next().await {
                Ok(AttachEvent::Exit(exit)) => return exit.exit_code,
                Ok(_) => {}
                Err(e) => panic!("attach ended without an exit: {e}"),
            }
        }
    };
    tokio::time::timeout(LONG, drain)
        .await
        .expect("no exit on the attach connection")
}

fn assert_rss(fx: &Fixture, what: &str) {
    std::thread::sleep(TRIM_SETTLE);
    let rss = fx.rss_kib();
    println!("berth-monitor VmRSS {what}: {rss} KiB");
    assert!(rss > 0 && rss < 1024, "VmRSS {rss} KiB {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_pipes_exit_code_and_stdin() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let (id, _) = fx.create(&["sleep", "1000"], false);
    std::thread::sleep(TRIM_SETTLE);
    println!("berth-monitor VmRSS before exec: {} KiB", fx.rss_kib());

    let script = "echo out; echo err >&2; exit 3";
    let mut req = exec_request(&fx, &id, &["sh", "-c", script], false);
    (req.stdout, req.stderr) = (true, true);
    let (started, wait) = exec(&fx.dir, &req).await.unwrap();
    assert!(started.pid > 0 && started.stdin.is_none() && started.pty.is_none());
    let (out, err) = (started.stdout.unwrap(), started.stderr.unwrap());
    assert_eq!(read_all(out).await, "out\n");
    assert_eq!(read_all(err).await, "err\n");
    let exit = wait.wait().await.unwrap();
    assert_eq!((exit.exit_code, exit.signal), (3, 0));
    assert!(exit.finished_at_ns > 0);
    // Only the exec's requester hears of its exit: the container is untouched, and its log too.
    assert!(read_exit_file(&fx.dir, &id).unwrap().is_none());
    assert_eq!(fx.monitor.list().unwrap()[0].exit, None);
    assert!(!fx.log(&id).contains("out"), "log: {}", fx.log(&id));
    assert!(exec_files(&fx).is_empty(), "{:?}", exec_files(&fx));

    // stdin piped through `cat` and back.
    let mut req = exec_request(&fx, &id, &["cat"], false);
    (req.stdin, req.stdout) = (true, true);
    let (started, wait) = exec(&fx.dir, &req).await.unwrap();
    assert!(started.stderr.is_none());
    let stdin = started.stdin.unwrap();
    write_all(&stdin, b"hello exec\n");
    drop(stdin);
    assert_eq!(read_all(started.stdout.unwrap()).await, "hello exec\n");
    assert_eq!(wait.wait().await.unwrap().exit_code, 0);
    assert!(eventually(LONG, || pid_gone(started.pid)));

    // Processes that exit at once, likely before the monitor has seen their runtime exit.
    for _ in 0..5 {
        let req = exec_request(&fx, &id, &["true"], false);
        let (started, wait) = exec(&fx.dir, &req).await.unwrap();
        assert!(started.stdout.is_none());
        assert_eq!(wait.wait().await.unwrap().exit_code, 0);
    }
    assert!(exec_files(&fx).is_empty(), "{:?}", exec_files(&fx));
    assert_rss(&fx, "with 1 container after 7 execs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_tty_and_resize() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let (id, _) = fx.create(&["sleep", "1000"], false);
    let req = exec_request(&fx, &id, &["sh", "-c", "tty; read x; stty size"], true);
    let (started, wait) = exec(&fx.dir, &req).await.unwrap();
    assert!(started.stdin.is_none() && started.stdout.is_none() && started.stderr.is_none());
    let master = started.pty.unwrap();
    let master = tokio::task::spawn_blocking(move || {
        let text = read_until(&master, "/dev/pts/", LONG);
        assert!(text.contains("/dev/pts/"), "{text:?}");
        // The shell waits in `read` until the new size is set.
        set_winsize(&master, 41, 101);
        write_all(&master, b"go\n");
        read_until(&master, "41 101", LONG);
        master
    })
    .await
    .unwrap();
    assert_eq!(wait.wait().await.unwrap().exit_code, 0);
    drop(master);
    assert!(exec_files(&fx).is_empty(), "{:?}", exec_files(&fx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_exec_connection_kills_the_exec() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let (id, _) = fx.create(&["sleep", "1000"], false);
    let mut req = exec_request(&fx, &id, &["sleep", "1000"], false);
    req.stdout = true;
    let (started, wait) = exec(&fx.dir, &req).await.unwrap();
    let pid = started.pid;
    assert!(!pid_gone(pid));
    drop(wait);
    assert!(eventually(LONG, || pid_gone(pid)), "exec {pid} still there");
    // Killed, so its stdout is closed; and the container runs on.
    assert_eq!(read_all(started.stdout.unwrap()).await, "");
    assert_eq!(fx.monitor.list().unwrap()[0].exit, None);
    assert!(exec_files(&fx).is_empty(), "{:?}", exec_files(&fx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_attach_errors() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let req = exec_request(&fx, "nope", &["true"], false);
    assert!(matches!(
        exec(&fx.dir, &req).await,
        Err(MonitorError::UnknownContainer(_))
    ));
    assert!(matches!(
        attach(&fx.dir, "nope", true).await,
        Err(MonitorError::UnknownContainer(_))
    ));
    assert!(matches!(
        close_stdin(&fx.dir, "nope").await,
        Err(MonitorError::UnknownContainer(_))
    ));

    let (id, _) = fx.create(&["sleep", "1000"], false);
    let mut req = exec_request(&fx, &id, &["/bin/nonexistent"], false);
    req.stderr = true;
    match exec(&fx.dir, &req).await {
        Err(MonitorError::Runtime(msg)) => {
            println!("runtime error: {msg}");
            assert!(msg.contains("nonexistent"), "{msg}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
    assert!(exec_files(&fx).is_empty(), "{:?}", exec_files(&fx));

    // An exited container takes neither.
    let (done, _) = fx.create(&["true"], false);
    fx.wait_exit(&done);
    let req = exec_request(&fx, &done, &["true"], false);
    let err = exec(&fx.dir, &req).await.unwrap_err();
    assert!(matches!(err, MonitorError::FailedPrecondition(_)), "{err}");
    let err = attach(&fx.dir, &done, false).await.unwrap_err();
    assert!(matches!(err, MonitorError::FailedPrecondition(_)), "{err}");
    println!("precondition: {err}");
    // Closing the stdin of an exited container has nothing left to do.
    close_stdin(&fx.dir, &done).await.unwrap();
    assert!(matches!(
        fx.monitor.list().unwrap().iter().find(|c| c.container_id == id),
        Some(c) if c.exit.is_none()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_attachers_get_periodic_output_and_the_exit() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let script = "i=0; while true; do echo tick $i; echo tock $i >&2; i=$((i+1)); sleep 0.1; done";
    let (id, _) = fx.create(&["sh", "-c", script], false);
    let mut first = attach(&fx.dir, &id, false).await.unwrap();
    // The container has no stdin, so there is none to hand out.
    let mut second = attach(&fx.dir, &id, true).await.unwrap();
    assert!(first.stdin.is_none() && first.pty.is_none());
    assert!(second.stdin.is_none() && second.pty.is_none());

    let mut seen = String::new();
    let mut stderr = String::new();
    let collect = async {
        while seen.matches("tick").count() < 3 || !stderr.contains("tock") {
            match first.next().await.unwrap() {
                AttachEvent::Stdout(d) => seen.push_str(&String::from_utf8_lossy(&d)),
                AttachEvent::Stderr(d) => stderr.push_str(&String::from_utf8_lossy(&d)),
                AttachEvent::Exit(e) => panic!("exit {e:?}"),
            }
        }
    };
    tokio::time::timeout(LONG, collect).await.unwrap();
    assert!(!seen.contains("tock") && !stderr.contains("tick"));
    output_until(&mut second, "tick").await;

    fx.kill(&id);
    assert_eq!(exit_of(&mut first).await, 137);
    assert_eq!(exit_of(&mut second).await, 137);
    // Repeated after the end.
    assert!(matches!(first.next().await, Ok(AttachEvent::Exit(_))));
    assert!(fx.log(&id).contains("stdout F tick 0"));
    assert!(matches!(
        attach(&fx.dir, &id, false).await,
        Err(MonitorError::FailedPrecondition(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_stdin_echo_and_close_stdin() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let id = fx.new_id();
    let mut req = fx.request(&id, &["cat"], false);
    req.stdin = true;
    fx.try_create(&req).unwrap();

    let mut writer = attach(&fx.dir, &id, true).await.unwrap();
    let mut watcher = attach(&fx.dir, &id, false).await.unwrap();
    assert!(writer.pty.is_none() && watcher.stdin.is_none());
    let stdin = writer.stdin.take().expect("the container's stdin");
    write_all(&stdin, b"ping\n");
    output_until(&mut writer, "ping\n").await;
    output_until(&mut watcher, "ping\n").await;

    // stdin_once: the attach went away, then berthd closes the monitor's end; cat sees EOF.
    drop(stdin);
    close_stdin(&fx.dir, &id).await.unwrap();
    assert_eq!(exit_of(&mut writer).await, 0);
    assert_eq!(exit_of(&mut watcher).await, 0);
    assert!(fx.log(&id).contains("stdout F ping"), "{}", fx.log(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_to_a_tty_container() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let script = "read x; echo got-$x; stty size; exit 4";
    let (id, _) = fx.create(&["sh", "-c", script], true);
    let mut att = attach(&fx.dir, &id, true).await.unwrap();
    assert!(att.stdin.is_none());
    let master = att.pty.take().expect("the pty master");
    set_winsize(&master, 33, 77);
    write_all(&master, b"hi\n");
    let out = output_until(&mut att, "33 77").await;
    assert!(out.contains("got-hi"), "{out:?}");
    assert_eq!(exit_of(&mut att).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_attacher_is_dropped_and_the_log_goes_on() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let id = fx.new_id();
    let script = format!(
        "while [ ! -e /go-{id} ]; do sleep 0.05; done; head -c 4000000 /dev/zero | tr '\\0' a; \
         echo; echo done; while [ ! -e /stop-{id} ]; do echo alive; sleep 0.1; done; sleep 1000"
    );
    let req = fx.request(&id, &["sh", "-c", &script], false);
    fx.try_create(&req).unwrap();
    // Attached first, then never read.
    let mut stalled = attach(&fx.dir, &id, false).await.unwrap();
    fs::write(fx.rootfs().join(format!("go-{id}")), "").unwrap();

    assert!(
        eventually(LONG, || fx.log(&id).contains("stdout F done")),
        "the log stalled"
    );
    // What was queued before the drop, then the end of the connection without an exit.
    let mut received = 0usize;
    let drained = tokio::time::timeout(LONG, async {
        loop {
            match stalled.next().await {
                Ok(AttachEvent::Stdout(d)) => received += d.len(),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("the stalled attacher was not dropped");
    println!("stalled attacher got {received} bytes, then: {drained}");
    assert!(received < 4_000_000, "{received} bytes");
    assert!(matches!(drained, MonitorError::Io { .. }), "{drained}");

    // The monitor serves on, new attachers too.
    let mut fresh = attach(&fx.dir, &id, false).await.unwrap();
    output_until(&mut fresh, "alive").await;
    drop(fresh);
    assert_eq!(fx.monitor.list().unwrap().len(), 1);
    // Quiet again: the 1 MiB backlog went with the connection.
    fs::write(fx.rootfs().join(format!("stop-{id}")), "").unwrap();
    assert_rss(&fx, "with 1 container after a dropped attacher");
    fx.kill(&id);
    fx.wait_exit(&id);
}
