//! ListContainers filters (all given conditions must hold).

use std::collections::BTreeMap;

use berth_store::{ListFilter, Listed};

use crate::record::{ContainerRecord, ContainerState};

/// The conditions every list of records has ([`ListFilter`]: ID prefix, state, labels), and the
/// pod the containers belong to.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub list: ListFilter<ContainerState>,
    /// A sandbox ID or ID prefix.
    pub sandbox_id: Option<String>,
}

impl ContainerFilter {
    pub fn matches(&self, r: &ContainerRecord) -> bool {
        self.list.matches(r)
            && self
                .sandbox_id
                .as_ref()
                .is_none_or(|p| r.sandbox_id.starts_with(p.as_str()))
    }
}

impl Listed for ContainerRecord {
    type State = ContainerState;
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> ContainerState {
        ContainerRecord::state(self)
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.config.labels
    }
}
