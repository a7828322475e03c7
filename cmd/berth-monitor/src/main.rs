//! berth-monitor: the per-pod process that parents a pod's containers (child subreaper), holds their
//! stdio, writes their CRI logs and records their exits, so containers outlive berthd restarts.
//!
//! berthd starts one per pod (`berth_monitor_api::Monitor::spawn`) and talks to it over
//! `<dir>/monitor.sock` (proto/monitor/v1). Usage:
//!
//! ```text
//! berth-monitor --dir DIR [--ready-fd N] [--cgroup-procs FILE]...
//! ```

mod conn;
mod console;
mod container;
mod exec;
mod exits;
mod logs;
mod runtime;
mod server;
// What std lacks: pipe2, fcntl, poll, signalfd, waitpid, kill, setrlimit, writev, clock_gettime,
// sendmsg/recvmsg with SCM_RIGHTS.
#[allow(unsafe_code)]
mod sys;
// malloc_trim and madvise(MADV_DONTNEED) of our own text pages.
#[allow(unsafe_code)]
mod trim;

use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_monitor_api::{EXITS_DIR, PID_FILE, SOCKET};

/// A line on stderr (`<dir>/monitor.log`), timestamped like the CRI logs.
pub fn note(args: fmt::Arguments<'_>) {
    let ts = logs::Timestamp::now();
    let ts = std::str::from_utf8(&ts.0).unwrap_or("");
    eprintln!("{ts} berth-monitor[{}]: {args}", std::process::id());
}

#[derive(Debug, Default, PartialEq)]
struct Args {
    dir: Option<PathBuf>,
    ready_fd: Option<i32>,
    cgroup_procs: Vec<PathBuf>,
    version: bool,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.to_str() {
            Some("--dir") => out.dir = Some(PathBuf::from(value("--dir")?)),
            Some("--ready-fd") => {
                let v = value("--ready-fd")?;
                let fd = v
                    .to_str()
                    .and_then(|s| s.parse::<i32>().ok())
                    .filter(|&fd| fd >= 0);
                out.ready_fd = Some(fd.ok_or_else(|| format!("bad --ready-fd {v:?}"))?);
            }
            Some("--cgroup-procs") => out
                .cgroup_procs
                .push(PathBuf::from(value("--cgroup-procs")?)),
            Some("--version" | "-V") => out.version = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if !out.version && out.dir.is_none() {
        return Err("--dir is required".to_string());
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "berth-monitor: {e}\nusage: berth-monitor --dir DIR [--ready-fd N] [--cgroup-procs FILE]..."
            );
            return ExitCode::from(2);
        }
    };
    if args.version {
        println!("berth-monitor {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match start(&args) {
        Ok(mut server) => ExitCode::from(server.run()),
        Err(e) => {
            note(format_args!("{e}"));
            ExitCode::FAILURE
        }
    }
}

/// Moves the monitor into the pod's monitor cgroups from a short-lived thread, while the main
/// thread goes on to serve. On cgroup v1 every move waits for an RCU grace period (the kernel's
/// threadgroup lock), a few milliseconds per hierarchy and ten hierarchies here: done inline it
/// was most of the monitor's startup, which is on the path of a pod's first StartContainer. A
/// runtime started before the moves finish stays where berthd is; the container's own processes
/// are placed by the runtime either way.
fn join_cgroups_in_background(cgroup_procs: &[PathBuf]) -> Result<(), String> {
    if cgroup_procs.is_empty() {
        return Ok(());
    }
    // Opened here, so that a cgroup that is not there is still an error of the spawn.
    let files = cgroup_procs
        .iter()
        .map(|procs| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(procs)
                .map(|f| (procs.clone(), f))
                .map_err(|e| format!("joining cgroup {}: {e}", procs.display()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let join = move || {
        for (procs, mut file) in files {
            // "0" is the writer's whole thread group: the monitor.
            if let Err(e) = file.write_all(b"0") {
                note(format_args!("joining cgroup {}: {e}", procs.display()));
            }
        }
    };
    std::thread::Builder::new()
        .name("cgroups".into())
        .stack_size(64 * 1024)
        .spawn(join)
        .map(drop)
        .map_err(|e| format!("starting the cgroup thread: {e}"))
}

/// Everything before the loop. The readiness byte goes out last, so `Monitor::spawn` returns only
/// once the socket accepts.
// prctl(PR_SET_CHILD_SUBREAPER), and owning the readiness fd berthd passed by number.
#[allow(unsafe_code)]
fn start(args: &Args) -> Result<server::Server, String> {
    // Keep the readiness pipe away from the runtimes we start.
    if let Some(fd) = args.ready_fd {
        sys::set_cloexec(fd).map_err(|e| format!("--ready-fd {fd}: {e}"))?;
    }
    let dir = args.dir.clone().ok_or("--dir is required")?;
    // Orphaned container processes (runc's detached children) are reparented to us.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(format!(
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Each exec or attach session costs a descriptor or two: room for MAX_CONNS of them.
    sys::raise_nofile(4096);
    let signals = sys::signalfd().map_err(|e| format!("signalfd: {e}"))?;
    // After signalfd has blocked the signals, so that the thread never takes one.
    join_cgroups_in_background(&args.cgroup_procs)?;
    std::fs::create_dir_all(dir.join(EXITS_DIR))
        .map_err(|e| format!("creating {}: {e}", dir.join(EXITS_DIR).display()))?;

    let socket = dir.join(SOCKET);
    // Never take over the socket of a monitor that still serves this directory.
    if UnixStream::connect(&socket).is_ok() {
        return Err(format!("another berth-monitor serves {}", socket.display()));
    }
    write_pid_file(&dir).map_err(|e| format!("writing {}: {e}", dir.join(PID_FILE).display()))?;
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).map_err(|e| format!("binding {}: {e}", socket.display()))?;
    let server = server::Server::new(dir.clone(), listener, signals)
        .map_err(|e| format!("listening: {e}"))?;

    if let Some(fd) = args.ready_fd {
        // SAFETY: berthd passed us this descriptor for exactly this; nothing else uses it.
        let ready = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut ready = std::fs::File::from(ready);
        if let Err(e) = ready.write_all(b"R") {
            server::remove_pid_file(&dir);
            let _ = std::fs::remove_file(&socket);
            return Err(format!("signalling readiness on fd {fd}: {e}"));
        }
    }
    note(format_args!("serving {}", socket.display()));
    Ok(server)
}

/// The pid file appears complete or not at all: a temp file renamed into place.
fn write_pid_file(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{PID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, dir.join(PID_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        let args = parse(&[
            "--dir",
            "/d",
            "--ready-fd",
            "5",
            "--cgroup-procs",
            "/a",
            "--cgroup-procs",
            "/b",
        ])
        .unwrap();
        assert_eq!(
            args,
            Args {
                dir: Some("/d".into()),
                ready_fd: Some(5),
                cgroup_procs: vec!["/a".into(), "/b".into()],
                version: false,
            }
        );
        assert!(parse(&["--version"]).unwrap().version);
        assert!(parse(&[]).is_err());
        assert!(parse(&["--dir"]).is_err());
        assert!(parse(&["--dir", "/d", "--ready-fd", "x"]).is_err());
        assert!(parse(&["--dir", "/d", "--bogus"]).is_err());
    }
}
