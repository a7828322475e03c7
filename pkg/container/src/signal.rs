//! Signalling a container's process directly, without a runtime round trip (`runc kill` costs a
//! Go process start, ~15 ms): through a pidfd, after checking that the PID still names the
//! process the container started with (its start time), so a recycled PID is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What happened to the signal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Delivered,
    /// The process is gone (or the PID is someone else's now): nothing to signal.
    Gone,
}

/// Field 22 of /proc/<pid>/stat: clock ticks after boot when the process started.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Sends `signal` to `pid` if it is still the process that started at `started`.
pub(crate) fn send(pid: i32, started: u64, signal: i32) -> std::io::Result<Sent> {
    if pid <= 0 {
        return Ok(Sent::Gone);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(Sent::Gone),
            _ => Err(e),
        };
    }
    // The kernel returns a descriptor as an int: the syscall's long holds one.
    #[allow(clippy::cast_possible_truncation)]
    let fd = fd as RawFd;
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // With the pidfd held the PID can't be recycled under us: check it is still ours.
    if start_time(pid) != Some(started) {
        return Ok(Sent::Gone);
    }
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(Sent::Gone),
            _ => Err(e),
        };
    }
    Ok(Sent::Delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_only_the_process_that_started_then() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let started = start_time(pid).unwrap();
        assert_eq!(send(pid, started + 1, libc::SIGKILL).unwrap(), Sent::Gone);
        assert!(
            child.try_wait().unwrap().is_none(),
            "a mismatched start time must not signal"
        );
        assert_eq!(send(pid, started, libc::SIGKILL).unwrap(), Sent::Delivered);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert_eq!(send(pid, started, libc::SIGKILL).unwrap(), Sent::Gone);
    }
}
