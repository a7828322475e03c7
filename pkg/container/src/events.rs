//! Container lifecycle events (CRI `GetContainerEvents`, kubelet's Evented PLEG).
//!
//! Every phase change a record goes through is seen in one place, [`crate::Inner::save`] and
//! [`crate::Inner::delete`], so no path (create, start, exit watch, stop, remove, recovery) can
//! forget to announce one. Events go out on a bounded broadcast channel: sending never waits, and
//! a subscriber that falls behind loses the oldest events (it learns how many from its receiver,
//! and the CRI layer counts them), so a stuck client can never slow container operations.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::record::{ContainerRecord, Phase};

/// Events kept for a subscriber that is not reading, before the oldest are dropped for it.
pub const EVENT_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerEventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

impl ContainerEventKind {
    /// The lower-case name used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerEventKind::Created => "created",
            ContainerEventKind::Started => "started",
            ContainerEventKind::Stopped => "stopped",
            ContainerEventKind::Deleted => "deleted",
        }
    }
}

/// One event: the container as it was right after the change (for `Deleted`, as it was last).
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub kind: ContainerEventKind,
    pub container: Arc<ContainerRecord>,
    /// Unix nanoseconds.
    pub at_ns: i64,
}

/// The event a phase change announces, if any. `Creating` records are berthd's own bookkeeping
/// (CRI never sees them), so neither their appearance nor their rollback is an event.
pub(crate) fn for_change(old: Option<Phase>, new: Phase) -> Option<ContainerEventKind> {
    if old == Some(new) {
        return None;
    }
    match new {
        // Deleted is sent when the record leaves the cache (see `Inner::tombstone`).
        Phase::Creating | Phase::Starting | Phase::Removing => None,
        // A retried save of a record already past creation is not a second creation.
        Phase::Created if matches!(old, None | Some(Phase::Creating)) => {
            Some(ContainerEventKind::Created)
        }
        Phase::Created => None,
        Phase::Running => Some(ContainerEventKind::Started),
        Phase::Exited => Some(ContainerEventKind::Stopped),
    }
}

pub(crate) struct Events {
    sender: broadcast::Sender<ContainerEvent>,
}

impl Events {
    pub(crate) fn new() -> Events {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        Events { sender }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.sender.subscribe()
    }

    /// Announces `kind` for `record`. Copies the record only when somebody listens.
    pub(crate) fn send(&self, kind: ContainerEventKind, record: &ContainerRecord) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let event = ContainerEvent {
            kind,
            container: Arc::new(record.clone()),
            at_ns: berth_clock::now_ns(),
        };
        // Err only means every receiver went away meanwhile.
        let _ = self.sender.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_changes_map_to_cri_events() {
        use ContainerEventKind::*;
        assert_eq!(for_change(None, Phase::Creating), None);
        assert_eq!(
            for_change(Some(Phase::Creating), Phase::Created),
            Some(Created)
        );
        assert_eq!(for_change(Some(Phase::Created), Phase::Created), None);
        assert_eq!(for_change(Some(Phase::Created), Phase::Starting), None);
        assert_eq!(
            for_change(Some(Phase::Starting), Phase::Running),
            Some(Started)
        );
        assert_eq!(
            for_change(Some(Phase::Running), Phase::Exited),
            Some(Stopped)
        );
        // A start that failed goes from Starting straight to Exited.
        assert_eq!(
            for_change(Some(Phase::Starting), Phase::Exited),
            Some(Stopped)
        );
        assert_eq!(for_change(Some(Phase::Exited), Phase::Exited), None);
        // Recovery may bring a Starting container back to Created.
        assert_eq!(for_change(Some(Phase::Starting), Phase::Created), None);
    }
}
