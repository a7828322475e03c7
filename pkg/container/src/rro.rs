//! Recursively read-only mounts (CRI `Mount.recursive_read_only`, kubelet's
//! RecursiveReadOnlyMounts) with an OCI runtime that has no `rro` option (runc 1.1).
//!
//! berth-spec marks such a bind with `rro`. Before the bundle is written, each marked bind's
//! source is replaced by a recursively read-only clone of it in `<bundle>/rro/<n>` (see
//! `berth_namespace::mount_recursive_readonly`) and `rro` by plain `ro`: runc's `rbind` of the
//! clone copies every submount with its read-only flag. The clones live under the bundle and
//! are unmounted (never removed recursively) before it is removed, on RemoveContainer and on
//! every failed CreateContainer, also after a berthd restart (they are found by path).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use berth_spec::{ContainerConfig, Propagation, RECURSIVE_READ_ONLY};
use oci_spec::runtime::Spec;

use crate::error::ContainerError;

/// Subdir of the bundle with the read-only clones of bind sources.
pub(crate) const STAGING: &str = "rro";

/// Refuses what CRI does not allow (`recursive_read_only` without `readonly` or with mount
/// propagation) and, when the startup probe failed (`problem`), any recursive read-only mount:
/// the container would otherwise get writable submounts silently.
pub(crate) fn check(config: &ContainerConfig, problem: Option<&str>) -> Result<(), ContainerError> {
    for m in config.mounts.iter().filter(|m| m.recursive_read_only) {
        let path = &m.container_path;
        if !m.readonly {
            return Err(ContainerError::InvalidMount {
                mount: path.clone(),
                reason: "recursive_read_only requires readonly to be set".into(),
            });
        }
        if m.propagation != Propagation::Private {
            return Err(ContainerError::InvalidMount {
                mount: path.clone(),
                reason: format!(
                    "recursive_read_only requires private propagation, not {:?}",
                    m.propagation
                ),
            });
        }
        if let Some(problem) = problem {
            return Err(ContainerError::InvalidMount {
                mount: path.clone(),
                reason: format!(
                    "recursive read-only mounts are not supported on this node: {problem}"
                ),
            });
        }
    }
    Ok(())
}

/// Replaces the source of every bind marked `rro` in `spec` by a recursively read-only clone
/// under `<bundle>/rro`, and the `rro` option by `ro`. On error, what was mounted so far stays
/// for [`crate::userns::unstage`] (the CreateContainer rollback) to remove.
pub(crate) fn stage_binds(spec: &mut Spec, bundle: &Path) -> Result<(), ContainerError> {
    let Some(mounts) = spec.mounts_mut().as_mut() else {
        return Ok(());
    };
    let staging = bundle.join(STAGING);
    for (i, m) in mounts.iter_mut().enumerate() {
        let Some(mut options) = m.options().clone() else {
            continue;
        };
        if !options.iter().any(|o| o == RECURSIVE_READ_ONLY) {
            continue;
        }
        let Some(source) = m.source().clone() else {
            continue;
        };
        mkdir(&staging)?;
        let md = fs::metadata(&source).map_err(ContainerError::io("stat", &source))?;
        let target = staging.join(i.to_string());
        if md.is_dir() {
            mkdir(&target)?;
        } else {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&target)
                .map_err(ContainerError::io("create", &target))?;
        }
        berth_namespace::mount_recursive_readonly(&source, &target).map_err(
            ContainerError::namespace(format!(
                "making a recursively read-only copy of {} for {}",
                source.display(),
                m.destination().display()
            )),
        )?;
        options.retain(|o| o != RECURSIVE_READ_ONLY && o != "rw");
        if !options.iter().any(|o| o == "ro") {
            options.push("ro".into());
        }
        m.set_options(Some(options));
        m.set_source(Some(target));
    }
    Ok(())
}

fn mkdir(dir: &Path) -> Result<(), ContainerError> {
    match fs::DirBuilder::new().mode(0o711).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(ContainerError::io("create", dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::Mount;
    use oci_spec::runtime::MountBuilder;

    fn rro_mount(readonly: bool, propagation: Propagation) -> ContainerConfig {
        ContainerConfig {
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/tmp".into(),
                readonly,
                propagation,
                recursive_read_only: true,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn check_follows_the_cri_rules() {
        assert!(check(&rro_mount(true, Propagation::Private), None).is_ok());
        assert!(check(&ContainerConfig::default(), Some("no kernel support")).is_ok());
        for (config, problem) in [
            (rro_mount(false, Propagation::Private), None),
            (rro_mount(true, Propagation::HostToContainer), None),
            (rro_mount(true, Propagation::Bidirectional), None),
            (
                rro_mount(true, Propagation::Private),
                Some("no kernel support"),
            ),
        ] {
            let err = check(&config, problem).unwrap_err();
            assert!(matches!(err, ContainerError::InvalidMount { .. }), "{err}");
        }
    }

    #[test]
    fn unmarked_binds_are_left_alone() {
        let bundle = tempfile::tempdir().unwrap();
        let mut spec = Spec::default();
        let bind = MountBuilder::default()
            .destination("/x")
            .typ("bind")
            .source("/tmp")
            .options(vec!["rbind".to_string(), "rprivate".into(), "ro".into()])
            .build()
            .unwrap();
        spec.set_mounts(Some(vec![bind.clone()]));
        stage_binds(&mut spec, bundle.path()).unwrap();
        assert_eq!(spec.mounts().as_ref().unwrap()[0], bind);
        assert!(!bundle.path().join(STAGING).exists());
    }

    #[test]
    fn marked_binds_get_a_read_only_clone_as_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (bundle, host) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut spec = Spec::default();
        let bind = MountBuilder::default()
            .destination("/x")
            .typ("bind")
            .source(host.path())
            .options(["rbind", "rprivate", "ro", RECURSIVE_READ_ONLY].map(String::from))
            .build()
            .unwrap();
        spec.set_mounts(Some(vec![bind]));
        let staged = stage_binds(&mut spec, bundle.path());
        let clone = bundle.path().join(STAGING).join("0");
        let write = fs::write(clone.join("f"), "");
        crate::userns::unstage(&bundle.path().join(STAGING)).unwrap();
        staged.unwrap();
        assert_eq!(write.unwrap_err().raw_os_error(), Some(libc::EROFS));
        let m = &spec.mounts().as_ref().unwrap()[0];
        assert_eq!(m.source().as_deref(), Some(clone.as_path()));
        assert_eq!(
            m.options().as_deref(),
            Some(&["rbind", "rprivate", "ro"].map(String::from)[..])
        );
        assert!(!bundle.path().join(STAGING).exists());
    }
}
