//! Crash safety: a writer process is SIGKILLed mid-write, repeatedly, and every reopen must find
//! exactly the commits it reported (plus at most the one it had no time to report), intact.
//!
//! The writer is this test binary itself, re-executed to run only [`crash_writer_child`] with
//! [`WRITER_ENV`] set; without that variable the writer test does nothing.

// Tests may unwrap: a panic here is a failed test (clippy.toml cannot reach helper functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_store::{Record, RecordKind, Store};
use serde::{Deserialize, Serialize};

/// Set (to the database path) only in the child process.
const WRITER_ENV: &str = "BERTH_STORE_CRASH_WRITER_DB";
/// Stdout line the child prints after each commit returns: `COMMITTED <count>`.
const PROGRESS: &str = "COMMITTED ";
const ROUNDS: usize = 5;
/// The writer stops by itself after this long, so that an orphan cannot run forever.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);
/// How long the parent waits for the child to reach its target before failing.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// One record per sequence number, with content fully determined by it.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    id: String,
    seq: u64,
    payload: String,
}

impl Record for Entry {
    const KIND: RecordKind = RecordKind::Container;
    fn id(&self) -> &str {
        &self.id
    }
}

/// How many entries are committed; updated in the same transaction as each entry, so it must
/// always agree with the entry table.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    id: String,
    committed: u64,
}

impl Record for Progress {
    const KIND: RecordKind = RecordKind::Sandbox;
    fn id(&self) -> &str {
        &self.id
    }
}

const PROGRESS_ID: &str = "progress";

fn expected(seq: u64) -> Entry {
    // Sizes from 0 to ~6 KiB, so some records span pages and the file keeps growing.
    let len = usize::try_from(seq.wrapping_mul(7919) % 6000).unwrap();
    let letter = char::from(b'a' + u8::try_from(seq % 26).unwrap());
    Entry {
        id: format!("entry-{seq:010}"),
        seq,
        payload: std::iter::repeat_n(letter, len).collect(),
    }
}

/// The child: append entries forever, printing the count after each durable commit. A no-op in
/// a normal test run.
#[test]
fn crash_writer_child() {
    let Some(path) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).expect("child: open store");
    let mut next = store
        .get::<Progress>(PROGRESS_ID)
        .expect("child: read progress")
        .map_or(0, |p| p.committed);
    let deadline = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < deadline {
        store
            .write(|txn| {
                // insert_new: an entry beyond the recorded progress would be a torn commit.
                txn.insert_new(&expected(next))?;
                txn.put(&Progress {
                    id: PROGRESS_ID.to_owned(),
                    committed: next + 1,
                })
            })
            .expect("child: commit");
        next += 1;
        // Line-buffered: the line reaches the pipe before the next commit starts.
        println!("{PROGRESS}{next}");
    }
}

/// Tiny xorshift so the kill points vary between runs without a dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos());
        #[allow(clippy::cast_possible_truncation)]
        let seed = (nanos as u64) ^ u64::from(std::process::id()) | 1;
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct Writer {
    child: Child,
    progress: mpsc::Receiver<u64>,
    stdout: thread::JoinHandle<u64>,
    stderr: thread::JoinHandle<String>,
}

fn spawn_writer(db: &Path) -> Writer {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let (tx, progress) = mpsc::channel();
    // Reads every progress line until the pipe closes, including lines written just before the
    // kill, and returns the highest count reported.
    let stdout = thread::spawn(move || {
        let mut last = 0;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix(PROGRESS).and_then(|n| n.parse().ok()) {
                last = n;
                let _ = tx.send(n);
            }
        }
        last
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Writer {
        child,
        progress,
        stdout,
        stderr,
    }
}

/// Reopens the database and checks it against the reported count. Returns the committed count.
fn verify(db: &Path, reported: u64) -> (u64, Duration, bool) {
    let t = Instant::now();
    let store = Store::open(db).expect("reopen after kill");
    let open_time = t.elapsed();
    let recovered = store.recovered();

    let committed = store
        .get::<Progress>(PROGRESS_ID)
        .expect("read progress")
        .map_or(0, |p| p.committed);
    // Every record decodes (list fails on the first that does not) ...
    let entries = store.list::<Entry>().expect("list entries after kill");
    // ... the entries are exactly 0..committed: ids are zero-padded so id order is sequence
    // order, and a hole or an extra entry would misalign ...
    assert_eq!(
        entries.len() as u64,
        committed,
        "entries vs progress record"
    );
    for (seq, entry) in (0..).zip(&entries) {
        assert!(*entry == expected(seq), "entry {seq} has wrong content");
    }
    // ... and every commit the child saw return is there. It prints right after each commit, so
    // at most one commit can be unreported.
    assert!(
        committed >= reported,
        "lost commits: child reported {reported}, db has {committed}"
    );
    assert!(
        committed <= reported + 1,
        "child reported {reported} but db has {committed}"
    );
    (committed, open_time, recovered)
}

#[test]
fn killed_writer_loses_no_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let mut rng = Rng::seeded();
    eprintln!("crash test rng seed {}", rng.0);

    let mut committed = 0;
    for round in 0..ROUNDS {
        let mut writer = spawn_writer(&db);
        // Let it commit a few hundred more records, then kill it after a random-ish extra delay,
        // while it is (almost certainly) inside a commit.
        let target = committed + 200 + rng.below(300);
        let waited = Instant::now();
        loop {
            match writer.progress.recv_timeout(PROGRESS_TIMEOUT) {
                Ok(n) if n >= target => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = writer.child.kill();
                    let _ = writer.child.wait();
                    let stderr = writer.stderr.join().unwrap_or_default();
                    panic!("round {round}: writer made no progress ({e}); stderr:\n{stderr}");
                }
            }
        }
        let run_time = waited.elapsed();
        thread::sleep(Duration::from_micros(rng.below(20_000)));
        writer.child.kill().expect("SIGKILL writer");
        let status = writer.child.wait().expect("reap writer");
        let reported = writer.stdout.join().expect("stdout reader");
        let stderr = writer.stderr.join().unwrap_or_default();
        assert!(
            !status.success(),
            "round {round}: writer exited on its own: {status}\n{stderr}"
        );

        let (now, open_time, recovered) = verify(&db, reported);
        assert!(now > committed, "round {round}: no progress");
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "round {round}: {} commits in {run_time:?}, killed at reported={reported}, \
             db has {now}; reopen {open_time:?} (repaired: {recovered}), file {size} bytes",
            now - committed
        );
        // redb marks the file dirty while it is open; a killed writer always leaves it so.
        assert!(recovered, "round {round}: expected a repair after SIGKILL");
        committed = now;
    }
}
