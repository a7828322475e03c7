//! CRI's `Signal` enum (cri-api 1.33+: `ContainerConfig.stop_signal` and
//! `ContainerStatus.stop_signal`) and Linux signal numbers.

use berth_cri_api::v1 as cri;

use crate::error::CriError;

/// The number of a CRI signal; `None` for RUNTIME_DEFAULT (the image's STOPSIGNAL, else
/// SIGTERM). An enum value this Berth does not know is INVALID_ARGUMENT.
pub(crate) fn to_number(value: i32) -> Result<Option<i32>, CriError> {
    use cri::Signal as S;
    let signal = S::try_from(value)
        .map_err(|_| CriError::InvalidArgument(format!("unknown stop signal {value}")))?;
    // Real-time signals count from glibc's SIGRTMIN (34), as runc and docker count them.
    let rt_min = libc::SIGRTMIN();
    let rt_max = libc::SIGRTMAX();
    let n = match signal {
        S::RuntimeDefault => return Ok(None),
        S::Sigabrt => libc::SIGABRT,
        S::Sigalrm => libc::SIGALRM,
        S::Sigbus => libc::SIGBUS,
        S::Sigchld | S::Sigcld => libc::SIGCHLD,
        S::Sigcont => libc::SIGCONT,
        S::Sigfpe => libc::SIGFPE,
        S::Sighup => libc::SIGHUP,
        S::Sigill => libc::SIGILL,
        S::Sigint => libc::SIGINT,
        S::Sigio | S::Sigpoll => libc::SIGIO,
        S::Sigiot => libc::SIGIOT,
        S::Sigkill => libc::SIGKILL,
        S::Sigpipe => libc::SIGPIPE,
        S::Sigprof => libc::SIGPROF,
        S::Sigpwr => libc::SIGPWR,
        S::Sigquit => libc::SIGQUIT,
        S::Sigsegv => libc::SIGSEGV,
        S::Sigstkflt => libc::SIGSTKFLT,
        S::Sigstop => libc::SIGSTOP,
        S::Sigsys => libc::SIGSYS,
        S::Sigterm => libc::SIGTERM,
        S::Sigtrap => libc::SIGTRAP,
        S::Sigtstp => libc::SIGTSTP,
        S::Sigttin => libc::SIGTTIN,
        S::Sigttou => libc::SIGTTOU,
        S::Sigurg => libc::SIGURG,
        S::Sigusr1 => libc::SIGUSR1,
        S::Sigusr2 => libc::SIGUSR2,
        S::Sigvtalrm => libc::SIGVTALRM,
        S::Sigwinch => libc::SIGWINCH,
        S::Sigxcpu => libc::SIGXCPU,
        S::Sigxfsz => libc::SIGXFSZ,
        S::Sigrtmin => rt_min,
        S::Sigrtmax => rt_max,
        // SIGRTMINPLUS1..15 follow SIGRTMIN; SIGRTMAXMINUS14..1 precede SIGRTMAX.
        other => {
            let v = other as i32;
            let (plus1, minus14) = (S::Sigrtminplus1 as i32, S::Sigrtmaxminus14 as i32);
            if (plus1..plus1 + 15).contains(&v) {
                rt_min + 1 + (v - plus1)
            } else {
                rt_max - 14 + (v - minus14)
            }
        }
    };
    Ok(Some(n))
}

/// The CRI value of a signal number (what ContainerStatus reports); RUNTIME_DEFAULT for a number
/// CRI has no name for.
pub(crate) fn from_number(n: i32) -> cri::Signal {
    (1..=cri::Signal::Sigrtmax as i32)
        .filter_map(|v| cri::Signal::try_from(v).ok())
        // SIGCLD, SIGPOLL and SIGIOT are aliases: report the usual names.
        .filter(|s| {
            !matches!(
                s,
                cri::Signal::Sigcld | cri::Signal::Sigpoll | cri::Signal::Sigiot
            )
        })
        .find(|s| to_number(*s as i32).ok().flatten() == Some(n))
        .unwrap_or(cri::Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cri_signal_maps_to_a_number_and_back() {
        assert_eq!(to_number(0).unwrap(), None);
        assert_eq!(
            to_number(cri::Signal::Sigterm as i32).unwrap(),
            Some(libc::SIGTERM)
        );
        assert_eq!(
            to_number(cri::Signal::Sigusr1 as i32).unwrap(),
            Some(libc::SIGUSR1)
        );
        let rt = |s: cri::Signal| to_number(s as i32).unwrap().unwrap();
        assert_eq!(rt(cri::Signal::Sigrtminplus1), libc::SIGRTMIN() + 1);
        assert_eq!(rt(cri::Signal::Sigrtminplus15), libc::SIGRTMIN() + 15);
        assert_eq!(rt(cri::Signal::Sigrtmaxminus14), libc::SIGRTMAX() - 14);
        assert_eq!(rt(cri::Signal::Sigrtmaxminus1), libc::SIGRTMAX() - 1);
        assert_eq!(rt(cri::Signal::Sigrtmax), libc::SIGRTMAX());
        assert!(to_number(66).is_err());
        for n in 1..=libc::SIGRTMAX() {
            let back = from_number(n);
            if back != cri::Signal::RuntimeDefault {
                assert_eq!(to_number(back as i32).unwrap(), Some(n), "{n}");
            }
        }
        assert_eq!(from_number(libc::SIGCHLD), cri::Signal::Sigchld);
        assert_eq!(from_number(libc::SIGIO), cri::Signal::Sigio);
        assert_eq!(from_number(libc::SIGABRT), cri::Signal::Sigabrt);
    }
}
