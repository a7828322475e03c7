//! CDI devices: the merged edits berth-cdi resolved at CreateContainer, applied to the built spec
//! as the reference implementation applies them: env entries override the same key; each device
//! node replaces a node at the same path and gets an allow rule in the device cgroup (its
//! permissions, `rwm` by default); each mount replaces one at the same destination and mounts are
//! then ordered by depth, so a parent is mounted before what is mounted inside it; hooks go to
//! their OCI lists; additional GIDs join the process's groups.

use std::path::{Path, PathBuf};

use berth_cdi::{ContainerEdits, DeviceNode};
use oci_spec::runtime::{
    Hook, HookBuilder, Hooks, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, Mount, MountBuilder, Spec,
};

use crate::SpecError;

pub(crate) fn apply(spec: &mut Spec, edits: &ContainerEdits) -> Result<(), SpecError> {
    if edits.is_empty() {
        return Ok(());
    }
    let (uid, gid) = spec
        .process()
        .as_ref()
        .map(|p| (p.user().uid(), p.user().gid()))
        .unwrap_or((0, 0));
    if let Some(process) = spec.process_mut() {
        let mut env = process.env().clone().unwrap_or_default();
        for entry in &edits.env {
            let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(entry.clone());
        }
        process.set_env(Some(env));
        let user = process.user_mut();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for g in &edits.additional_gids {
            if *g != 0 && !gids.contains(g) {
                gids.push(*g);
            }
        }
        user.set_additional_gids((!gids.is_empty()).then_some(gids));
    }

    let mut devices = Vec::new();
    let mut rules = Vec::new();
    for node in &edits.device_nodes {
        let dev = linux_device(node, uid, gid)?;
        if let Some(typ) = match dev.typ() {
            LinuxDeviceType::B => Some(LinuxDeviceType::B),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(LinuxDeviceType::C),
            _ => None,
        } {
            let access = node.permissions.clone().unwrap_or_default();
            rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(typ)
                    .major(dev.major())
                    .minor(dev.minor())
                    .access(if access.is_empty() {
                        "rwm".into()
                    } else {
                        access
                    })
                    .build()?,
            );
        }
        devices.push(dev);
    }
    if let Some(linux) = spec.linux_mut() {
        let mut all = linux.devices().clone().unwrap_or_default();
        for dev in devices {
            all.retain(|d| d.path() != dev.path());
            all.push(dev);
        }
        linux.set_devices((!all.is_empty()).then_some(all));
        if !rules.is_empty() {
            let mut resources = linux.resources().clone().unwrap_or_default();
            let mut all = resources.devices().clone().unwrap_or_default();
            all.extend(rules);
            resources.set_devices(Some(all));
            linux.set_resources(Some(resources));
        }
    }

    if !edits.mounts.is_empty() {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in &edits.mounts {
            let dest = PathBuf::from(&m.container_path);
            mounts.retain(|x| x.destination() != &dest);
            let mut b = MountBuilder::default()
                .destination(dest)
                .source(PathBuf::from(&m.host_path))
                .options(m.options.clone());
            if let Some(t) = &m.r#type {
                b = b.typ(t.clone());
            }
            mounts.push(b.build()?);
        }
        // Stable: mounts of the same depth keep their order.
        mounts.sort_by_key(|m: &Mount| depth(m.destination()));
        spec.set_mounts(Some(mounts));
    }

    if !edits.hooks.is_empty() {
        let mut hooks = spec.hooks().clone().unwrap_or_default();
        for h in &edits.hooks {
            let mut b = HookBuilder::default()
                .path(PathBuf::from(&h.path))
                .args(h.args.clone())
                .env(h.env.clone());
            if let Some(t) = h.timeout {
                b = b.timeout(t);
            }
            let list = hook_list(&mut hooks, &h.hook_name).ok_or_else(|| {
                SpecError::InvalidCdiEdits(format!(
                    "CDI hook {}: unknown hook name {:?}",
                    h.path, h.hook_name
                ))
            })?;
            list.get_or_insert_with(Vec::new).push(b.build()?);
        }
        spec.set_hooks(Some(hooks));
    }
    Ok(())
}

#[allow(deprecated)] // `prestart` is deprecated in OCI, still valid in CDI and run by runc.
fn hook_list<'a>(hooks: &'a mut Hooks, name: &str) -> Option<&'a mut Option<Vec<Hook>>> {
    Some(match name {
        "prestart" => hooks.prestart_mut(),
        "createRuntime" => hooks.create_runtime_mut(),
        "createContainer" => hooks.create_container_mut(),
        "startContainer" => hooks.start_container_mut(),
        "poststart" => hooks.poststart_mut(),
        "poststop" => hooks.poststop_mut(),
        _ => return None,
    })
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

/// The OCI device of a completed CDI node. Without an owner in the spec, the node belongs to the
/// container's user when that is not root (as the reference implementation does), so a
/// non-root container can open it.
fn linux_device(node: &DeviceNode, uid: u32, gid: u32) -> Result<LinuxDevice, SpecError> {
    let typ = match node.r#type.as_deref() {
        Some("b") => LinuxDeviceType::B,
        Some("c") => LinuxDeviceType::C,
        Some("u") => LinuxDeviceType::U,
        Some("p") => LinuxDeviceType::P,
        other => {
            return Err(SpecError::InvalidCdiEdits(format!(
                "CDI device node {}: type {other:?} unknown",
                node.path
            )));
        }
    };
    let mut b = LinuxDeviceBuilder::default()
        .path(PathBuf::from(&node.path))
        .typ(typ)
        .major(node.major.unwrap_or(0))
        .minor(node.minor.unwrap_or(0));
    if let Some(mode) = node.file_mode {
        b = b.file_mode(mode);
    }
    match node.uid.or((uid > 0).then_some(uid)) {
        Some(u) => b = b.uid(u),
        None => b = b.uid(0u32),
    }
    match node.gid.or((gid > 0).then_some(gid)) {
        Some(g) => b = b.gid(g),
        None => b = b.gid(0u32),
    }
    Ok(b.build()?)
}

#[cfg(test)]
#[path = "cdi_tests.rs"]
mod tests;
