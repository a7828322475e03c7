use super::*;

fn write(dir: &Path, file: &str, text: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), text).unwrap();
}

fn spec(kind: &str, devices: &[(&str, &str)]) -> String {
    let devices: Vec<String> = devices
        .iter()
        .map(|(name, env)| {
            format!(r#"{{"name": "{name}", "containerEdits": {{"env": ["{env}"]}}}}"#)
        })
        .collect();
    format!(
        r#"{{"cdiVersion": "0.6.0", "kind": "{kind}", "containerEdits": {{"env": ["KIND={kind}"]}},
            "devices": [{}]}}"#,
        devices.join(",")
    )
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn resolves_devices_and_common_edits_once() {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    write(
        &etc,
        "a.json",
        &spec("a.com/x", &[("0", "A=0"), ("1", "A=1")]),
    );
    write(
        &etc,
        "b.yaml",
        "cdiVersion: 0.5.0\nkind: b.com/y\ndevices:\n- name: n\n  containerEdits:\n    env: [B=1]\n",
    );
    write(&etc, "ignored.txt", "not a spec");
    let reg = Registry::new(vec![etc, tmp.path().join("missing")]);
    assert_eq!(
        reg.scan().device_names(),
        ["a.com/x=0", "a.com/x=1", "b.com/y=n"]
    );
    let r = reg
        .resolve(&names(&[
            "a.com/x=1",
            "b.com/y=n",
            "a.com/x=0",
            "a.com/x=1",
        ]))
        .unwrap();
    assert_eq!(r.devices, ["a.com/x=1", "b.com/y=n", "a.com/x=0"]);
    assert_eq!(r.edits.env, ["A=1", "B=1", "A=0", "KIND=a.com/x"]);
    assert!(reg.resolve(&[]).unwrap().is_empty());
}

#[test]
fn later_dirs_win_and_same_dir_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let (etc, run) = (tmp.path().join("etc"), tmp.path().join("run"));
    write(
        &etc,
        "a.json",
        &spec("a.com/x", &[("0", "FROM=etc"), ("1", "FROM=etc")]),
    );
    write(&run, "a.json", &spec("a.com/x", &[("0", "FROM=run")]));
    write(&run, "b.json", &spec("a.com/x", &[("2", "X=1")]));
    write(&run, "c.json", &spec("a.com/x", &[("2", "X=2")]));
    let reg = Registry::new(vec![etc.clone(), run.clone()]);
    let r = reg.resolve(&names(&["a.com/x=0"])).unwrap();
    assert_eq!(r.edits.env[0], "FROM=run");
    let r = reg.resolve(&names(&["a.com/x=1"])).unwrap();
    assert_eq!(r.edits.env[0], "FROM=etc");
    match reg.resolve(&names(&["a.com/x=2"])).unwrap_err() {
        CdiError::Conflict { name, files } => {
            assert_eq!(name, "a.com/x=2");
            assert_eq!(files, [run.join("b.json"), run.join("c.json")]);
        }
        e => panic!("{e}"),
    }
    // The other order of directories: etc wins.
    let reg = Registry::new(vec![run, etc]);
    let r = reg.resolve(&names(&["a.com/x=0"])).unwrap();
    assert_eq!(r.edits.env[0], "FROM=etc");
}

#[test]
fn unknown_invalid_and_broken() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cdi");
    write(
        &dir,
        "bad-version.json",
        &spec("a.com/x", &[("0", "A=0")]).replace("0.6.0", "9.9.9"),
    );
    write(&dir, "garbage.yaml", "{{{ not yaml");
    let reg = Registry::new(vec![dir.clone()]);
    let e = reg.resolve(&names(&["a.com/x=0"])).unwrap_err();
    assert!(matches!(e, CdiError::InvalidSpec { .. }), "{e}");
    assert!(
        e.to_string().contains("9.9.9") && e.to_string().contains("a.com/x=0"),
        "{e}"
    );
    let e = reg.resolve(&names(&["a.com/x=7"])).unwrap_err();
    assert!(matches!(e, CdiError::UnknownDevice { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("a.com/x=7") && text.contains("garbage.yaml"),
        "{text}"
    );
    let e = reg.resolve(&names(&["not-qualified"])).unwrap_err();
    assert!(matches!(e, CdiError::InvalidName { .. }), "{e}");
}

#[test]
fn device_nodes_are_completed_from_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cdi");
    let plain = tmp.path().join("plain");
    fs::write(&plain, "").unwrap();
    write(
        &dir,
        "d.yaml",
        &format!(
            "cdiVersion: 0.7.0\nkind: d.com/n\ndevices:\n\
             - name: null\n  containerEdits:\n    deviceNodes:\n    - path: /dev/berth-null\n      hostPath: /dev/null\n\
             - name: self\n  containerEdits:\n    deviceNodes:\n    - path: /dev/zero\n\
             - name: given\n  containerEdits:\n    deviceNodes:\n    - path: /dev/g\n      hostPath: /nonexistent\n      type: c\n      major: 10\n      minor: 200\n\
             - name: plain\n  containerEdits:\n    deviceNodes:\n    - path: /dev/p\n      hostPath: {}\n\
             - name: wrongtype\n  containerEdits:\n    deviceNodes:\n    - path: /dev/w\n      hostPath: /dev/null\n      type: b\n\
             - name: rdt\n  containerEdits:\n    intelRdt:\n      closID: x\n",
            plain.display()
        ),
    );
    let reg = Registry::new(vec![dir]);
    let r = reg
        .resolve(&names(&["d.com/n=null", "d.com/n=self", "d.com/n=given"]))
        .unwrap();
    let n = &r.edits.device_nodes;
    assert_eq!(n[0].host_path.as_deref(), Some("/dev/null"));
    assert_eq!(
        (n[0].r#type.as_deref(), n[0].major, n[0].minor),
        (Some("c"), Some(1), Some(3))
    );
    assert_eq!(n[0].file_mode, Some(0o666));
    assert_eq!(n[1].host_path.as_deref(), Some("/dev/zero"));
    assert_eq!((n[1].major, n[1].minor), (Some(1), Some(5)));
    assert_eq!(
        (n[2].major, n[2].minor, n[2].file_mode),
        (Some(10), Some(200), None)
    );
    for (name, want) in [("plain", "not a device node"), ("wrongtype", "type")] {
        let e = reg
            .resolve(&names(&[&format!("d.com/n={name}")]))
            .unwrap_err();
        assert!(
            matches!(e, CdiError::DeviceNode { .. }) && e.to_string().contains(want),
            "{e}"
        );
    }
    let e = reg.resolve(&names(&["d.com/n=rdt"])).unwrap_err();
    assert!(
        matches!(e, CdiError::Unsupported { .. }) && e.to_string().contains("intelRdt"),
        "{e}"
    );
}
