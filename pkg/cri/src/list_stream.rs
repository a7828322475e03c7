//! The `Stream*` list RPCs of cri-api v0.36 (feature gate CRIListStreaming, KEP-5825): the same
//! items as their unary twins, sent in chunks so that no message nears gRPC's 16 MiB default
//! limit however many pods, containers or images a node has. Each item is in exactly one message,
//! every message carries at least one, and the stream ends (EOF) after the last; an empty list
//! is a stream without messages.

use std::pin::Pin;

use futures_core::Stream;
use prost::Message;
use tonic::Status;

/// What one message may carry, encoded: far below 16 MiB, large enough that 5,000 containers
/// take a handful of messages.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

pub(crate) type ListStream<R> = Pin<Box<dyn Stream<Item = Result<R, Status>> + Send>>;

/// Splits `items` into runs whose encoded size stays within `limit` (an item larger than that
/// goes alone).
pub(crate) fn chunks<T: Message>(items: Vec<T>, limit: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for item in items {
        // An item in a repeated field costs its length, a tag byte and a length prefix.
        let len = item.encoded_len();
        let cost = len + 1 + prost::length_delimiter_len(len);
        if !current.is_empty() && size + cost > limit {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += cost;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A stream of `wrap(chunk)` messages for `items`.
pub(crate) fn stream<T, R>(items: Vec<T>, wrap: fn(Vec<T>) -> R) -> ListStream<R>
where
    T: Message,
    R: Send + 'static,
{
    let messages: Vec<Result<R, Status>> = chunks(items, CHUNK_BYTES)
        .into_iter()
        .map(|chunk| Ok(wrap(chunk)))
        .collect();
    Box::pin(tokio_stream::iter(messages))
}

#[cfg(test)]
mod tests {
    use berth_cri_api::v1 as cri;

    use super::*;

    fn container(i: usize) -> cri::Container {
        cri::Container {
            id: format!("{i:064}"),
            labels: [("app".to_string(), "x".repeat(200))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_item_is_in_exactly_one_bounded_chunk() {
        let items: Vec<_> = (0..5000).map(container).collect();
        let encoded = cri::ListContainersResponse {
            containers: items.clone(),
        }
        .encoded_len();
        assert!(encoded > CHUNK_BYTES, "the test needs more than one chunk");
        let chunks = chunks(items.clone(), CHUNK_BYTES);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            assert!(!chunk.is_empty());
            let message = cri::StreamContainersResponse {
                containers: chunk.clone(),
            };
            assert!(message.encoded_len() <= CHUNK_BYTES);
        }
        let flat: Vec<_> = chunks.into_iter().flatten().collect();
        assert_eq!(flat, items, "same items, same order, none twice");
    }

    #[test]
    fn nothing_makes_no_message_and_a_huge_item_goes_alone() {
        assert!(chunks(Vec::<cri::Container>::new(), CHUNK_BYTES).is_empty());
        let huge = cri::Container {
            id: "x".repeat(2 * CHUNK_BYTES),
            ..Default::default()
        };
        let chunks = chunks(vec![container(1), huge, container(2)], CHUNK_BYTES);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
