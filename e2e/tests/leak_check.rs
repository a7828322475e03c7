//! The leak check must catch each kind of leak, or every "nothing left behind" in other tests means
//! nothing. Each case creates one real leak under a test dir, checks it is reported, then removes it.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use berth_e2e::leaks;

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("spawn");
    assert!(status.success(), "{cmd:?}");
}

fn test_dir(name: &str) -> tempfile::TempDir {
    std::fs::create_dir_all("/var/tmp/berth-e2e").unwrap();
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in("/var/tmp/berth-e2e")
        .unwrap()
}

#[test]
fn detects_a_mount_under_the_test_dir() {
    let dir = test_dir("leak-mount-");
    let target = dir.path().join("state/shm");
    std::fs::create_dir_all(&target).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&target));
    let found = leaks::mounts_under(dir.path());
    run(Command::new("umount").arg(&target));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("state/shm"));
    assert!(leaks::check(dir.path(), "e2enomatch").is_ok());
}

#[test]
fn detects_a_process_working_in_the_test_dir() {
    let dir = test_dir("leak-proc-");
    let mut child = Command::new("sleep")
        .arg("30")
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let found = leaks::processes_using(dir.path());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        found.iter().any(|f| f.contains(&child.id().to_string())),
        "{found:?}"
    );
    assert!(leaks::processes_using(dir.path()).is_empty());
}

#[test]
fn detects_a_cgroup_named_after_the_test() {
    let id = format!("e2eleak{}", std::process::id());
    // This host is hybrid: a v1 controller hierarchy and the v2 mount are both walked.
    let roots = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"];
    let mut made = Vec::new();
    for root in roots {
        if Path::new(root).is_dir() {
            let cg = Path::new(root).join(format!("berth-{id}"));
            std::fs::create_dir(&cg).unwrap();
            made.push(cg);
        }
    }
    assert!(!made.is_empty(), "no cgroup hierarchy to test with");
    let found = leaks::cgroups_named(&id);
    for cg in &made {
        std::fs::remove_dir(cg).unwrap();
    }
    assert_eq!(found.len(), made.len(), "{found:?}");
    assert!(leaks::cgroups_named(&id).is_empty());
}

#[test]
fn detects_a_named_network_namespace() {
    let id = format!("e2eleakns{}", std::process::id());
    let name = format!("berth-{id}");
    run(Command::new("ip").args(["netns", "add", &name]));
    let found = leaks::netns_named(&id);
    run(Command::new("ip").args(["netns", "delete", &name]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(leaks::netns_named(&id).is_empty());
}

#[test]
fn detects_a_cni_ip_reservation() {
    let dir = test_dir("leak-ipam-");
    let network = dir.path().join("cni/ipam/berth-e2e");
    std::fs::create_dir_all(&network).unwrap();
    std::fs::write(network.join("lock"), "").unwrap();
    std::fs::write(network.join("last_reserved_ip.0"), "10.89.1.2").unwrap();
    assert!(leaks::cni_reservations(&dir.path().join("cni/ipam")).is_empty());
    std::fs::write(network.join("10.89.1.2"), "abcdef\neth0").unwrap();
    let err = leaks::check(dir.path(), "e2enomatch").unwrap_err();
    assert!(err.contains("10.89.1.2"), "{err}");
}

#[test]
fn detects_a_monitor_that_only_holds_a_file_open() {
    let dir = test_dir("leak-monitor-");
    // A stand-in monitor: `comm` comes from the name it was executed by. It lives, works and is
    // named outside the test dir; only its stdout (a log file) ties it to the test.
    let bin = tempfile::Builder::new()
        .prefix("leak-monitor-bin-")
        .tempdir_in("/var/tmp/berth-e2e")
        .expect("bin dir");
    let monitor = bin.path().join("berth-monitor");
    std::os::unix::fs::symlink("/bin/sleep", &monitor).expect("symlink");
    let log = std::fs::File::create(dir.path().join("c_0.log")).expect("log file");
    let mut child = Command::new(&monitor)
        .arg("30")
        .current_dir(bin.path())
        .stdout(log)
        .spawn()
        .expect("spawning the stand-in monitor");
    // spawn() returns once the close-on-exec pipe closes, which the kernel does before it sets the
    // new comm and argv: look again until the exec has finished.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let found = loop {
        let found = leaks::monitors_for(dir.path());
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let plain = leaks::processes_using(dir.path());
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(&child.id().to_string()), "{found:?}");
    assert!(
        plain.is_empty(),
        "only the monitor check sees it: {plain:?}"
    );
    assert!(leaks::monitors_for(dir.path()).is_empty());
}

#[test]
fn detects_oci_runtime_state() {
    let dir = test_dir("leak-runc-");
    let root = dir.path().join("state/runtime/runc");
    std::fs::create_dir_all(&root).expect("runtime root");
    assert!(leaks::runtime_state(&dir.path().join("state")).is_empty());
    let container = root.join("ab".repeat(32));
    std::fs::create_dir(&container).expect("container dir");
    std::fs::write(container.join("state.json"), "{}").expect("state.json");
    let err = leaks::check(dir.path(), "e2enomatch").expect_err("a leak");
    assert!(err.contains("OCI runtime state"), "{err}");
}
