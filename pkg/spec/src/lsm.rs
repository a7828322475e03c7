//! AppArmor and SELinux: whether the host has them, and the container's profile or label.
//!
//! On a host without the LSM Berth does what containerd does: a `RuntimeDefault` or
//! `Unconfined` AppArmor request and SELinux options are accepted and have no effect (there is
//! nothing to confine with), while a `Localhost` AppArmor profile is refused, since the pod's
//! owner asked for a specific confinement that cannot exist here. Where the LSM is enabled:
//! AppArmor `RuntimeDefault` is Berth's own profile `berth-default` (loaded with
//! `apparmor_parser` at startup when missing), `Localhost` must name a loaded profile; SELinux
//! labels are built from the request's options over the policy's container defaults
//! (`lxc_contexts`). Privileged containers get neither, as in containerd.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::SpecError;
use crate::profiles::ProfileRequest;

/// The AppArmor profile Berth loads for `RuntimeDefault`.
pub const APPARMOR_DEFAULT_PROFILE: &str = "berth-default";

/// Confines like Docker's and containerd's default profile: no mounts, no writes to the
/// kernel's knobs under /proc and /sys, no raw access to firmware or security files, signals
/// and ptrace only within the profile.
const APPARMOR_DEFAULT_TEXT: &str = r#"#include <tunables/global>

profile berth-default flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>

  network,
  capability,
  file,
  umount,
  signal (receive) peer=unconfined,
  signal (send,receive) peer=berth-default,
  ptrace (trace,read,tracedby,readby) peer=berth-default,

  deny mount,
  deny @{PROC}/* w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
"#;

/// SELinux's container defaults when the policy has no `lxc_contexts` (the targeted policy's).
const SELINUX_DEFAULT_PROCESS: &str = "system_u:system_r:container_t:s0";
const SELINUX_DEFAULT_FILE: &str = "system_u:object_r:container_file_t:s0";

/// CRI's `SELinuxOption`; empty fields take the policy's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelinuxOptions {
    pub user: String,
    pub role: String,
    pub typ: String,
    pub level: String,
}

/// The process and mount labels of a container on an SELinux host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxLabels {
    pub process: String,
    pub mount: String,
}

/// What the host offers, detected once at startup.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostLsm {
    pub apparmor: bool,
    /// Whether `berth-default` is loaded (only meaningful with `apparmor`).
    pub apparmor_default_loaded: bool,
    pub selinux: bool,
    /// The policy's container process and file contexts (with SELinux only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux_process_context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selinux_file_context: Option<String>,
    /// Where AppArmor's loaded profiles are listed (tests point it elsewhere).
    #[serde(skip)]
    apparmor_profiles: PathBuf,
}

impl HostLsm {
    /// Detects the host's LSMs; with AppArmor, loads `berth-default` if it is missing (the
    /// profile text is written under `state_dir`). Failing to load it is logged: only containers
    /// that ask for AppArmor's RuntimeDefault are then refused.
    pub fn detect(state_dir: &Path) -> HostLsm {
        let mut lsm = HostLsm::detect_at(Path::new("/sys"), Path::new("/etc/selinux"));
        if lsm.apparmor && !lsm.apparmor_default_loaded {
            match load_default_apparmor(state_dir) {
                Ok(()) => {
                    lsm.apparmor_default_loaded = lsm.apparmor_loaded(APPARMOR_DEFAULT_PROFILE)
                }
                Err(e) => tracing::error!(error = %e, "loading the AppArmor profile berth-default"),
            }
        }
        lsm
    }

    /// Detection against other roots, for tests.
    pub fn detect_at(sys: &Path, selinux_etc: &Path) -> HostLsm {
        let apparmor_enabled = fs::read_to_string(sys.join("module/apparmor/parameters/enabled"))
            .is_ok_and(|s| s.starts_with('Y'))
            && sys.join("kernel/security/apparmor").is_dir();
        let selinux = sys.join("fs/selinux/enforce").is_file();
        let mut lsm = HostLsm {
            apparmor: apparmor_enabled,
            selinux,
            apparmor_profiles: sys.join("kernel/security/apparmor/profiles"),
            ..Default::default()
        };
        lsm.apparmor_default_loaded = lsm.apparmor && lsm.apparmor_loaded(APPARMOR_DEFAULT_PROFILE);
        if selinux {
            let (process, file) = selinux_contexts(selinux_etc);
            lsm.selinux_process_context = Some(process);
            lsm.selinux_file_context = Some(file);
        }
        lsm
    }

    fn apparmor_loaded(&self, name: &str) -> bool {
        // Lines are "<name> (<mode>)".
        fs::read_to_string(&self.apparmor_profiles).is_ok_and(|list| {
            list.lines()
                .any(|l| l.rsplit_once(" (").map_or(l, |(n, _)| n) == name)
        })
    }

    /// The `process.apparmorProfile` for a container's request (see the module docs).
    pub fn apparmor_profile(
        &self,
        request: Option<&ProfileRequest>,
        privileged: bool,
    ) -> Result<Option<String>, SpecError> {
        if privileged {
            return Ok(None);
        }
        match request {
            None | Some(ProfileRequest::Unconfined) => Ok(None),
            Some(ProfileRequest::RuntimeDefault) if !self.apparmor => Ok(None),
            Some(ProfileRequest::RuntimeDefault) => {
                if self.apparmor_default_loaded {
                    Ok(Some(APPARMOR_DEFAULT_PROFILE.into()))
                } else {
                    Err(SpecError::ApparmorDefaultNotLoaded(
                        APPARMOR_DEFAULT_PROFILE,
                    ))
                }
            }
            Some(ProfileRequest::Localhost(name)) => {
                if !self.apparmor {
                    Err(SpecError::InvalidApparmorRequest(format!(
                        "AppArmor is not enabled on this host, so the Localhost AppArmor \
                         profile {name:?} cannot be applied"
                    )))
                } else if !self.apparmor_loaded(name) {
                    Err(SpecError::InvalidApparmorRequest(format!(
                        "the AppArmor profile {name:?} is not loaded on this host"
                    )))
                } else {
                    Ok(Some(name.clone()))
                }
            }
        }
    }

    /// The container's SELinux labels, or None without SELinux (the options then have no
    /// effect, as in containerd) or for a privileged container. `mcs` is the category pair used
    /// when the request gives no level (unique per container, so containers cannot read each
    /// other's files).
    pub fn selinux_labels(
        &self,
        options: Option<&SelinuxOptions>,
        privileged: bool,
        mcs: (u16, u16),
    ) -> Result<Option<SelinuxLabels>, SpecError> {
        if privileged || !self.selinux {
            return Ok(None);
        }
        let opts = options.cloned().unwrap_or_default();
        for (what, v) in [
            ("user", &opts.user),
            ("role", &opts.role),
            ("type", &opts.typ),
        ] {
            if v.contains(':') || v.chars().any(char::is_whitespace) {
                return Err(SpecError::InvalidSelinuxOptions(format!(
                    "invalid SELinux {what} {v:?}"
                )));
            }
        }
        if opts.level.chars().any(char::is_whitespace) {
            return Err(SpecError::InvalidSelinuxOptions(format!(
                "invalid SELinux level {:?}",
                opts.level
            )));
        }
        let process = self
            .selinux_process_context
            .as_deref()
            .unwrap_or(SELINUX_DEFAULT_PROCESS);
        let file = self
            .selinux_file_context
            .as_deref()
            .unwrap_or(SELINUX_DEFAULT_FILE);
        let level = if opts.level.is_empty() {
            let (a, b) = (mcs.0.min(mcs.1), mcs.0.max(mcs.1));
            format!("s0:c{a},c{b}")
        } else {
            opts.level.clone()
        };
        let with = |base: &str, user: &str, role: &str, typ: &str| {
            let mut parts = base.splitn(4, ':');
            let mut next = |over: &str| {
                let part = parts.next().unwrap_or_default();
                if over.is_empty() {
                    part.to_string()
                } else {
                    over.to_string()
                }
            };
            let (u, r, t) = (next(user), next(role), next(typ));
            format!("{u}:{r}:{t}:{level}")
        };
        Ok(Some(SelinuxLabels {
            process: with(process, &opts.user, &opts.role, &opts.typ),
            mount: with(file, "", "", ""),
        }))
    }
}

/// The policy's container contexts from `<policy>/contexts/lxc_contexts` (`process = "…"`,
/// `file = "…"`), the targeted policy's defaults otherwise.
fn selinux_contexts(selinux_etc: &Path) -> (String, String) {
    let policy = fs::read_to_string(selinux_etc.join("config"))
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("SELINUXTYPE=")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "targeted".into());
    let contexts = fs::read_to_string(selinux_etc.join(policy).join("contexts/lxc_contexts"))
        .unwrap_or_default();
    let find = |key: &str| {
        contexts.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    (
        find("process").unwrap_or_else(|| SELINUX_DEFAULT_PROCESS.into()),
        find("file").unwrap_or_else(|| SELINUX_DEFAULT_FILE.into()),
    )
}

fn load_default_apparmor(state_dir: &Path) -> Result<(), SpecError> {
    let dir = state_dir.join("apparmor");
    fs::create_dir_all(&dir)
        .map_err(|e| SpecError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(APPARMOR_DEFAULT_PROFILE);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&path)?;
        f.write_all(APPARMOR_DEFAULT_TEXT.as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| SpecError::io(format!("writing {}", path.display()), e))?;
    // -K: don't cache, -r: replace if present.
    let out = Command::new("apparmor_parser")
        .arg("-Kr")
        .arg(&path)
        .output()
        .map_err(|e| SpecError::io("running apparmor_parser".to_string(), e))?;
    if !out.status.success() {
        return Err(SpecError::ApparmorParser {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys(apparmor: bool, selinux: bool, profiles: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        if apparmor {
            fs::create_dir_all(sys.join("module/apparmor/parameters")).unwrap();
            fs::write(sys.join("module/apparmor/parameters/enabled"), "Y\n").unwrap();
            fs::create_dir_all(sys.join("kernel/security/apparmor")).unwrap();
            fs::write(sys.join("kernel/security/apparmor/profiles"), profiles).unwrap();
        }
        if selinux {
            fs::create_dir_all(sys.join("fs/selinux")).unwrap();
            fs::write(sys.join("fs/selinux/enforce"), "1").unwrap();
        }
        d
    }

    #[test]
    fn this_host_is_detected_without_panicking() {
        let lsm = HostLsm::detect_at(Path::new("/sys"), Path::new("/etc/selinux"));
        // On CI neither is enabled; elsewhere just exercise it.
        let _ = serde_json::to_string(&lsm).unwrap();
    }

    #[test]
    fn without_apparmor_runtime_default_is_a_no_op_and_localhost_is_refused() {
        let sys = fake_sys(false, false, "");
        let lsm = HostLsm::detect_at(sys.path(), sys.path());
        assert!(!lsm.apparmor && !lsm.selinux);
        assert_eq!(
            lsm.apparmor_profile(Some(&ProfileRequest::RuntimeDefault), false)
                .unwrap(),
            None
        );
        assert_eq!(
            lsm.apparmor_profile(Some(&ProfileRequest::Unconfined), false)
                .unwrap(),
            None
        );
        let err = lsm
            .apparmor_profile(Some(&ProfileRequest::Localhost("p".into())), false)
            .unwrap_err();
        assert!(
            matches!(err, SpecError::InvalidApparmorRequest(_))
                && err.to_string().contains("not enabled"),
            "{err}"
        );
        // Privileged: no confinement is asked for, so nothing to refuse.
        assert_eq!(
            lsm.apparmor_profile(Some(&ProfileRequest::Localhost("p".into())), true)
                .unwrap(),
            None
        );
        let opts = SelinuxOptions {
            typ: "spc_t".into(),
            ..Default::default()
        };
        assert_eq!(
            lsm.selinux_labels(Some(&opts), false, (1, 2)).unwrap(),
            None
        );
    }

    #[test]
    fn with_apparmor_profiles_must_be_loaded() {
        let sys = fake_sys(true, false, "berth-default (enforce)\nmine (complain)\n");
        let lsm = HostLsm::detect_at(sys.path(), sys.path());
        assert!(lsm.apparmor && lsm.apparmor_default_loaded);
        assert_eq!(
            lsm.apparmor_profile(Some(&ProfileRequest::RuntimeDefault), false)
                .unwrap()
                .as_deref(),
            Some("berth-default")
        );
        assert_eq!(
            lsm.apparmor_profile(Some(&ProfileRequest::Localhost("mine".into())), false)
                .unwrap()
                .as_deref(),
            Some("mine")
        );
        let err = lsm
            .apparmor_profile(Some(&ProfileRequest::Localhost("theirs".into())), false)
            .unwrap_err();
        assert!(
            matches!(err, SpecError::InvalidApparmorRequest(_))
                && err.to_string().contains("not loaded")
        );

        let sys = fake_sys(true, false, "other (enforce)\n");
        let lsm = HostLsm::detect_at(sys.path(), sys.path());
        assert!(!lsm.apparmor_default_loaded);
        assert!(
            lsm.apparmor_profile(Some(&ProfileRequest::RuntimeDefault), false)
                .is_err()
        );
    }

    #[test]
    fn selinux_labels_from_options_and_policy_defaults() {
        let sys = fake_sys(false, true, "");
        let etc = tempfile::tempdir().unwrap();
        fs::write(
            etc.path().join("config"),
            "SELINUX=enforcing\nSELINUXTYPE=mls\n",
        )
        .unwrap();
        fs::create_dir_all(etc.path().join("mls/contexts")).unwrap();
        fs::write(
            etc.path().join("mls/contexts/lxc_contexts"),
            "process = \"system_u:system_r:svirt_lxc_net_t:s0\"\nfile = \"system_u:object_r:svirt_sandbox_file_t:s0\"\n",
        )
        .unwrap();
        let lsm = HostLsm::detect_at(sys.path(), etc.path());
        assert!(lsm.selinux);
        let l = lsm.selinux_labels(None, false, (7, 3)).unwrap().unwrap();
        assert_eq!(l.process, "system_u:system_r:svirt_lxc_net_t:s0:c3,c7");
        assert_eq!(l.mount, "system_u:object_r:svirt_sandbox_file_t:s0:c3,c7");
        let opts = SelinuxOptions {
            user: "user_u".into(),
            typ: "spc_t".into(),
            level: "s0:c1,c2".into(),
            ..Default::default()
        };
        let l = lsm
            .selinux_labels(Some(&opts), false, (7, 3))
            .unwrap()
            .unwrap();
        assert_eq!(l.process, "user_u:system_r:spc_t:s0:c1,c2");
        assert_eq!(l.mount, "system_u:object_r:svirt_sandbox_file_t:s0:c1,c2");
        assert_eq!(lsm.selinux_labels(Some(&opts), true, (7, 3)).unwrap(), None);
        let bad = SelinuxOptions {
            typ: "a:b".into(),
            ..Default::default()
        };
        assert!(matches!(
            lsm.selinux_labels(Some(&bad), false, (1, 2)),
            Err(SpecError::InvalidSelinuxOptions(_))
        ));
        // No policy files: the targeted defaults.
        let lsm = HostLsm::detect_at(sys.path(), Path::new("/nonexistent"));
        let l = lsm.selinux_labels(None, false, (1, 2)).unwrap().unwrap();
        assert_eq!(l.process, "system_u:system_r:container_t:s0:c1,c2");
    }
}
