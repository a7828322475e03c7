//! cp both ways, through symlinks, with Python's tarfile as the peer.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_api::containers::v1 as api;
use berth_e2e::Berthd;
use serde_json::Value;

use super::*;

/// A PAX archive by Python's tarfile: a long name, an owner, and (with "evil") a `..` entry.
const PY_WRITE: &str = r#"
import io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, data, uid=0):
        info = tarfile.TarInfo(name)
        info.size = len(data); info.uid = uid; info.gid = uid; info.mode = 0o640
        t.addfile(info, io.BytesIO(data))
    d = tarfile.TarInfo("pydir"); d.type = tarfile.DIRTYPE; d.mode = 0o755
    t.addfile(d)
    add("pydir/" + "n" * 150, b"long name\n", 4321)
    if sys.argv[1:] == ["evil"]:
        add("../../../../evil-berth-cp", b"x")
sys.stdout.buffer.write(buf.getvalue())
"#;

/// Bytes no text mangling keeps intact.
// Wraps modulo 256 on purpose.
#[allow(clippy::cast_possible_truncation)]
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[tokio::test]
async fn cp_copies_both_ways_and_stays_inside() {
    let berthd = Berthd::start("clicp").await.expect("starting berthd");
    let marker_name = format!("berth-cp-marker-{}", berthd.test_id());
    let host_marker = Path::new("/tmp").join(&marker_name);
    std::fs::write(&host_marker, "host").unwrap();
    let setup = "mkdir -p /data/sub && echo hello > /data/sub/f && ln -s / /data/root && \
                 ln -s /etc /data/etc && ln -s ../../.. /data/up && ln -s /tmp /data/tmplink && \
                 touch /ready && sleep 1000";
    let id = run_detached(&berthd, "files", setup);
    wait_for("the setup", || {
        berthd
            .cli(&["exec", "files", "test", "-e", "/ready"])
            .unwrap()
            .0
    })
    .await;
    let local = berthd.dir.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let l = |p: &str| local.join(p).to_string_lossy().into_owned();

    // Out: a file into a directory, a directory to a new name (links stay links).
    ok(&berthd, &["cp", "files:/data/sub/f", &l("")]);
    assert_eq!(std::fs::read(local.join("f")).unwrap(), b"hello\n");
    ok(&berthd, &["cp", "files:/data", &l("copy")]);
    assert_eq!(std::fs::read(local.join("copy/sub/f")).unwrap(), b"hello\n");
    assert_eq!(
        std::fs::read_link(local.join("copy/root")).unwrap(),
        Path::new("/")
    );
    assert_eq!(
        std::fs::read_link(local.join("copy/up")).unwrap(),
        Path::new("../../..")
    );
    // SRC/. copies the contents.
    std::fs::create_dir_all(local.join("contents")).unwrap();
    ok(&berthd, &["cp", "files:/data/sub/.", &l("contents")]);
    assert_eq!(std::fs::read(local.join("contents/f")).unwrap(), b"hello\n");

    // In: a file with an owner, and a directory; compared byte for byte after a copy back.
    let payload = pattern(300_000);
    std::fs::write(local.join("blob"), &payload).unwrap();
    std::os::unix::fs::chown(local.join("blob"), Some(1234), Some(5678)).unwrap();
    std::fs::create_dir_all(local.join("tree/deep")).unwrap();
    std::fs::write(local.join("tree/deep/x"), pattern(5000)).unwrap();
    std::os::unix::fs::symlink("/", local.join("tree/rootlink")).unwrap();
    ok(&berthd, &["cp", &l("blob"), "files:/tmp/"]);
    ok(&berthd, &["cp", &l("tree"), "files:/tmp/tree2"]);
    let owner = ok(
        &berthd,
        &["exec", "files", "stat", "-c", "%u:%g", "/tmp/blob"],
    );
    assert_eq!(owner.trim(), "1234:5678");
    let link = ok(
        &berthd,
        &["exec", "files", "readlink", "/tmp/tree2/rootlink"],
    );
    assert_eq!(link, "/\n", "symlink targets go in byte for byte");
    let back = berthd.dir.join("back");
    std::fs::create_dir_all(&back).unwrap();
    let b = |p: &str| back.join(p).to_string_lossy().into_owned();
    ok(&berthd, &["cp", "files:/tmp/blob", &b("blob")]);
    ok(&berthd, &["cp", "files:/tmp/tree2", &b("tree2")]);
    assert_eq!(std::fs::read(back.join("blob")).unwrap(), payload);
    assert_eq!(std::fs::metadata(back.join("blob")).unwrap().uid(), 1234);
    assert_eq!(
        std::fs::read(back.join("tree2/deep/x")).unwrap(),
        pattern(5000)
    );

    // Through symlinks in the container that point at "/", "/etc" or "../../..": the container's
    // files, never the host's.
    std::fs::write(local.join("in"), "container").unwrap();
    for via in ["root", "up"] {
        let dest = format!("files:/data/{via}/tmp/{marker_name}");
        ok(&berthd, &["cp", &l("in"), &dest]);
        assert_eq!(
            std::fs::read_to_string(&host_marker).unwrap(),
            "host",
            "via {via}"
        );
        let inside = ok(
            &berthd,
            &["exec", "files", "cat", &format!("/tmp/{marker_name}")],
        );
        assert_eq!(inside, "container");
    }
    ok(&berthd, &["cp", &l("in"), "files:/data/etc/"]);
    assert!(!Path::new("/etc/in").exists(), "written to the host's /etc");
    // Read through the links: the container's /etc/passwd, not the host's.
    let passwd = ok(&berthd, &["exec", "files", "cat", "/etc/passwd"]);
    assert_ne!(passwd, std::fs::read_to_string("/etc/passwd").unwrap());
    for via in [
        "/data/etc/passwd",
        "/data/up/etc/passwd",
        "/data/root/etc/passwd",
    ] {
        let (code, out, err) = berth_io(&berthd, &["cp", &format!("files:{via}"), "-"], b"");
        assert_eq!(code, Some(0), "{err}");
        let read: Value = serde_json::from_slice(&python(PY_READ, &[], &out)).unwrap();
        assert_eq!(read["passwd"]["data"], hex(passwd.as_bytes()), "via {via}");
    }
    assert_eq!(
        ok(&berthd, &["exec", "files", "cat", "/etc/in"]),
        "container"
    );
    let (code, out, err) = berth_io(
        &berthd,
        &["cp", &format!("files:/data/up/tmp/{marker_name}"), "-"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let read: Value = serde_json::from_slice(&python(PY_READ, &[], &out)).unwrap();
    assert_eq!(read[&marker_name]["data"], hex(b"container"), "{read}");
    // A symlink where a file goes is replaced, not written through to the host's file.
    ok(
        &berthd,
        &[
            "exec",
            "files",
            "ln",
            "-s",
            host_marker.to_str().unwrap(),
            "/data/hostlink",
        ],
    );
    ok(&berthd, &["cp", &l("in"), "files:/data/hostlink"]);
    assert_eq!(std::fs::read_to_string(&host_marker).unwrap(), "host");

    // Python reads CopyFrom's archive: names, types, owners and contents.
    let (code, out, err) = berth_io(&berthd, &["cp", "files:/data", "-"], b"");
    assert_eq!(code, Some(0), "{err}");
    let read: Value = serde_json::from_slice(&python(PY_READ, &[], &out)).unwrap();
    assert_eq!(read["data/sub/f"]["type"], "0", "{read}");
    assert_eq!(read["data/sub/f"]["data"], hex(b"hello\n"));
    assert_eq!(read["data/sub"]["type"], "5");
    assert_eq!(
        (
            read["data/root"]["type"].as_str(),
            read["data/root"]["link"].as_str()
        ),
        (Some("2"), Some("/"))
    );
    assert_eq!(read["data/up"]["link"], "../../..");
    // And writes what CopyTo takes: a PAX long name, an owner.
    let tar = python(PY_WRITE, &[], b"");
    let (code, _, err) = berth_io(&berthd, &["cp", "-", "files:/tmp"], &tar);
    assert_eq!(code, Some(0), "{err}");
    let long = format!("/tmp/pydir/{}", "n".repeat(150));
    assert_eq!(ok(&berthd, &["exec", "files", "cat", &long]), "long name\n");
    let owner = ok(&berthd, &["exec", "files", "stat", "-c", "%u:%g:%a", &long]);
    assert_eq!(owner.trim(), "4321:4321:640");
    // An entry with ".." is refused, and nothing lands outside.
    let evil = python(PY_WRITE, &["evil"], b"");
    let (code, _, err) = berth_io(&berthd, &["cp", "-", "files:/tmp"], &evil);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains(".."), "{err}");
    assert!(!Path::new("/evil-berth-cp").exists());
    let (ok_, _, _) = berthd
        .cli(&["exec", "files", "test", "-e", "/evil-berth-cp"])
        .unwrap();
    assert!(!ok_, "a refused entry was written");

    // Missing paths and containers.
    let err = fails(&berthd, &["cp", "files:/no/such", &l("x")]);
    assert!(err.contains("no such file"), "{err}");
    fails(&berthd, &["cp", "nosuchcontainer:/etc", &l("x")]);
    let mut svc = service(&berthd).await;
    let missing = svc
        .stat_path(api::StatPathRequest {
            container_id: id.clone(),
            path: "/no/such".into(),
            follow_link: false,
        })
        .await;
    assert_eq!(missing.err().map(|s| s.code()), Some(tonic::Code::NotFound));
    let unknown = svc
        .copy_from(api::CopyFromRequest {
            container_id: "nosuchcontainer".into(),
            path: "/".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(tonic::Code::NotFound));

    // A stopped container: both ways still work.
    ok(&berthd, &["stop", "-t", "0", "files"]);
    ok(&berthd, &["cp", "files:/tmp/blob", &b("stopped-blob")]);
    assert_eq!(std::fs::read(back.join("stopped-blob")).unwrap(), payload);
    ok(&berthd, &["cp", &l("in"), "files:/tmp/after-stop"]);
    ok(&berthd, &["cp", "files:/tmp/after-stop", &b("after-stop")]);
    assert_eq!(
        std::fs::read(back.join("after-stop")).unwrap(),
        b"container"
    );

    // A container whose start failed has its rootfs unmounted: mounted for the copy, and
    // unmounted again (the leak check at the end finds any mount left).
    let pod = ok(
        &berthd,
        &[
            "runp",
            "broken",
            "--log-dir",
            &berthd.dir.join("cli-logs").to_string_lossy(),
        ],
    );
    let broken = ok(
        &berthd,
        &[
            "create",
            "--pod",
            pod.trim(),
            "--name",
            "broken",
            &busybox(),
            "/no/such/command",
        ],
    );
    let (code, _, _) = berth_io(&berthd, &["start", broken.trim()], b"");
    assert_ne!(code, Some(0));
    let bundle = inspect(&berthd, broken.trim())["info"]["bundle"]
        .as_str()
        .unwrap()
        .to_string();
    let rootfs = format!("{bundle}/rootfs");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(rootfs.as_str()))
    };
    assert!(!mounted(), "a failed start unmounts the rootfs");
    let files_rootfs = format!(
        "{}/rootfs",
        inspect(&berthd, &id)["info"]["bundle"].as_str().unwrap()
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mountinfo.contains(&format!(" {files_rootfs} ")),
        "an exited container's is mounted"
    );
    ok(&berthd, &["cp", "broken:/bin/busybox", &b("busybox")]);
    assert!(!mounted(), "the copy unmounted what it mounted");
    assert!(std::fs::metadata(back.join("busybox")).unwrap().len() > 100_000);

    let _ = std::fs::remove_file(&host_marker);
    remove_everything(&berthd);
    berthd.finish();
}
