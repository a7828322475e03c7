//! GetContainerEvents: one server stream per client, fed from one fan-out.
//!
//! A single task turns each container event into its CRI message (the pod's status and its
//! containers' statuses) once, however many clients listen, and broadcasts it. Each client's
//! stream reads from a bounded broadcast receiver: a client that stops reading falls behind and
//! loses the oldest events (counted in `berth_container_events_dropped_total`), and neither
//! container operations nor the other clients ever wait for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_container::{ContainerEvent, ContainerEventKind, ContainerFilter};
use berth_cri_api::v1 as cri;
use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tonic::Status;

use crate::{Shared, containers, pods};

pub(crate) type Event = Arc<cri::ContainerEventResponse>;

/// The fan-out's sender, started with the first subscriber.
#[derive(Default)]
pub(crate) struct EventHub {
    sender: std::sync::OnceLock<broadcast::Sender<Event>>,
}

impl EventHub {
    fn sender(&self, shared: &Arc<Shared>) -> broadcast::Sender<Event> {
        self.sender
            .get_or_init(|| {
                let (tx, _) = broadcast::channel(berth_container::EVENT_BUFFER);
                let source = shared.deps.containers.subscribe();
                // Weak: the fan-out must not keep the service alive after shutdown.
                tokio::spawn(fan_out(Arc::downgrade(shared), source, tx.clone()));
                tx
            })
            .clone()
    }
}

async fn fan_out(
    shared: std::sync::Weak<Shared>,
    mut source: broadcast::Receiver<ContainerEvent>,
    sink: broadcast::Sender<Event>,
) {
    loop {
        let event = match source.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                if let Some(shared) = shared.upgrade() {
                    shared.deps.metrics.events.dropped(n);
                }
                tracing::warn!(dropped = n, "container event fan-out fell behind");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if sink.receiver_count() == 0 {
            continue;
        }
        let _ = sink.send(Arc::new(to_cri(&shared, &event)));
    }
}

/// The CRI message: the event's container as it was at the event, the pod as it is now.
fn to_cri(shared: &Shared, event: &ContainerEvent) -> cri::ContainerEventResponse {
    let record = &event.container;
    let pod_sandbox_status = shared
        .deps
        .sandboxes
        .get(&record.sandbox_id)
        .ok()
        .and_then(|s| pods::status_to_cri(&s, false).status);
    let filter = ContainerFilter {
        sandbox_id: Some(record.sandbox_id.clone()),
        ..Default::default()
    };
    let mut containers_statuses: Vec<cri::ContainerStatus> = shared
        .deps
        .containers
        .list(&filter)
        .iter()
        .filter(|c| c.sandbox_id == record.sandbox_id && c.id != record.id)
        .filter_map(|c| containers::status_to_cri(c, Default::default()).status)
        .collect();
    if event.kind != ContainerEventKind::Deleted
        && let Some(own) = containers::status_to_cri(record, Default::default()).status
    {
        containers_statuses.insert(0, own);
    }
    cri::ContainerEventResponse {
        container_id: record.id.clone(),
        container_event_type: match event.kind {
            ContainerEventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
            ContainerEventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
            ContainerEventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
            ContainerEventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
        } as i32,
        created_at: event.at_ns,
        pod_sandbox_status,
        containers_statuses,
    }
}

/// One client's stream of events from now on.
pub(crate) fn subscribe(shared: &Arc<Shared>) -> EventStream {
    let receiver = shared.events.sender(shared).subscribe();
    shared.deps.metrics.events.subscribed();
    EventStream {
        inner: BroadcastStream::new(receiver),
        shared: shared.clone(),
    }
}

pub(crate) struct EventStream {
    inner: BroadcastStream<Event>,
    shared: Arc<Shared>,
}

impl Stream for EventStream {
    type Item = Result<cri::ContainerEventResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(Ok((*event).clone()))),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    self.shared.deps.metrics.events.dropped(n);
                    tracing::debug!(dropped = n, "a container event client fell behind");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.shared.deps.metrics.events.unsubscribed();
    }
}
