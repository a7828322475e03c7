//! top.

use berth_api::containers::v1 as api;
use berth_e2e::Berthd;
use berth_e2e::containers::poll;
use serde_json::Value;

use super::*;

/// The PIDs in the cgroup `pid` is in (the v1 pids hierarchy, else the unified one).
fn cgroup_pids_of(pid: i32) -> Vec<i32> {
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let entry = |controllers: &str| {
        membership.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, c, path) = (parts.next()?, parts.next()?, parts.next()?);
            (c == controllers).then(|| path.to_string())
        })
    };
    let (mount, path) = match entry("pids") {
        Some(path) => ("/sys/fs/cgroup/pids", path),
        None => ("/sys/fs/cgroup", entry("").expect("a cgroup")),
    };
    let procs = std::fs::read_to_string(format!("{mount}{path}/cgroup.procs")).unwrap();
    let mut pids: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    pids.sort();
    pids
}

#[tokio::test]
async fn top_lists_the_containers_processes() {
    let berthd = Berthd::start("clitop").await.expect("starting berthd");
    let id = run_detached(&berthd, "sleeper", "sleep 1000 & wait");
    let main_pid = i32::try_from(inspect(&berthd, &id)["info"]["pid"].as_i64().unwrap()).unwrap();
    let processes = poll(LONG, "two processes: sh and sleep", async || {
        let json: Value =
            serde_json::from_str(&ok(&berthd, &["top", "sleeper", "-o", "json"])).unwrap();
        let processes = json["processes"].as_array().cloned().unwrap_or_default();
        (processes.len() == 2).then_some(processes)
    })
    .await;
    let sleep = processes
        .iter()
        .find(|p| p["args"][0] == "sleep")
        .unwrap_or_else(|| panic!("no sleep in {processes:?}"));
    let sh = processes
        .iter()
        .find(|p| p["pid"] == main_pid)
        .expect("the main process");
    assert_eq!(sleep["args"], serde_json::json!(["sleep", "1000"]));
    assert_eq!(sleep["ppid"], main_pid);
    // Its own PID namespace: the shell is 1 there.
    assert_eq!(sh["containerPid"], 1);
    assert!(sleep["containerPid"].as_i64().unwrap() > 1);
    assert_eq!(
        (sleep["uid"].as_i64(), sleep["user"].as_str()),
        (Some(0), Some("root"))
    );
    // The very PIDs of the container's cgroup.
    let mut listed: Vec<i32> = processes
        .iter()
        .map(|p| i32::try_from(p["pid"].as_i64().unwrap()).unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, cgroup_pids_of(main_pid));
    let sleep_pid = sleep["pid"].as_i64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{sleep_pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");

    // The table, as docker top's.
    let table = ok(&berthd, &["top", "sleeper"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let row = lines
        .find(|l| l.ends_with("sleep 1000"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (cells[0], cells[1]),
        ("root", sleep_pid.to_string().as_str())
    );

    ok(&berthd, &["stop", "-t", "0", "sleeper"]);
    let err = fails(&berthd, &["top", "sleeper"]);
    assert!(err.contains("not running"), "{err}");
    let mut svc = service(&berthd).await;
    let unknown = svc
        .top(api::TopRequest {
            container_id: "nosuchcontainer".into(),
        })
        .await;
    assert_eq!(unknown.err().map(|s| s.code()), Some(tonic::Code::NotFound));

    remove_everything(&berthd);
    berthd.finish();
}
