//! Runs containers with seccomp filters under the real runc and checks from inside that the
//! filter is the one asked for. Needs root, runc in PATH, a static busybox at /usr/bin/busybox
//! and permission to create cgroups (CI has all of them); without them each test says why and
//! passes without running. The helpers are small copies of tests/runc.rs's.
//!
//! Every container gets its own UTS and network namespaces (added to the built spec, and the
//! script checks it before calling `hostname`), so nothing here can change the host.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use berth_spec::{ContainerConfig, ImageConfig, SandboxInfo, SeccompProfile, SpecInput, build};
use berth_spec::{SpecError, write_bundle_config};
use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, Spec};

const IMAGE_CONFIG: &str = r#"{"config":{
    "Entrypoint":["/bin/sh","-c"],
    "Cmd":["echo default"],
    "Env":["PATH=/bin"],
    "WorkingDir":"/"
}}"#;

const TOOLS: &[&str] = &[
    "sh", "id", "cat", "grep", "ls", "echo", "touch", "hostname", "readlink", "chmod", "stat",
    "sleep", "wget", "ps", "uname",
];

fn rootfs(dir: &Path, with_busybox: bool) {
    let tools = if with_busybox { TOOLS } else { &[] };
    common::busybox_rootfs(dir, tools, "root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n");
}

/// A root container running `script` with `seccomp` and the default capabilities plus `add`.
fn config(script: &str, seccomp: SeccompProfile, add: &[&str]) -> ContainerConfig {
    let mut config = ContainerConfig {
        name: "s".into(),
        args: vec![script.into()],
        ..Default::default()
    };
    config.security.run_as_user = Some(0);
    config.security.seccomp = seccomp;
    config.security.add_capabilities = add.iter().map(|c| c.to_string()).collect();
    config
}

fn build_in(t: &Path, id: &str, config: &ContainerConfig) -> Result<Spec, SpecError> {
    let root = t.join("bundle/rootfs");
    let volumes = t.join("volumes");
    fs::create_dir_all(&volumes).unwrap();
    let image = ImageConfig::from_json(IMAGE_CONFIG.as_bytes()).unwrap();
    build(&SpecInput {
        container_id: id,
        config,
        image: &image,
        image_name: "busybox:test",
        rootfs: &root,
        volumes_dir: &volumes,
        sandbox: SandboxInfo {
            id: "sb",
            hostname: "seccomp-test",
            // A top-level cgroup of its own: runc removes it when the container exits.
            cgroups_path: Some(format!("/{id}")),
            ..Default::default()
        },
        cgroup_unified: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
    })
    .map(|built| built.spec)
}

/// Gives the container new UTS and network namespaces (the sandbox above has none, which would
/// mean the host's) and checks the spec says so.
fn isolate(spec: &mut Spec) {
    let mut linux = spec.linux().clone().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| {
        !matches!(
            n.typ(),
            LinuxNamespaceType::Uts | LinuxNamespaceType::Network
        )
    });
    for typ in [LinuxNamespaceType::Uts, LinuxNamespaceType::Network] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build().unwrap());
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    let ns = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap();
    assert!(
        ns.iter()
            .any(|n| n.typ() == LinuxNamespaceType::Uts && n.path().is_none()),
        "the container must get a new UTS namespace"
    );
}

/// Builds, runs to completion and returns stdout + stderr. The script must exit 0.
fn run(name: &str, config: &ContainerConfig) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    rootfs(&t.join("bundle/rootfs"), true);
    let id = format!("berth-seccomp-{name}-{}", std::process::id());
    let mut spec = build_in(t, &id, config).unwrap();
    isolate(&mut spec);
    write_bundle_config(&t.join("bundle"), &spec).unwrap();
    let out = Command::new("runc")
        .args([
            "--root",
            t.join("runc").to_str().unwrap(),
            "run",
            "--bundle",
        ])
        .arg(t.join("bundle"))
        .arg(&id)
        .output()
        .expect("running runc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}{stderr}");
    println!("--- {name}:\n{all}");
    assert!(
        out.status.success(),
        "runc failed ({:?}): {all}",
        out.status
    );
    all
}

/// Refuses to go on inside the host's UTS namespace, then tries to set the hostname.
fn hostname_script() -> String {
    let host_uts = fs::read_link("/proc/self/ns/uts").unwrap();
    format!(
        "if [ \"$(readlink /proc/self/ns/uts)\" = \"{}\" ]; then echo SHARED-UTS; exit 99; fi; \
         if hostname x; then echo set-ok; hostname; else echo set-failed; fi",
        host_uts.display()
    )
}

fn profile_file(dir: &Path, json: &str) -> SeccompProfile {
    let path = dir.join("profile.json");
    fs::File::create(&path)
        .unwrap()
        .write_all(json.as_bytes())
        .unwrap();
    SeccompProfile::Localhost(path.to_string_lossy().into_owned())
}

#[test]
fn runtime_default_is_enforced_and_common_commands_work() {
    if !common::runnable() {
        return;
    }
    let script = "grep Seccomp: /proc/self/status; id; ls / > /dev/null && echo ls-ok; \
                  cat /etc/passwd; sleep 0.1 && echo sleep-ok; uname -r > /dev/null; \
                  touch /tmp/f && chmod 600 /tmp/f && stat -c %a /tmp/f; \
                  ps > /dev/null && echo ps-ok; \
                  wget -O /dev/null http://127.0.0.1:1/; echo wget=$?; \
                  (echo sub) | cat; echo done";
    let out = run(
        "default",
        &config(script, SeccompProfile::RuntimeDefault, &[]),
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
    for want in [
        "uid=0(root)",
        "ls-ok",
        "root:x:0:0",
        "sleep-ok",
        "600",
        "ps-ok",
        "sub",
        "done",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // wget fails to connect (the new network namespace has no interface up), not on seccomp
    // (its socket family is allowed). Busybox 1.35's `wget -T` crashes, hence no timeout.
    assert!(out.contains("wget=1\n"), "{out}");
    assert!(out.contains("wget: can't connect"), "{out}");
    assert!(!out.contains("Operation not permitted"), "{out}");
    assert!(!out.contains("Bad system call"), "{out}");

    let out = run(
        "unconfined",
        &config(script, SeccompProfile::Unconfined, &[]),
    );
    assert!(out.contains("Seccomp:\t0"), "{out}");
}

#[test]
fn runtime_default_allows_sethostname_only_with_sys_admin() {
    if !common::runnable() {
        return;
    }
    let script = hostname_script();
    let out = run(
        "nohost",
        &config(&script, SeccompProfile::RuntimeDefault, &[]),
    );
    assert!(!out.contains("SHARED-UTS"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("set-failed"), "{out}");

    let out = run(
        "host",
        &config(&script, SeccompProfile::RuntimeDefault, &["SYS_ADMIN"]),
    );
    assert!(!out.contains("SHARED-UTS"), "{out}");
    assert!(out.contains("set-ok\nx\n"), "{out}");
}

#[test]
fn localhost_profiles_are_enforced() {
    if !common::runnable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // OCI format: everything allowed but sethostname.
    let no_hostname = profile_file(
        dir.path(),
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["sethostname"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    );
    let out = run(
        "lhost",
        &config(&hostname_script(), no_hostname, &["SYS_ADMIN"]),
    );
    assert!(!out.contains("SHARED-UTS"), "{out}");
    assert!(
        out.contains("Operation not permitted") && out.contains("set-failed"),
        "{out}"
    );

    // Docker format: chmod blocked (fchmodat2 is unknown to older libseccomp: runc skips it).
    let dir = tempfile::tempdir().unwrap();
    let no_chmod = profile_file(
        dir.path(),
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86","SCMP_ARCH_X32"]},
                       {"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}],
            "syscalls":[
              {"names":["chmod","fchmod","fchmodat","fchmodat2"],"action":"SCMP_ACT_ERRNO","errnoRet":1},
              {"name":"getpid","action":"SCMP_ACT_ALLOW","comment":"same as the default: skipped by runc"}]}"#,
    );
    let script = "touch /tmp/f; chmod 700 /tmp/f; echo chmod=$?; stat -c %a /tmp/f";
    let out = run("lchmod", &config(script, no_chmod, &[]));
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("chmod=1"), "{out}");
    assert!(!out.contains("700"), "{out}");
}

#[test]
fn privileged_containers_run_unconfined() {
    if !common::runnable() {
        return;
    }
    let mut c = config(
        "grep Seccomp: /proc/self/status",
        SeccompProfile::RuntimeDefault,
        &[],
    );
    c.security.privileged = true;
    let out = run("priv", &c);
    assert!(out.contains("Seccomp:\t0"), "{out}");
}

#[test]
fn a_missing_localhost_profile_is_an_invalid_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    rootfs(&t.join("bundle/rootfs"), false);
    let missing = t.join("no-such-profile.json");
    let c = config(
        "true",
        SeccompProfile::Localhost(missing.to_string_lossy().into_owned()),
        &[],
    );
    let err = build_in(t, "missing", &c).unwrap_err();
    assert!(
        matches!(err, SpecError::UnreadableSeccompProfile { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-profile.json"), "{err}");
    // Refused before any side effect: no volume dir, nothing created in the rootfs.
    assert!(!t.join("bundle/rootfs/root").exists());
}

/// What the filter costs runc: `runc run --detach` of the same bundle (a `sleep`) with and
/// without the built-in profile, interleaved, then `runc delete -f`; prints p50 / p90 of the run.
/// Not run by default (timing, and about 30 s):
/// `cargo test -p berth-spec --test seccomp_runc -- --ignored --nocapture startup_cost`
/// (`SECCOMP_COST_RUNS` sets the number of runs of each, 40 by default).
#[test]
#[ignore]
fn startup_cost_of_the_runtime_default_profile() {
    if !common::runnable() {
        return;
    }
    let runs: usize = std::env::var("SECCOMP_COST_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let variants = [
        ("unconfined", SeccompProfile::Unconfined),
        ("runtime-default", SeccompProfile::RuntimeDefault),
    ];
    let mut bundles = Vec::new();
    for (name, profile) in &variants {
        let dir = t.join(name);
        rootfs(&dir.join("bundle/rootfs"), true);
        let id = format!("berth-seccomp-cost-{name}-{}", std::process::id());
        let mut c = config("true", profile.clone(), &[]);
        c.args = vec!["sleep 1000".into()];
        let mut spec = build_in(&dir, &id, &c).unwrap();
        isolate(&mut spec);
        write_bundle_config(&dir.join("bundle"), &spec).unwrap();
        bundles.push((name, id, dir));
    }
    let runc = |dir: &Path, args: &[&str]| {
        let status = Command::new("runc")
            .arg("--root")
            .arg(t.join("runc"))
            .args(args)
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running runc");
        assert!(status.success(), "runc {args:?}: {status:?}");
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); bundles.len()];
    for _ in 0..runs {
        for (i, (_, id, dir)) in bundles.iter().enumerate() {
            let start = std::time::Instant::now();
            runc(dir, &["run", "--detach", "--bundle", "bundle", id]);
            times[i].push(start.elapsed().as_secs_f64() * 1e3);
            runc(dir, &["delete", "-f", id]);
        }
    }
    // A percentile's index: p is in 0..=1, and min keeps it in range.
    #[allow(clippy::cast_possible_truncation)]
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    let base = pct(&mut times[0].clone(), 0.5);
    for ((name, _, _), v) in bundles.iter().zip(&mut times) {
        let (p50, p90) = (pct(v, 0.5), pct(v, 0.9));
        println!(
            "{name:16} runc run --detach: p50 {p50:6.1} ms  p90 {p90:6.1} ms  p50 - unconfined {:+5.1} ms",
            p50 - base
        );
    }
}
