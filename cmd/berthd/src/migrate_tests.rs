use super::*;

/// A kubeadm-style containerd 1.x node: systemd cgroups, old-style registry settings, a GPU
/// runtime with its own binary and a shim-only runtime.
const V2_NODE: &str = r#"
version = 2
root = "/data/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
  max_recv_message_size = 33554432
[debug]
  level = "warning"
[metrics]
  address = ":1338"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    max_concurrent_downloads = 5
    image_pull_progress_timeout = "2m30s"
    stream_server_address = "0.0.0.0"
    stream_server_port = "10010"
    stream_idle_timeout = "1h0m0s"
    enable_selinux = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      snapshotter = "overlayfs"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
          BinaryName = "/usr/bin/nvidia-container-runtime"
          Root = "/run/nvidia-runc"
          SystemdCgroup = true
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
        runtime_type = "io.containerd.kata.v2"
    [plugins."io.containerd.grpc.v1.cri".registry]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
        endpoint = ["https://mirror.gcr.io", "https://registry-1.docker.io"]
      [plugins."io.containerd.grpc.v1.cri".registry.configs."reg.corp:5000".tls]
        ca_file = "/etc/certs/corp-ca.pem"
        cert_file = "/etc/certs/node.pem"
        key_file = "/etc/certs/node.key"
      [plugins."io.containerd.grpc.v1.cri".registry.configs."reg.corp:5000".auth]
        username = "node"
        password = "s3cret"
      [plugins."io.containerd.grpc.v1.cri".registry.configs."lab.local".tls]
        insecure_skip_verify = true
      [plugins."io.containerd.grpc.v1.cri".registry.auths."quay.io"]
        auth = "dTpw"
      [plugins."io.containerd.grpc.v1.cri".registry.headers]
        X-Node = ["n1", "rack2"]
"#;

/// containerd 2.x (config version 3) with a hosts directory.
const V3_NODE: &str = r#"
version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
[plugins]
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    max_concurrent_downloads = 3
    image_pull_progress_timeout = "5m0s"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "registry.k8s.io/pause:3.10"
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
  [plugins."io.containerd.cri.v1.runtime"]
    enable_cdi = true
    cdi_spec_dirs = ["/etc/cdi", "/run/cdi", "/opt/vendor/cdi"]
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["/opt/cni/bin", "/usr/libexec/cni"]
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "crun"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.crun]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.crun.options]
          BinaryName = "/usr/bin/crun"
          SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins."io.containerd.gc.v1.scheduler"]
    pause_threshold = 0.02
"#;

/// Translates and loads the result with Berth's own loader, as `berthd --config` would.
fn migrate_and_load(text: &str) -> (String, berth_config::Config) {
    let out = translate(text, "test.toml").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, &out).unwrap();
    let loaded = berth_config::load(Some(&file), &Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{out}"));
    (out, loaded.config)
}

#[test]
fn containerd_1x_node() {
    let (out, c) = migrate_and_load(V2_NODE);
    assert_eq!(
        c.cgroup.driver,
        berth_config::CgroupDriver::Systemd,
        "{out}"
    );
    assert_eq!(c.cni.bin_dirs, [std::path::PathBuf::from("/opt/cni/bin")]);
    let nvidia = &c.runtime.handlers["nvidia"];
    assert_eq!(nvidia.path, Path::new("/usr/bin/nvidia-container-runtime"));
    assert_eq!(nvidia.root.as_deref(), Some(Path::new("/run/nvidia-runc")));
    assert!(!c.runtime.handlers.contains_key("kata"));
    assert!(
        out.contains("runtime \"kata\" uses the shim io.containerd.kata.v2"),
        "{out}"
    );
    assert_eq!(c.grpc.max_recv_message_size, 33554432);
    assert_eq!(c.log.level, berth_config::LogLevel::Warn);
    assert_eq!(c.metrics.address.to_string(), "0.0.0.0:1338");
    assert_eq!(c.image.max_concurrent_downloads, 5);
    assert_eq!(c.image.pull_stall_timeout_secs, 150);
    assert_eq!(c.streaming.address.to_string(), "0.0.0.0:10010");
    assert_eq!(c.streaming.idle_timeout_secs, 3600);
    let hosts = &c.registry.hosts;
    assert_eq!(hosts["docker.io"].mirrors.len(), 2);
    let corp = &hosts["reg.corp:5000"];
    assert_eq!(
        corp.ca_file.as_deref(),
        Some(Path::new("/etc/certs/corp-ca.pem"))
    );
    assert_eq!(
        corp.client_key.as_deref(),
        Some(Path::new("/etc/certs/node.key"))
    );
    assert_eq!(corp.username.as_deref(), Some("node"));
    assert!(hosts["lab.local"].insecure);
    assert_eq!(hosts["quay.io"].auth.as_deref(), Some("dTpw"));
    assert_eq!(hosts["*"].headers["X-Node"], "n1, rack2");
    // containerd 1.x without enable_cdi: no CDI, and the migrated node keeps it so.
    assert!(!c.cdi.enabled, "{out}");
    for note in ["no pause container", "enable_selinux", "/data/containerd"] {
        assert!(out.contains(note), "{note}: {out}");
    }
}

#[test]
fn containerd_2x_node() {
    let (out, c) = migrate_and_load(V3_NODE);
    assert_eq!(c.cgroup.driver, berth_config::CgroupDriver::Cgroupfs);
    assert_eq!(c.runtime.default_handler, "crun");
    assert_eq!(c.runtime.handlers["crun"].path, Path::new("/usr/bin/crun"));
    assert_eq!(c.cni.bin_dirs.len(), 2);
    assert_eq!(
        c.registry.config_path.as_deref(),
        Some(Path::new("/etc/containerd/certs.d"))
    );
    assert_eq!(c.image.pull_stall_timeout_secs, 300);
    assert!(c.cdi.enabled, "{out}");
    assert_eq!(c.cdi.spec_dirs.len(), 3);
    assert_eq!(c.cdi.spec_dirs[2], Path::new("/opt/vendor/cdi"));
    for note in [
        "pinned_images.sandbox",
        "Berth reads one directory",
        "from cdi_spec_dirs",
        "io.containerd.gc.v1.scheduler",
    ] {
        assert!(out.contains(note), "{note}: {out}");
    }
}

#[test]
fn the_installed_containerds_default() {
    // `containerd config default` of whatever containerd this machine has (Debian 12: 1.6).
    let Ok(output) = std::process::Command::new("containerd")
        .args(["config", "default"])
        .output()
    else {
        eprintln!("containerd not installed; skipped");
        return;
    };
    let (_, c) = migrate_and_load(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(c.cni.conf_dir, Path::new("/etc/cni/net.d"));
    assert_eq!(c.runtime.default_handler, "runc");
}

#[test]
fn rejects_what_it_cannot_read() {
    assert!(translate("version = 1\n", "x").is_err());
    assert!(translate("version = [", "x").is_err());
    assert_eq!(go_duration_secs("4h0m0s"), Some(14400));
    assert_eq!(go_duration_secs("1m30s"), Some(90));
    assert_eq!(go_duration_secs("500ms"), Some(1));
    assert_eq!(go_duration_secs("5x"), None);
}
