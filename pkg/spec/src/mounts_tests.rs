use std::fs;
use std::path::Path;

use super::*;
use crate::tests::{Fixture, destinations};
use crate::{Mount, Propagation};

fn cri(container: &str, host: &Path, readonly: bool, propagation: Propagation) -> Mount {
    Mount {
        container_path: container.into(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        propagation,
        image: None,
        recursive_read_only: false,
    }
}

fn find<'a>(plan: &'a MountPlan, dest: &str) -> &'a OciMount {
    let all: Vec<_> = plan
        .mounts
        .iter()
        .filter(|m| m.destination() == Path::new(dest))
        .collect();
    assert_eq!(all.len(), 1, "{dest}: {:?}", destinations(&plan.mounts));
    all[0]
}

fn options(m: &OciMount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

#[test]
fn standard_set_without_pod_files() {
    let mut f = Fixture::new();
    f.sandbox.shm = None;
    f.sandbox.hosts = None;
    f.sandbox.resolv_conf = None;
    f.sandbox.hostname_file = None;
    f.image.volumes.clear();
    let plan = plan(&f.input()).unwrap();
    assert_eq!(
        destinations(&plan.mounts),
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/shm"
        ]
    );
    let shm = find(&plan, "/dev/shm");
    assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    assert_eq!(
        options(shm),
        ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
    );
    let sys = find(&plan, "/sys");
    assert_eq!(options(sys), ["nosuid", "noexec", "nodev", "ro"]);
    let cg = find(&plan, "/sys/fs/cgroup");
    assert_eq!(cg.typ().as_deref(), Some("cgroup"));
    assert_eq!(options(cg), ["nosuid", "noexec", "nodev", "relatime", "ro"]);
    let pts = find(&plan, "/dev/pts");
    assert!(options(pts).contains(&"ptmxmode=0666".to_string()));
    assert_eq!(plan.rootfs_propagation, None);
}

#[test]
fn pod_files_and_shm_are_bound() {
    let f = Fixture::new();
    let plan = plan(&f.input()).unwrap();
    let shm = find(&plan, "/dev/shm");
    assert_eq!(shm.typ().as_deref(), Some("bind"));
    assert_eq!(shm.source().as_deref(), Some(Path::new("/run/sb/shm")));
    assert_eq!(
        options(shm),
        ["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"]
    );
    let resolv = find(&plan, "/etc/resolv.conf");
    assert_eq!(
        resolv.source().as_deref(),
        Some(Path::new("/run/sb/resolv.conf"))
    );
    assert_eq!(options(resolv), ["rbind", "rprivate", "rw"]);
}

#[test]
fn cri_mounts_replace_standard_and_pod_mounts_and_sort_by_depth() {
    let mut f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    fs::write(h.join("hosts"), "127.0.0.1 x\n").unwrap();
    f.config.mounts = vec![
        cri("/a/b/c", &h.join("abc"), false, Propagation::Private),
        cri("/etc/hosts", &h.join("hosts"), true, Propagation::Private),
        cri("/a", &h.join("a"), false, Propagation::Private),
        cri("/proc/", &h.join("proc"), false, Propagation::Private),
        cri("/data", &h.join("data"), false, Propagation::Private),
    ];
    let plan = plan(&f.input()).unwrap();
    let d = destinations(&plan.mounts);
    assert_eq!(
        d,
        [
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            // CRI first, then the pod's files, stably by depth.
            "/a",
            "/proc",
            "/data",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev/shm",
            "/a/b/c",
        ]
    );
    let hosts = find(&plan, "/etc/hosts");
    assert_eq!(hosts.source().as_deref(), Some(h.join("hosts").as_path()));
    assert_eq!(options(hosts), ["rbind", "rprivate", "ro"]);
    assert_eq!(find(&plan, "/proc").typ().as_deref(), Some("bind"));
    // The image's /data volume is covered by the CRI mount: no volume dir.
    assert_eq!(fs::read_dir(f.volumes.path()).unwrap().count(), 0);
}

#[test]
fn a_dev_mount_replaces_everything_under_dev() {
    let mut f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    f.config.mounts = vec![cri("/dev", host.path(), false, Propagation::Private)];
    let plan = plan(&f.input()).unwrap();
    let d = destinations(&plan.mounts);
    // The standard /dev/pts and /dev/mqueue go; the pod's /dev/shm is mounted on top of the
    // CRI /dev, after it.
    assert!(
        !d.iter().any(|x| x == "/dev/pts" || x == "/dev/mqueue"),
        "{d:?}"
    );
    assert_eq!(find(&plan, "/dev").typ().as_deref(), Some("bind"));
    let pos = |x: &str| d.iter().position(|y| y == x).unwrap();
    assert!(pos("/dev") < pos("/dev/shm"));
    assert_eq!(
        find(&plan, "/dev/shm").source().as_deref(),
        Some(Path::new("/run/sb/shm"))
    );
}

#[test]
fn host_paths_are_created_or_resolved() {
    let mut f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    fs::write(h.join("file"), "x").unwrap();
    fs::create_dir(h.join("real")).unwrap();
    std::os::unix::fs::symlink(h.join("real"), h.join("link")).unwrap();
    f.config.mounts = vec![
        cri("/new", &h.join("new/deeper"), false, Propagation::Private),
        cri("/file", &h.join("file"), true, Propagation::Private),
        cri("/link", &h.join("link"), false, Propagation::Private),
    ];
    let plan = plan(&f.input()).unwrap();
    assert!(h.join("new/deeper").is_dir());
    assert!(h.join("file").is_file());
    let canon = |p: &Path| fs::canonicalize(p).unwrap();
    assert_eq!(
        find(&plan, "/link").source().as_deref(),
        Some(canon(&h.join("real")).as_path())
    );
    assert_eq!(
        find(&plan, "/file").source().as_deref(),
        Some(canon(&h.join("file")).as_path())
    );
}

#[test]
fn propagation_sets_rootfs_propagation() {
    let host = tempfile::tempdir().unwrap();
    let h = host.path();
    let mut f = Fixture::new();
    f.config.mounts = vec![cri("/s", h, false, Propagation::HostToContainer)];
    let p = plan(&f.input()).unwrap();
    assert_eq!(p.rootfs_propagation.as_deref(), Some("rslave"));
    assert_eq!(options(find(&p, "/s")), ["rbind", "rslave", "rw"]);

    f.config.mounts = vec![
        cri("/b", h, false, Propagation::Bidirectional),
        cri("/s", h, false, Propagation::HostToContainer),
    ];
    let p = plan(&f.input()).unwrap();
    assert_eq!(p.rootfs_propagation.as_deref(), Some("rshared"));
    assert_eq!(options(find(&p, "/b")), ["rbind", "rshared", "rw"]);

    f.config.mounts = vec![
        cri("/s", h, false, Propagation::HostToContainer),
        cri("/b", h, false, Propagation::Bidirectional),
    ];
    let p = plan(&f.input()).unwrap();
    assert_eq!(p.rootfs_propagation.as_deref(), Some("rshared"));
}

#[test]
fn image_volumes_get_their_own_dirs() {
    let mut f = Fixture::new();
    f.image.volumes = vec![
        "/data".into(),
        "/var/cache/".into(),
        "/a_b".into(),
        "/a/b".into(),
    ];
    let p = plan(&f.input()).unwrap();
    let mut sources = Vec::new();
    for dest in ["/data", "/var/cache", "/a_b", "/a/b"] {
        let m = find(&p, dest);
        assert_eq!(options(m), ["rbind", "rprivate", "rw"]);
        let src = m.source().clone().unwrap();
        assert!(src.starts_with(f.volumes.path()) && src.is_dir(), "{src:?}");
        sources.push(src);
    }
    sources.sort();
    sources.dedup();
    assert_eq!(sources.len(), 4);
    // Deterministic names: a second build reuses them.
    let again = plan(&f.input()).unwrap();
    assert_eq!(find(&again, "/data").source(), find(&p, "/data").source());

    f.image.volumes = vec!["relative".into()];
    assert!(matches!(plan(&f.input()), Err(SpecError::InvalidMount(_))));
}

#[test]
fn bad_mount_paths_are_invalid() {
    let mut f = Fixture::new();
    f.config.mounts = vec![cri("rel", Path::new("/tmp"), false, Propagation::Private)];
    assert!(matches!(plan(&f.input()), Err(SpecError::InvalidMount(_))));
    f.config.mounts = vec![cri("/x", Path::new("tmp"), false, Propagation::Private)];
    assert!(matches!(plan(&f.input()), Err(SpecError::InvalidMount(_))));
}

#[test]
fn volume_names_are_readable_and_distinct() {
    let a = volume_dir_name(Path::new("/var/lib/data"));
    assert!(a.starts_with("var-lib-data-"), "{a}");
    assert_ne!(
        volume_dir_name(Path::new("/a_b")),
        volume_dir_name(Path::new("/a/b"))
    );
    let long = format!("/{}", "x".repeat(300));
    assert!(volume_dir_name(Path::new(&long)).len() < 100);
}

#[test]
fn recursive_read_only_mounts_get_rro_and_need_readonly_and_private() {
    let mut f = Fixture::new();
    let host = tempfile::tempdir().unwrap();
    let rro = |readonly, propagation| Mount {
        recursive_read_only: true,
        ..cri("/rro", &host.path().join("rro"), readonly, propagation)
    };
    f.config.mounts = vec![rro(true, Propagation::Private)];
    let plan = plan(&f.input()).unwrap();
    assert_eq!(
        options(find(&plan, "/rro")),
        ["rbind", "rprivate", "ro", RECURSIVE_READ_ONLY]
    );
    for bad in [
        rro(false, Propagation::Private),
        rro(true, Propagation::HostToContainer),
        rro(true, Propagation::Bidirectional),
    ] {
        let mut f = Fixture::new();
        f.config.mounts = vec![bad];
        assert!(matches!(
            super::plan(&f.input()),
            Err(SpecError::InvalidMount(_))
        ));
    }
}
