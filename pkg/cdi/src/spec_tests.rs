use super::*;

const JSON: &str = r#"{
  "cdiVersion": "0.6.0",
  "kind": "example.com/device",
  "containerEdits": {"env": ["COMMON=1"]},
  "devices": [{
    "name": "null",
    "annotations": {"ignored": "yes"},
    "containerEdits": {
      "env": ["A=b=c"],
      "deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "c", "major": 1,
                        "minor": 3, "fileMode": 438, "permissions": "rw", "uid": 1, "gid": 2}],
      "mounts": [{"hostPath": "/tmp", "containerPath": "/t", "options": ["ro", "bind"], "type": "bind"}],
      "hooks": [{"hookName": "createContainer", "path": "/bin/true", "args": ["true"],
                 "env": ["X=1"], "timeout": 5}],
      "additionalGIDs": [44]
    }
  }]
}"#;

const YAML: &str = r#"
cdiVersion: "0.8.0"
kind: example.com/yaml
devices:
  - name: gpu0
    containerEdits:
      env: [GPU=0]
      deviceNodes:
        - path: /dev/gpu0
          hostPath: /dev/zero
"#;

#[test]
fn parses_json_and_yaml() {
    let s = parse(Path::new("a.json"), JSON).unwrap();
    s.validate().unwrap();
    assert_eq!(s.kind, "example.com/device");
    let e = &s.devices[0].container_edits;
    assert_eq!(e.env, ["A=b=c"]);
    let n = &e.device_nodes[0];
    assert_eq!(
        (n.major, n.minor, n.file_mode),
        (Some(1), Some(3), Some(0o666))
    );
    assert_eq!((n.uid, n.gid), (Some(1), Some(2)));
    assert_eq!(e.mounts[0].options, ["ro", "bind"]);
    assert_eq!(e.hooks[0].timeout, Some(5));
    assert_eq!(e.additional_gids, [44]);
    assert_eq!(s.container_edits.env, ["COMMON=1"]);

    let y = parse(Path::new("b.yaml"), YAML).unwrap();
    y.validate().unwrap();
    assert_eq!(
        y.devices[0].container_edits.device_nodes[0]
            .host_path
            .as_deref(),
        Some("/dev/zero")
    );
    // JSON is YAML too, but a .json file is never read as YAML.
    assert!(parse(Path::new("b.json"), YAML).is_err());
}

#[test]
fn round_trips_the_stored_form() {
    let s = parse(Path::new("a.json"), JSON).unwrap();
    let e = &s.devices[0].container_edits;
    let json = serde_json::to_string(e).unwrap();
    let back: ContainerEdits = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, e);
    assert_eq!(
        serde_json::to_string(&ContainerEdits::default()).unwrap(),
        "{}"
    );
}

fn with(f: impl FnOnce(&mut Spec)) -> Result<(), String> {
    let mut s = parse(Path::new("a.json"), JSON).unwrap();
    f(&mut s);
    s.validate()
}

#[test]
fn versions() {
    for v in SUPPORTED_VERSIONS {
        with(|s| s.cdi_version = v.into()).unwrap();
    }
    for v in ["0.2.0", "0.9.0", "1.0", "", "v0.6.0"] {
        let e = with(|s| s.cdi_version = v.into()).unwrap_err();
        assert!(e.contains("unsupported cdiVersion"), "{v}: {e}");
    }
}

#[test]
fn invalid_specs() {
    type Edit = Box<dyn FnOnce(&mut Spec)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("kind", Box::new(|s| s.kind = "device".into())),
        ("kind", Box::new(|s| s.kind = "example.com/a/b".into())),
        ("no devices", Box::new(|s| s.devices.clear())),
        ("device name", Box::new(|s| s.devices[0].name = "-x".into())),
        (
            "defined twice",
            Box::new(|s| {
                let d = s.devices[0].clone();
                s.devices.push(d);
            }),
        ),
        (
            "no containerEdits",
            Box::new(|s| s.devices[0].container_edits = ContainerEdits::default()),
        ),
        (
            "KEY=value",
            Box::new(|s| s.devices[0].container_edits.env.push("NOVALUE".into())),
        ),
        (
            "KEY=value",
            Box::new(|s| s.container_edits.env.push("=x".into())),
        ),
        (
            "absolute",
            Box::new(|s| s.devices[0].container_edits.device_nodes[0].path = "dev/x".into()),
        ),
        (
            "invalid type",
            Box::new(|s| s.devices[0].container_edits.device_nodes[0].r#type = Some("x".into())),
        ),
        (
            "permissions",
            Box::new(|s| {
                s.devices[0].container_edits.device_nodes[0].permissions = Some("rx".into())
            }),
        ),
        (
            "absolute",
            Box::new(|s| s.devices[0].container_edits.mounts[0].container_path = "t".into()),
        ),
        (
            "hostPath",
            Box::new(|s| s.devices[0].container_edits.mounts[0].host_path.clear()),
        ),
        (
            "hook name",
            Box::new(|s| s.devices[0].container_edits.hooks[0].hook_name = "prestop".into()),
        ),
        (
            "timeout",
            Box::new(|s| s.devices[0].container_edits.hooks[0].timeout = Some(0)),
        ),
        (
            "absolute",
            Box::new(|s| s.devices[0].container_edits.hooks[0].path = "true".into()),
        ),
    ];
    for (want, f) in cases {
        let e = with(f).unwrap_err();
        assert!(e.contains(want), "{want}: {e}");
    }
    // Missing required fields and wrong types fail to parse.
    assert!(parse(Path::new("a.json"), r#"{"kind": "a.com/b", "devices": []}"#).is_err());
    assert!(parse(Path::new("a.yaml"), "cdiVersion: 0.6.0\nkind: [x]\n").is_err());
}

#[test]
fn unsupported_edits_are_kept_to_be_refused() {
    let s = parse(
        Path::new("a.yaml"),
        "cdiVersion: 0.6.0\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits:\n    intelRdt:\n      closID: c\n",
    )
    .unwrap();
    s.validate().unwrap();
    assert!(
        s.devices[0]
            .container_edits
            .unsupported()
            .unwrap()
            .contains("intelRdt")
    );
}
