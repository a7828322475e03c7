//! Behaviour of the store API against real files.

// Tests may unwrap: a panic here is a failed test (clippy.toml cannot reach helper functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use berth_store::{CorruptError, Record, RecordKind, SCHEMA_VERSION, Store, StoreError};
use common::{Container, Image, Sandbox, container, image, raw_get, raw_insert, sandbox, temp_db};
use serde::{Deserialize, Serialize};

#[test]
fn round_trip_each_kind() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();

    let img = image("sha256:aaa");
    let sb = sandbox("sb1");
    let ctr = container("c1", "sb1");
    store.put(&img).unwrap();
    store.put(&sb).unwrap();
    store.put(&ctr).unwrap();

    assert_eq!(store.get::<Image>("sha256:aaa").unwrap(), Some(img.clone()));
    assert_eq!(store.get::<Sandbox>("sb1").unwrap(), Some(sb.clone()));
    assert_eq!(store.get::<Container>("c1").unwrap(), Some(ctr.clone()));
    assert_eq!(store.list::<Image>().unwrap(), vec![img]);
    assert_eq!(store.list::<Sandbox>().unwrap(), vec![sb]);
    assert_eq!(store.list::<Container>().unwrap(), vec![ctr]);

    // Kinds are separate tables: the same id in another kind is another record.
    assert_eq!(store.get::<Image>("c1").unwrap(), None);
    store.put(&image("c1")).unwrap();
    assert_eq!(
        store.get::<Container>("c1").unwrap().unwrap().sandbox_id,
        "sb1"
    );
    assert_eq!(store.get::<Image>("c1").unwrap(), Some(image("c1")));
}

#[test]
fn missing_record_is_none() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.get::<Container>("nope").unwrap(), None);
    assert!(store.list::<Container>().unwrap().is_empty());
}

#[test]
fn put_replaces() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let mut sb = sandbox("sb1");
    store.put(&sb).unwrap();
    sb.containers.push("c1".to_owned());
    store.put(&sb).unwrap();
    assert_eq!(store.get::<Sandbox>("sb1").unwrap(), Some(sb));
    assert_eq!(store.list::<Sandbox>().unwrap().len(), 1);
}

#[test]
fn insert_new_refuses_existing_id() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let first = container("c1", "sb1");
    store.insert_new(&first).unwrap();

    let err = store.insert_new(&container("c1", "sb2")).unwrap_err();
    assert!(
        matches!(&err, StoreError::AlreadyExists { kind: RecordKind::Container, id } if id == "c1"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), r#"container "c1" already exists"#);
    // The original is untouched.
    assert_eq!(store.get::<Container>("c1").unwrap(), Some(first));
}

#[test]
fn delete_reports_whether_it_existed() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.put(&image("i1")).unwrap();
    store.put(&image("i2")).unwrap();
    assert!(store.delete::<Image>("i1").unwrap());
    assert!(!store.delete::<Image>("i1").unwrap());
    assert!(!store.delete::<Image>("never").unwrap());
    assert_eq!(store.get::<Image>("i1").unwrap(), None);
    assert_eq!(store.list::<Image>().unwrap(), vec![image("i2")]);
}

#[test]
fn empty_id_is_rejected() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    for err in [
        store.put(&image("")).unwrap_err(),
        store.insert_new(&image("")).unwrap_err(),
        store.resolve_prefix::<Image>("").unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                StoreError::InvalidId {
                    kind: RecordKind::Image,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert!(store.list::<Image>().unwrap().is_empty());
}

/// Fills the container table with ids chosen to sit next to each other in key order.
fn prefix_fixture() -> (tempfile::TempDir, Store) {
    let (dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    for id in ["a1", "abc123", "abc124", "abd999", "b", "ab", "abc1239"] {
        store.put(&container(id, "sb")).unwrap();
    }
    (dir, store)
}

#[test]
fn ids_with_prefix_is_a_bounded_range_scan() {
    let (_dir, store) = prefix_fixture();
    assert_eq!(
        store.ids_with_prefix::<Container>("abc").unwrap(),
        ["abc123", "abc1239", "abc124"]
    );
    assert_eq!(
        store.ids_with_prefix::<Container>("ab").unwrap(),
        ["ab", "abc123", "abc1239", "abc124", "abd999"]
    );
    assert_eq!(store.ids_with_prefix::<Container>("b").unwrap(), ["b"]);
    assert!(store.ids_with_prefix::<Container>("c").unwrap().is_empty());
    assert!(
        store
            .ids_with_prefix::<Container>("abc2")
            .unwrap()
            .is_empty()
    );
    // The empty prefix lists every id; other kinds are not included.
    assert_eq!(store.ids_with_prefix::<Container>("").unwrap().len(), 7);
    assert!(store.ids_with_prefix::<Sandbox>("").unwrap().is_empty());
}

#[test]
fn resolve_prefix_unique_none_ambiguous() {
    let (_dir, store) = prefix_fixture();
    assert_eq!(store.resolve_prefix::<Container>("abd").unwrap(), "abd999");
    assert_eq!(
        store.resolve_prefix::<Container>("abc124").unwrap(),
        "abc124"
    );
    assert_eq!(store.resolve_prefix::<Container>("a1").unwrap(), "a1");

    let err = store.resolve_prefix::<Container>("zz").unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.to_string(), r#"no container matches id "zz""#);

    let err = store.resolve_prefix::<Container>("abc").unwrap_err();
    match &err {
        StoreError::Ambiguous {
            kind: RecordKind::Container,
            prefix,
            matches,
        } => {
            assert_eq!(prefix, "abc");
            assert_eq!(matches, &["abc123", "abc1239", "abc124"]);
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        r#"container id prefix "abc" is ambiguous: it matches 3 ids"#
    );
}

#[test]
fn exact_id_wins_over_ids_it_prefixes() {
    let (_dir, store) = prefix_fixture();
    // "ab" is an id and a prefix of four others; "abc123" is an id and a prefix of "abc1239".
    assert_eq!(store.resolve_prefix::<Container>("ab").unwrap(), "ab");
    assert_eq!(
        store.resolve_prefix::<Container>("abc123").unwrap(),
        "abc123"
    );
    // A strict prefix of both is still ambiguous, and the longer id is reachable.
    assert!(matches!(
        store.resolve_prefix::<Container>("abc12").unwrap_err(),
        StoreError::Ambiguous { .. }
    ));
    assert_eq!(
        store.resolve_prefix::<Container>("abc1239").unwrap(),
        "abc1239"
    );
}

#[test]
fn write_commits_several_records_atomically() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.put(&sandbox("sb1")).unwrap();

    let n = store
        .write(|txn| {
            txn.insert_new(&container("c1", "sb1"))?;
            let mut sb: Sandbox = txn.get("sb1")?.expect("sandbox exists");
            sb.containers.push("c1".to_owned());
            txn.put(&sb)?;
            Ok(sb.containers.len())
        })
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        store.get::<Sandbox>("sb1").unwrap().unwrap().containers,
        ["c1"]
    );
    assert!(store.get::<Container>("c1").unwrap().is_some());
}

#[test]
fn write_rolls_back_when_closure_errs() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.put(&sandbox("sb1")).unwrap();
    store.put(&image("i1")).unwrap();

    let err = store
        .write(|txn| {
            txn.put(&container("c1", "sb1"))?;
            let mut sb = sandbox("sb1");
            sb.containers.push("c1".to_owned());
            txn.put(&sb)?;
            assert!(txn.delete::<Image>("i1")?);
            // Fails: the id is taken. Everything above must be undone.
            txn.insert_new(&sandbox("sb1"))?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");

    assert_eq!(store.get::<Container>("c1").unwrap(), None);
    assert_eq!(store.get::<Sandbox>("sb1").unwrap(), Some(sandbox("sb1")));
    assert_eq!(store.get::<Image>("i1").unwrap(), Some(image("i1")));
    // And the store still takes writes.
    store.put(&container("c2", "sb1")).unwrap();
}

#[test]
fn write_rolls_back_when_closure_panics() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.write(|txn| -> Result<(), StoreError> {
            txn.put(&image("i1"))?;
            panic!("boom");
        })
    }));
    assert!(result.is_err());
    assert_eq!(store.get::<Image>("i1").unwrap(), None);
    // Neither the redb writer nor our nested-write guard is left held.
    store.put(&image("i2")).unwrap();
    assert_eq!(store.list::<Image>().unwrap(), vec![image("i2")]);
}

#[test]
fn write_txn_sees_its_own_writes_and_can_handle_errors() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.put(&image("i1")).unwrap();
    store
        .write(|txn| {
            txn.put(&image("i2"))?;
            assert_eq!(txn.get::<Image>("i2")?, Some(image("i2")));
            assert_eq!(txn.list::<Image>()?.len(), 2);
            assert_eq!(txn.resolve_prefix::<Image>("i2")?, "i2");
            assert_eq!(txn.ids_with_prefix::<Image>("i")?, ["i1", "i2"]);
            // An expected conflict does not doom the transaction.
            match txn.insert_new(&image("i1")) {
                Err(StoreError::AlreadyExists { .. }) => {}
                other => panic!("expected AlreadyExists, got {other:?}"),
            }
            // Reads through the store see the last commit, not this transaction.
            assert_eq!(store.get::<Image>("i2")?, None);
            Ok(())
        })
        .unwrap();
    assert_eq!(store.list::<Image>().unwrap().len(), 2);
}

#[test]
fn nested_write_is_an_error_not_a_deadlock() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let err = store
        .write(|txn| {
            txn.put(&image("outer"))?;
            store.put(&image("inner"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::NestedWrite), "{err:?}");
    assert!(store.list::<Image>().unwrap().is_empty());
    store.put(&image("after")).unwrap();
}

#[test]
fn concurrent_writers_and_readers() {
    const THREADS: usize = 6;
    const PER_THREAD: usize = 40;
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.put(&sandbox("counter")).unwrap();
    let start = Arc::new(Barrier::new(THREADS + 1));

    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    store.insert_new(&container(&format!("t{t}-{i:03}"), "counter"))?;
                    // Read-modify-write of one shared record: lost updates would show up as a
                    // short list at the end.
                    store.write(|txn| {
                        let mut sb: Sandbox = txn.get("counter")?.expect("counter exists");
                        sb.containers.push(format!("t{t}-{i:03}"));
                        txn.put(&sb)
                    })?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        let start = Arc::clone(&start);
        thread::spawn(move || {
            start.wait();
            let mut last = 0;
            // Snapshots only grow, and each is internally consistent.
            while last < THREADS * PER_THREAD {
                let n = store.list::<Container>()?.len();
                assert!(n >= last, "snapshot went backwards: {n} < {last}");
                last = n;
                thread::yield_now();
            }
            Ok::<_, StoreError>(())
        })
    };
    for w in writers {
        w.join().unwrap().unwrap();
    }
    reader.join().unwrap().unwrap();

    let ids: BTreeSet<String> = store
        .list::<Container>()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids.len(), THREADS * PER_THREAD);
    let counter = store.get::<Sandbox>("counter").unwrap().unwrap();
    assert_eq!(counter.containers.len(), THREADS * PER_THREAD);
    assert_eq!(
        counter.containers.iter().cloned().collect::<BTreeSet<_>>(),
        ids
    );
}

#[test]
fn reopen_keeps_data() {
    let (_dir, path) = temp_db();
    {
        let store = Store::open(&path).unwrap();
        assert!(!store.recovered());
        store.put(&image("i1")).unwrap();
        store.put(&sandbox("sb1")).unwrap();
        store.put(&container("c1", "sb1")).unwrap();
        store.delete::<Image>("i1").unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert!(!store.recovered(), "a clean close needs no repair");
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.get::<Image>("i1").unwrap(), None);
    assert_eq!(store.get::<Sandbox>("sb1").unwrap(), Some(sandbox("sb1")));
    assert_eq!(
        store.list::<Container>().unwrap(),
        vec![container("c1", "sb1")]
    );
}

#[test]
fn second_open_of_same_file_is_locked_until_all_clones_drop() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let clone = store.clone();
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked { path: p } if *p == path),
        "{err:?}"
    );
    drop(store);
    assert!(matches!(
        Store::open(&path).unwrap_err(),
        StoreError::Locked { .. }
    ));
    drop(clone);
    Store::open(&path).unwrap();
}

#[test]
fn close_records_a_clean_shutdown_once_no_clone_is_left() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.put(&image("i1")).unwrap();
    let clone = store.clone();
    let err = store.close().unwrap_err();
    assert!(
        matches!(&err, StoreError::InUse { path: p, handles: 1 } if *p == path),
        "{err:?}"
    );
    // The refused close left the database open for the remaining clone.
    assert_eq!(clone.get::<Image>("i1").unwrap(), Some(image("i1")));
    assert!(matches!(
        Store::open(&path).unwrap_err(),
        StoreError::Locked { .. }
    ));
    clone.close().unwrap();
    let store = Store::open(&path).unwrap();
    assert!(!store.recovered(), "a closed store needs no repair");
    assert_eq!(store.get::<Image>("i1").unwrap(), Some(image("i1")));
}

#[test]
fn open_creates_directories_and_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("var/lib/berth")
        .join(berth_store::DB_FILE_NAME);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn open_refuses_a_file_that_is_not_a_database() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    let newer = (SCHEMA_VERSION + 1).to_le_bytes();
    raw_insert(&path, "meta", "schema_version", &newer);

    let err = Store::open(&path).unwrap_err();
    match err {
        StoreError::SchemaTooNew { found, supported } => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(
        raw_get(&path, "meta", "schema_version").as_deref(),
        Some(newer.as_slice())
    );
}

#[test]
fn corrupt_record_is_reported_with_its_table_and_id() {
    let (_dir, path) = temp_db();
    {
        let store = Store::open(&path).unwrap();
        store.put(&container("c1", "sb")).unwrap();
        store.put(&container("c3", "sb")).unwrap();
    }
    raw_insert(&path, "containers", "c2", b"{\"id\":\"c2\",\"sandbox_id\":");
    let store = Store::open(&path).unwrap();

    let err = store.get::<Container>("c2").unwrap_err();
    match &err {
        StoreError::Corrupt {
            kind: RecordKind::Container,
            id,
            source: CorruptError::Decode(_),
        } => assert_eq!(id, "c2"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with(r#"container "c2" in table "containers" is corrupt: "#),
        "{msg}"
    );

    // list fails rather than hiding c2 ...
    let err = store.list::<Container>().unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { id, .. } if id == "c2"),
        "{err:?}"
    );
    // ... scan reports it in place and returns the rest ...
    let scanned = store.scan::<Container>().unwrap();
    assert_eq!(scanned.len(), 3);
    assert_eq!(scanned[0].as_ref().unwrap().id, "c1");
    assert!(matches!(&scanned[1], Err(StoreError::Corrupt { id, .. }) if id == "c2"));
    assert_eq!(scanned[2].as_ref().unwrap().id, "c3");
    // ... prefix lookups do not decode, and delete removes it without decoding.
    assert_eq!(store.resolve_prefix::<Container>("c2").unwrap(), "c2");
    assert!(store.delete::<Container>("c2").unwrap());
    assert_eq!(store.list::<Container>().unwrap().len(), 2);
}

#[test]
fn record_under_the_wrong_key_is_corrupt() {
    let (_dir, path) = temp_db();
    drop(Store::open(&path).unwrap());
    let bytes = serde_json::to_vec(&image("other")).unwrap();
    raw_insert(&path, "images", "mine", &bytes);
    let store = Store::open(&path).unwrap();
    let err = store.get::<Image>("mine").unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { id, source: CorruptError::IdMismatch { found }, .. }
            if id == "mine" && found == "other"),
        "{err:?}"
    );
}

/// The encoding contract: old records decode with fields added later under `#[serde(default)]`,
/// and old code decodes records carrying fields it does not know.
#[test]
fn records_are_forward_and_backward_compatible() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ImageV1 {
        id: String,
        size: u64,
    }
    impl Record for ImageV1 {
        const KIND: RecordKind = RecordKind::Image;
        fn id(&self) -> &str {
            &self.id
        }
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct ImageV2 {
        id: String,
        size: u64,
        #[serde(default)]
        pinned: bool,
    }
    impl Record for ImageV2 {
        const KIND: RecordKind = RecordKind::Image;
        fn id(&self) -> &str {
            &self.id
        }
    }

    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store
        .put(&ImageV1 {
            id: "old".into(),
            size: 1,
        })
        .unwrap();
    store
        .put(&ImageV2 {
            id: "new".into(),
            size: 2,
            pinned: true,
        })
        .unwrap();
    assert_eq!(
        store.get::<ImageV2>("old").unwrap(),
        Some(ImageV2 {
            id: "old".into(),
            size: 1,
            pinned: false
        })
    );
    assert_eq!(
        store.get::<ImageV1>("new").unwrap(),
        Some(ImageV1 {
            id: "new".into(),
            size: 2
        })
    );
}

#[test]
fn put_and_get_200_records() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let ids: Vec<String> = (0..200).map(|i| format!("{i:064x}")).collect();

    let t = Instant::now();
    for id in &ids {
        store.put(&container(id, "sb")).unwrap();
    }
    let put = t.elapsed();
    let t = Instant::now();
    for id in &ids {
        assert_eq!(
            store.get::<Container>(id).unwrap(),
            Some(container(id, "sb"))
        );
    }
    let get = t.elapsed();
    let t = Instant::now();
    let all = store.list::<Container>().unwrap();
    let list = t.elapsed();
    assert_eq!(all.len(), 200);
    assert!(
        all.windows(2).all(|w| w[0].id < w[1].id),
        "listed in id order"
    );

    // Each put is its own durable commit; batching in one transaction is the fast path.
    let t = Instant::now();
    store
        .write(|txn| {
            for id in &ids {
                txn.put(&image(id))?;
            }
            Ok(())
        })
        .unwrap();
    let batch = t.elapsed();
    assert_eq!(store.list::<Image>().unwrap().len(), 200);

    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!(
        "200 records: put (200 commits) {put:?}, get {get:?}, list {list:?}, \
         batched put (1 commit) {batch:?}, file {size} bytes"
    );
}
