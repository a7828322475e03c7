//! Reading a multi-document manifest into the pods to run and the ConfigMaps and Secrets they
//! use. Every error names the document (1-based index, kind and name) and the field path at
//! fault, as `kubectl apply` does; fields Berth does not model are warnings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, bail};
use base64::Engine;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::manifest::{ConfigMap, ObjectMeta, Pod, PodSpec, RestartPolicy, Secret, Workload};

/// Where an object came from, for messages: `document 2 (Deployment web)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Doc {
    /// 1-based; `List` items add `.N`.
    pub index: String,
    pub kind: String,
    pub name: String,
}

impl fmt::Display for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.index)?;
        match (self.kind.as_str(), self.name.as_str()) {
            ("", _) => Ok(()),
            (kind, "") => write!(f, " ({kind})"),
            (kind, name) => write!(f, " ({kind} {name})"),
        }
    }
}

/// A pod to run: a Pod, or a workload's template (one replica).
#[derive(Debug, Clone)]
pub struct PlayPod {
    pub doc: Doc,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: PodSpec,
    /// Where the pod spec is in its document, for messages: `spec` or `spec.template.spec`.
    pub spec_path: &'static str,
    pub restart: RestartPolicy,
}

/// A ConfigMap's or Secret's keys, decoded.
pub type Data = BTreeMap<String, Vec<u8>>;

#[derive(Debug, Default)]
pub struct Manifest {
    pub pods: Vec<PlayPod>,
    /// By (namespace, name).
    pub config_maps: BTreeMap<(String, String), Data>,
    pub secrets: BTreeMap<(String, String), Data>,
    pub warnings: Vec<String>,
}

/// Kinds that describe nothing to run on one node: skipped with a warning.
const IGNORED_KINDS: &[&str] = &[
    "Service",
    "Ingress",
    "NetworkPolicy",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "Namespace",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "LimitRange",
    "ResourceQuota",
    "PriorityClass",
];

const WORKLOADS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
];

/// Fields that matter to a cluster's scheduler or controllers, not to pods on one node: not
/// worth a warning. (Anything under `metadata` and `status` is skipped too.)
const QUIET_FIELDS: &[&str] = &[
    "nodeName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "schedulerName",
    "priority",
    "priorityClassName",
    "preemptionPolicy",
    "serviceAccount",
    "serviceAccountName",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "dnsPolicy",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "topologySpreadConstraints",
    "selector",
    "strategy",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "serviceName",
    "podManagementPolicy",
    "updateStrategy",
    "minReadySeconds",
    "backoffLimit",
    "completions",
    "parallelism",
    "ttlSecondsAfterFinished",
    "completionMode",
    "suspend",
    "manualSelector",
    "podReplacementPolicy",
    "persistentVolumeClaimRetentionPolicy",
    "readinessGates",
    "resizePolicy",
    "os",
];

/// `spec.containers[0].ports` from serde_ignored's path.
fn path_string(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        Path::Map { parent, key } => match path_string(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => path_string(parent),
    }
}

fn quiet(path: &str) -> bool {
    let first = path.split(['.', '[']).next().unwrap_or(path);
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    first == "status"
        || path.split('.').any(|s| s == "metadata")
        || path.contains(".metadata.")
        || QUIET_FIELDS.contains(&last)
}

/// Deserializes one object, collecting the fields nothing took as warnings.
fn typed<T: DeserializeOwned>(
    value: Value,
    doc: &Doc,
    warnings: &mut Vec<String>,
) -> anyhow::Result<T> {
    let mut ignored = Vec::new();
    let mut note = |path: serde_ignored::Path<'_>| ignored.push(path_string(&path));
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    for path in ignored {
        if !quiet(&path) {
            warnings.push(format!(
                "{doc}: {path}: not supported by berth play, ignored"
            ));
        }
    }
    result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            anyhow::anyhow!("{doc}: {inner}")
        } else {
            anyhow::anyhow!("{doc}: {path}: {inner}")
        }
    })
}

fn str_at<'a>(value: &'a Value, keys: &[&str]) -> &'a str {
    let mut v = value;
    for k in keys {
        match v.get(*k) {
            Some(next) => v = next,
            None => return "",
        }
    }
    v.as_str().unwrap_or("")
}

/// Parses every document of `text`.
pub fn parse(text: &str) -> anyhow::Result<Manifest> {
    let mut manifest = Manifest::default();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let index = (i + 1).to_string();
        let value =
            Value::deserialize(document).map_err(|e| anyhow::anyhow!("document {index}: {e}"))?;
        add(&mut manifest, value, index)?;
    }
    if manifest.pods.is_empty() {
        bail!(
            "the manifest has no Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet or Job to run"
        );
    }
    check_names(&manifest)?;
    Ok(manifest)
}

fn add(manifest: &mut Manifest, value: Value, index: String) -> anyhow::Result<()> {
    if value.is_null() {
        // An empty document (`---` at the start or end of the file).
        return Ok(());
    }
    let doc = Doc {
        index,
        kind: str_at(&value, &["kind"]).to_string(),
        name: str_at(&value, &["metadata", "name"]).to_string(),
    };
    if !value.is_mapping() {
        bail!("{doc}: expected an object (a mapping with apiVersion, kind, metadata ...)");
    }
    let warnings = &mut manifest.warnings;
    match doc.kind.as_str() {
        "" => bail!("{doc}: kind: missing"),
        "List" => {
            let items = match value.get("items") {
                Some(Value::Sequence(items)) => items.clone(),
                _ => bail!("{doc}: items: expected a list of objects"),
            };
            for (j, item) in items.into_iter().enumerate() {
                add(manifest, item, format!("{}.items[{j}]", doc.index))?;
            }
        }
        "Pod" => {
            let pod: Pod = typed(value, &doc, warnings)?;
            let restart = pod.spec.restart_policy.unwrap_or_default();
            manifest.pods.push(play_pod(doc, &pod.metadata, None, pod.spec, "spec", restart)?);
        }
        kind if WORKLOADS.contains(&kind) => {
            let w: Workload = typed(value, &doc, warnings)?;
            if w.spec.replicas.is_some_and(|r| r != 1) {
                warnings.push(format!(
                    "{doc}: spec.replicas: berth play runs one replica (a pod named {})",
                    w.metadata.name
                ));
            }
            // A Job's pods must not restart forever: the API refuses Always there.
            let default = if kind == "Job" {
                RestartPolicy::Never
            } else {
                RestartPolicy::Always
            };
            let template = w.spec.template;
            let restart = template.spec.restart_policy.unwrap_or(default);
            let pod = play_pod(
                doc,
                &w.metadata,
                Some(&template.metadata),
                template.spec,
                "spec.template.spec",
                restart,
            )?;
            manifest.pods.push(pod);
        }
        "ConfigMap" => {
            let cm: ConfigMap = typed(value, &doc, warnings)?;
            let mut data: Data = BTreeMap::new();
            for (k, v) in &cm.data {
                data.insert(k.clone(), v.clone().into_bytes());
            }
            for (k, v) in &cm.binary_data {
                data.insert(k.clone(), decode(v).with_context(|| format!("{doc}: binaryData.{k}"))?);
            }
            check_keys(&doc, &data)?;
            let key = (namespace(&cm.metadata), object_name(&doc, &cm.metadata)?);
            insert(&mut manifest.config_maps, key, data, &doc)?;
        }
        "Secret" => {
            let secret: Secret = typed(value, &doc, warnings)?;
            let mut data: Data = BTreeMap::new();
            for (k, v) in &secret.data {
                data.insert(k.clone(), decode(v).with_context(|| format!("{doc}: data.{k}"))?);
            }
            for (k, v) in &secret.string_data {
                data.insert(k.clone(), v.clone().into_bytes());
            }
            check_keys(&doc, &data)?;
            let key = (namespace(&secret.metadata), object_name(&doc, &secret.metadata)?);
            insert(&mut manifest.secrets, key, data, &doc)?;
        }
        "CronJob" => bail!(
            "{doc}: kind CronJob is not supported: berth play keeps no schedule (a Job runs once)"
        ),
        kind if IGNORED_KINDS.contains(&kind) => warnings.push(format!(
            "{doc}: kind {kind} ignored: berth play runs pods on this node only (reach them by pod IP, hostPort or their names in /etc/hosts)"
        )),
        kind => bail!(
            "{doc}: kind {kind} is not supported (berth play runs Pod, {}, and reads ConfigMap and Secret)",
            WORKLOADS.join(", ")
        ),
    }
    Ok(())
}

fn insert(
    map: &mut BTreeMap<(String, String), Data>,
    key: (String, String),
    data: Data,
    doc: &Doc,
) -> anyhow::Result<()> {
    if map.insert(key.clone(), data).is_some() {
        bail!(
            "{doc}: a {} named {} is defined twice in namespace {}",
            doc.kind,
            key.1,
            key.0
        );
    }
    Ok(())
}

/// The API's rule for ConfigMap and Secret keys: they become file names in volumes.
fn check_keys(doc: &Doc, data: &Data) -> anyhow::Result<()> {
    for key in data.keys() {
        let valid = !key.is_empty()
            && key.len() <= 253
            && key != "."
            && key != ".."
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            bail!(
                "{doc}: data.{key}: a key must be letters, digits, '-', '_' or '.' (not . or ..)"
            );
        }
    }
    Ok(())
}

/// Base64 as the API writes it (line breaks allowed).
fn decode(value: &str) -> anyhow::Result<Vec<u8>> {
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .context("not valid base64")
}

fn namespace(meta: &ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn object_name(doc: &Doc, meta: &ObjectMeta) -> anyhow::Result<String> {
    if meta.name.is_empty() {
        bail!("{doc}: metadata.name: missing");
    }
    Ok(meta.name.clone())
}

/// RFC 1123 label: what a pod's hostname and a container's name must be.
pub fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn play_pod(
    doc: Doc,
    meta: &ObjectMeta,
    template: Option<&ObjectMeta>,
    spec: PodSpec,
    spec_path: &'static str,
    restart: RestartPolicy,
) -> anyhow::Result<PlayPod> {
    let name = object_name(&doc, meta)?;
    if !dns_label(&name) {
        bail!(
            "{doc}: metadata.name: {name:?} must be a DNS label (lower-case letters, digits and '-', at most 63): it is the pod's hostname"
        );
    }
    let mut labels = meta.labels.clone();
    let mut annotations = meta.annotations.clone();
    if let Some(t) = template {
        labels.extend(t.labels.clone());
        annotations.extend(t.annotations.clone());
    }
    if spec.containers.is_empty() {
        bail!("{doc}: {spec_path}.containers: a pod needs at least one container");
    }
    let mut seen = BTreeSet::new();
    for (field, list) in [
        ("initContainers", &spec.init_containers),
        ("containers", &spec.containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            if !dns_label(&c.name) {
                bail!(
                    "{doc}: {spec_path}.{field}[{i}].name: {:?} must be a DNS label",
                    c.name
                );
            }
            if !seen.insert(c.name.clone()) {
                bail!(
                    "{doc}: {spec_path}.{field}[{i}].name: {:?} is used twice in the pod",
                    c.name
                );
            }
            if c.image.is_empty() {
                bail!("{doc}: {spec_path}.{field}[{i}].image: missing");
            }
        }
    }
    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        if !volumes.insert(v.name.clone()) {
            bail!(
                "{doc}: {spec_path}.volumes[{i}].name: {:?} is used twice",
                v.name
            );
        }
    }
    Ok(PlayPod {
        namespace: namespace(meta),
        doc,
        name,
        labels,
        annotations,
        spec,
        spec_path,
        restart,
    })
}

/// Pods are found again by name (`--logs`, the supervisor): names are unique in a play.
fn check_names(manifest: &Manifest) -> anyhow::Result<()> {
    let mut seen = BTreeMap::new();
    for pod in &manifest.pods {
        if let Some(first) = seen.insert(pod.name.clone(), &pod.doc) {
            bail!(
                "{}: metadata.name: {} is also the name of {first}: berth play needs pod names unique",
                pod.doc,
                pod.name
            );
        }
    }
    Ok(())
}
