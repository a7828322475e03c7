//! The `berth` CLI as crictl and docker users expect it, against a real berthd: where the endpoint
//! comes from, docker's exit codes, machine-readable output and crictl's list filters.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use berth_e2e::registry::SHARED;
use berth_e2e::{Berthd, berth_binary};

/// What one run of `berth` gave: its exit code, stdout and stderr.
struct Out {
    code: i32,
    out: String,
    err: String,
}

/// Runs `berth` with exactly the endpoint-related environment given (the test runner's own
/// BERTH_ENDPOINT and the like must not leak in).
fn berth_env(env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut cmd = Command::new(berth_binary().unwrap());
    for var in [
        "BERTH_ENDPOINT",
        "CONTAINER_RUNTIME_ENDPOINT",
        "CRI_CONFIG_FILE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .envs(env.iter().copied())
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

/// `berth -H <this berthd> ARGS`.
fn berth(berthd: &Berthd, args: &[&str]) -> Out {
    let endpoint = format!("unix://{}", berthd.socket.display());
    let mut all = vec!["-H", endpoint.as_str()];
    all.extend_from_slice(args);
    berth_env(&[], &all)
}

/// Removes every pod if the test fails half-way, so a failure leaves no containers running
/// (berthd's monitors outlive it by design).
struct RemovePodsOnPanic<'a>(&'a Berthd);

impl Drop for RemovePodsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let pods = berth(self.0, &["pods", "-q"]);
            for pod in pods.out.split_whitespace() {
                berth(self.0, &["stopp", pod]);
                berth(self.0, &["rmp", pod]);
            }
        }
    }
}

/// Stops and removes every pod (and so every container) left on this berthd.
fn remove_all_pods(berthd: &Berthd) {
    let pods = berth(berthd, &["pods", "-q"]);
    assert_eq!(pods.code, 0, "{}", pods.err);
    for pod in pods.out.split_whitespace() {
        assert_eq!(berth(berthd, &["stopp", pod]).code, 0);
        assert_eq!(berth(berthd, &["rmp", pod]).code, 0);
    }
}

#[tokio::test]
async fn endpoint_comes_from_flag_env_then_crictl_config() {
    let berthd = Berthd::start("cliendpoint").await.unwrap();
    let socket = berthd.socket.to_str().unwrap().to_string();
    let good = format!("unix://{socket}");
    let bad = format!("unix://{}/nothing.sock", berthd.dir.display());
    let version_ok = |o: &Out| o.code == 0 && o.out.contains("Runtime name:");

    let o = berth_env(&[], &["-H", &good, "version"]);
    assert!(version_ok(&o), "{} {}", o.out, o.err);
    let o = berth_env(&[], &["--endpoint", &socket, "version"]);
    assert!(version_ok(&o), "a bare path is a unix socket: {}", o.err);
    let o = berth_env(&[("BERTH_ENDPOINT", &good)], &["version"]);
    assert!(version_ok(&o), "{}", o.err);
    let o = berth_env(&[("CONTAINER_RUNTIME_ENDPOINT", &socket)], &["version"]);
    assert!(version_ok(&o), "{}", o.err);

    // crictl's config file: --config, else CRI_CONFIG_FILE.
    let config = berthd.dir.join("crictl.yaml");
    std::fs::write(
        &config,
        format!("runtime-endpoint: \"{good}\"\nimage-endpoint: {good}\ntimeout: 2\ndebug: false\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let o = berth_env(&[], &["--config", config, "version"]);
    assert!(version_ok(&o), "{}", o.err);
    let o = berth_env(&[("CRI_CONFIG_FILE", config)], &["version"]);
    assert!(version_ok(&o), "{}", o.err);

    // Precedence: flag > BERTH_ENDPOINT > CONTAINER_RUNTIME_ENDPOINT > config file.
    let o = berth_env(&[("BERTH_ENDPOINT", &bad)], &["-H", &good, "version"]);
    assert!(version_ok(&o), "the flag wins: {}", o.err);
    let o = berth_env(
        &[
            ("BERTH_ENDPOINT", &bad),
            ("CONTAINER_RUNTIME_ENDPOINT", &good),
        ],
        &["version"],
    );
    assert_eq!(o.code, 125, "BERTH_ENDPOINT wins: {} {}", o.out, o.err);
    assert!(o.err.contains("nothing.sock"), "{}", o.err);
    let o = berth_env(
        &[("CONTAINER_RUNTIME_ENDPOINT", &bad)],
        &["--config", config, "version"],
    );
    assert_eq!(o.code, 125, "the variable wins over the file: {}", o.err);
    let o = berth_env(&[], &["--config", "/nonexistent/crictl.yaml", "version"]);
    assert_eq!(o.code, 125, "{}", o.err);
    assert!(o.err.contains("/nonexistent/crictl.yaml"), "{}", o.err);

    // The help says where the endpoint comes from.
    let o = berth_env(&[], &["--help"]);
    assert_eq!(o.code, 0, "{}", o.err);
    for word in [
        "BERTH_ENDPOINT",
        "CONTAINER_RUNTIME_ENDPOINT",
        "/etc/crictl.yaml",
        "unix:///run/berth/berth.sock",
    ] {
        assert!(o.out.contains(word), "--help lacks {word}: {}", o.out);
    }
    berthd.finish();
}

#[tokio::test]
async fn exit_codes_are_dockers() {
    let berthd = Berthd::start("cliexit").await.unwrap();
    let cleanup = RemovePodsOnPanic(&berthd);
    let image = format!("{SHARED}/berth-test/busybox:latest");
    let logs = berthd.dir.join("cli-logs");
    let logs = logs.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "--log-dir", logs, image.as_str()];
        all.extend_from_slice(args);
        berth(&berthd, &all)
    };

    let o = run(&["sh", "-c", "exit 3"]);
    assert_eq!(o.code, 3, "{}", o.err);
    let o = run(&["true"]);
    assert_eq!(o.code, 0, "{}", o.err);
    let o = run(&["no-such-command"]);
    assert_eq!(o.code, 127, "not found: {}", o.err);
    let o = run(&["/etc/passwd"]);
    assert_eq!(o.code, 126, "not executable: {}", o.err);
    let o = berth(&berthd, &["ps", "-a", "-q"]);
    assert!(o.out.trim().is_empty(), "--rm left {}", o.out);

    let o = berth(
        &berthd,
        &[
            "run",
            "-d",
            "--name",
            "idle",
            "--log-dir",
            logs,
            &image,
            "sleep",
            "300",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let id = o.out.trim().to_string();
    let o = berth(&berthd, &["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(o.code, 7, "{}", o.err);
    let o = berth(&berthd, &["exec", &id, "no-such-command"]);
    assert_eq!(o.code, 127, "{} {}", o.out, o.err);
    let o = berth(&berthd, &["exec", &id, "/etc/passwd"]);
    assert_eq!(o.code, 126, "{} {}", o.out, o.err);

    // Errors of berth or of the runtime.
    assert_eq!(berth(&berthd, &["inspect", "no-such-thing"]).code, 125);
    assert_eq!(berth(&berthd, &["ps", "--no-such-flag"]).code, 125);
    assert_eq!(berth(&berthd, &["rm", &id]).code, 125, "running");
    let o = berth_env(&[], &["-H", "unix:///nonexistent.sock", "ps"]);
    assert_eq!(o.code, 125, "{}", o.err);
    assert_eq!(berth(&berthd, &["--version"]).code, 0);

    remove_all_pods(&berthd);
    drop(cleanup);
    berthd.finish();
}

/// A YAML document read by a real YAML parser (PyYAML), as JSON, to compare with `-o json`.
fn yaml_as_json(text: &str) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (python3-yaml) reads the YAML output");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "YAML did not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn json(o: &Out) -> serde_json::Value {
    assert_eq!(o.code, 0, "{}", o.err);
    serde_json::from_str(&o.out).unwrap_or_else(|e| panic!("{e}: {}", o.out))
}

/// `-o yaml` says what `-o json` says.
fn same_in_yaml(berthd: &Berthd, args: &[&str]) -> serde_json::Value {
    let mut j = args.to_vec();
    j.extend(["-o", "json"]);
    let mut y = args.to_vec();
    y.extend(["-o", "yaml"]);
    let from_json = json(&berth(berthd, &j));
    let o = berth(berthd, &y);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(yaml_as_json(&o.out), from_json, "{args:?}");
    from_json
}

fn ids(o: &Out) -> Vec<String> {
    assert_eq!(o.code, 0, "{}", o.err);
    o.out.split_whitespace().map(str::to_string).collect()
}

/// A table's header cells (columns are separated by at least three spaces; names have one).
fn header(o: &Out) -> Vec<String> {
    assert_eq!(o.code, 0, "{}", o.err);
    let first = o.out.lines().next().unwrap_or_default();
    first
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn lists_filter_and_print_json_yaml_and_templates() {
    let berthd = Berthd::start("cliformats").await.unwrap();
    let cleanup = RemovePodsOnPanic(&berthd);
    let image = format!("{SHARED}/berth-test/busybox:latest");
    let logs = berthd.dir.join("cli-logs");
    let logs = logs.to_str().unwrap();
    let b = |args: &[&str]| berth(&berthd, args);
    let one = |args: &[&str]| {
        let o = b(args);
        assert_eq!(o.code, 0, "{args:?}: {}", o.err);
        o.out.trim().to_string()
    };

    one(&["pull", &image]);
    let pod_a = one(&[
        "runp",
        "web",
        "-n",
        "ns-a",
        "--label",
        "app=web",
        "--log-dir",
        logs,
    ]);
    let pod_b = one(&["runp", "db", "-n", "ns-b", "--log-dir", logs]);
    let c1 = one(&[
        "create",
        "--pod",
        &pod_a,
        "--name",
        "web-1",
        "--label",
        "tier=front",
        &image,
        "sleep",
        "300",
    ]);
    one(&["start", &c1]);
    // Created after c1, and never started.
    let c2 = one(&[
        "create", "--pod", &pod_b, "--name", "db-1", &image, "sleep", "300",
    ]);

    // ps: JSON fields, YAML, templates, crictl's columns.
    let doc = same_in_yaml(&berthd, &["ps"]);
    let list = doc["containers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "running only: {doc}");
    let c = &list[0];
    assert_eq!(c["id"], c1.as_str());
    assert_eq!(c["podSandboxId"], pod_a.as_str());
    assert_eq!(
        (c["podName"].as_str(), c["podNamespace"].as_str()),
        (Some("web"), Some("ns-a"))
    );
    assert_eq!(
        (c["name"].as_str(), c["attempt"].as_i64()),
        (Some("web-1"), Some(0))
    );
    assert_eq!(c["state"], "CONTAINER_RUNNING");
    assert_eq!(c["image"], image.as_str());
    assert!(
        c["imageRef"].as_str().unwrap().starts_with("sha256:"),
        "{c}"
    );
    assert_eq!(c["labels"]["tier"], "front");
    assert!(c["createdAt"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    let all = same_in_yaml(&berthd, &["ps", "-a"]);
    assert_eq!(all["containers"].as_array().unwrap().len(), 2);
    let o = b(&[
        "ps",
        "-a",
        "--format",
        "{{.ID}}\\t{{.Name}} {{.PodNamespace}}/{{.State}}",
    ]);
    let lines: Vec<&str> = o.out.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{c2}\tdb-1 ns-b/CONTAINER_CREATED"),
            format!("{c1}\tweb-1 ns-a/CONTAINER_RUNNING"),
        ],
        "{}",
        o.err
    );
    let o = b(&["ps", "--format", "{{.Nope}}"]);
    assert_eq!(o.code, 125, "{}", o.err);
    let columns = [
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
        "POD",
        "NAMESPACE",
    ];
    assert_eq!(header(&b(&["ps", "-a"])), columns);
    let o = b(&["ps", "-a"]);
    let row = o.out.lines().find(|l| l.starts_with(&c1[..13])).unwrap();
    assert!(
        row.contains("web-1") && row.contains("ns-a") && !row.contains(&c1),
        "{row}"
    );
    let o = b(&["ps", "-a", "--no-trunc"]);
    assert!(o.out.lines().any(|l| l.starts_with(&c1)), "{}", o.out);
    let wide = header(&b(&["ps", "-o", "wide"]));
    assert_eq!(
        wide.last().map(String::as_str),
        Some("IMAGE REF"),
        "{wide:?}"
    );

    // ps filters.
    assert_eq!(
        ids(&b(&["ps", "-a", "-q", "--name", "^db"])),
        vec![c2.clone()]
    );
    assert_eq!(ids(&b(&["ps", "-a", "-q", "--name=-1$"])).len(), 2);
    assert_eq!(
        ids(&b(&["ps", "-a", "-q", "--namespace", "ns-a"])),
        vec![c1.clone()]
    );
    assert_eq!(
        ids(&b(&["ps", "-a", "-q", "--pod", &pod_b[..8]])),
        vec![c2.clone()]
    );
    assert_eq!(
        ids(&b(&["ps", "-q", "--state", "created"])),
        vec![c2.clone()]
    );
    assert_eq!(
        ids(&b(&["ps", "-a", "-q", "--label", "tier=front"])),
        vec![c1.clone()]
    );
    assert_eq!(
        ids(&b(&["ps", "-q", "-l"])),
        vec![c2.clone()],
        "--latest: any state"
    );
    assert_eq!(ids(&b(&["ps", "-q", "-n", "2"])), [c2.clone(), c1.clone()]);
    assert_eq!(ids(&b(&["ps", "-a", "-q", "--image", &image])).len(), 2);
    let image_id = c["imageRef"].as_str().unwrap().to_string();
    assert_eq!(ids(&b(&["ps", "-a", "-q", "--image", &image_id])).len(), 2);
    assert!(ids(&b(&["ps", "-a", "-q", "--image", "other:1"])).is_empty());
    assert_eq!(b(&["ps", "--name", "("]).code, 125, "a bad regex");

    // pods.
    let doc = same_in_yaml(&berthd, &["pods"]);
    let items = doc["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{doc}");
    let a = items.iter().find(|p| p["id"] == pod_a.as_str()).unwrap();
    assert_eq!(
        (a["name"].as_str(), a["namespace"].as_str()),
        (Some("web"), Some("ns-a"))
    );
    assert_eq!(
        (a["state"].as_str(), a["labels"]["app"].as_str()),
        (Some("SANDBOX_READY"), Some("web"))
    );
    assert_eq!(a["uid"].as_str().map(str::len), Some(36));
    assert_eq!(
        ids(&b(&["pods", "-q", "--namespace", "ns-b"])),
        vec![pod_b.clone()]
    );
    assert_eq!(
        ids(&b(&["pods", "-q", "--name", "^we"])),
        vec![pod_a.clone()]
    );
    assert_eq!(
        ids(&b(&["pods", "-q", "--label", "app=web"])),
        vec![pod_a.clone()]
    );
    assert_eq!(
        ids(&b(&["pods", "-q", "--id", &pod_a[..6]])),
        vec![pod_a.clone()]
    );
    assert_eq!(ids(&b(&["pods", "-q", "-l"])), vec![pod_b.clone()]);
    assert!(ids(&b(&["pods", "-q", "--state", "notready"])).is_empty());
    assert_eq!(ids(&b(&["pods", "-q", "--state", "ready"])).len(), 2);
    let o = b(&[
        "pods",
        "--format",
        "{{.Namespace}}/{{.Name}}",
        "--namespace",
        "ns-a",
    ]);
    assert_eq!(o.out, "ns-a/web\n", "{}", o.err);
    assert_eq!(
        header(&b(&["pods", "-o", "wide"]))
            .last()
            .map(String::as_str),
        Some("UID")
    );

    // images.
    let doc = same_in_yaml(&berthd, &["images"]);
    let list = doc["images"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{doc}");
    assert_eq!(list[0]["id"], image_id.as_str());
    assert_eq!(list[0]["repoTags"][0], image.as_str());
    assert!(list[0]["size"].as_u64().unwrap() > 0);
    assert_eq!(list[0]["pinned"], false);
    let o = b(&["images", "--format", "{{.ID}}"]);
    assert_eq!(o.out.trim(), image_id, "{}", o.err);
    assert_eq!(
        header(&b(&["images"])),
        ["IMAGE", "TAG", "IMAGE ID", "SIZE"]
    );
    assert_eq!(
        header(&b(&["images", "--digests", "--pinned"])),
        ["IMAGE", "TAG", "DIGEST", "IMAGE ID", "SIZE", "PINNED"]
    );
    let o = b(&["images", "--no-trunc"]);
    assert!(o.out.contains(&image_id), "{}", o.out);

    // Inspect verbs: JSON by default, YAML the same, templates, tables of fields.
    let doc = json(&b(&["inspectc", &c1]));
    assert_eq!(doc, same_in_yaml(&berthd, &["inspectc", &c1]));
    assert_eq!(
        one(&["inspectc", &c1, "--format", "{{.status.state}}"]),
        "CONTAINER_RUNNING"
    );
    let o = b(&["inspectc", &c1, "-o", "table"]);
    assert!(
        o.out
            .lines()
            .any(|l| l.starts_with("status.state") && l.ends_with("CONTAINER_RUNNING")),
        "{}",
        o.out
    );
    same_in_yaml(&berthd, &["inspectp", &pod_a]);
    assert_eq!(
        one(&[
            "inspectp",
            &pod_a,
            "--format",
            "{{.Status.Metadata.Namespace}}"
        ]),
        "ns-a"
    );
    same_in_yaml(&berthd, &["inspect", &image]);
    assert_eq!(one(&["inspect", &image, "--format", "{{.ID}}"]), image_id);
    assert_eq!(
        one(&["inspect", &c2, "--format", "{{.status.metadata.name}}"]),
        "db-1"
    );
    assert_eq!(
        b(&["inspect", &c2, "-o", "json", "--format", "{{.ID}}"]).code,
        125,
        "one or the other"
    );

    remove_all_pods(&berthd);
    one(&["rmi", &image]);
    drop(cleanup);
    berthd.finish();
}

#[test]
fn completion_man_pages_and_examples_need_no_runtime() {
    // No endpoint at all: these verbs must not try one.
    let none = [("BERTH_ENDPOINT", "unix:///nonexistent.sock")];
    let o = berth_env(&none, &["completion", "bash"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.out.contains("complete") && o.out.contains("inspectp"),
        "{}",
        o.out
    );
    for shell in ["zsh", "fish"] {
        let o = berth_env(&none, &["completion", shell]);
        assert!(o.code == 0 && o.out.contains("berth"), "{shell}: {}", o.err);
    }
    assert_eq!(berth_env(&none, &["completion", "tcsh"]).code, 125);
    // bash itself must accept the script.
    let script = berth_env(&none, &["completion", "bash"]).out;
    let bash = Command::new("bash")
        .args(["-c", &format!("{script}\ncomplete -p berth")])
        .output()
        .unwrap();
    assert!(
        bash.status.success(),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man1");
    let o = berth_env(&none, &["man", man.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.err);
    for page in [
        "berth.1",
        "berth-ps.1",
        "berth-inspectp.1",
        "berth-completion.1",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let ps = std::fs::read_to_string(man.join("berth-ps.1")).unwrap();
    assert!(ps.contains("Examples") && ps.contains("namespace"), "{ps}");

    for verb in ["ps", "run", "exec", "images", "inspect", "pods", "logs"] {
        let o = berth_env(&none, &[verb, "--help"]);
        assert_eq!(o.code, 0, "{}", o.err);
        assert!(
            o.out.contains("Examples:") && o.out.contains(&format!("berth {verb}")),
            "{verb} --help has no example: {}",
            o.out
        );
    }
}
