//! The container process: args, environment, working directory, rlimits, OOM score.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

use crate::defaults::{DEFAULT_PATH, NOFILE_LIMIT, own_effective_capability};
use crate::rootfs::{clean_absolute, mkdir_all_in_root};
use crate::{ContainerConfig, ImageConfig, ResolvedUser, SpecError};

/// The command line, the Kubernetes way: `command` replaces the image's Entrypoint and drops its
/// Cmd; `args` alone replaces only the Cmd.
pub(crate) fn args(
    config: &ContainerConfig,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecError> {
    let mut out = if !config.command.is_empty() {
        config.command.clone()
    } else {
        // Docker writes `ENTRYPOINT [""]` for an entrypoint reset to empty.
        let mut entry = if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() {
            Vec::new()
        } else {
            image.entrypoint.clone()
        };
        if config.args.is_empty() {
            entry.extend(image.cmd.iter().cloned());
        }
        entry
    };
    if !config.command.is_empty() || !config.args.is_empty() {
        out.extend(config.args.iter().cloned());
    }
    if out.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(out)
}

/// The environment: the image's, then the request's (a later key replaces an earlier one in
/// place), then `PATH` and `HOSTNAME` (and `TERM=xterm` for a tty) where neither set them.
/// An image entry without `=` unsets the key, as in containerd.
pub(crate) fn env(
    config: &ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
) -> Result<Vec<String>, SpecError> {
    // (key, value); None marks an unset entry, dropped at the end.
    let mut vars: Vec<(String, Option<String>)> = Vec::new();
    for entry in &image.env {
        let (key, value) = match entry.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (entry.as_str(), None),
        };
        check_env(key, value.as_deref().unwrap_or(""), "the image config")?;
        set(&mut vars, key, value);
    }
    for (key, value) in &config.envs {
        check_env(key, value, "the container config")?;
        set(&mut vars, key, Some(value.clone()));
    }
    let mut defaults = vec![("PATH", DEFAULT_PATH)];
    if !hostname.is_empty() {
        defaults.push(("HOSTNAME", hostname));
    }
    if config.tty {
        defaults.push(("TERM", "xterm"));
    }
    for (key, value) in defaults {
        if !vars.iter().any(|(k, v)| k == key && v.is_some()) {
            set(&mut vars, key, Some(value.to_string()));
        }
    }
    Ok(vars
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect())
}

/// Sets `key` in place if present (keeping its position), else appends it; `None` unsets.
fn set(vars: &mut Vec<(String, Option<String>)>, key: &str, value: Option<String>) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None if value.is_some() => vars.push((key.to_string(), value)),
        None => {}
    }
}

/// A key must be non-empty and free of `=` and NUL; a value free of NUL (execve can't pass it).
fn check_env(key: &str, value: &str, source: &str) -> Result<(), SpecError> {
    if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
        return Err(SpecError::InvalidEnv {
            key: key.to_string(),
            origin: source.to_string(),
        });
    }
    Ok(())
}

/// The working directory: the request's, else the image's, else `/`; it must be absolute.
pub(crate) fn cwd(config: &ContainerConfig, image: &ImageConfig) -> Result<PathBuf, SpecError> {
    let dir = [config.working_dir.as_str(), image.working_dir.as_str()]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/");
    clean_absolute(dir).ok_or_else(|| SpecError::RelativeWorkingDir(dir.to_string()))
}

/// Creates the working directory inside the rootfs when the image lacks it, owned by the
/// container user so that it can write there (runc would create it root-owned).
pub(crate) fn create_cwd(rootfs: &Path, cwd: &Path, user: &ResolvedUser) -> Result<(), SpecError> {
    mkdir_all_in_root(rootfs, cwd, user.uid, user.gid).map(|_| ())
}

/// RLIMIT_NOFILE: containerd's 1048576, but never above berthd's own hard limit when berthd lacks
/// CAP_SYS_RESOURCE: runc's setrlimit in the container would fail with EPERM otherwise.
pub(crate) fn rlimits() -> Result<Vec<PosixRlimit>, SpecError> {
    let limit = match own_effective_capability("SYS_RESOURCE") {
        Some(false) => own_nofile_hard_limit().map_or(NOFILE_LIMIT, |h| h.min(NOFILE_LIMIT)),
        _ => NOFILE_LIMIT,
    };
    Ok(vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(limit)
            .hard(limit)
            .build()?,
    ])
}

fn own_nofile_hard_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    (rc == 0).then_some(rl.rlim_max)
}

/// The OOM score adjustment to ask runc for. `requested` is clamped to -1000..=1000. Without
/// CAP_SYS_RESOURCE the kernel refuses to lower a process's oom_score_adj below the minimum it
/// inherited, and runc's write then fails the start; berthd's own current value is a safe lower
/// bound for that minimum, so the result is never below it. With the capability, it is the
/// request as is.
pub fn oom_score_adj_clamped(requested: i64) -> i32 {
    // Clamped to -1000..=1000 first, so it fits.
    #[allow(clippy::cast_possible_truncation)]
    let requested = requested.clamp(-1000, 1000) as i32;
    if own_effective_capability("SYS_RESOURCE") == Some(true) {
        return requested;
    }
    match own_oom_score_adj() {
        Some(current) => requested.max(current),
        None => requested,
    }
}

fn own_oom_score_adj() -> Option<i32> {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: s(&["/bin/sh", "-c"]),
            cmd: s(&["echo hi"]),
            ..Default::default()
        }
    }

    #[test]
    fn args_merging_the_kubernetes_way() {
        let img = image();
        let mut c = ContainerConfig::default();
        assert_eq!(args(&c, &img).unwrap(), s(&["/bin/sh", "-c", "echo hi"]));
        c.args = s(&["echo bye"]);
        assert_eq!(args(&c, &img).unwrap(), s(&["/bin/sh", "-c", "echo bye"]));
        c.command = s(&["/bin/true"]);
        assert_eq!(args(&c, &img).unwrap(), s(&["/bin/true", "echo bye"]));
        c.args.clear();
        assert_eq!(args(&c, &img).unwrap(), s(&["/bin/true"]));
        // Nothing at all.
        let err = args(&ContainerConfig::default(), &ImageConfig::default()).unwrap_err();
        assert!(matches!(err, SpecError::NoCommand));
        assert_eq!(err.to_string(), "no command specified");
        // `ENTRYPOINT [""]` counts as none.
        let img = ImageConfig {
            entrypoint: s(&[""]),
            cmd: s(&["ls"]),
            ..Default::default()
        };
        assert_eq!(args(&ContainerConfig::default(), &img).unwrap(), s(&["ls"]));
    }

    #[test]
    fn env_order_overrides_and_defaults() {
        let img = ImageConfig {
            env: s(&["A=1", "PATH=/img/bin", "B=2", "GONE"]),
            ..Default::default()
        };
        let mut c = ContainerConfig {
            envs: vec![("B".into(), "3".into()), ("C".into(), "x=y".into())],
            ..Default::default()
        };
        assert_eq!(
            env(&c, &img, "pod").unwrap(),
            s(&["A=1", "PATH=/img/bin", "B=3", "C=x=y", "HOSTNAME=pod"])
        );
        c.tty = true;
        c.envs.push(("HOSTNAME".into(), "mine".into()));
        let e = env(&c, &ImageConfig::default(), "pod").unwrap();
        assert_eq!(
            e,
            s(&[
                "B=3",
                "C=x=y",
                "HOSTNAME=mine",
                &format!("PATH={DEFAULT_PATH}"),
                "TERM=xterm"
            ])
        );
        c.envs.push(("TERM".into(), "vt100".into()));
        assert!(
            env(&c, &img, "")
                .unwrap()
                .contains(&"TERM=vt100".to_string())
        );
        // An image entry without `=` unsets an earlier one.
        let img = ImageConfig {
            env: s(&["A=1", "A"]),
            ..Default::default()
        };
        let e = env(&ContainerConfig::default(), &img, "").unwrap();
        assert_eq!(e, s(&[&format!("PATH={DEFAULT_PATH}")]));
    }

    #[test]
    fn bad_env_keys_are_invalid() {
        for key in ["", "A=B", "A\0"] {
            let c = ContainerConfig {
                envs: vec![(key.into(), "v".into())],
                ..Default::default()
            };
            assert!(matches!(
                env(&c, &ImageConfig::default(), "h"),
                Err(SpecError::InvalidEnv { .. })
            ));
        }
        let img = ImageConfig {
            env: s(&["=x"]),
            ..Default::default()
        };
        assert!(env(&ContainerConfig::default(), &img, "h").is_err());
    }

    #[test]
    fn cwd_choice() {
        let mut c = ContainerConfig::default();
        let mut img = ImageConfig::default();
        assert_eq!(cwd(&c, &img).unwrap(), PathBuf::from("/"));
        img.working_dir = "/work/dir/".into();
        assert_eq!(cwd(&c, &img).unwrap(), PathBuf::from("/work/dir"));
        c.working_dir = "/srv".into();
        assert_eq!(cwd(&c, &img).unwrap(), PathBuf::from("/srv"));
        c.working_dir = "relative".into();
        assert!(matches!(
            cwd(&c, &img),
            Err(SpecError::RelativeWorkingDir(_))
        ));
    }

    #[test]
    fn nofile_rlimit_fits_the_daemon() {
        let r = rlimits().unwrap();
        assert_eq!(r[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!(r[0].soft(), r[0].hard());
        assert!(r[0].hard() <= NOFILE_LIMIT);
        if own_effective_capability("SYS_RESOURCE") == Some(false) {
            assert!(r[0].hard() <= own_nofile_hard_limit().unwrap());
        }
    }

    #[test]
    fn oom_score_adj_never_below_our_own() {
        let own = own_oom_score_adj().unwrap();
        assert_eq!(oom_score_adj_clamped(1000), 1000);
        assert_eq!(oom_score_adj_clamped(5000), 1000);
        let low = oom_score_adj_clamped(-1000);
        if own_effective_capability("SYS_RESOURCE") == Some(true) {
            assert_eq!(low, -1000);
        } else {
            assert_eq!(low, own.max(-1000));
        }
        assert!(oom_score_adj_clamped(own as i64 + 1) == own + 1 || own == 1000);
    }
}
