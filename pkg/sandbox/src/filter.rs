//! ListPodSandbox filters.

use std::collections::BTreeMap;

use crate::record::{SandboxRecord, SandboxState};

/// Every condition set must hold (CRI semantics). `id` matches a prefix.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    pub labels: BTreeMap<String, String>,
}

impl SandboxFilter {
    pub fn matches(&self, record: &SandboxRecord) -> bool {
        self.id
            .as_deref()
            .is_none_or(|id| record.id.starts_with(id))
            && self.state.is_none_or(|s| record.state() == s)
            && self
                .labels
                .iter()
                .all(|(k, v)| record.labels.get(k) == Some(v))
    }
}
