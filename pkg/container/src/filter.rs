//! ListContainers filters (all given conditions must hold).

use std::collections::BTreeMap;

use crate::record::{ContainerRecord, ContainerState};

#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    /// An ID or ID prefix.
    pub id: Option<String>,
    pub state: Option<ContainerState>,
    /// A sandbox ID or ID prefix.
    pub sandbox_id: Option<String>,
    /// Every pair must be among the container's labels.
    pub labels: BTreeMap<String, String>,
}

impl ContainerFilter {
    pub fn matches(&self, r: &ContainerRecord) -> bool {
        self.id
            .as_ref()
            .is_none_or(|p| r.id.starts_with(p.as_str()))
            && self.state.is_none_or(|s| r.state() == s)
            && self
                .sandbox_id
                .as_ref()
                .is_none_or(|p| r.sandbox_id.starts_with(p.as_str()))
            && self
                .labels
                .iter()
                .all(|(k, v)| r.config.labels.get(k) == Some(v))
    }
}
