//! Failpoints: named places in berthd's request paths where a test can make berthd crash, stall,
//! panic or fail, deterministically (as containerd's failpoint suite does).
//!
//! Always compiled in: a call costs one relaxed atomic load while no failpoint is enabled, which is
//! the case unless `BERTH_FAILPOINTS` was set when berthd started. The variable is read once, by
//! [`init_from_env`]; its syntax is `name=action[,name=action...]` with the actions
//!
//! - `exit`: the process kills itself with SIGKILL, exactly as `kill -9` from outside would
//!   (nothing is flushed, no destructor runs);
//! - `panic`: panics (a bug-shaped crash: the panic hook and unwinding run);
//! - `sleep(ms)`: blocks the calling thread for `ms` milliseconds (a stalled step);
//! - `error`: [`fail`] returns an error, which the caller turns into its request's error.
//!
//! Every name must be one of [`POINTS`], so a typo in a test cannot silently test nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The environment variable [`init_from_env`] reads.
pub const ENV: &str = "BERTH_FAILPOINTS";

/// Every failpoint, in the order a pod's life passes them. The chaos matrix test iterates over
/// this list, so a point placed in the code but not listed here is rejected by [`init`].
pub const POINTS: &[&str] = &[
    // RunPodSandbox
    "sandbox/run/after-record",
    "sandbox/run/after-namespaces",
    "sandbox/run/after-cgroup",
    "sandbox/run/before-cni",
    "sandbox/run/after-cni",
    "sandbox/run/before-final-save",
    // StopPodSandbox
    "sandbox/stop/after-containers",
    "sandbox/stop/after-cni",
    // RemovePodSandbox (and the rollback of a failed RunPodSandbox)
    "sandbox/remove/after-stop",
    "sandbox/remove/after-containers",
    "sandbox/remove/after-shm",
    "sandbox/remove/after-unpin",
    "sandbox/remove/after-cgroup",
    "sandbox/remove/before-delete",
    // CreateContainer
    "container/create/after-record",
    "container/create/after-rootfs",
    "container/create/after-bundle",
    "container/create/before-final-save",
    // StartContainer (the monitor runs `runc create` and `runc start` within one request)
    "container/start/after-monitor",
    "container/start/before-runtime",
    "container/start/after-runtime",
    // StopContainer
    "container/stop/after-kill",
    // RemoveContainer (also of a pod's containers at RemovePodSandbox)
    "container/remove/after-kill",
    "container/remove/after-tombstone",
    // The cleanup of a removed container: in the background after RemoveContainer answered, or
    // inline at RemovePodSandbox.
    "container/cleanup/after-runtime-delete",
    "container/cleanup/after-monitor",
    "container/cleanup/after-files",
];

/// What an enabled failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Exit,
    Panic,
    Sleep(Duration),
    Error,
}

/// A malformed `BERTH_FAILPOINTS`.
#[derive(Debug, thiserror::Error)]
pub enum FailpointError {
    #[error("{ENV}: {0:?} is not name=action")]
    Syntax(String),
    #[error("{ENV}: unknown failpoint {0:?} (see berth_failpoint::POINTS)")]
    UnknownPoint(String),
    #[error("{ENV}: unknown action {0:?} (exit, panic, sleep(ms) or error)")]
    UnknownAction(String),
    #[error("{ENV}: failpoints were already set up")]
    AlreadySet,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static TABLE: OnceLock<Vec<(&'static str, Action)>> = OnceLock::new();

/// Reads [`ENV`] and enables what it names; returns the enabled points (empty when unset), for
/// berthd to log loudly: a failpoint in production is a bug of its own.
pub fn init_from_env() -> Result<Vec<(&'static str, Action)>, FailpointError> {
    match std::env::var(ENV) {
        Ok(spec) if !spec.trim().is_empty() => init(&spec),
        _ => Ok(Vec::new()),
    }
}

/// Enables the failpoints `spec` names (the syntax of [`ENV`]). Once per process.
pub fn init(spec: &str) -> Result<Vec<(&'static str, Action)>, FailpointError> {
    let table = parse(spec)?;
    TABLE
        .set(table.clone())
        .map_err(|_| FailpointError::AlreadySet)?;
    ENABLED.store(!table.is_empty(), Ordering::Relaxed);
    Ok(table)
}

fn parse(spec: &str) -> Result<Vec<(&'static str, Action)>, FailpointError> {
    let mut table = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, action) = item
            .split_once('=')
            .ok_or_else(|| FailpointError::Syntax(item.to_string()))?;
        let name = POINTS
            .iter()
            .copied()
            .find(|p| *p == name.trim())
            .ok_or_else(|| FailpointError::UnknownPoint(name.to_string()))?;
        table.push((name, parse_action(action.trim())?));
    }
    Ok(table)
}

fn parse_action(action: &str) -> Result<Action, FailpointError> {
    let unknown = || FailpointError::UnknownAction(action.to_string());
    match action {
        "exit" => Ok(Action::Exit),
        "panic" => Ok(Action::Panic),
        "error" => Ok(Action::Error),
        _ => {
            let ms = action
                .strip_prefix("sleep(")
                .and_then(|rest| rest.strip_suffix(')'))
                .ok_or_else(unknown)?;
            let ms: u64 = ms.trim().parse().map_err(|_| unknown())?;
            Ok(Action::Sleep(Duration::from_millis(ms)))
        }
    }
}

/// Passes failpoint `name`: does what it is set to, if anything. Returns `Err` (a message for the
/// caller's error type, e.g. `.map_err(SandboxError::Failpoint)?`) only for the `error` action.
#[inline]
pub fn fail(name: &'static str) -> Result<(), String> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    act(name)
}

#[cold]
fn act(name: &'static str) -> Result<(), String> {
    let Some(action) = TABLE
        .get()
        .and_then(|t| t.iter().find(|(n, _)| *n == name))
        .map(|(_, a)| *a)
    else {
        return Ok(());
    };
    eprintln!("failpoint {name}: {action:?}");
    match action {
        Action::Exit => {
            // The crate's only unsafe: kill(2) of ourselves with SIGKILL, a crash no code can see.
            #[allow(unsafe_code)]
            // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so this does not return.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL)
            };
            // Unreachable in practice; abort keeps the "no cleanup" promise if it ever is.
            std::process::abort()
        }
        Action::Panic => panic!("failpoint {name}"),
        Action::Sleep(d) => {
            std::thread::sleep(d);
            Ok(())
        }
        Action::Error => Err(format!("failpoint {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action_and_rejects_unknown_names() {
        let table = parse(
            "sandbox/run/after-cni=exit, container/start/after-monitor=sleep(25),\
             sandbox/stop/after-cni=error,container/cleanup/after-files=panic",
        )
        .expect("valid");
        assert_eq!(
            table,
            vec![
                ("sandbox/run/after-cni", Action::Exit),
                (
                    "container/start/after-monitor",
                    Action::Sleep(Duration::from_millis(25))
                ),
                ("sandbox/stop/after-cni", Action::Error),
                ("container/cleanup/after-files", Action::Panic),
            ]
        );
        assert!(matches!(
            parse("sandbox/run/typo=exit"),
            Err(FailpointError::UnknownPoint(_))
        ));
        assert!(matches!(
            parse("sandbox/run/after-cni=sleep(x)"),
            Err(FailpointError::UnknownAction(_))
        ));
        assert!(matches!(
            parse("sandbox/run/after-cni"),
            Err(FailpointError::Syntax(_))
        ));
    }

    #[test]
    fn points_are_unique() {
        let mut names = POINTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
    }

    #[test]
    fn disabled_points_pass() {
        assert_eq!(fail("sandbox/run/after-cni"), Ok(()));
    }
}
