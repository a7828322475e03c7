use super::*;
use berth_cdi::{Hook as CdiHook, Mount as CdiMount};
use oci_spec::runtime::{LinuxBuilder, LinuxResourcesBuilder, ProcessBuilder, UserBuilder};

fn base(uid: u32) -> Spec {
    let mut spec = Spec::default();
    spec.set_mounts(Some(Vec::new()));
    spec.set_process(Some(
        ProcessBuilder::default()
            .user(UserBuilder::default().uid(uid).gid(uid).build().unwrap())
            .env(vec!["PATH=/bin".to_string(), "A=old".to_string()])
            .build()
            .unwrap(),
    ));
    spec.set_linux(Some(
        LinuxBuilder::default()
            .resources(LinuxResourcesBuilder::default().build().unwrap())
            .build()
            .unwrap(),
    ));
    spec
}

fn node(path: &str, typ: &str, perms: Option<&str>) -> DeviceNode {
    DeviceNode {
        path: path.into(),
        host_path: Some("/dev/null".into()),
        r#type: Some(typ.into()),
        major: Some(1),
        minor: Some(3),
        file_mode: Some(0o666),
        permissions: perms.map(Into::into),
        ..Default::default()
    }
}

#[test]
fn applies_every_kind_of_edit() {
    let mut spec = base(0);
    let edits = ContainerEdits {
        env: vec!["A=new".into(), "B=1".into()],
        device_nodes: vec![node("/dev/x", "c", None), node("/dev/y", "b", Some("r"))],
        mounts: vec![
            CdiMount {
                host_path: "/host/lib".into(),
                container_path: "/usr/lib/vendor/sub".into(),
                options: vec!["ro".into(), "bind".into()],
                r#type: None,
            },
            CdiMount {
                host_path: "/host".into(),
                container_path: "/usr/lib".into(),
                options: vec!["rbind".into()],
                r#type: Some("bind".into()),
            },
        ],
        hooks: vec![
            CdiHook {
                hook_name: "createContainer".into(),
                path: "/bin/hook".into(),
                args: vec!["hook".into()],
                env: vec![],
                timeout: Some(3),
            },
            CdiHook {
                hook_name: "poststop".into(),
                path: "/bin/after".into(),
                ..Default::default()
            },
        ],
        additional_gids: vec![44, 0, 44],
        ..Default::default()
    };
    apply(&mut spec, &edits).unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(
        process.env().as_deref().unwrap(),
        ["PATH=/bin", "A=new", "B=1"]
    );
    assert_eq!(process.user().additional_gids().as_deref(), Some(&[44][..]));
    let linux = spec.linux().as_ref().unwrap();
    let devices = linux.devices().as_ref().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!((devices[0].major(), devices[0].minor()), (1, 3));
    assert_eq!(devices[0].file_mode(), Some(0o666));
    assert_eq!((devices[0].uid(), devices[0].gid()), (Some(0), Some(0)));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    assert_eq!(rules[0].typ(), Some(LinuxDeviceType::C));
    assert_eq!(rules[1].access().as_deref(), Some("r"));
    assert_eq!(rules[1].typ(), Some(LinuxDeviceType::B));
    // Parents first.
    let mounts = spec.mounts().as_ref().unwrap();
    assert_eq!(mounts[0].destination(), Path::new("/usr/lib"));
    assert_eq!(mounts[1].destination(), Path::new("/usr/lib/vendor/sub"));
    assert_eq!(mounts[1].typ(), &None);
    let hooks = spec.hooks().as_ref().unwrap();
    let created = hooks.create_container().as_ref().unwrap();
    assert_eq!(created[0].path(), Path::new("/bin/hook"));
    assert_eq!(created[0].timeout(), Some(3));
    assert_eq!(hooks.poststop().as_ref().unwrap().len(), 1);
    assert!(hooks.start_container().is_none());
}

#[test]
fn replaces_same_paths_and_owns_nodes_for_a_non_root_user() {
    let mut spec = base(1000);
    spec.set_mounts(Some(vec![
        MountBuilder::default()
            .destination("/proc")
            .typ("proc")
            .build()
            .unwrap(),
        MountBuilder::default()
            .destination("/data")
            .source("/old")
            .build()
            .unwrap(),
    ]));
    let edits = ContainerEdits {
        device_nodes: vec![node("/dev/x", "c", None), node("/dev/x", "u", Some("rw"))],
        mounts: vec![CdiMount {
            host_path: "/new".into(),
            container_path: "/data".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    apply(&mut spec, &edits).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let devices = linux.devices().as_ref().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].typ(), LinuxDeviceType::U);
    assert_eq!(
        (devices[0].uid(), devices[0].gid()),
        (Some(1000), Some(1000))
    );
    let mounts = spec.mounts().as_ref().unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[1].source().as_deref(), Some(Path::new("/new")));
    // Nothing to do: nothing changes.
    let before = spec.clone();
    apply(&mut spec, &ContainerEdits::default()).unwrap();
    assert_eq!(spec, before);
}
