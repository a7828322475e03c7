use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::*;

/// The mounts of containers, as a test sets them.
#[derive(Default)]
struct Mounts(Mutex<Vec<MountUser>>);

impl Mounts {
    fn set(&self, mounts: &[(&str, &Path)]) {
        *self.0.lock().unwrap() = mounts
            .iter()
            .map(|(id, path)| MountUser {
                container_id: id.to_string(),
                container_name: format!("name-{id}"),
                host_path: path.to_path_buf(),
            })
            .collect();
    }
}

impl MountUsers for Mounts {
    fn mounts(&self) -> Vec<MountUser> {
        self.0.lock().unwrap().clone()
    }
}

fn open(root: &Path) -> (Volumes, Arc<Mounts>) {
    let mounts = Arc::new(Mounts::default());
    (Volumes::open(root, mounts.clone()).unwrap(), mounts)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn names_follow_dockers_rule() {
    for good in ["a", "data", "my-vol_1.x", "0", "A.b-C_d"] {
        validate_name(good).unwrap();
    }
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for bad in [
        "",
        ".a",
        "-a",
        "_a",
        "a/b",
        "a b",
        "..",
        "a:b",
        "é",
        long.as_str(),
    ] {
        assert!(
            matches!(
                validate_name(bad),
                Err(VolumeError::InvalidName(_) | VolumeError::NameTooLong { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn create_inspect_list_remove() {
    let root = tempfile::tempdir().unwrap();
    let (volumes, _) = open(root.path());
    let v = volumes
        .create(Some("data"), labels(&[("app", "web"), ("tier", "db")]))
        .unwrap();
    assert_eq!(v.mountpoint, root.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    assert!(v.created_at_ns > 0 && v.used_by.is_empty());
    assert!(matches!(
        volumes.create(Some("data"), BTreeMap::new()),
        Err(VolumeError::AlreadyExists(_))
    ));
    assert!(matches!(
        volumes.create(Some("a/b"), BTreeMap::new()),
        Err(VolumeError::InvalidName(_))
    ));
    let generated = volumes.create(None, BTreeMap::new()).unwrap();
    assert_eq!(generated.name.len(), 64);
    assert_eq!(volumes.inspect("data").unwrap().labels["tier"], "db");
    assert!(matches!(
        volumes.inspect("nope"),
        Err(VolumeError::NotFound(_))
    ));

    let key = |k: &str, v: Option<&str>| LabelFilter {
        key: k.into(),
        value: v.map(str::to_string),
    };
    let names = |filters: &[LabelFilter]| -> Vec<String> {
        volumes.list(filters).into_iter().map(|v| v.name).collect()
    };
    assert_eq!(names(&[]).len(), 2);
    assert_eq!(names(&[key("app", None)]), ["data"]);
    assert_eq!(
        names(&[key("app", Some("web")), key("tier", None)]),
        ["data"]
    );
    assert!(names(&[key("app", Some("db"))]).is_empty());

    std::fs::write(v.mountpoint.join("f"), b"12345").unwrap();
    assert_eq!(volumes.remove("data").unwrap(), 5);
    assert!(matches!(
        volumes.remove("data"),
        Err(VolumeError::NotFound(_))
    ));
    assert_eq!(entries(volumes.dir()), [generated.name]);
}

#[test]
fn a_mounted_volume_is_not_removed_or_pruned() {
    let root = tempfile::tempdir().unwrap();
    let (volumes, mounts) = open(root.path());
    let used = volumes.create(Some("used"), BTreeMap::new()).unwrap();
    let sub = volumes.create(Some("sub"), BTreeMap::new()).unwrap();
    volumes.create(Some("free"), labels(&[("k", "v")])).unwrap();
    volumes.create(Some("kept"), BTreeMap::new()).unwrap();
    let beneath = sub.mountpoint.join("x");
    // A mount beneath a data dir, one spelled with `..`, and a mount of some other path.
    let dotted = used.mountpoint.join("../_data/.");
    let other = root.path().join("volumes/used");
    mounts.set(&[("c1", &dotted), ("c2", &beneath), ("c3", &other)]);
    assert_eq!(volumes.inspect("used").unwrap().used_by, ["c1"]);
    assert_eq!(volumes.inspect("sub").unwrap().used_by, ["c2"]);
    match volumes.remove("used") {
        Err(VolumeError::InUse { containers, .. }) => {
            assert_eq!(containers, ["name-c1 (c1)"]);
        }
        other => panic!("{other:?}"),
    }
    // Filters narrow a prune; unused ones go, used ones stay.
    let pruned = volumes
        .prune(&[LabelFilter {
            key: "k".into(),
            value: None,
        }])
        .unwrap();
    assert_eq!(pruned.names, ["free"]);
    let pruned = volumes.prune(&[]).unwrap();
    assert_eq!(pruned.names, ["kept"]);
    assert_eq!(entries(volumes.dir()), ["sub", "used"]);
    mounts.set(&[]);
    volumes.remove("used").unwrap();
}

#[test]
fn volumes_survive_a_restart_and_crashes_leave_no_halves() {
    let root = tempfile::tempdir().unwrap();
    let created = {
        let (volumes, _) = open(root.path());
        volumes.create(Some("keep"), labels(&[("a", "b")])).unwrap()
    };
    let dir = root.path().join("volumes");
    // What crashes leave: a creation's scratch, a removal's, and a volume dir without metadata.
    std::fs::create_dir_all(dir.join(".tmp-half-0123456789abcdef/_data")).unwrap();
    std::fs::create_dir_all(dir.join(".rm-gone-0123456789abcdef/_data/deep")).unwrap();
    std::fs::create_dir_all(dir.join("orphan/_data")).unwrap();
    std::fs::write(dir.join("orphan/_data/f"), b"x").unwrap();
    std::fs::create_dir_all(dir.join("torn")).unwrap();
    std::fs::write(dir.join("torn/volume.json"), b"{\"na").unwrap();
    let (volumes, _) = open(root.path());
    assert_eq!(entries(&dir), ["keep", "orphan", "torn"]);
    assert_eq!(volumes.inspect("keep").unwrap(), created);
    assert!(
        volumes
            .inspect("orphan")
            .unwrap()
            .mountpoint
            .join("f")
            .is_file()
    );
    assert!(volumes.inspect("torn").unwrap().mountpoint.is_dir());
    let again: Vec<PathBuf> = volumes
        .list(&[])
        .into_iter()
        .map(|v| v.mountpoint)
        .collect();
    assert_eq!(again.len(), 3);
}
