//! The conditions CRI's list calls filter sandboxes and containers by: an ID prefix, a state and
//! labels, all of which must hold.

use std::collections::BTreeMap;

/// What a [`ListFilter`] asks of a record.
pub trait Listed {
    type State: PartialEq;
    fn id(&self) -> &str;
    fn state(&self) -> Self::State;
    fn labels(&self) -> &BTreeMap<String, String>;
}

/// Every condition set must hold (CRI semantics).
#[derive(Debug, Clone)]
pub struct ListFilter<S> {
    /// An ID or ID prefix.
    pub id: Option<String>,
    pub state: Option<S>,
    /// Every pair must be among the record's labels.
    pub labels: BTreeMap<String, String>,
}

// Not derived: a derive would ask `S: Default`, and states have no natural default.
impl<S> Default for ListFilter<S> {
    fn default() -> Self {
        ListFilter {
            id: None,
            state: None,
            labels: BTreeMap::new(),
        }
    }
}

impl<S: PartialEq> ListFilter<S> {
    pub fn matches<R: Listed<State = S>>(&self, record: &R) -> bool {
        self.id
            .as_deref()
            .is_none_or(|prefix| record.id().starts_with(prefix))
            && self.state.as_ref().is_none_or(|s| record.state() == *s)
            && self
                .labels
                .iter()
                .all(|(k, v)| record.labels().get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing(&'static str, bool, BTreeMap<String, String>);

    impl Listed for Thing {
        type State = bool;
        fn id(&self) -> &str {
            self.0
        }
        fn state(&self) -> bool {
            self.1
        }
        fn labels(&self) -> &BTreeMap<String, String> {
            &self.2
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let thing = Thing("abc123", true, labels.clone());
        assert!(ListFilter::default().matches(&thing));
        let mut f = ListFilter {
            id: Some("abc".into()),
            state: Some(true),
            labels,
        };
        assert!(f.matches(&thing));
        f.state = Some(false);
        assert!(!f.matches(&thing));
        f.state = None;
        f.id = Some("bc".into());
        assert!(!f.matches(&thing));
        f.id = None;
        f.labels.insert("tier".into(), "front".into());
        assert!(!f.matches(&thing));
    }
}
