//! `annotations`: the request's, then the CRI-standard ones containerd sets, which tools and
//! OCI hooks use to tell pods and containers apart.

use std::collections::HashMap;

use crate::SpecInput;

pub(crate) const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub(crate) const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub(crate) const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
pub(crate) const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
pub(crate) const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
pub(crate) const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub(crate) const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// The standard keys win over a request annotation of the same name (containerd sets them last).
pub(crate) fn annotations(input: &SpecInput) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = input
        .config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let sb = &input.sandbox;
    for (k, v) in [
        (CONTAINER_TYPE, "container"),
        (SANDBOX_ID, sb.id),
        (SANDBOX_NAME, sb.name),
        (SANDBOX_NAMESPACE, sb.namespace),
        (SANDBOX_UID, sb.uid),
        (CONTAINER_NAME, input.config.name.as_str()),
        (IMAGE_NAME, input.image_name),
    ] {
        out.insert(k.to_string(), v.to_string());
    }
    out
}
