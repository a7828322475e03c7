//! `berth save`, `berth load` and `berth commit` against a real berthd, with the archives read and
//! made by peers nobody here wrote: skopeo (oci-archive, docker-archive), umoci (unpacks and
//! verifies a layout copied from Berth's archive) and Python's tarfile/json/hashlib (every
//! digest, diff ID and annotation of the archive). Each test ends with berthd's leak check.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_e2e::registry::{SHARED, test_layout};
use berth_e2e::{Berthd, berth_binary};
use serde_json::Value;

fn busybox() -> String {
    format!("{SHARED}/berth-test/busybox:latest")
}

/// Runs `berth` with stdin from `input`; (success, stdout, stderr).
fn cli_with_stdin(berthd: &Berthd, args: &[&str], input: &Path) -> (bool, String, String) {
    let out = Command::new(berth_binary().unwrap())
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(berthd: &Berthd, args: &[&str]) -> String {
    let (ok, out, err) = berthd.cli(args).unwrap();
    assert!(ok, "berth {args:?}: {err}\n{out}");
    out
}

fn peer(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python reads an OCI image-layout tar as a stranger would: every blob's sha256 and size
/// against its descriptor, every layer's uncompressed sha256 against the config's diff IDs.
/// Prints {"refs": {...}, "images": [{"config": ..., "layers": [...], "history": [...]}]}.
const CHECK_LAYOUT: &str = r#"
import gzip, hashlib, json, sys, tarfile
t = tarfile.open(sys.argv[1])
def blob(d):
    data = t.extractfile("blobs/sha256/" + d.split(":")[1]).read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == d, "digest of " + d
    return data
layout = json.loads(t.extractfile("oci-layout").read())
assert layout["imageLayoutVersion"] == "1.0.0"
index = json.loads(t.extractfile("index.json").read())
refs, images = {}, []
for m in index["manifests"]:
    manifest = blob(m["digest"]); assert len(manifest) == m["size"]
    ann = m.get("annotations", {})
    if ann:
        assert ann["io.containerd.image.name"] == ann["org.opencontainers.image.ref.name"]
        refs[ann["org.opencontainers.image.ref.name"]] = m["digest"]
    manifest = json.loads(manifest)
    config = blob(manifest["config"]["digest"]); assert len(config) == manifest["config"]["size"]
    config = json.loads(config)
    layers = []
    for l, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
        data = blob(l["digest"]); assert len(data) == l["size"]
        plain = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        assert "sha256:" + hashlib.sha256(plain).hexdigest() == diff, "diff ID of " + l["digest"]
        layers.append({"digest": l["digest"], "mediaType": l["mediaType"], "diff": diff,
                       "size": l["size"]})
    assert len(layers) == len(config["rootfs"]["diff_ids"])
    images.append({"manifest": m["digest"], "config": manifest["config"]["digest"],
                   "config_size": manifest["config"]["size"],
                   "layers": layers, "history": config.get("history", []),
                   "env": config["config"].get("Env")})
print(json.dumps({"refs": refs, "images": images}))
"#;

fn check_layout(archive: &Path) -> Value {
    let out = peer("python3", &["-c", CHECK_LAYOUT, archive.to_str().unwrap()]);
    serde_json::from_str(&out).unwrap()
}

/// `skopeo copy -q SRC DST`.
fn skopeo_copy(src: &str, dst: &str) {
    peer("skopeo", &["copy", "-q", src, dst]);
}

/// (config digest, config size) of a tag of the test layout (hack/test-images.sh).
fn layout_config(tag: &str) -> (String, u64) {
    let layout = test_layout();
    let json = |path: PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{tag} in the test layout"))
        .clone();
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let manifest = json(layout.join("blobs/sha256").join(hex));
    let config = &manifest["config"];
    (
        config["digest"].as_str().unwrap().to_string(),
        config["size"].as_u64().unwrap(),
    )
}

/// Python copies the tar `src` to `dst` with one byte of its biggest file (a layer) flipped at
/// `offset` (a Python expression of `data`), the tar itself intact.
fn tamper(src: &Path, dst: &Path, offset: &str) {
    let script = format!(
        r#"
import sys, tarfile, io
src, dst = tarfile.open(sys.argv[1]), tarfile.open(sys.argv[2], "w")
members = src.getmembers()
big = max((m for m in members if m.isfile()), key=lambda m: m.size)
for m in members:
    data = src.extractfile(m).read() if m.isfile() else None
    if m is big:
        data = bytearray(data); data[{offset}] ^= 0xff; data = bytes(data)
    dst.addfile(m, io.BytesIO(data) if data is not None else None)
dst.close()
"#
    );
    peer(
        "python3",
        &["-c", &script, src.to_str().unwrap(), dst.to_str().unwrap()],
    );
}

/// Everything the image store holds on disk: blobs, snapshots, and what is being ingested.
fn store_state(berthd: &Berthd) -> (Vec<String>, usize, Vec<String>) {
    let list = |dir: PathBuf| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    (
        list(berthd.root.join("content/blobs/sha256")),
        list(berthd.root.join("snapshots/snapshots")).len(),
        list(berthd.root.join("content/ingest")),
    )
}

fn image_ids(berthd: &Berthd) -> Vec<String> {
    let mut ids: Vec<String> = run(berthd, &["images", "-q"])
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn save_rmi_load_run_and_peers_read_the_archive() {
    let berthd = Berthd::start("archivesave").await.unwrap();
    let dir = berthd.dir.join("archives");
    std::fs::create_dir_all(&dir).unwrap();
    let image = busybox();
    run(&berthd, &["pull", "-q", &image]);
    let archive = dir.join("busybox.tar");
    run(&berthd, &["save", &image, "-o", archive.to_str().unwrap()]);
    assert!(!dir.join("busybox.tar.berth-partial").exists());

    // Python: every digest, size and diff ID; both annotations name the image.
    let layout = check_layout(&archive);
    assert_eq!(layout["refs"].as_object().unwrap().len(), 1, "{layout}");
    assert!(layout["refs"][&image].is_string(), "{layout}");
    let saved = &layout["images"][0];
    // Pulled layers are written afresh from their snapshots: uncompressed, digest = diff ID.
    for layer in saved["layers"].as_array().unwrap() {
        assert_eq!(layer["digest"], layer["diff"], "{layer}");
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    }

    // skopeo reads it by name; umoci unpacks (and verifies) the layout skopeo copies out of it.
    let source = format!("oci-archive:{}:{image}", archive.display());
    let inspected: Value = serde_json::from_str(&peer("skopeo", &["inspect", &source])).unwrap();
    let layers: Vec<&str> = saved["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(inspected["Layers"], serde_json::json!(layers));
    assert_eq!(inspected["Digest"], saved["manifest"]);
    let oci_dir = dir.join("copied");
    skopeo_copy(&source, &format!("oci:{}:copied", oci_dir.display()));
    let bundle = dir.join("bundle");
    peer(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:copied", oci_dir.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    assert!(bundle.join("rootfs/etc/passwd").is_file());

    // rmi, then load from the file: the same image comes back under its name and runs.
    run(&berthd, &["rmi", &image]);
    assert!(image_ids(&berthd).is_empty());
    let out = run(&berthd, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {image}"));
    let ids = image_ids(&berthd);
    assert_eq!(ids, vec![saved["config"].as_str().unwrap().to_string()]);
    let out = run(
        &berthd,
        &["run", "--rm", &image, "echo", "loaded-and-running"],
    );
    assert!(out.contains("loaded-and-running"), "{out}");
    assert_eq!(image_ids(&berthd), ids, "run must not have pulled");

    // A loaded image keeps its blobs: saved again (to stdout) it is the same archive content,
    // and loading that from stdin is a no-op that names it again.
    let again = dir.join("again.tar");
    let out = Command::new(berth_binary().unwrap())
        .arg("-H")
        .arg(format!("unix://{}", berthd.socket.display()))
        .args(["save", &image])
        .stdout(std::fs::File::create(&again).unwrap())
        .status()
        .unwrap();
    assert!(out.success());
    let second = check_layout(&again);
    assert_eq!(second["images"], layout["images"]);
    let (ok, out, err) = cli_with_stdin(&berthd, &["load"], &again);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("Loaded image: {image}"));

    // Saving to a terminal is refused, and so is an unknown image (nothing written).
    let (ok, _, err) = berthd
        .cli(&[
            "save",
            "no-such-image:1",
            "-o",
            dir.join("x.tar").to_str().unwrap(),
        ])
        .unwrap();
    assert!(!ok && err.contains("not found"), "{err}");
    assert!(!dir.join("x.tar").exists() && !dir.join("x.tar.berth-partial").exists());

    // Two images in one archive: both named in index.json, both loaded back.
    let config = format!("{SHARED}/berth-test/config:latest");
    run(&berthd, &["pull", "-q", &config]);
    let two = dir.join("two.tar");
    run(
        &berthd,
        &["save", &image, &config, "-o", two.to_str().unwrap()],
    );
    let both = check_layout(&two);
    let mut refs: Vec<&String> = both["refs"].as_object().unwrap().keys().collect();
    refs.sort();
    assert_eq!(refs, [&image, &config]);
    let inspected: Value = serde_json::from_str(&peer(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("oci-archive:{}:{config}", two.display()),
        ],
    ))
    .unwrap();
    assert_eq!(inspected["config"]["WorkingDir"], "/work/dir");
    run(&berthd, &["rmi", &image, &config]);
    let out = run(&berthd, &["load", "-i", two.to_str().unwrap()]);
    let mut loaded: Vec<&str> = out.lines().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            format!("Loaded image: {image}"),
            format!("Loaded image: {config}")
        ]
    );
    let out = run(&berthd, &["run", "--rm", &config]);
    assert!(
        out.contains("entry-ok") && out.contains("FOO=from-image"),
        "{out}"
    );

    run(&berthd, &["rmi", &image, &config]);
    assert_eq!(store_state(&berthd), (vec![], 0, vec![]));
    berthd.finish();
}

#[tokio::test]
async fn load_skopeo_and_docker_archives_and_refuse_tampered_ones() {
    let berthd = Berthd::start("archiveload").await.unwrap();
    let dir = berthd.dir.join("archives");
    std::fs::create_dir_all(&dir).unwrap();
    let layout = test_layout();
    // An oci-archive skopeo made (three layers, whiteouts and an opaque dir).
    let oci = dir.join("whiteout-oci.tar");
    skopeo_copy(
        &format!("oci:{}:whiteout", layout.display()),
        &format!("oci-archive:{}:berth-e2e/whiteout:1", oci.display()),
    );
    let out = run(&berthd, &["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: docker.io/berth-e2e/whiteout:1");
    let listed: Value = serde_json::from_str(&run(&berthd, &["images", "-o", "json"])).unwrap();
    let image = &listed["images"][0];
    assert_eq!(image["id"].as_str().unwrap(), layout_config("whiteout").0);
    assert_eq!(
        image["repoTags"],
        serde_json::json!(["docker.io/berth-e2e/whiteout:1"])
    );
    // docker.io is out of reach: this runs the loaded image or nothing.
    let out = run(
        &berthd,
        &[
            "run",
            "--rm",
            "berth-e2e/whiteout:1",
            "sh",
            "-c",
            "ls /data /dir",
        ],
    );
    assert!(
        out.contains("keep.txt") && out.contains("added.txt"),
        "{out}"
    );
    assert!(!out.contains("gone.txt") && !out.contains("old-a"), "{out}");

    // zstd layers load too (a layout from skopeo keeps the blob as it is).
    let zstd = dir.join("zstd-oci.tar");
    skopeo_copy(
        &format!("oci:{}:zstd", layout.display()),
        &format!("oci-archive:{}:berth-e2e/zstd:1", zstd.display()),
    );
    run(&berthd, &["load", "-i", zstd.to_str().unwrap()]);
    let out = run(
        &berthd,
        &["run", "--rm", "berth-e2e/zstd:1", "cat", "/zstd-marker"],
    );
    assert_eq!(out.trim(), "zstd");
    run(&berthd, &["rmi", "berth-e2e/zstd:1"]);

    // A docker-archive (manifest.json + plain layer tars), as skopeo and docker save write it.
    let docker = dir.join("busybox-docker.tar");
    skopeo_copy(
        &format!("oci:{}:busybox-amd64", layout.display()),
        &format!("docker-archive:{}:berth-e2e/docker:2", docker.display()),
    );
    let out = run(&berthd, &["load", "-i", docker.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: docker.io/berth-e2e/docker:2");
    let out = run(
        &berthd,
        &["run", "--rm", "berth-e2e/docker:2", "echo", "from-docker"],
    );
    assert!(out.contains("from-docker"), "{out}");
    let docker_id = run(
        &berthd,
        &["inspect", "berth-e2e/docker:2", "--format", "{{.ID}}"],
    );
    assert_eq!(docker_id.trim(), layout_config("busybox-amd64").0);

    // Tampered: one byte of the biggest file changed (a layer), the tar otherwise intact.
    let tampered = dir.join("tampered.tar");
    tamper(&oci, &tampered, "len(data) // 2");
    run(&berthd, &["rmi", "berth-e2e/whiteout:1"]);
    let after_rmi = store_state(&berthd);
    let (ok, _, err) = berthd
        .cli(&["load", "-i", tampered.to_str().unwrap()])
        .unwrap();
    assert!(!ok && err.contains("digest mismatch"), "{err}");
    assert_eq!(
        store_state(&berthd),
        after_rmi,
        "a refused load left something"
    );
    // A docker archive whose layer was changed fails its diff ID check, also leaving nothing.
    let tampered_docker = dir.join("tampered-docker.tar");
    tamper(&docker, &tampered_docker, "-2000");
    run(&berthd, &["rmi", "berth-e2e/docker:2"]);
    let empty = store_state(&berthd);
    assert_eq!(empty, (vec![], 0, vec![]));
    let (ok, _, err) = berthd
        .cli(&["load", "-i", tampered_docker.to_str().unwrap()])
        .unwrap();
    assert!(!ok && err.contains("diff ID"), "{err}");
    assert_eq!(store_state(&berthd), empty, "a refused load left something");
    // Not an archive at all.
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 3000]).unwrap();
    let (ok, _, err) = berthd.cli(&["load", "-i", junk.to_str().unwrap()]).unwrap();
    assert!(!ok && err.contains("archive"), "{err}");
    assert!(image_ids(&berthd).is_empty());
    assert_eq!(store_state(&berthd), empty);
    berthd.finish();
}

#[tokio::test]
async fn commit_makes_a_runnable_image_with_the_changes_and_a_history_entry() {
    let berthd = Berthd::start("archivecommit").await.unwrap();
    let dir = berthd.dir.join("archives");
    std::fs::create_dir_all(&dir).unwrap();
    let image = busybox();
    run(&berthd, &["pull", "-q", &image]);
    let base: Value = serde_json::from_str(&run(&berthd, &["images", "-o", "json"])).unwrap();
    let base = base["images"][0].clone();
    run(
        &berthd,
        &[
            "run",
            "-d",
            "--name",
            "changer",
            &image,
            "sh",
            "-c",
            "echo committed > /new-file && rm /bin/ls && rm -rf /home && mkdir /home && \
             echo only > /home/only && touch /ready && exec sleep 600",
        ],
    );
    let mut ready = false;
    for _ in 0..100 {
        let (ok, _, _) = berthd
            .cli(&["exec", "changer", "test", "-e", "/ready"])
            .unwrap();
        if ok {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ready, "the container did not make its changes");

    let out = run(
        &berthd,
        &[
            "commit",
            "-a",
            "E2E <e2e@example.com>",
            "-m",
            "e2e commit",
            "--pause",
            "changer",
            "berth-e2e/committed:1",
        ],
    );
    let id = out.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    // Paused only for the copy.
    let state = run(
        &berthd,
        &["inspectc", "changer", "--format", "{{.status.state}}"],
    );
    assert_eq!(state.trim(), "CONTAINER_RUNNING");

    // Listed at once, with the base's size plus a small layer and config.
    let listed: Value = serde_json::from_str(&run(&berthd, &["images", "-o", "json"])).unwrap();
    let committed = listed["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"))
        .clone();
    assert_eq!(
        committed["repoTags"],
        serde_json::json!(["docker.io/berth-e2e/committed:1"])
    );
    let size = |v: &Value| -> u64 {
        v["size"]
            .as_str()
            .map(|s| s.parse().unwrap())
            .or(v["size"].as_u64())
            .unwrap()
    };
    let grown = size(&committed) - size(&base);
    assert!(grown > 100 && grown < 16 * 1024, "{committed} vs {base}");

    // The config: one more diff ID, the history entry, env and cmd kept.
    let inspected: Value =
        serde_json::from_str(&run(&berthd, &["inspect", "berth-e2e/committed:1"])).unwrap();
    let spec = &inspected["info"]["imageSpec"];
    let history = spec["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["author"], "E2E <e2e@example.com>");
    assert_eq!(last["comment"], "e2e commit");
    assert!(last["created"].is_string());
    assert!(
        last["created_by"]
            .as_str()
            .unwrap()
            .starts_with("berth commit")
    );
    assert_eq!(spec["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(spec["config"]["Cmd"], serde_json::json!(["sh"]));

    // Runnable at once: the new file is there, the deleted one stays deleted, /home is opaque (its lower content hidden).
    let out = run(
        &berthd,
        &[
            "run",
            "--rm",
            "berth-e2e/committed:1",
            "sh",
            "-c",
            "cat /new-file; test -e /bin/ls && echo ls-present || echo ls-gone; ls /home",
        ],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["committed", "ls-gone", "only"]
    );

    // Saved, the committed layer is the stored gzip blob with OCI whiteouts in it.
    let archive = dir.join("committed.tar");
    run(
        &berthd,
        &[
            "save",
            "berth-e2e/committed:1",
            "-o",
            archive.to_str().unwrap(),
        ],
    );
    let layout = check_layout(&archive);
    let layers = layout["images"][0]["layers"].as_array().unwrap();
    let top = layers.last().unwrap();
    assert_eq!(
        top["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    // The size ListImages shows is exact: the base's, less its config, plus the new config and
    // the new layer's blob (the saved config has the same length as the committed one: only
    // the rewritten base diff IDs differ, each as long as before).
    let base_config_size = layout_config("busybox-amd64").1;
    assert_eq!(
        size(&committed),
        size(&base) - base_config_size
            + layout["images"][0]["config_size"].as_u64().unwrap()
            + top["size"].as_u64().unwrap(),
        "{committed} vs {base}"
    );
    let names = peer(
        "python3",
        &[
            "-c",
            r#"
import gzip, io, sys, tarfile
t = tarfile.open(sys.argv[1])
layer = t.extractfile("blobs/sha256/" + sys.argv[2].split(":")[1]).read()
print("\n".join(sorted(tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))).getnames())))
"#,
            archive.to_str().unwrap(),
            top["digest"].as_str().unwrap(),
        ],
    );
    let names: Vec<&str> = names.lines().collect();
    for wanted in ["bin/.wh.ls", "home/.wh..wh..opq", "home/only", "new-file"] {
        assert!(names.contains(&wanted), "{wanted} not in {names:?}");
    }

    // A commit without a name is found by its id; a bad name is refused.
    let out = run(&berthd, &["commit", "changer"]);
    let unnamed = out.trim().to_string();
    assert!(image_ids(&berthd).contains(&unnamed));
    let (ok, _, err) = berthd.cli(&["commit", "changer", "Bad Name"]).unwrap();
    assert!(!ok && err.contains("Bad Name"), "{err}");

    run(&berthd, &["rm", "-f", "changer"]);
    // `run -d` made a pod for it, which outlives the container.
    run(&berthd, &["rmp", "--all", "--force"]);
    run(&berthd, &["rmi", &unnamed, "berth-e2e/committed:1", &image]);
    assert_eq!(store_state(&berthd), (vec![], 0, vec![]));
    berthd.finish();
}
