//! Runs a built spec with the real runc: the spec must be one runc accepts and the container
//! must see what the spec says. Needs root, runc in PATH, a static busybox at /usr/bin/busybox
//! and permission to create cgroups (CI has all of them); without them each test says why and
//! passes without running.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use berth_spec::{
    ContainerConfig, ImageConfig, Mount, SandboxInfo, SpecInput, build, write_bundle_config,
};

const IMAGE_CONFIG: &str = r#"{"config":{
    "Entrypoint":["/bin/sh","-c"],
    "Cmd":["echo default"],
    "Env":["PATH=/bin","GREETING=hello"],
    "WorkingDir":"/work/dir",
    "User":"berth",
    "StopSignal":"SIGUSR1",
    "Volumes":{"/data":{}},
    "ExposedPorts":{"8080/tcp":{}}
}}"#;

fn rootfs(dir: &Path) {
    common::busybox_rootfs(
        dir,
        &[
            "sh", "id", "pwd", "cat", "grep", "ls", "echo", "touch", "hostname", "stat",
        ],
        "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1000:berth:/home/berth:/bin/sh\n",
        "root:x:0:\nberth:x:1000:\nextra:x:2000:berth\n",
    );
}

#[test]
fn runc_runs_the_built_spec() {
    if !common::runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("bundle/rootfs");
    fs::create_dir_all(&root).unwrap();
    rootfs(&root);
    let pod = t.join("pod");
    fs::create_dir_all(pod.join("shm")).unwrap();
    fs::write(pod.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::write(pod.join("resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
    fs::write(pod.join("hostname"), "spec-test\n").unwrap();
    let volumes = t.join("volumes");
    fs::create_dir_all(&volumes).unwrap();
    let shared = t.join("host-dir");

    let image = ImageConfig::from_json(IMAGE_CONFIG.as_bytes()).unwrap();
    let id = format!("berth-spec-test-{}", std::process::id());
    let config = ContainerConfig {
        name: "t".into(),
        args: vec![
            "id; pwd; echo $GREETING $HOSTNAME; cat /etc/resolv.conf; touch /data/x /shared/y; \
             grep CapEff /proc/self/status; cat /proc/self/oom_score_adj"
                .into(),
        ],
        mounts: vec![Mount {
            container_path: "/shared".into(),
            host_path: shared.to_string_lossy().into_owned(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let built = build(&SpecInput {
        container_id: &id,
        config: &config,
        image: &image,
        image_name: "busybox:test",
        rootfs: &root,
        volumes_dir: &volumes,
        sandbox: SandboxInfo {
            id: "sb",
            name: "pod",
            namespace: "default",
            uid: "u",
            hostname: "spec-test",
            resolv_conf: Some(&pod.join("resolv.conf")),
            hosts: Some(&pod.join("hosts")),
            hostname_file: Some(&pod.join("hostname")),
            shm: Some(&pod.join("shm")),
            // A top-level cgroup of its own: runc removes it when the container exits.
            cgroups_path: Some(format!("/{id}")),
            ..Default::default()
        },
        cgroup_unified: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
    })
    .unwrap();
    assert_eq!(built.stop_signal, 10);
    // build created the missing host dir, root-owned as kubelet's would be; let uid 1000 write.
    assert!(shared.is_dir());
    fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bundle = t.join("bundle");
    write_bundle_config(&bundle, &built.spec).unwrap();

    let out = Command::new("runc")
        .args([
            "--root",
            t.join("runc").to_str().unwrap(),
            "run",
            "--bundle",
        ])
        .arg(&bundle)
        .arg(&id)
        .output()
        .expect("running runc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "runc failed: {stdout}\n{stderr}");
    println!("{stdout}");
    assert!(
        stdout.contains("uid=1000(berth) gid=1000(berth) groups=1000(berth),2000(extra)"),
        "{stdout}"
    );
    assert!(stdout.contains("/work/dir\n"), "{stdout}");
    assert!(stdout.contains("hello spec-test"), "{stdout}");
    assert!(stdout.contains("nameserver 127.0.0.53"), "{stdout}");
    assert!(shared.join("y").exists());
    assert_eq!(fs::read_dir(&volumes).unwrap().count(), 1);
}

#[test]
fn runc_runs_a_privileged_root_container_with_a_device() {
    if !common::runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("bundle/rootfs");
    fs::create_dir_all(&root).unwrap();
    rootfs(&root);
    let volumes = t.join("volumes");
    fs::create_dir_all(&volumes).unwrap();
    let image = ImageConfig::from_json(IMAGE_CONFIG.as_bytes()).unwrap();
    let id = format!("berth-spec-priv-{}", std::process::id());
    let mut config = ContainerConfig {
        name: "p".into(),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![
            "id; grep CapEff /proc/self/status; echo x > /dev/xnull && echo devok; \
             touch /sys/fs/cgroup/probe 2>/dev/null; cat /proc/self/oom_score_adj; \
             touch /rootfs-write 2>/dev/null || echo rofs"
                .into(),
        ],
        devices: vec![berth_spec::Device {
            container_path: "/dev/xnull".into(),
            host_path: "/dev/null".into(),
            permissions: String::new(),
        }],
        ..Default::default()
    };
    config.security.privileged = true;
    config.security.run_as_user = Some(0);
    config.security.readonly_rootfs = true;
    config.resources.oom_score_adj = -1000;
    config.resources.memory_limit_in_bytes = 64 << 20;
    let built = build(&SpecInput {
        container_id: &id,
        config: &config,
        image: &image,
        image_name: "busybox:test",
        rootfs: &root,
        volumes_dir: &volumes,
        sandbox: SandboxInfo {
            id: "sb",
            hostname: "priv",
            // A top-level cgroup of its own: runc removes it when the container exits.
            cgroups_path: Some(format!("/{id}")),
            ..Default::default()
        },
        cgroup_unified: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
    })
    .unwrap();
    let bundle = t.join("bundle");
    write_bundle_config(&bundle, &built.spec).unwrap();
    let out = Command::new("runc")
        .args([
            "--root",
            t.join("runc").to_str().unwrap(),
            "run",
            "--bundle",
        ])
        .arg(&bundle)
        .arg(&id)
        .output()
        .expect("running runc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "runc failed: {stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("uid=0(root) gid=0(root)"), "{stdout}");
    assert!(stdout.contains("devok"), "{stdout}");
    assert!(stdout.contains("rofs"), "{stdout}");
    assert!(!stdout.contains("CapEff:\t0000000000000000"), "{stdout}");
}
