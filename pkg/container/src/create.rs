//! CreateContainer: record, writable layer and overlay rootfs, OCI spec, bundle. No process yet:
//! the runtime runs it at StartContainer (as containerd does), which keeps Create cheap.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_sandbox::{SandboxRecord, SandboxState};
use berth_spec::{ContainerConfig, ImageConfig, PidMode, SandboxInfo, SpecInput};

use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase};
use crate::{Inner, ids, monitors, rro, userns};

pub(crate) async fn create(
    inner: &Arc<Inner>,
    sandbox_id: &str,
    config: ContainerConfig,
) -> Result<String, ContainerError> {
    validate(&config)?;
    rro::check(&config, inner.rro_problem.as_deref())?;
    let sandbox = inner
        .deps
        .sandboxes
        .get(sandbox_id)
        .ok_or_else(|| ContainerError::SandboxNotFound(sandbox_id.to_string()))?;
    if sandbox.state() != SandboxState::Ready {
        return Err(ContainerError::SandboxUnusable {
            id: sandbox.id.clone(),
            reason: "is not ready",
        });
    }

    // kubelet retries a CreateContainer that timed out with the same name and attempt: the
    // retry waits for the first call and gets its container.
    let key = (sandbox.id.clone(), config.name.clone(), config.attempt);
    let result = inner
        .creating
        .run(key, create_named(inner, &sandbox, config))
        .await;
    if result.is_ok() {
        crate::lifecycle::prespawn_monitor(inner, sandbox);
    }
    result
}

async fn create_named(
    inner: &Arc<Inner>,
    sandbox: &SandboxRecord,
    config: ContainerConfig,
) -> Result<String, ContainerError> {
    let existing = inner
        .records()
        .values()
        .find(|r| {
            r.sandbox_id == sandbox.id
                && r.config.name == config.name
                && r.config.attempt == config.attempt
                && r.phase != Phase::Creating
        })
        .map(|r| r.id.clone());
    if let Some(id) = existing {
        return Ok(id);
    }

    let mut config = config;
    crate::image_volumes::resolve(inner.deps.images.as_ref(), &mut config.mounts)?;
    let image = inner
        .deps
        .images
        .image(&config.image)
        .ok_or_else(|| ContainerError::ImageNotFound(config.image.clone()))?;
    let snapshot = image
        .top_chain_id()
        .ok_or_else(|| ContainerError::ImageWithoutLayers(image.id.clone()))?
        .to_string();
    let image_config = {
        let json = inner.deps.images.config_json(&image.id).map_err(|source| {
            ContainerError::ImageConfig {
                image: image.id.clone(),
                source: Box::new(source),
            }
        })?;
        ImageConfig::from_json(&json)?
    };
    let stop_signal = match config.stop_signal {
        Some(signal) => signal,
        None => image_config.stop_signal_number()?,
    };
    let handler_name = sandbox.runtime_handler.clone();
    let unavailable = |reason| ContainerError::HandlerUnavailable {
        handler: handler_name.clone(),
        reason,
    };
    let handler = inner
        .deps
        .handlers
        .get(&handler_name)
        .ok_or_else(|| unavailable("not configured"))?;
    let runtime_path = handler
        .path
        .clone()
        .ok_or_else(|| unavailable("binary not found"))?;

    let id = ids::generate()?;
    let log_path = (!sandbox.log_directory.is_empty() && !config.log_path.is_empty())
        .then(|| Path::new(&sandbox.log_directory).join(&config.log_path));
    let image_name = display_name(&config.image, &image);
    let image_ref = image
        .repo_digests
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.clone());
    let mut record = ContainerRecord {
        id: id.clone(),
        sandbox_id: sandbox.id.clone(),
        image_id: image.id.clone(),
        image_name,
        image_ref,
        phase: Phase::Creating,
        created_at_ns: berth_clock::now_ns(),
        started_at_ns: 0,
        finished_at_ns: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        pid: 0,
        pid_start_time: 0,
        handler: handler_name,
        runtime_path,
        runtime_root: handler.root.clone(),
        bundle: inner.bundles.join(&id),
        rw_dir: inner.layers.join(&id),
        snapshot,
        user: berth_spec::ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            username: None,
        },
        stop_signal,
        log_path,
        monitor_dir: inner.monitors.dir_for(&sandbox.id),
        resources: config.resources.clone(),
        oom_score_adj: 0,
        log_bytes: 0,
        config,
    };
    inner.save(&record).await?;
    berth_failpoint::fail("container/create/after-record").map_err(ContainerError::Failpoint)?;

    match prepare(inner, &mut record, sandbox, &image_config).await {
        Ok(()) => {
            record.phase = Phase::Created;
            if let Err(e) = inner.save(&record).await {
                rollback(inner, &record).await;
                return Err(e);
            }
            tracing::info!(container_id = %id, sandbox_id = %sandbox.id, name = %record.config.name, "container created");
            Ok(id)
        }
        Err(e) => {
            rollback(inner, &record).await;
            Err(e)
        }
    }
}

fn validate(config: &ContainerConfig) -> Result<(), ContainerError> {
    if config.name.is_empty() {
        return Err(ContainerError::InvalidConfig(
            "container metadata.name is required".into(),
        ));
    }
    if config.image.is_empty() {
        return Err(ContainerError::InvalidConfig(
            "container image is required".into(),
        ));
    }
    let log = Path::new(&config.log_path);
    if log.is_absolute()
        || log
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ContainerError::InvalidConfig(format!(
            "log_path {:?} must be relative to the pod's log directory",
            config.log_path
        )));
    }
    Ok(())
}

/// What CRI shows as the container's image: the tag the request named if the image has it, else
/// the image's first tag, else its ID.
fn display_name(requested: &str, image: &berth_image::ImageRecord) -> String {
    image
        .repo_tags
        .iter()
        .find(|t| t.as_str() == requested || t.ends_with(&format!("/{requested}")))
        .or_else(|| image.repo_tags.first())
        .cloned()
        .unwrap_or_else(|| requested.to_string())
}

async fn prepare(
    inner: &Arc<Inner>,
    record: &mut ContainerRecord,
    sandbox: &SandboxRecord,
    image: &ImageConfig,
) -> Result<(), ContainerError> {
    let target_pid_ns = match &record.config.security.pid_mode {
        PidMode::Target(target) => {
            let t = inner.record(target).map_err(|_| {
                ContainerError::InvalidConfig(format!(
                    "PID namespace target container {target:?} not found"
                ))
            })?;
            if t.pid == 0 {
                return Err(ContainerError::WrongState {
                    id: target.clone(),
                    state: format!("{:?}", t.state()),
                    needs: "not running: a PID namespace target must be running",
                });
            }
            Some(PathBuf::from(format!("/proc/{}/ns/pid", t.pid)))
        }
        _ => None,
    };
    let userns = match (&sandbox.userns, &sandbox.userns_path) {
        (None, _) => None,
        (Some(maps), Some(path)) => {
            check_userns_container(&record.config)?;
            Some(userns::PodUserns::open(path, maps)?)
        }
        (Some(_), None) => {
            return Err(ContainerError::SandboxUnusable {
                id: sandbox.id.clone(),
                reason: "has user namespace mappings but no pinned user namespace",
            });
        }
    };
    let mounts = inner.deps.rootfs.clone();
    let cgroups = inner.deps.cgroups.clone();
    let sandbox = sandbox.clone();
    let image = image.clone();
    let mut rec = record.clone();
    let rec = tokio::task::spawn_blocking(move || -> Result<ContainerRecord, ContainerError> {
        let rootfs = rec.rootfs();
        std::fs::create_dir_all(&rootfs).map_err(ContainerError::io("create", &rootfs))?;
        let mount = mounts.mount_rootfs(&rec.snapshot, &rec.overlay_dir(), &rootfs)?;
        berth_failpoint::fail("container/create/after-rootfs")
            .map_err(ContainerError::Failpoint)?;
        mounts.mount_image_volumes(&rec.bundle, &mut rec.config.mounts)?;
        let volumes = rec.rw_dir.join("volumes");
        std::fs::create_dir_all(&volumes).map_err(ContainerError::io("create", &volumes))?;
        let cgroups_path = sandbox
            .cgroup
            .as_ref()
            .map(|cg| cg.container_cgroups_path(&rec.id));
        let pid_ns = sandbox.init.as_ref().map(|i| i.pid_namespace());
        let (resolv, hosts, hostname) = (
            sandbox.resolv_conf_path(),
            sandbox.hosts_path(),
            sandbox.hostname_path(),
        );
        let own_uts = sandbox.utsns.is_some();
        let input = SpecInput {
            container_id: &rec.id,
            config: &rec.config,
            image: &image,
            image_name: &rec.image_name,
            rootfs: &rootfs,
            volumes_dir: &volumes,
            sandbox: SandboxInfo {
                id: &sandbox.id,
                name: &sandbox.metadata.name,
                namespace: &sandbox.metadata.namespace,
                uid: &sandbox.metadata.uid,
                netns: sandbox.netns.as_deref(),
                ipcns: sandbox.ipcns.as_deref(),
                utsns: sandbox.utsns.as_deref(),
                pid_ns: pid_ns.as_deref(),
                target_pid_ns: target_pid_ns.as_deref(),
                hostname: if own_uts { &sandbox.hostname } else { "" },
                resolv_conf: resolv.exists().then_some(resolv.as_path()),
                hosts: hosts.exists().then_some(hosts.as_path()),
                hostname_file: hostname.exists().then_some(hostname.as_path()),
                shm: sandbox.shm.as_deref(),
                cgroups_path,
            },
            cgroup_unified: cgroups.unified(),
        };
        let mut built = berth_spec::build(&input)?;
        rro::stage_binds(&mut built.spec, &rec.bundle)?;
        if let Some(userns) = &userns {
            // build() read the image's passwd and made the working dir with the container's
            // ids on the plain overlay; now the idmapped one replaces it (see userns.rs).
            mount.remount_idmapped(&rootfs, &rec.rw_dir, userns)?;
            userns::stage_binds(&mut built.spec, &rec.bundle, userns)?;
            userns::apply_to_spec(&mut built.spec, userns)?;
        }
        berth_spec::write_bundle_config(&rec.bundle, &built.spec)?;
        berth_failpoint::fail("container/create/after-bundle")
            .map_err(ContainerError::Failpoint)?;
        rec.user = built.user;
        rec.stop_signal = built.stop_signal;
        rec.oom_score_adj = built
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.oom_score_adj())
            .unwrap_or(0);
        Ok(rec)
    })
    .await
    .map_err(ContainerError::task("preparing the container"))??;
    *record = rec;
    berth_failpoint::fail("container/create/before-final-save")
        .map_err(ContainerError::Failpoint)?;
    Ok(())
}

/// Undoes a failed or abandoned CreateContainer: by path, not by what the record says was done.
pub(crate) async fn rollback(inner: &Arc<Inner>, record: &ContainerRecord) {
    if let Err(e) = remove_files(inner, record).await {
        tracing::warn!(container_id = %record.id, error = %e, "rolling back a failed CreateContainer");
    }
    if let Err(e) = inner.delete(&record.id).await {
        tracing::warn!(container_id = %record.id, error = %e, "deleting the record of a failed CreateContainer");
    }
}

/// Unmounts the rootfs and removes the bundle and the writable layer. Idempotent.
pub(crate) async fn remove_files(
    inner: &Inner,
    record: &ContainerRecord,
) -> Result<(), ContainerError> {
    let mounts = inner.deps.rootfs.clone();
    let rootfs = record.rootfs();
    let bundle = record.bundle.clone();
    let rw_dir = record.rw_dir.clone();
    tokio::task::spawn_blocking(move || -> Result<(), ContainerError> {
        // Idmapped bind sources and image layers of a pod with a user namespace (none for
        // others), read-only clones of recursive_read_only sources: unmounted before anything
        // is removed recursively.
        userns::unstage(&bundle.join(userns::BIND_STAGING))?;
        userns::unstage(&bundle.join(rro::STAGING))?;
        userns::unstage(&rw_dir.join(userns::LAYER_STAGING))?;
        if rootfs.exists() {
            mounts.unmount(&rootfs)?;
        }
        mounts.unmount_image_volumes(&bundle)?;
        monitors::remove_dir(&bundle)?;
        monitors::remove_dir(&rw_dir)
    })
    .await
    .map_err(ContainerError::task("removing the container files"))?
}

/// What a container of a pod with a user namespace cannot have. Privileged: it would want the
/// host's devices and full capabilities over host resources (kubelet refuses privileged pods
/// with `hostUsers: false` too). Mount propagation to or from the host: it cannot reach through
/// an idmapped clone (a private copy); kubelet only allows Bidirectional for privileged
/// containers anyway.
fn check_userns_container(config: &ContainerConfig) -> Result<(), ContainerError> {
    if config.security.privileged {
        return Err(ContainerError::InvalidConfig(
            "a privileged container cannot run in a pod with a user namespace (hostUsers: false)"
                .into(),
        ));
    }
    match config
        .mounts
        .iter()
        .find(|m| m.propagation != berth_spec::Propagation::Private)
    {
        Some(m) => Err(ContainerError::InvalidMount {
            mount: m.container_path.clone(),
            reason: format!(
                "propagation {:?} is not supported in a pod with a user namespace",
                m.propagation
            ),
        }),
        None => Ok(()),
    }
}
