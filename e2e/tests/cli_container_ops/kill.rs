//! kill, wait and start -a.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_api::containers::v1 as api;
use berth_e2e::{Berthd, berth_binary, wait_timeout};

use super::*;

const TRAPPER: &str = "trap 'echo got >> /tmp/usr1' USR1; while true; do sleep 0.1; done";

#[tokio::test]
async fn kill_wait_and_start_attach() {
    let berthd = Berthd::start("clikill").await.expect("starting berthd");
    let id = run_detached(&berthd, "trapper", TRAPPER);

    // The same signal by name, with SIG, and by number: the shell's trap runs each time and the
    // container goes on running.
    // (One at a time: signals sent while the shell waits for its `sleep` would merge into one.)
    for (sent, signal) in ["USR1", "SIGUSR1", "10"].into_iter().enumerate() {
        let out = ok(&berthd, &["kill", "-s", signal, "trapper"]);
        assert_eq!(out.trim(), "trapper");
        wait_for("the USR1 trap", || {
            let (ok, out, _) = berthd
                .cli(&["exec", "trapper", "cat", "/tmp/usr1"])
                .unwrap();
            ok && out.lines().filter(|l| *l == "got").count() == sent + 1
        })
        .await;
    }
    assert_eq!(
        inspect(&berthd, &id)["status"]["state"],
        "CONTAINER_RUNNING"
    );

    // Bad input gets its gRPC code from the service.
    let mut svc = service(&berthd).await;
    let kill = |container_id: &str, signal: &str| api::KillRequest {
        container_id: container_id.into(),
        signal: signal.into(),
    };
    let code =
        |r: Result<tonic::Response<api::KillResponse>, tonic::Status>| r.err().map(|s| s.code());
    assert_eq!(
        code(svc.kill(kill("nosuchcontainer", "KILL")).await),
        Some(tonic::Code::NotFound)
    );
    assert_eq!(
        code(svc.kill(kill(&id, "SIGNOPE")).await),
        Some(tonic::Code::InvalidArgument)
    );
    assert_eq!(
        code(svc.kill(kill(&id, "65")).await),
        Some(tonic::Code::InvalidArgument)
    );
    let err = fails(&berthd, &["kill", "-s", "NOPE", "trapper"]);
    assert!(err.contains("invalid signal"), "{err}");
    fails(&berthd, &["kill", "nosuchcontainer"]);

    // `wait` blocks until the default KILL ends it, then prints 137, which inspect reports too.
    let mut waiter = Command::new(berth_binary().unwrap())
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .args(["wait", "trapper"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "wait returned while it ran"
    );
    assert_eq!(ok(&berthd, &["kill", &id[..12]]).trim(), &id[..12]);
    let status = wait_timeout(&mut waiter, LONG).unwrap();
    let mut printed = String::new();
    waiter
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut printed)
        .unwrap();
    assert!(status.success());
    assert_eq!(printed.trim().parse::<i32>().unwrap(), 137);
    let json = inspect(&berthd, &id);
    assert_eq!(json["status"]["state"], "CONTAINER_EXITED", "{json}");
    assert_eq!(json["status"]["exit_code"], 137, "{json}");
    assert_eq!(
        code(svc.kill(kill(&id, "KILL")).await),
        Some(tonic::Code::FailedPrecondition)
    );
    // An exited container: wait answers at once.
    assert_eq!(ok(&berthd, &["wait", "trapper"]).trim(), "137");

    // start -a: attached before anything is printed, its output (both streams), its exit code.
    let logs = berthd.dir.join("cli-logs");
    let pod = ok(
        &berthd,
        &["runp", "jobs", "--log-dir", &logs.to_string_lossy()],
    );
    let pod = pod.trim();
    let job = ok(
        &berthd,
        &[
            "create",
            "--pod",
            pod,
            "--name",
            "job",
            &busybox(),
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    let job = job.trim();
    let (code, out, err) = berth_io(&berthd, &["start", "-a", "job"], b"");
    assert_eq!(code, Some(7), "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "out\n");
    assert!(err.contains("err"), "{err}");
    assert_eq!(ok(&berthd, &["wait", job]).trim(), "7");
    // Several: each exit code in order; an unknown container fails the verb after the others.
    assert_eq!(ok(&berthd, &["wait", "trapper", "job"]), "137\n7\n");
    let (code, out, err) = berth_io(&berthd, &["wait", "job", "nosuchcontainer"], b"");
    assert_eq!(
        (code, String::from_utf8_lossy(&out).as_ref()),
        (Some(125), "7\n"),
        "{err}"
    );
    // Started once: a second start -a is refused.
    fails(&berthd, &["start", "-a", "job"]);
    // start -a -i: stdin reaches the container through an attach, its output comes from the log
    // (none lost), and berth exits with its code.
    let script = "read x; echo got $x; exit 3";
    ok(
        &berthd,
        &[
            "create",
            "--pod",
            pod,
            "--name",
            "reader",
            "-i",
            &busybox(),
            "sh",
            "-c",
            script,
        ],
    );
    let (code, out, err) = berth_io(&berthd, &["start", "-a", "-i", "reader"], b"hello\n");
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "got hello\n", "{err}");

    remove_everything(&berthd);
    berthd.finish();
}
