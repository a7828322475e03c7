//! `berth kill`: any signal to a running container's main process, as `docker kill` sends it.
//!
//! The signal goes the way StopContainer's do (a pidfd checked against the process's start time,
//! else the OCI runtime); nothing is waited for. If the process dies of it, the container's exit
//! watcher (`watch.rs`) records the exit like any other, so status and events report it as ever.

use std::sync::Arc;

use crate::error::ContainerError;
use crate::record::Phase;
use crate::signal::{self, Sent};
use crate::{ContainerService, Inner};

/// Signal names as `kill -l` and docker know them, without "SIG".
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The real-time signals as docker numbers them (glibc keeps 32 and 33 for itself).
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// A signal by name (`KILL`, `SIGUSR1`, `usr1`, `RTMIN+3`, `SIGRTMAX-1`) or number (`10`); empty
/// is SIGKILL, docker kill's default.
pub fn parse_signal(text: &str) -> Result<i32, ContainerError> {
    let bad = || ContainerError::InvalidSignal {
        text: text.to_string(),
        max: RTMAX,
    };
    let t = text.trim();
    if t.is_empty() {
        return Ok(libc::SIGKILL);
    }
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=RTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(n);
    }
    let realtime = |base: i32, rest: &str| -> Option<i32> {
        let n = match rest {
            "" => base,
            r if r.starts_with('+') => base.checked_add(r[1..].parse::<i32>().ok()?)?,
            r if r.starts_with('-') => base.checked_sub(r[1..].parse::<i32>().ok()?)?,
            _ => return None,
        };
        (RTMIN..=RTMAX).contains(&n).then_some(n)
    };
    let parsed = if let Some(rest) = name.strip_prefix("RTMIN") {
        realtime(RTMIN, rest)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        realtime(RTMAX, rest)
    } else {
        None
    };
    parsed.ok_or_else(bad)
}

/// Sends `sig` to the running container `id`'s main process.
async fn kill(inner: &Arc<Inner>, id: &str, sig: i32) -> Result<(), ContainerError> {
    let record = inner.record(id)?;
    let not_running = || ContainerError::WrongState {
        id: id.to_string(),
        state: format!("{:?}", record.state()),
        needs: "not running: nothing to signal",
    };
    // No lock: a kill must get through while a stop waits out its grace period.
    if record.phase != Phase::Running || record.pid <= 0 {
        return Err(not_running());
    }
    if record.pid_start_time > 0 {
        match signal::send(record.pid, record.pid_start_time, sig) {
            Ok(Sent::Delivered) => return Ok(()),
            // Exited; the watcher is about to record it.
            Ok(Sent::Gone) => return Err(not_running()),
            Err(e) => {
                tracing::debug!(container_id = %id, error = %e, "pidfd signal failed; asking the runtime")
            }
        }
    }
    inner.runtime(&record).kill(id, sig).await
}

impl ContainerService {
    /// Sends the signal `signal` names (see [`parse_signal`]) to the running container's main
    /// process. Returns the container's full ID and the signal's number.
    pub async fn kill(
        &self,
        id_or_prefix: &str,
        signal: &str,
    ) -> Result<(String, i32), ContainerError> {
        let sig = parse_signal(signal)?;
        let id = self.resolve(id_or_prefix)?;
        kill(&self.inner, &id, sig).await?;
        tracing::info!(container_id = %id, signal = sig, "container signalled");
        Ok((id, sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        for (text, want) in [
            ("", libc::SIGKILL),
            ("KILL", 9),
            ("kill", 9),
            ("SIGKILL", 9),
            ("SIGUSR1", libc::SIGUSR1),
            ("usr1", libc::SIGUSR1),
            ("Sigterm", 15),
            ("10", 10),
            (" 9 ", 9),
            ("64", 64),
            ("RTMIN", 34),
            ("SIGRTMIN+3", 37),
            ("rtmax-1", 63),
            ("CLD", libc::SIGCHLD),
        ] {
            assert_eq!(parse_signal(text).unwrap(), want, "{text:?}");
        }
        for bad in [
            "0", "65", "-9", "NOPE", "SIG", "RTMIN+40", "RTMAX+1", "RTMIN+x", "9x", "USR3",
        ] {
            assert!(
                matches!(parse_signal(bad), Err(ContainerError::InvalidSignal { .. })),
                "{bad:?}"
            );
        }
    }
}
