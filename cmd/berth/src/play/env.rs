//! A container's environment as kubelet makes it: `envFrom` first, then `env` in order, each
//! value's `$(VAR)` expanded from what came before; then `$(VAR)` in command and args.

use std::collections::BTreeMap;

use anyhow::bail;
use berth_cri_api::v1 as cri;

use super::manifest::Container;
use super::parse::{Manifest, PlayPod};

/// What `fieldRef` can name, known once the pod runs.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub uid: String,
    pub ip: String,
}

/// The environment variable name rules of the API (C identifiers, plus `.` and `-`).
fn env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `$(VAR)` → its value when defined, else left as written; `$$` → `$` (kubelet's expansion).
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `fieldRef.fieldPath` values Berth can fill in.
fn field(pod: &PlayPod, facts: &PodFacts, path: &str) -> Option<String> {
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
            .map(|k| k.trim_matches(['\'', '"']).to_string())
    };
    Some(match path {
        "metadata.name" => pod.name.clone(),
        "metadata.namespace" => pod.namespace.clone(),
        "metadata.uid" => facts.uid.clone(),
        "status.podIP" | "status.podIPs" => facts.ip.clone(),
        "spec.nodeName" => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()?
            .trim()
            .to_string(),
        "spec.serviceAccountName" => String::new(),
        _ => {
            if let Some(k) = quoted("metadata.labels") {
                pod.labels.get(&k).cloned().unwrap_or_default()
            } else if let Some(k) = quoted("metadata.annotations") {
                pod.annotations.get(&k).cloned().unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

/// The container's variables in order, and the map `$(VAR)` in command and args expands from.
pub fn environment(
    manifest: &Manifest,
    pod: &PlayPod,
    container: &Container,
    at: &str,
    facts: &PodFacts,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Vec<cri::KeyValue>, BTreeMap<String, String>)> {
    let doc = &pod.doc;
    let key = |name: &str| (pod.namespace.clone(), name.to_string());
    let mut order: Vec<String> = Vec::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    fn set(
        order: &mut Vec<String>,
        vars: &mut BTreeMap<String, String>,
        name: String,
        value: String,
    ) {
        if !order.contains(&name) {
            order.push(name.clone());
        }
        vars.insert(name, value);
    }
    for (i, from) in container.env_from.iter().enumerate() {
        let (what, reference, data) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), None) => ("ConfigMap", r, manifest.config_maps.get(&key(&r.name))),
            (None, Some(r)) => ("Secret", r, manifest.secrets.get(&key(&r.name))),
            _ => bail!(
                "{doc}: {at}.envFrom[{i}]: expected exactly one of configMapRef and secretRef"
            ),
        };
        let Some(data) = data else {
            if reference.optional {
                continue;
            }
            bail!(
                "{doc}: {at}.envFrom[{i}]: {what} {:?} is not defined in the manifest (namespace {})",
                reference.name,
                pod.namespace
            );
        };
        for (k, v) in data {
            let name = format!("{}{k}", from.prefix);
            if env_name(&name) {
                set(&mut order, &mut vars, name, text(v));
            } else {
                warnings.push(format!(
                    "{doc}: {at}.envFrom[{i}]: key {k:?} of {what} {} is not a valid variable name, skipped",
                    reference.name
                ));
            }
        }
    }
    for (i, var) in container.env.iter().enumerate() {
        let here = format!("{at}.env[{i}]");
        if !env_name(&var.name) {
            bail!(
                "{doc}: {here}.name: {:?} is not a valid variable name",
                var.name
            );
        }
        let value = match (&var.value, &var.value_from) {
            (_, None) => expand(var.value.as_deref().unwrap_or(""), &vars),
            (Some(_), Some(_)) => bail!("{doc}: {here}: value and valueFrom don't go together"),
            (None, Some(from)) => {
                match (
                    &from.config_map_key_ref,
                    &from.secret_key_ref,
                    &from.field_ref,
                ) {
                    (Some(r), None, None) | (None, Some(r), None) => {
                        let (what, field_name, data) = if from.config_map_key_ref.is_some() {
                            (
                                "ConfigMap",
                                "configMapKeyRef",
                                manifest.config_maps.get(&key(&r.name)),
                            )
                        } else {
                            (
                                "Secret",
                                "secretKeyRef",
                                manifest.secrets.get(&key(&r.name)),
                            )
                        };
                        match data.and_then(|d| d.get(&r.key)) {
                            Some(v) => text(v),
                            None if r.optional => continue,
                            None if data.is_none() => bail!(
                                "{doc}: {here}.valueFrom.{field_name}: {what} {:?} is not defined in the manifest (namespace {})",
                                r.name,
                                pod.namespace
                            ),
                            None => bail!(
                                "{doc}: {here}.valueFrom.{field_name}: {what} {:?} has no key {:?}",
                                r.name,
                                r.key
                            ),
                        }
                    }
                    (None, None, Some(f)) => match field(pod, facts, &f.field_path) {
                        Some(v) => v,
                        None => bail!(
                            "{doc}: {here}.valueFrom.fieldRef.fieldPath: {:?} is not supported (metadata.name, metadata.namespace, metadata.uid, metadata.labels['K'], metadata.annotations['K'], status.podIP, spec.nodeName)",
                            f.field_path
                        ),
                    },
                    _ => bail!(
                        "{doc}: {here}.valueFrom: expected exactly one of configMapKeyRef, secretKeyRef and fieldRef (resourceFieldRef is not supported)"
                    ),
                }
            }
        };
        set(&mut order, &mut vars, var.name.clone(), value);
    }
    let envs = order
        .into_iter()
        .map(|k| cri::KeyValue {
            value: vars.get(&k).cloned().unwrap_or_default(),
            key: k,
        })
        .collect();
    Ok((envs, vars))
}
