//! CRI's `LinuxContainerSecurityContext` and the pod's seccomp profile, translated into
//! `berth_spec::Security`: the profiles are chosen here (typed field, deprecated string, pod,
//! node default) against what the host offers, so the container crate gets final answers.

// kubelet still sends the deprecated string forms (seccomp_profile_path, apparmor_profile).
#![allow(deprecated)]

use berth_config::SeccompDefault as ConfigSeccompDefault;
use berth_container::{PidMode, Security};
use berth_cri_api::v1 as cri;
use berth_spec::{
    HostLsm, ProfileRequest, SeccompDefault, SeccompRequest, SelinuxOptions, SpecError,
    SupplementalGroupsPolicy, apparmor_request, pod_seccomp, select_seccomp,
};

use crate::error::CriError;

/// What the translation needs besides the request.
pub(crate) struct SecurityInputs<'a> {
    pub node_default: ConfigSeccompDefault,
    pub lsm: &'a HostLsm,
    /// The pod's seccomp profile (string form), if it named one.
    pub pod_seccomp: Option<&'a str>,
}

/// The profile requests are checked before anything is created: what is not the request's
/// mistake is the node's (a profile berthd could not load), not a failure of this call.
fn spec_error(e: SpecError) -> CriError {
    match crate::error::spec_code(&e) {
        tonic::Code::InvalidArgument => CriError::InvalidArgument(e.to_string()),
        _ => CriError::FailedPrecondition(e.to_string()),
    }
}

fn profile(p: &cri::SecurityProfile, what: &str) -> Result<ProfileRequest, CriError> {
    use cri::security_profile::ProfileType;
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(ProfileRequest::RuntimeDefault),
        Ok(ProfileType::Unconfined) => Ok(ProfileRequest::Unconfined),
        Ok(ProfileType::Localhost) => Ok(ProfileRequest::Localhost(p.localhost_ref.clone())),
        Err(_) => Err(CriError::InvalidArgument(format!(
            "unknown {what} profile type {}",
            p.profile_type
        ))),
    }
}

/// The pod's seccomp profile from RunPodSandbox, in the string form kept on its record.
pub(crate) fn pod_seccomp_profile(
    s: Option<&cri::LinuxSandboxSecurityContext>,
) -> Result<Option<String>, CriError> {
    let Some(s) = s else { return Ok(None) };
    let typed = s
        .seccomp
        .as_ref()
        .map(|p| profile(p, "seccomp"))
        .transpose()?;
    pod_seccomp(typed.as_ref(), &s.seccomp_profile_path).map_err(spec_error)
}

/// The container's security settings. `None` (no security context at all) still gets the pod's
/// or the node's seccomp default.
pub(crate) fn container_security(
    s: Option<cri::LinuxContainerSecurityContext>,
    inputs: &SecurityInputs,
) -> Result<Security, CriError> {
    let s = s.unwrap_or_default();
    let pid_mode = match s.namespace_options.as_ref() {
        None => PidMode::Container,
        Some(ns) => match cri::NamespaceMode::try_from(ns.pid) {
            Ok(cri::NamespaceMode::Pod) => PidMode::Pod,
            Ok(cri::NamespaceMode::Container) => PidMode::Container,
            Ok(cri::NamespaceMode::Node) => PidMode::Node,
            Ok(cri::NamespaceMode::Target) => PidMode::Target(ns.target_id.clone()),
            Err(_) => {
                return Err(CriError::InvalidArgument(format!(
                    "unknown PID namespace mode {}",
                    ns.pid
                )));
            }
        },
    };

    let seccomp_typed = s
        .seccomp
        .as_ref()
        .map(|p| profile(p, "seccomp"))
        .transpose()?;
    let seccomp = select_seccomp(&SeccompRequest {
        container: seccomp_typed.as_ref(),
        container_path: &s.seccomp_profile_path,
        pod: inputs.pod_seccomp,
        privileged: s.privileged,
        node_default: match inputs.node_default {
            ConfigSeccompDefault::Unconfined => SeccompDefault::Unconfined,
            ConfigSeccompDefault::RuntimeDefault => SeccompDefault::RuntimeDefault,
        },
    })
    .map_err(spec_error)?;

    let apparmor_typed = s
        .apparmor
        .as_ref()
        .map(|p| profile(p, "AppArmor"))
        .transpose()?;
    let apparmor =
        apparmor_request(apparmor_typed.as_ref(), &s.apparmor_profile).map_err(spec_error)?;
    let apparmor_profile = inputs
        .lsm
        .apparmor_profile(apparmor.as_ref(), s.privileged)
        .map_err(spec_error)?;

    let selinux = s.selinux_options.as_ref().map(|o| SelinuxOptions {
        user: o.user.clone(),
        role: o.role.clone(),
        typ: o.r#type.clone(),
        level: o.level.clone(),
    });
    let selinux_labels = inputs
        .lsm
        .selinux_labels(selinux.as_ref(), s.privileged, random_mcs())
        .map_err(spec_error)?;

    let supplemental_groups_policy =
        match cri::SupplementalGroupsPolicy::try_from(s.supplemental_groups_policy) {
            Ok(cri::SupplementalGroupsPolicy::Merge) => SupplementalGroupsPolicy::Merge,
            Ok(cri::SupplementalGroupsPolicy::Strict) => SupplementalGroupsPolicy::Strict,
            Err(_) => {
                return Err(CriError::InvalidArgument(format!(
                    "unknown supplemental_groups_policy {}",
                    s.supplemental_groups_policy
                )));
            }
        };

    let (masked_paths, readonly_paths) = proc_paths(&s);
    let caps = s.capabilities.unwrap_or_default();
    Ok(Security {
        privileged: s.privileged,
        run_as_user: s.run_as_user.map(|v| v.value),
        run_as_username: s.run_as_username,
        run_as_group: s.run_as_group.map(|v| v.value),
        supplemental_groups: s.supplemental_groups,
        readonly_rootfs: s.readonly_rootfs,
        no_new_privs: s.no_new_privs,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        add_ambient_capabilities: caps.add_ambient_capabilities,
        pid_mode,
        seccomp,
        masked_paths,
        readonly_paths,
        apparmor_profile,
        selinux_labels,
        supplemental_groups_policy,
    })
}

/// The masked and read-only path lists. kubelet always sends its default lists, or two empty
/// lists for `procMount: Unmasked`; proto3 cannot tell an empty list from an absent one, so
/// two empty lists mean Berth's defaults (what a client that never heard of the fields wants)
/// except in a pod with its own user namespace, the only place kubelet (1.30+) allows
/// `Unmasked`. Any non-empty list is applied exactly as given.
fn proc_paths(
    s: &cri::LinuxContainerSecurityContext,
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let pod_userns = s
        .namespace_options
        .as_ref()
        .and_then(|ns| ns.userns_options.as_ref())
        .is_some_and(|u| u.mode == cri::NamespaceMode::Pod as i32);
    if s.masked_paths.is_empty() && s.readonly_paths.is_empty() && !pod_userns {
        (None, None)
    } else {
        (Some(s.masked_paths.clone()), Some(s.readonly_paths.clone()))
    }
}

/// An MCS category pair for a container whose SELinux options give no level.
fn random_mcs() -> (u16, u16) {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState gets fresh random keys: a random u64 without another dependency.
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let a = (seed % 1024) as u16;
    let b = ((seed / 1024) % 1023) as u16;
    (a, if b >= a { b + 1 } else { b })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::SeccompProfile;

    fn lsm() -> HostLsm {
        HostLsm::detect_at(
            std::path::Path::new("/nonexistent"),
            std::path::Path::new("/nonexistent"),
        )
    }

    fn translate(
        s: cri::LinuxContainerSecurityContext,
        pod: Option<&str>,
        node_default: ConfigSeccompDefault,
    ) -> Result<Security, CriError> {
        let lsm = lsm();
        container_security(
            Some(s),
            &SecurityInputs {
                node_default,
                lsm: &lsm,
                pod_seccomp: pod,
            },
        )
    }

    fn seccomp(t: i32, r: &str) -> Option<cri::SecurityProfile> {
        Some(cri::SecurityProfile {
            profile_type: t,
            localhost_ref: r.into(),
        })
    }

    #[test]
    fn seccomp_sources() {
        use cri::security_profile::ProfileType as T;
        let u = ConfigSeccompDefault::Unconfined;
        let s = translate(
            cri::LinuxContainerSecurityContext {
                seccomp: seccomp(T::RuntimeDefault as i32, ""),
                ..Default::default()
            },
            None,
            u,
        )
        .unwrap();
        assert_eq!(s.seccomp, SeccompProfile::RuntimeDefault);
        let s = translate(
            cri::LinuxContainerSecurityContext {
                seccomp: seccomp(T::Localhost as i32, "/p.json"),
                ..Default::default()
            },
            None,
            u,
        )
        .unwrap();
        assert_eq!(s.seccomp, SeccompProfile::Localhost("/p.json".into()));
        // Nothing in the container: the pod's, then the node's.
        let none = cri::LinuxContainerSecurityContext::default();
        let s = translate(none.clone(), Some("runtime/default"), u).unwrap();
        assert_eq!(s.seccomp, SeccompProfile::RuntimeDefault);
        let s = translate(none.clone(), None, ConfigSeccompDefault::RuntimeDefault).unwrap();
        assert_eq!(s.seccomp, SeccompProfile::RuntimeDefault);
        let s = translate(none, None, u).unwrap();
        assert_eq!(s.seccomp, SeccompProfile::Unconfined);
        for bad in [
            cri::LinuxContainerSecurityContext {
                seccomp_profile_path: "my-profile.json".into(),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                seccomp: seccomp(7, ""),
                ..Default::default()
            },
            cri::LinuxContainerSecurityContext {
                seccomp: seccomp(T::Localhost as i32, "relative.json"),
                ..Default::default()
            },
        ] {
            assert!(matches!(
                translate(bad, None, u),
                Err(CriError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn apparmor_without_the_lsm() {
        use cri::security_profile::ProfileType as T;
        let u = ConfigSeccompDefault::Unconfined;
        let s = translate(
            cri::LinuxContainerSecurityContext {
                apparmor: seccomp(T::RuntimeDefault as i32, ""),
                ..Default::default()
            },
            None,
            u,
        )
        .unwrap();
        assert_eq!(s.apparmor_profile, None);
        let err = translate(
            cri::LinuxContainerSecurityContext {
                apparmor_profile: "localhost/mine".into(),
                ..Default::default()
            },
            None,
            u,
        )
        .unwrap_err();
        assert!(
            matches!(err, CriError::InvalidArgument(m) if m.contains("AppArmor is not enabled"))
        );
    }

    #[test]
    fn masked_paths_exactly_as_requested() {
        let u = ConfigSeccompDefault::Unconfined;
        let s = translate(cri::LinuxContainerSecurityContext::default(), None, u).unwrap();
        assert_eq!((s.masked_paths, s.readonly_paths), (None, None));
        let s = translate(
            cri::LinuxContainerSecurityContext {
                masked_paths: vec!["/bin/ls".into()],
                ..Default::default()
            },
            None,
            u,
        )
        .unwrap();
        assert_eq!(s.masked_paths, Some(vec!["/bin/ls".to_string()]));
        assert_eq!(s.readonly_paths, Some(vec![]));
        // Empty lists in a user-namespaced pod: kubelet's procMount Unmasked.
        let s = translate(
            cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    userns_options: Some(cri::UserNamespace {
                        mode: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
            u,
        )
        .unwrap();
        assert_eq!(
            (s.masked_paths, s.readonly_paths),
            (Some(vec![]), Some(vec![]))
        );
    }

    #[test]
    fn mcs_pairs_are_distinct_and_in_range() {
        for _ in 0..1000 {
            let (a, b) = random_mcs();
            assert!(a != b && a < 1024 && b < 1024);
        }
    }
}
