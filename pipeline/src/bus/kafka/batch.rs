//! Building a poll's deliveries without three allocations per record: keys and
//! payloads are copied into one buffer per batch that the deliveries share as
//! slices, and topic names are interned once per subscription.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use rdkafka::message::Message;

use crate::bus::{Delivery, Position};

/// Bytes reserved for a batch before its first record, and the most a size
/// estimate may reserve up front (larger batches grow as they fill).
const MIN_RESERVE: usize = 16 * 1024;
const MAX_RESERVE: usize = 4 * 1024 * 1024;

/// The topic names a subscription has seen, shared by its deliveries.
#[derive(Default)]
pub(super) struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(known) = self.0.iter().find(|known| ***known == *topic) {
            return Arc::clone(known);
        }
        let name: Arc<str> = Arc::from(topic);
        self.0.push(Arc::clone(&name));
        name
    }
}

/// Where one record's key and payload sit in the batch buffer.
struct Span {
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

/// The records of one poll while it fills. Deliveries are built in place with
/// empty bytes; [`BatchBuilder::finish`] points them into the frozen buffer.
pub(super) struct BatchBuilder {
    bytes: Vec<u8>,
    deliveries: Vec<Delivery>,
    spans: Vec<Span>,
    max: usize,
}

impl BatchBuilder {
    pub(super) fn new(max: usize) -> Self {
        let capacity = max.min(4096);
        Self {
            bytes: Vec::new(),
            deliveries: Vec::with_capacity(capacity),
            spans: Vec::with_capacity(capacity),
            max,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.deliveries.len()
    }

    /// Copies `message` in; the message can be released right after.
    pub(super) fn push(&mut self, message: &impl Message, topics: &mut TopicNames) {
        let key = message.key();
        let payload = message.payload().unwrap_or_default();
        if self.bytes.capacity() == 0 {
            let per_record = key.map_or(0, <[u8]>::len) + payload.len();
            let estimate = per_record.saturating_mul(self.max);
            self.bytes.reserve(estimate.clamp(MIN_RESERVE, MAX_RESERVE));
        }
        let key = key.map(|key| self.append(key));
        let payload = self.append(payload);
        self.spans.push(Span { key, payload });
        self.deliveries.push(Delivery {
            topic: topics.intern(message.topic()),
            partition: message.partition(),
            position: Position::Offset(message.offset()),
            key: None,
            payload: Bytes::new(),
            timestamp_ms: message.timestamp().to_millis(),
        });
    }

    fn append(&mut self, data: &[u8]) -> Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        start..self.bytes.len()
    }

    /// The deliveries, in the order their records were pushed.
    pub(super) fn finish(mut self) -> Vec<Delivery> {
        let shared = Bytes::from(self.bytes);
        for (delivery, span) in self.deliveries.iter_mut().zip(self.spans) {
            delivery.key = span.key.map(|key| shared.slice(key));
            delivery.payload = shared.slice(span.payload);
        }
        self.deliveries
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;

    #[test]
    fn interned_topics_share_one_allocation() {
        let mut topics = TopicNames::default();
        let first = topics.intern("matches");
        let again = topics.intern("matches");
        let other = topics.intern("jobs");
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(&*other, "jobs");
    }

    fn message(topic: &str, offset: i64, key: Option<&[u8]>, payload: &[u8]) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.to_vec()),
            key.map(<[u8]>::to_vec),
            topic.to_string(),
            Timestamp::CreateTime(1_700_000_000_000 + offset),
            offset as i32 % 2,
            offset,
            None,
        )
    }

    #[test]
    fn deliveries_keep_each_records_own_bytes_in_order() {
        let mut topics = TopicNames::default();
        let mut batch = BatchBuilder::new(3);
        batch.push(&message("matches", 7, Some(b"k7"), b"first"), &mut topics);
        batch.push(&message("matches", 8, None, b""), &mut topics);
        batch.push(&message("players", 9, Some(b""), b"third"), &mut topics);
        assert_eq!(batch.len(), 3);

        let deliveries = batch.finish();
        let seen: Vec<_> = deliveries
            .iter()
            .map(|d| {
                (
                    &*d.topic,
                    d.partition,
                    d.offset(),
                    d.key.as_deref(),
                    &d.payload[..],
                    d.timestamp_ms,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "matches",
                    1,
                    Some(7),
                    Some(&b"k7"[..]),
                    &b"first"[..],
                    Some(1_700_000_000_007)
                ),
                (
                    "matches",
                    0,
                    Some(8),
                    None,
                    &b""[..],
                    Some(1_700_000_000_008)
                ),
                (
                    "players",
                    1,
                    Some(9),
                    Some(&b""[..]),
                    &b"third"[..],
                    Some(1_700_000_000_009)
                ),
            ]
        );
    }
}
