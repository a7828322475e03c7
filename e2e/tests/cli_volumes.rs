//! Named volumes (`berth volume`, `berth.volumes.v1.Volumes`) against a real berthd: made with
//! labels, listed as JSON, shared by two containers through `run -v NAME:/path`, refused removal
//! while a container (running or exited) mounts one, pruned, kept across a restart of berthd (and a
//! crash's leftovers cleaned), and driven from Python grpcio with stubs compiled from the .proto.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_e2e::peers::{PythonPeer, repo_dir, run_peer};
use berth_e2e::registry::SHARED;
use berth_e2e::{Berthd, berth_binary};
use serde_json::{Value, json};

/// One run of `berth`: exit code, stdout, stderr.
struct Out {
    code: i32,
    out: String,
    err: String,
}

fn berth(berthd: &Berthd, args: &[&str]) -> Out {
    berth_at(&berthd.socket, args)
}

fn berth_at(socket: &Path, args: &[&str]) -> Out {
    let out = Command::new(berth_binary().unwrap())
        .env_remove("BERTH_ENDPOINT")
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `berth ARGS`, which must succeed; its stdout.
fn ok(berthd: &Berthd, args: &[&str]) -> String {
    let o = berth(berthd, args);
    assert_eq!(o.code, 0, "berth {args:?}: {}{}", o.out, o.err);
    o.out
}

/// Stops and removes every pod (and so its containers), also when a test fails half-way.
/// (It keeps the socket's path, not the berthd, which a test restarts meanwhile.)
struct RemovePods(PathBuf);

impl Drop for RemovePods {
    fn drop(&mut self) {
        for pod in berth_at(&self.0, &["pods", "-q"]).out.split_whitespace() {
            berth_at(&self.0, &["stopp", pod]);
            berth_at(&self.0, &["rmp", pod]);
        }
    }
}

fn volumes_json(berthd: &Berthd) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&ok(berthd, &["volume", "ls", "-o", "json"])).unwrap();
    doc["volumes"].as_array().cloned().unwrap_or_default()
}

fn busybox() -> String {
    format!("{SHARED}/berth-test/busybox:latest")
}

#[tokio::test]
async fn volumes_are_shared_protected_pruned_and_kept() {
    let mut berthd = Berthd::start("clivol").await.unwrap();
    let pods = RemovePods(berthd.socket.clone());
    let image = busybox();
    let logs = berthd.dir.join("cli-logs");
    let logs = logs.to_str().unwrap();

    assert_eq!(
        ok(
            &berthd,
            &[
                "volume", "create", "-l", "app=web", "--label", "tier=db", "data"
            ]
        )
        .trim(),
        "data"
    );
    let generated = ok(&berthd, &["volume", "create"]).trim().to_string();
    assert!(
        generated.len() == 64 && generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );
    let o = berth(&berthd, &["volume", "create", "data"]);
    assert!(
        o.code == 125 && o.err.contains("already exists"),
        "{}",
        o.err
    );
    let o = berth(&berthd, &["volume", "create", "bad/name"]);
    assert!(
        o.code == 125 && o.err.contains("not a valid volume name"),
        "{}",
        o.err
    );

    // The documented JSON, item by item.
    let mountpoint = berthd.root.join("volumes/data/_data");
    let listed = volumes_json(&berthd);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let data = listed.iter().find(|v| v["name"] == "data").unwrap().clone();
    let created_at = data["createdAt"].as_str().unwrap().to_string();
    assert!(created_at.parse::<i64>().unwrap() > 0);
    assert_eq!(
        data,
        json!({"name": "data", "driver": "local", "mountpoint": mountpoint, "createdAt": created_at,
               "labels": {"app": "web", "tier": "db"}, "usedBy": []})
    );
    assert_eq!(
        ok(
            &berthd,
            &["volume", "ls", "-q", "--filter", "label=app=web"]
        )
        .trim(),
        "data"
    );
    assert_eq!(
        ok(
            &berthd,
            &["volume", "ls", "-q", "-f", "label=tier", "-f", "name=da"]
        )
        .trim(),
        "data"
    );
    assert!(
        ok(&berthd, &["volume", "ls", "-q", "-f", "label=app=db"])
            .trim()
            .is_empty()
    );
    let table = ok(&berthd, &["volume", "ls"]);
    assert!(
        table.starts_with("DRIVER") && table.contains("VOLUME NAME"),
        "{table}"
    );

    // One container writes, a second one (read-only) sees it; a third names a volume that does
    // not exist yet, which is made for it, as docker does.
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--log-dir", logs];
        args.extend_from_slice(extra);
        berth(&berthd, &args)
    };
    let o = run(&[
        "-v",
        "data:/data",
        &image,
        "sh",
        "-c",
        "echo hello > /data/f",
    ]);
    assert_eq!(o.code, 0, "{}", o.err);
    let o = run(&["-v", "data:/data:ro", &image, "cat", "/data/f"]);
    assert_eq!((o.code, o.out.trim()), (0, "hello"), "{}", o.err);
    let o = run(&[
        "-v",
        "data:/data:ro",
        &image,
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert_ne!(o.code, 0, "read-only: {}", o.out);
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).unwrap(),
        "hello\n"
    );
    let o = run(&["-v", "auto:/x", &image, "true"]);
    assert_eq!(o.code, 0, "{}", o.err);
    let inspected: Value =
        serde_json::from_str(&ok(&berthd, &["volume", "inspect", "auto"])).unwrap();
    assert_eq!(inspected[0]["name"], "auto", "{inspected}");

    // In use by a running container, then by an exited one: never removed, -f or not.
    let holder = ok(
        &berthd,
        &[
            "run",
            "-d",
            "--name",
            "holder",
            "--log-dir",
            logs,
            "-v",
            "data:/data",
            &image,
            "sleep",
            "300",
        ],
    )
    .trim()
    .to_string();
    for args in [
        &["volume", "rm", "data"][..],
        &["volume", "rm", "-f", "data"],
    ] {
        let o = berth(&berthd, args);
        assert_eq!(o.code, 125, "{args:?}: {}", o.out);
        assert!(
            o.err.contains("in use") && o.err.contains("holder"),
            "{}",
            o.err
        );
    }
    let inspected: Value =
        serde_json::from_str(&ok(&berthd, &["volume", "inspect", "data"])).unwrap();
    assert_eq!(inspected[0]["usedBy"], json!([holder]), "{inspected}");
    ok(&berthd, &["stop", "-t", "1", "holder"]);
    let o = berth(&berthd, &["volume", "rm", "data"]);
    assert!(
        o.code == 125 && o.err.contains("in use"),
        "exited: {}",
        o.err
    );
    let o = berth(&berthd, &["volume", "ls", "-q", "-f", "dangling=false"]);
    assert_eq!(o.out.trim(), "data");

    // Prune takes the unused ones only.
    let pruned = ok(&berthd, &["volume", "prune", "-f"]);
    assert!(
        pruned.contains(&generated) && pruned.contains("auto") && !pruned.contains("data\n"),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let names: Vec<String> = ok(&berthd, &["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(names, ["data"]);

    // A restart keeps volumes (labels, creation time, data); what a crash half-made goes.
    berthd.stop().unwrap();
    let half = berthd.root.join("volumes/.tmp-half-0123456789abcdef/_data");
    std::fs::create_dir_all(&half).unwrap();
    berthd.launch().await.unwrap();
    assert!(
        !half.parent().unwrap().exists(),
        "scratch of a crashed create left"
    );
    let again = volumes_json(&berthd);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["labels"], data["labels"]);
    assert_eq!(again[0]["createdAt"], data["createdAt"]);
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).unwrap(),
        "hello\n"
    );

    // `create --pod` takes named volumes too.
    ok(&berthd, &["rm", "-f", "holder"]);
    let pod = ok(&berthd, &["runp", "volpod", "--log-dir", logs])
        .trim()
        .to_string();
    let created = ok(
        &berthd,
        &["create", "--pod", &pod, "-v", "data:/d", &image, "true"],
    )
    .trim()
    .to_string();
    let inspected: Value =
        serde_json::from_str(&ok(&berthd, &["volume", "inspect", "data"])).unwrap();
    assert_eq!(inspected[0]["usedBy"], json!([created]), "{inspected}");

    // Once its containers are gone the volume can go.
    drop(pods);
    assert_eq!(ok(&berthd, &["volume", "rm", "data"]).trim(), "data");
    assert!(!mountpoint.exists());
    assert!(ok(&berthd, &["volume", "ls", "-q"]).trim().is_empty());
    let o = berth(&berthd, &["volume", "inspect", "data"]);
    assert!(
        o.code == 125 && o.err.contains("no such volume"),
        "{}",
        o.err
    );
    let o = berth(&berthd, &["volume", "rm", "data"]);
    assert_eq!(o.code, 125, "{}", o.err);
    assert_eq!(berth(&berthd, &["volume", "rm", "-f", "data"]).code, 0);
    berthd.finish();
}

#[tokio::test]
async fn grpcio_drives_the_volumes_service() {
    let peer = PythonPeer::setup().expect("setting up grpcio (hack/peers.sh python)");
    let berthd = Berthd::start("clivol-py").await.unwrap();
    let pods = RemovePods(berthd.socket.clone());
    let logs = berthd.dir.join("cli-logs");
    let image = busybox();
    // A volume in use, for the peer to be refused removing.
    let holder = ok(
        &berthd,
        &[
            "run",
            "-d",
            "--name",
            "pyholder",
            "--log-dir",
            logs.to_str().unwrap(),
            "-v",
            "held:/held",
            &image,
            "sleep",
            "300",
        ],
    )
    .trim()
    .to_string();
    let mut command = Command::new(&peer.python);
    command
        .arg("-u")
        .arg(repo_dir().join("e2e/peers/grpc-python/volumes_client.py"))
        .arg("--proto-root")
        .arg(repo_dir().join("proto"))
        .arg("--out")
        .arg(berthd.dir.join("py-stubs"))
        .arg("--socket")
        .arg(&berthd.socket)
        .arg("--name")
        .arg("from-python")
        .arg("--in-use")
        .arg("held")
        .arg("pyholder");
    let run = run_peer(&berthd, "volumes-py", command).expect("running volumes_client.py");
    println!("{}", run.stdout);
    run.assert_passed("volumes_client.py (grpcio)");
    // What Python listed is the document `berth volume ls -o json` documents.
    let listed: Value = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("listed: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .expect("no listed line");
    let created = listed["createdAt"].clone();
    assert_eq!(
        listed,
        json!({"name": "from-python", "driver": "local", "createdAt": created,
               "mountpoint": berthd.root.join("volumes/from-python/_data"),
               "labels": {"from": "python"}, "usedBy": []})
    );
    let cli = volumes_json(&berthd);
    assert_eq!(cli.len(), 1, "{cli:?}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&cli[0]), keys(&listed));
    assert_eq!(cli[0]["usedBy"], json!([holder]));

    ok(&berthd, &["rm", "-f", "pyholder"]);
    drop(pods);
    ok(&berthd, &["volume", "rm", "held"]);
    berthd.finish();
}
