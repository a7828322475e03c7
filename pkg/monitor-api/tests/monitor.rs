//! The monitor binary against real runc containers. Needs root, runc and a built monitor
//! (`make build`, or `$BERTH_MONITOR_BIN`); each test prints why it skips otherwise.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use berth_monitor_api::{Monitor, MonitorError, read_exit_file};
use common::{Fixture, eventually, parse_log, prerequisites};

/// Waits for the monitor's post-activity trim (at most once a second) before measuring memory.
const TRIM_SETTLE: Duration = Duration::from_millis(1600);

#[test]
fn logs_exit_code_and_forget_of_the_last_container() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let script =
        "echo out; echo err >&2; head -c 40000 /dev/zero | tr '\\0' a; echo; printf tail; exit 3";
    let (id, pid) = fx.create(&["sh", "-c", script], false);
    assert!(pid > 0);

    let exit = fx.wait_exit(&id);
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (3, 0, false)
    );
    assert!(exit.finished_at_ns > 0);
    // Recorded durably before Wait was answered.
    assert_eq!(read_exit_file(&fx.dir, &id).unwrap(), Some(exit.clone()));
    let listed = fx.monitor.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].pid, listed[0].exit.clone()),
        (pid, Some(exit.clone()))
    );
    // An exited container's Wait is answered at once, with the same exit.
    assert_eq!(fx.monitor.wait(&id, None).unwrap(), Some(exit));

    // The output was read before the exit was recorded, so the log is complete now.
    let lines = parse_log(&fx.log(&id));
    let stderr: Vec<_> = lines.iter().filter(|l| l.stream == "stderr").collect();
    assert_eq!(stderr.len(), 1);
    assert_eq!(
        (stderr[0].partial, stderr[0].content.as_str()),
        (false, "err")
    );
    let stdout: Vec<(bool, usize)> = lines
        .iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| (l.partial, l.content.len()))
        .collect();
    // "out", the 40000-byte line in pieces, and the unterminated "tail" written as a full line.
    assert_eq!(
        stdout,
        vec![
            (false, 3),
            (true, 16384),
            (true, 16384),
            (false, 7232),
            (false, 4)
        ]
    );
    assert!(lines.iter().any(|l| l.content == "tail"));

    fx.delete(&id);
    fx.monitor.forget(&id, false).unwrap();
    assert_eq!(fx.wait_monitor_exit(), 0);
    for gone in [
        "monitor.sock",
        "monitor.pid",
        &format!("exits/{id}"),
        &format!("{id}.pid"),
    ] {
        assert!(!fx.dir.join(gone).exists(), "{gone} left behind");
    }
    assert!(matches!(
        Monitor::open(&fx.dir),
        Err(MonitorError::NotRunning(_))
    ));
}

#[test]
fn wait_timeout_memory_and_reopen() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let (first, _) = fx.create(&["sleep", "1000"], false);

    let started = Instant::now();
    assert_eq!(
        fx.monitor
            .wait(&first, Some(Duration::from_millis(300)))
            .unwrap(),
        None
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    std::thread::sleep(TRIM_SETTLE);
    let one = fx.rss_kib();
    println!("berth-monitor VmRSS with 1 container: {one} KiB");
    assert!(one > 0 && one < 1024, "VmRSS {one} KiB with one container");

    let mut ids = vec![first];
    for _ in 0..4 {
        ids.push(fx.create(&["sleep", "1000"], false).0);
    }
    std::thread::sleep(TRIM_SETTLE);
    let five = fx.rss_kib();
    println!("berth-monitor VmRSS with 5 containers: {five} KiB");
    assert!(
        five > 0 && five < 1536,
        "VmRSS {five} KiB with five containers"
    );

    // A berthd restart finds the monitor again.
    let reopened = Monitor::open(&fx.dir).unwrap();
    assert_eq!(reopened.pid(), fx.monitor.pid());
    assert!(reopened.alive());
    assert_eq!(reopened.list().unwrap().len(), 5);

    for id in &ids {
        fx.kill(id);
        let exit = fx.wait_exit(id);
        assert_eq!((exit.exit_code, exit.signal), (137, 9));
    }
    for id in &ids[..4] {
        fx.delete(id);
        fx.monitor.forget(id, false).unwrap();
    }
    assert!(
        fx.monitor.alive(),
        "the monitor exited with a container left"
    );
    assert!(matches!(
        fx.monitor.wait(&ids[0], None),
        Err(MonitorError::UnknownContainer(_))
    ));
    fx.delete(&ids[4]);
    fx.monitor.forget(&ids[4], false).unwrap();
    assert_eq!(fx.wait_monitor_exit(), 0);
}

#[test]
fn reopen_log_after_rotation() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let id = fx.new_id();
    // The second line waits for a file the test creates in the (shared, read-only) rootfs.
    let script = format!("echo one; while [ ! -e /go-{id} ]; do sleep 0.05; done; echo two");
    let req = fx.request(&id, &["sh", "-c", &script], false);
    fx.try_create(&req).unwrap();
    assert!(eventually(Duration::from_secs(10), || fx
        .log(&id)
        .contains("one")));

    let log = fx.log_path(&id);
    let rotated = log.with_extension("log.1");
    fs::rename(&log, &rotated).unwrap();
    fx.monitor.reopen_log(&id).unwrap();
    fs::write(fx.rootfs().join(format!("go-{id}")), "").unwrap();
    assert_eq!(fx.wait_exit(&id).exit_code, 0);

    let old = fs::read_to_string(&rotated).unwrap();
    let new = fx.log(&id);
    assert!(
        old.contains("stdout F one") && !old.contains("two"),
        "rotated log: {old:?}"
    );
    assert!(
        new.contains("stdout F two") && !new.contains("one"),
        "new log: {new:?}"
    );
    assert!(matches!(
        fx.monitor.reopen_log("nope"),
        Err(MonitorError::UnknownContainer(_))
    ));
    fx.delete(&id);
    fx.monitor.forget(&id, false).unwrap();
    fx.wait_monitor_exit();
}

#[test]
fn tty_output_arrives() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let (id, _) = fx.create(&["sh", "-c", "echo hello-tty; exit 5"], true);
    assert_eq!(fx.wait_exit(&id).exit_code, 5);
    // The pty master may hand over the last output just after the exit.
    assert!(
        eventually(Duration::from_secs(5), || fx
            .log(&id)
            .contains("stdout F hello-tty")),
        "log: {:?}",
        fx.log(&id)
    );
    assert!(parse_log(&fx.log(&id)).iter().all(|l| l.stream == "stdout"));
    assert!(!fx.dir.join(format!("{id}.console")).exists());
    fx.delete(&id);
    fx.monitor.forget(&id, false).unwrap();
    fx.wait_monitor_exit();
}

#[test]
fn runtime_errors_and_early_exits() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);

    // runc's own message comes back, and the container is not known afterwards.
    let id = fx.new_id();
    let req = fx.request(&id, &["/bin/nonexistent"], false);
    match fx.try_create(&req) {
        Err(MonitorError::Runtime(msg)) => {
            println!("runtime error: {msg}");
            assert!(msg.contains("nonexistent"), "{msg}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
    assert!(fx.monitor.list().unwrap().is_empty());
    assert!(!fx.dir.join(format!("{id}.runtime.log")).exists());
    fx.delete(&id);

    // A log that cannot be opened fails the create before the runtime runs.
    let id = fx.new_id();
    let mut req = fx.request(&id, &["true"], false);
    req.log_path = Some(fx.tmp.path().join("missing-dir/x.log"));
    assert!(
        matches!(fx.try_create(&req), Err(MonitorError::Runtime(m)) if m.contains("missing-dir"))
    );
    assert!(matches!(
        fx.monitor.create(&req),
        Err(MonitorError::Runtime(_))
    ));

    // Containers that exit at once, possibly before runc itself has exited.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(fx.create(&["sh", "-c", "exit 7"], false).0);
    }
    for id in &ids {
        assert_eq!(fx.wait_exit(id).exit_code, 7);
    }
    let dup = fx.request(&ids[0], &["true"], false);
    assert!(
        matches!(fx.monitor.create(&dup), Err(MonitorError::Runtime(m)) if m.contains("already exists"))
    );
    for id in &ids {
        fx.delete(id);
        fx.monitor.forget(id, false).unwrap();
    }
    fx.wait_monitor_exit();
}

#[test]
fn cgroup_procs_and_malformed_frames() {
    let Some((bin, _)) = prerequisites() else {
        return;
    };
    let leaf = std::path::Path::new("/sys/fs/cgroup/pids").join(format!(
        "{}-monitor-{}",
        common::CGROUP_PARENT,
        std::process::id()
    ));
    if fs::create_dir_all(&leaf).is_err() {
        eprintln!("skipping: no pids cgroup controller at /sys/fs/cgroup/pids");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let result = Monitor::spawn(&bin, &dir, &[leaf.join("cgroup.procs")]);
    let (monitor, mut child) = result.unwrap();
    // The monitor serves at once and joins its cgroups from a thread of its own, just after.
    let rel = format!("/{}-monitor-{}", common::CGROUP_PARENT, std::process::id());
    let cgroups = || fs::read_to_string(format!("/proc/{}/cgroup", monitor.pid())).unwrap();
    let joined = eventually(Duration::from_secs(5), || {
        cgroups()
            .lines()
            .any(|l| l.contains(":pids:") && l.ends_with(&rel))
    });
    let cgroups = cgroups();

    // Garbage on one connection closes that connection only.
    use std::io::{Read, Write};
    let mut bad = std::os::unix::net::UnixStream::connect(dir.join("monitor.sock")).unwrap();
    bad.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let closed = matches!(bad.read(&mut [0u8; 16]), Ok(0) | Err(_));
    let still_serving = monitor.list().map(|l| l.is_empty()).unwrap_or(false);

    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_dir(&leaf);
    assert!(joined, "monitor not in {rel}: {cgroups}");
    assert!(closed, "a malformed frame did not close the connection");
    assert!(
        still_serving,
        "the monitor stopped serving after a malformed frame"
    );

    // A cgroup it cannot join is an error naming it.
    let err = Monitor::spawn(
        &bin,
        &tmp.path().join("m2"),
        &[leaf.join("missing/cgroup.procs")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("joining cgroup"), "{err}");
}

/// Set in the re-executed test binary that plays berthd in `survives_its_parent`.
const SPAWNER_ENV: &str = "BERTH_MONITOR_TEST_SPAWN_DIR";

#[test]
// prctl(PR_SET_CHILD_SUBREAPER), then kill and waitpid of the orphaned monitor, our child.
#[allow(unsafe_code)]
fn survives_its_parent() {
    let Some((bin, _)) = prerequisites() else {
        return;
    };
    if let Some(dir) = std::env::var_os(SPAWNER_ENV) {
        // The spawner: start a monitor, report it, and wait to be killed like a crashing berthd.
        let (monitor, _child) = Monitor::spawn(&bin, std::path::Path::new(&dir), &[]).unwrap();
        println!("monitor-pid {}", monitor.pid());
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    // The orphaned monitor is reparented to us (this host's PID 1 reaps nothing), so we reap it.
    // SAFETY: prctl with integer arguments.
    let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(subreaper, 0);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let mut spawner = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "survives_its_parent",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SPAWNER_ENV, &dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(spawner.stdout.take().unwrap());
    let mut pid = None;
    for _ in 0..50 {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) == 0 {
            break;
        }
        // The harness prints "test survives_its_parent ... " on the same line first.
        if let Some((_, p)) = line.split_once("monitor-pid ") {
            pid = p.trim().parse::<i32>().ok();
            break;
        }
    }
    let _ = spawner.kill();
    let _ = spawner.wait();
    let from_file = || {
        fs::read_to_string(dir.join("monitor.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let pid: i32 = pid
        .or_else(from_file)
        .expect("the spawner reported no monitor");

    let checks = (|| {
        std::thread::sleep(Duration::from_millis(200));
        let monitor =
            Monitor::open(&dir).map_err(|e| format!("open after the parent died: {e}"))?;
        if monitor.pid() != pid || !monitor.list().is_ok_and(|l| l.is_empty()) {
            return Err("the monitor does not serve after its parent died".to_string());
        }
        // Its own session and process group: group signals to berthd's never reach it.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let (pgrp, session) = (fields.get(2).copied(), fields.get(3).copied());
        if pgrp != Some(&pid.to_string()) || session != Some(&pid.to_string()) {
            return Err(format!(
                "process group {pgrp:?}, session {session:?}, pid {pid}"
            ));
        }
        Ok(())
    })();
    // SIGTERM: it removes its socket and pid file and exits 0.
    // SAFETY: signalling and reaping the monitor, now our child.
    let status = unsafe {
        libc::kill(pid, libc::SIGTERM);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        status
    };
    checks.unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "status {status:#x}"
    );
    assert!(!dir.join("monitor.sock").exists() && !dir.join("monitor.pid").exists());
}

/// Forget with `stay` (berthd has created containers still to start in the pod): the monitor
/// stays with no container, takes the next one, and exits after a plain Forget.
#[test]
fn forget_with_stay_keeps_an_idle_monitor() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let (first, _) = fx.create(&["true"], false);
    assert_eq!(fx.wait_exit(&first).exit_code, 0);
    fx.delete(&first);
    fx.monitor.forget(&first, true).unwrap();
    assert!(fx.monitor.alive());
    assert!(fx.monitor.list().unwrap().is_empty());

    let (second, _) = fx.create(&["sh", "-c", "exit 4"], false);
    assert_eq!(fx.wait_exit(&second).exit_code, 4);
    fx.delete(&second);
    fx.monitor.forget(&second, false).unwrap();
    assert_eq!(fx.wait_monitor_exit(), 0);
}
