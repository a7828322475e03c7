//! Tests of [`build`] as a whole, and the fixtures the module tests share.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxDeviceType, LinuxNamespaceType, Mount as OciMount};
use tempfile::TempDir;

use super::*;

/// A pod with its own namespaces and files (the paths need not exist).
pub(crate) fn sandbox() -> SandboxInfo<'static> {
    SandboxInfo {
        id: "sb1",
        name: "web",
        namespace: "default",
        uid: "uid-1",
        netns: Some(Path::new("/run/ns/net")),
        ipcns: Some(Path::new("/run/ns/ipc")),
        utsns: Some(Path::new("/run/ns/uts")),
        pid_ns: Some(Path::new("/proc/42/ns/pid")),
        target_pid_ns: Some(Path::new("/proc/43/ns/pid")),
        hostname: "web-pod",
        resolv_conf: Some(Path::new("/run/sb/resolv.conf")),
        hosts: Some(Path::new("/run/sb/hosts")),
        hostname_file: Some(Path::new("/run/sb/hostname")),
        shm: Some(Path::new("/run/sb/shm")),
        cgroups_path: Some("/berth/sb1/c1".into()),
    }
}

/// A container of the test image (`berth` user, /work/dir, VOLUME /data) in a fake rootfs.
pub(crate) struct Fixture {
    pub rootfs: TempDir,
    pub volumes: TempDir,
    pub config: ContainerConfig,
    pub image: ImageConfig,
    pub sandbox: SandboxInfo<'static>,
    pub cgroup_unified: bool,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Fixture {
            rootfs: crate::user::tests::fake_rootfs(),
            volumes: tempfile::tempdir().unwrap(),
            config: ContainerConfig {
                name: "app".into(),
                ..Default::default()
            },
            image: ImageConfig {
                entrypoint: s(&["/bin/sh", "-c"]),
                cmd: s(&["sleep 1"]),
                env: s(&["PATH=/bin:/usr/bin", "GREETING=hello"]),
                working_dir: "/work/dir".into(),
                user: "berth".into(),
                volumes: s(&["/data"]),
                stop_signal: "SIGUSR1".into(),
                exposed_ports: s(&["8080/tcp"]),
            },
            sandbox: sandbox(),
            cgroup_unified: false,
        }
    }

    pub(crate) fn input(&self) -> SpecInput<'_> {
        SpecInput {
            container_id: "c1",
            config: &self.config,
            image: &self.image,
            image_name: "127.0.0.1:5000/berth-test/busybox:latest",
            rootfs: self.rootfs.path(),
            volumes_dir: self.volumes.path(),
            sandbox: self.sandbox.clone(),
            cgroup_unified: self.cgroup_unified,
        }
    }

    pub(crate) fn build(&self) -> Result<BuiltSpec, SpecError> {
        build(&self.input())
    }
}

pub(crate) fn destinations(mounts: &[OciMount]) -> Vec<String> {
    mounts
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn builds_the_default_container() {
    let f = Fixture::new();
    let built = f.build().unwrap();
    let spec = &built.spec;
    assert_eq!(built.stop_signal, libc::SIGUSR1);
    assert_eq!(built.user.username.as_deref(), Some("berth"));

    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "sleep 1"]);
    assert_eq!(
        p.env().as_ref().unwrap(),
        &["PATH=/bin:/usr/bin", "GREETING=hello", "HOSTNAME=web-pod"]
    );
    assert_eq!(p.cwd(), Path::new("/work/dir"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[1000, 2000]);
    assert_eq!(p.user().username(), &None);
    assert_eq!(p.no_new_privileges(), Some(false));
    assert!(p.oom_score_adj().is_some());
    assert_eq!(p.apparmor_profile(), &None);
    let caps = p.capabilities().as_ref().unwrap();
    assert_eq!(caps.effective().as_ref().unwrap().len(), 14);
    let rl = &p.rlimits().as_ref().unwrap()[0];
    assert!(rl.hard() > 0 && rl.hard() <= 1_048_576);

    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path(), f.rootfs.path());
    assert_eq!(root.readonly(), Some(false));
    assert_eq!(spec.hostname().as_deref(), Some("web-pod"));

    assert_eq!(
        destinations(spec.mounts().as_ref().unwrap()),
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/data",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm",
        ]
    );

    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/berth/sb1/c1"))
    );
    assert_eq!(linux.rootfs_propagation(), &None);
    assert_eq!(linux.devices(), &None);
    assert_eq!(linux.masked_paths().as_ref().unwrap().len(), 11);
    assert_eq!(linux.readonly_paths().as_ref().unwrap().len(), 5);
    let types: Vec<_> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert_eq!(
        types,
        [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Network
        ]
    );
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert!(!rules[0].allow() && rules[0].typ() == Some(LinuxDeviceType::A));

    let a = spec.annotations().as_ref().unwrap();
    assert_eq!(a["io.kubernetes.cri.container-type"], "container");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb1");
    assert_eq!(a["io.kubernetes.cri.sandbox-name"], "web");
    assert_eq!(a["io.kubernetes.cri.sandbox-namespace"], "default");
    assert_eq!(a["io.kubernetes.cri.sandbox-uid"], "uid-1");
    assert_eq!(a["io.kubernetes.cri.container-name"], "app");
    assert_eq!(
        a["io.kubernetes.cri.image-name"],
        "127.0.0.1:5000/berth-test/busybox:latest"
    );
}

#[test]
fn creates_the_working_dir_owned_by_the_user() {
    let f = Fixture::new();
    f.build().unwrap();
    for dir in ["work", "work/dir"] {
        let meta = std::fs::metadata(f.rootfs.path().join(dir)).unwrap();
        assert!(meta.is_dir());
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{dir}");
    }
}

#[test]
fn invalid_input_has_no_side_effects() {
    let mut f = Fixture::new();
    let missing = f.volumes.path().join("not-yet");
    f.config.mounts = vec![
        Mount {
            container_path: "/ok".into(),
            host_path: missing.to_string_lossy().into_owned(),
            ..Default::default()
        },
        Mount {
            container_path: "relative".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        },
    ];
    assert!(matches!(f.build(), Err(SpecError::InvalidMount(_))));
    assert!(!missing.exists());
    assert!(!f.rootfs.path().join("work").exists());

    let mut f = Fixture::new();
    f.image.user = "ghost".into();
    assert!(matches!(f.build(), Err(SpecError::UnknownUser { .. })));
    assert!(!f.rootfs.path().join("work").exists());
    assert_eq!(std::fs::read_dir(f.volumes.path()).unwrap().count(), 0);

    let mut f = Fixture::new();
    f.config.resources.oom_score_adj = 1001;
    assert!(matches!(
        f.build(),
        Err(SpecError::OomScoreAdjOutOfRange(1001))
    ));
    let mut f = Fixture::new();
    f.image.stop_signal = "SIGBOGUS".into();
    assert!(matches!(f.build(), Err(SpecError::InvalidStopSignal(_))));
}

#[test]
fn privileged_container() {
    let mut f = Fixture::new();
    f.config.security.privileged = true;
    let spec = f.build().unwrap().spec;
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert!(linux.readonly_paths().as_ref().unwrap().is_empty());
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    let mounts = spec.mounts().as_ref().unwrap();
    for dest in ["/sys", "/sys/fs/cgroup"] {
        let m = mounts
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap();
        let opts = m.options().as_ref().unwrap();
        assert!(opts.contains(&"rw".to_string()) && !opts.contains(&"ro".to_string()));
    }
    let caps = spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    assert!(
        caps.bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin)
    );
}

#[test]
fn readonly_rootfs_tty_and_host_uts() {
    let mut f = Fixture::new();
    f.config.security.readonly_rootfs = true;
    f.config.security.no_new_privs = true;
    f.config.tty = true;
    f.sandbox.utsns = None;
    let spec = f.build().unwrap().spec;
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(spec.hostname(), &None);
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.terminal(), Some(true));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert!(
        p.env()
            .as_ref()
            .unwrap()
            .contains(&"TERM=xterm".to_string())
    );
    let hosts = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/etc/hosts"))
        .unwrap();
    assert_eq!(
        hosts.options().as_ref().unwrap(),
        &["rbind", "rprivate", "ro"]
    );
}

#[test]
fn json_is_what_runc_expects() {
    let f = Fixture::new();
    let spec = f.build().unwrap().spec;
    let json = serde_json::to_value(&spec).unwrap();
    assert!(!json["ociVersion"].as_str().unwrap().is_empty());
    assert!(json["root"]["path"].as_str().unwrap().starts_with('/'));
    assert!(json["process"]["cwd"].as_str().unwrap().starts_with('/'));
    assert!(!json["process"]["args"].as_array().unwrap().is_empty());
    assert_eq!(json["process"]["user"]["uid"], 1000);
    assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    let caps = json["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap();
    assert!(caps.iter().all(|c| c.as_str().unwrap().starts_with("CAP_")));
    let ns: Vec<&str> = json["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
    assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], false);
    assert_eq!(json["linux"]["resources"]["devices"][0]["type"], "a");
    assert_eq!(json["mounts"][0]["type"], "proc");

    let bundle = tempfile::tempdir().unwrap();
    write_bundle_config(bundle.path(), &spec).unwrap();
    let path = bundle.path().join("config.json");
    assert_eq!(Spec::load(&path).unwrap(), spec);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    assert!(!bundle.path().join(".config.json.tmp").exists());
    // Overwriting works.
    write_bundle_config(bundle.path(), &spec).unwrap();
    // A missing bundle dir is an I/O error.
    let err = write_bundle_config(&PathBuf::from("/nonexistent/bundle"), &spec).unwrap_err();
    assert!(matches!(err, SpecError::Io { .. }));
}

#[test]
fn devices_and_resources_reach_the_spec() {
    let mut f = Fixture::new();
    f.config.devices = vec![Device {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    f.config.resources.memory_limit_in_bytes = 1 << 26;
    f.config.resources.cpu_shares = 2;
    let spec = f.build().unwrap().spec;
    let linux = spec.linux().as_ref().unwrap();
    let dev = &linux.devices().as_ref().unwrap()[0];
    assert_eq!(
        (dev.typ(), dev.major(), dev.minor()),
        (LinuxDeviceType::C, 1, 3)
    );
    let r = linux.resources().as_ref().unwrap();
    assert_eq!(r.memory().as_ref().unwrap().limit(), Some(1 << 26));
    assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(2));
    let last = r.devices().as_ref().unwrap().last().unwrap();
    assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));

    f.config.resources.cpu_quota = -5;
    assert!(matches!(f.build(), Err(SpecError::InvalidResources(_))));
}

#[test]
fn cgroup_v2_host() {
    let mut f = Fixture::new();
    f.cgroup_unified = true;
    f.sandbox.cgroups_path = None;
    let spec = f.build().unwrap().spec;
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.cgroups_path(), &None);
    assert!(
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    );
    let cg = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys/fs/cgroup"))
        .unwrap()
        .clone();
    assert_eq!(cg.typ().as_deref(), Some("cgroup2"));
}

#[test]
fn request_annotations_are_kept_but_not_over_the_cri_ones() {
    let mut f = Fixture::new();
    f.config.annotations = [
        ("custom".to_string(), "x".to_string()),
        (
            "io.kubernetes.cri.sandbox-id".to_string(),
            "forged".to_string(),
        ),
    ]
    .into();
    let spec = f.build().unwrap().spec;
    let a = spec.annotations().as_ref().unwrap();
    assert_eq!(a["custom"], "x");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb1");
}
