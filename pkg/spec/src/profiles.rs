//! Which seccomp and AppArmor profile a container gets, from the CRI request's fields: the typed
//! `SecurityProfile`, the deprecated string forms, the pod's profile and the node's default.
//!
//! The order is kubelet's and containerd's: the container's typed field, else its deprecated
//! string, else the pod's profile, else the node default (`[seccomp] default_profile`).
//! Privileged containers run unconfined whatever the request says (CRI's
//! `LinuxContainerSecurityContext.privileged` documents that).

use std::path::{Component, Path};

use crate::{SeccompProfile, SpecError};

/// A profile as CRI's `SecurityProfile` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileRequest {
    RuntimeDefault,
    Unconfined,
    /// seccomp: a file on the node; AppArmor: the name of a loaded profile.
    Localhost(String),
}

/// The node's default for a container (and pod) that names no seccomp profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SeccompDefault {
    #[default]
    Unconfined,
    RuntimeDefault,
}

/// What a container asks for, field by field.
#[derive(Debug, Clone, Default)]
pub struct SeccompRequest<'a> {
    /// `LinuxContainerSecurityContext.seccomp`, when present.
    pub container: Option<&'a ProfileRequest>,
    /// `LinuxContainerSecurityContext.seccomp_profile_path` (deprecated).
    pub container_path: &'a str,
    /// The pod's profile in the string form ([`seccomp_path_form`]), if it named one.
    pub pod: Option<&'a str>,
    pub privileged: bool,
    pub node_default: SeccompDefault,
}

/// Chooses the container's seccomp profile. Errors are invalid arguments: a string form that is
/// none of the known ones, or a Localhost profile without an absolute path.
pub fn select_seccomp(req: &SeccompRequest) -> Result<SeccompProfile, SpecError> {
    // Validated even for privileged containers: a malformed request is refused either way.
    let chosen = match req.container {
        Some(p) => Some(seccomp_from_request(p)?),
        None => parse_seccomp_path(req.container_path)?,
    };
    let chosen = match (chosen, req.pod) {
        (Some(p), _) => Some(p),
        (None, Some(pod)) => parse_seccomp_path(pod)?,
        (None, None) => None,
    };
    if req.privileged {
        return Ok(SeccompProfile::Unconfined);
    }
    Ok(chosen.unwrap_or(match req.node_default {
        SeccompDefault::Unconfined => SeccompProfile::Unconfined,
        SeccompDefault::RuntimeDefault => SeccompProfile::RuntimeDefault,
    }))
}

/// The pod's profile from `LinuxSandboxSecurityContext` (typed field, else the deprecated
/// string), in the string form kept on the sandbox record; None when it names none.
pub fn pod_seccomp(
    typed: Option<&ProfileRequest>,
    path: &str,
) -> Result<Option<String>, SpecError> {
    let profile = match typed {
        Some(p) => Some(seccomp_from_request(p)?),
        None => parse_seccomp_path(path)?,
    };
    Ok(profile.map(|p| seccomp_path_form(&p)))
}

/// `runtime/default`, `unconfined` or `localhost/<path>`.
pub fn seccomp_path_form(p: &SeccompProfile) -> String {
    match p {
        SeccompProfile::RuntimeDefault => "runtime/default".into(),
        SeccompProfile::Unconfined => "unconfined".into(),
        SeccompProfile::Localhost(path) => format!("localhost/{path}"),
    }
}

fn seccomp_from_request(p: &ProfileRequest) -> Result<SeccompProfile, SpecError> {
    Ok(match p {
        ProfileRequest::RuntimeDefault => SeccompProfile::RuntimeDefault,
        ProfileRequest::Unconfined => SeccompProfile::Unconfined,
        ProfileRequest::Localhost(path) => SeccompProfile::Localhost(localhost_file(path)?),
    })
}

/// The deprecated string form; empty = not set.
pub fn parse_seccomp_path(s: &str) -> Result<Option<SeccompProfile>, SpecError> {
    Ok(Some(match s {
        "" => return Ok(None),
        "runtime/default" | "docker/default" => SeccompProfile::RuntimeDefault,
        "unconfined" => SeccompProfile::Unconfined,
        _ => match s.strip_prefix("localhost/") {
            Some(path) => SeccompProfile::Localhost(localhost_file(path)?),
            None => {
                return Err(SpecError::InvalidSeccompRequest(format!(
                    "seccomp profile {s:?} is none of runtime/default, docker/default, \
                     unconfined or localhost/<absolute path>"
                )));
            }
        },
    }))
}

/// A Localhost seccomp profile names a file by absolute path (kubelet joins its seccomp root
/// with the pod's `localhostProfile`); `..` is refused so a profile cannot climb out of a
/// directory an operator set aside for profiles.
fn localhost_file(path: &str) -> Result<String, SpecError> {
    let p = Path::new(path);
    if path.is_empty() || !p.is_absolute() {
        return Err(SpecError::InvalidSeccompRequest(format!(
            "a Localhost seccomp profile needs an absolute path, got {path:?}"
        )));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(SpecError::InvalidSeccompRequest(format!(
            "Localhost seccomp profile path {path:?} contains \"..\""
        )));
    }
    Ok(path.to_string())
}

/// The container's AppArmor request: the typed field, else the deprecated string
/// (`runtime/default`, `unconfined`, `localhost/<profile name>`); None when it names none.
pub fn apparmor_request(
    typed: Option<&ProfileRequest>,
    deprecated: &str,
) -> Result<Option<ProfileRequest>, SpecError> {
    if let Some(p) = typed {
        if let ProfileRequest::Localhost(name) = p {
            apparmor_name(name)?;
        }
        return Ok(Some(p.clone()));
    }
    Ok(Some(match deprecated {
        "" => return Ok(None),
        "runtime/default" => ProfileRequest::RuntimeDefault,
        "unconfined" => ProfileRequest::Unconfined,
        _ => match deprecated.strip_prefix("localhost/") {
            Some(name) => ProfileRequest::Localhost(apparmor_name(name)?.to_string()),
            None => {
                return Err(SpecError::InvalidApparmorRequest(format!(
                    "AppArmor profile {deprecated:?} is none of runtime/default, unconfined \
                     or localhost/<profile name>"
                )));
            }
        },
    }))
}

fn apparmor_name(name: &str) -> Result<&str, SpecError> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '\n') {
        return Err(SpecError::InvalidApparmorRequest(format!(
            "invalid AppArmor profile name {name:?}"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProfileRequest as R;
    use SeccompProfile as S;

    fn pick(
        container: Option<&R>,
        path: &str,
        pod: Option<&str>,
        privileged: bool,
        node_default: SeccompDefault,
    ) -> Result<S, SpecError> {
        select_seccomp(&SeccompRequest {
            container,
            container_path: path,
            pod,
            privileged,
            node_default,
        })
    }

    /// container field, deprecated path, pod, privileged, node default → profile.
    type Case<'a> = (
        Option<&'a R>,
        &'a str,
        Option<&'a str>,
        bool,
        SeccompDefault,
        S,
    );

    /// The selection table: every source, in order of precedence.
    #[test]
    fn selection_table() {
        use SeccompDefault::{RuntimeDefault as ND, Unconfined as NU};
        let local = R::Localhost("/etc/profiles/a.json".into());
        let cases: Vec<Case> = vec![
            // Nothing anywhere: the node default.
            (None, "", None, false, NU, S::Unconfined),
            (None, "", None, false, ND, S::RuntimeDefault),
            // The typed field wins over everything.
            (
                Some(&R::RuntimeDefault),
                "unconfined",
                Some("unconfined"),
                false,
                NU,
                S::RuntimeDefault,
            ),
            (
                Some(&R::Unconfined),
                "runtime/default",
                None,
                false,
                ND,
                S::Unconfined,
            ),
            (
                Some(&local),
                "",
                None,
                false,
                NU,
                S::Localhost("/etc/profiles/a.json".into()),
            ),
            // The deprecated string forms.
            (None, "runtime/default", None, false, NU, S::RuntimeDefault),
            (None, "docker/default", None, false, NU, S::RuntimeDefault),
            (None, "unconfined", None, false, ND, S::Unconfined),
            (
                None,
                "localhost//p/x.json",
                None,
                false,
                NU,
                S::Localhost("/p/x.json".into()),
            ),
            // The pod's profile for a container that names none.
            (
                None,
                "",
                Some("runtime/default"),
                false,
                NU,
                S::RuntimeDefault,
            ),
            (None, "", Some("unconfined"), false, ND, S::Unconfined),
            (
                None,
                "unconfined",
                Some("runtime/default"),
                false,
                NU,
                S::Unconfined,
            ),
            // Privileged: unconfined whatever was asked.
            (Some(&R::RuntimeDefault), "", None, true, ND, S::Unconfined),
            (None, "", Some("runtime/default"), true, ND, S::Unconfined),
        ];
        for (i, (c, path, pod, privileged, nd, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                pick(c, path, pod, privileged, nd).unwrap(),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn bad_profiles_are_invalid_arguments() {
        let rel = R::Localhost("profiles/a.json".into());
        let empty = R::Localhost(String::new());
        let up = R::Localhost("/etc/../root/a.json".into());
        for (c, path, pod) in [
            (None, "my-profile.json", None),
            (None, "localhost/relative.json", None),
            (None, "localhost/", None),
            (None, "runtime/other", None),
            (Some(&rel), "", None),
            (Some(&empty), "", None),
            (Some(&up), "", None),
            (None, "", Some("bogus")),
        ] {
            let err = pick(c, path, pod, false, SeccompDefault::Unconfined).unwrap_err();
            assert!(
                matches!(err, SpecError::InvalidSeccompRequest(_)),
                "{c:?} {path:?} {pod:?}: {err}"
            );
            // A privileged container's malformed request is refused too.
            assert!(pick(c, path, pod, true, SeccompDefault::Unconfined).is_err());
        }
        let msg = pick(
            None,
            "my-profile.json",
            None,
            false,
            SeccompDefault::Unconfined,
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("my-profile.json") && msg.contains("localhost/"),
            "{msg}"
        );
    }

    #[test]
    fn pod_profiles_round_trip_through_the_string_form() {
        for p in [
            S::RuntimeDefault,
            S::Unconfined,
            S::Localhost("/var/lib/kubelet/seccomp/x.json".into()),
        ] {
            let form = seccomp_path_form(&p);
            assert_eq!(parse_seccomp_path(&form).unwrap(), Some(p));
        }
        assert_eq!(pod_seccomp(None, "").unwrap(), None);
        assert_eq!(
            pod_seccomp(Some(&R::RuntimeDefault), "unconfined")
                .unwrap()
                .as_deref(),
            Some("runtime/default")
        );
        assert_eq!(
            pod_seccomp(None, "docker/default").unwrap().as_deref(),
            Some("runtime/default")
        );
        assert!(pod_seccomp(None, "nope").is_err());
    }

    #[test]
    fn apparmor_requests() {
        assert_eq!(apparmor_request(None, "").unwrap(), None);
        assert_eq!(
            apparmor_request(None, "runtime/default").unwrap(),
            Some(R::RuntimeDefault)
        );
        assert_eq!(
            apparmor_request(None, "localhost/my-prof").unwrap(),
            Some(R::Localhost("my-prof".into()))
        );
        assert_eq!(
            apparmor_request(Some(&R::Unconfined), "localhost/x").unwrap(),
            Some(R::Unconfined)
        );
        for bad in ["my-prof", "localhost/", "docker/default"] {
            assert!(
                matches!(
                    apparmor_request(None, bad),
                    Err(SpecError::InvalidApparmorRequest(_))
                ),
                "{bad}"
            );
        }
        assert!(apparmor_request(Some(&R::Localhost(String::new())), "").is_err());
    }
}
