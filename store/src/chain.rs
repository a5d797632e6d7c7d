//! Events made ready for the log: the stored texts, the business and recording times, and the
//! link into the stream's hash chain (docs/log-format.md). Both backends write what
//! [`chain_events`] returns, so the writer computes every hash and the database only stores it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use opencity_domain::Ticket;
use serde_json::Value;

use crate::integrity::{canonical_event_hash, EventHashInput};

/// An event ready to chain: its columns, with the payload and metadata as the JSON text that
/// the log stores and the hash covers.
pub(crate) struct EventText {
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) sequence: usize,
    pub(crate) event_type: String,
    pub(crate) event_version: String,
    pub(crate) payload: String,
    pub(crate) metadata: String,
    /// The payload's `occurred_at`, to the microsecond, or `None` when the payload has none.
    pub(crate) occurred_at: Option<DateTime<Utc>>,
}

impl EventText {
    /// Writes the JSON text of an event that cqrs-es serialized to a `serde_json::Value`.
    pub(crate) fn from_serialized(event: &SerializedEvent) -> EventText {
        EventText {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload: event.payload.to_string(),
            metadata: event.metadata.to_string(),
            occurred_at: occurred_at(&event.payload),
        }
    }

    /// Serializes a ticket event straight to text, without building a `serde_json::Value` first.
    /// The metadata keys are written in sorted order, as a `Value` writes them.
    pub(crate) fn from_envelope(envelope: &EventEnvelope<Ticket>) -> Result<EventText, PersistenceError> {
        let metadata: BTreeMap<&String, &String> = envelope.metadata.iter().collect();
        Ok(EventText {
            aggregate_type: Ticket::TYPE.to_string(),
            aggregate_id: envelope.aggregate_id.clone(),
            sequence: envelope.sequence,
            event_type: envelope.payload.event_type(),
            event_version: envelope.payload.event_version(),
            payload: serde_json::to_string(&envelope.payload)?,
            metadata: serde_json::to_string(&metadata)?,
            occurred_at: Some(envelope.payload.occurred_at().trunc_subsecs(6)),
        })
    }
}

/// One event as it is stored, with its hash.
pub(crate) struct ChainedEvent {
    /// The event's columns and texts. The hash covers exactly these texts.
    pub(crate) event: EventText,
    pub(crate) sequence: i64,
    /// The payload's `occurred_at`, to the microsecond.
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// Chains `events`, in order, to the last stored hash of each stream. `stored_head` returns
/// that hash for a stream (type, id) whose first event in `events` follows stored ones: the hash
/// of the stored event just before it, or an empty string for one stored before hashes existed.
/// It is called only for such first events; later events chain to the event before them.
/// `recorded_at` is the writer's clock, to the microsecond.
pub(crate) fn chain_events(
    events: Vec<EventText>,
    mut stored_head: impl FnMut(&str, &str) -> String,
) -> Result<Vec<ChainedEvent>, PersistenceError> {
    let recorded_at = Utc::now().trunc_subsecs(6);
    // The links are computed while the events are borrowed, so the streams' last hashes are
    // keyed by borrowed ids, and the events move into the result afterwards.
    let mut links: Vec<(i64, DateTime<Utc>, String, String)> = Vec::with_capacity(events.len());
    let mut last_hashes: HashMap<(&str, &str), (i64, String)> = HashMap::new();
    for event in &events {
        let sequence = i64::try_from(event.sequence).map_err(|_| {
            PersistenceError::UnknownError(format!("sequence {} is out of range", event.sequence).into())
        })?;
        let occurred_at = event.occurred_at.ok_or_else(|| {
            PersistenceError::UnknownError(
                format!(
                    "event {} of stream {}/{} at sequence {} has no occurred_at in its payload",
                    event.event_type, event.aggregate_type, event.aggregate_id, event.sequence
                )
                .into(),
            )
        })?;
        let key = (event.aggregate_type.as_str(), event.aggregate_id.as_str());
        let prev_hash = match last_hashes.get(&key) {
            Some((last, hash)) if *last == sequence - 1 => hash.clone(),
            _ if sequence <= 1 => String::new(),
            _ => stored_head(key.0, key.1),
        };
        let hash = canonical_event_hash(&EventHashInput {
            stream_type: &event.aggregate_type,
            stream_id: &event.aggregate_id,
            sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            occurred_at,
            recorded_at,
            prev_hash: &prev_hash,
            payload: &event.payload,
            metadata: &event.metadata,
        });
        last_hashes.insert(key, (sequence, hash.clone()));
        links.push((sequence, occurred_at, prev_hash, hash));
    }

    let chained = events
        .into_iter()
        .zip(links)
        .map(|(event, (sequence, occurred_at, prev_hash, hash))| ChainedEvent {
            event,
            sequence,
            occurred_at,
            recorded_at,
            prev_hash,
            hash,
        })
        .collect();
    Ok(chained)
}

/// Returns the streams whose first event in `events` follows events stored earlier, each with
/// the sequence of the last stored one: the heads that [`chain_events`] needs.
pub(crate) fn stored_heads_needed(events: &[SerializedEvent]) -> Vec<(String, String, i64)> {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    events
        .iter()
        .filter(|event| seen.insert((event.aggregate_type.as_str(), event.aggregate_id.as_str())))
        .filter(|event| event.sequence > 1)
        .map(|event| {
            let previous = i64::try_from(event.sequence - 1).unwrap_or(i64::MAX);
            (event.aggregate_type.clone(), event.aggregate_id.clone(), previous)
        })
        .collect()
}

/// Reads the business time from a payload shaped `{"Variant": {..., "occurred_at": "..."}}`,
/// with the part below a microsecond dropped, as the log stores it.
pub(crate) fn occurred_at(payload: &Value) -> Option<DateTime<Utc>> {
    let (_, body) = payload.as_object()?.iter().next()?;
    let text = body.get("occurred_at")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc).trunc_subsecs(6))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(stream: &str, sequence: usize, occurred_at: &str) -> SerializedEvent {
        SerializedEvent {
            aggregate_id: stream.to_string(),
            sequence,
            aggregate_type: "ticket".to_string(),
            event_type: "Commented".to_string(),
            event_version: "1".to_string(),
            payload: json!({"Commented": {"occurred_at": occurred_at, "text": "течёт кран"}}),
            metadata: json!({"actor": "dispatcher"}),
        }
    }

    /// Stream `a` from its first event, stream `b` after three stored ones, interleaved.
    fn two_streams() -> [SerializedEvent; 4] {
        [
            event("a", 1, "2026-03-01T09:00:00Z"),
            event("b", 4, "2026-03-01T09:01:00Z"),
            event("a", 2, "2026-03-01T09:02:00Z"),
            event("b", 5, "2026-03-01T09:03:00Z"),
        ]
    }

    #[test]
    fn occurred_at_reads_inner_field() {
        let at = occurred_at(&json!({"Registered": {"occurred_at": "2026-03-01T09:30:00.123456789+03:00"}}));
        assert_eq!(at.unwrap().to_rfc3339(), "2026-03-01T06:30:00.123456+00:00");
    }

    #[test]
    fn occurred_at_missing_is_none() {
        assert!(occurred_at(&json!({"Registered": {"channel": "phone"}})).is_none());
        assert!(occurred_at(&json!("Registered")).is_none());
        assert!(occurred_at(&json!({"Registered": {"occurred_at": "yesterday"}})).is_none());
    }

    #[test]
    fn chain_links_events_and_stored_heads() {
        let events = two_streams();
        let mut requested = Vec::new();
        let texts = events.iter().map(EventText::from_serialized).collect();
        let chained = chain_events(texts, |_, stream| {
            requested.push(stream.to_string());
            format!("head-of-{stream}")
        })
        .unwrap();

        assert_eq!(requested, ["b"], "only a stream that continues stored events needs its head");
        assert_eq!(chained[0].prev_hash, "");
        assert_eq!(chained[1].prev_hash, "head-of-b");
        assert_eq!(chained[2].prev_hash, chained[0].hash);
        assert_eq!(chained[3].prev_hash, chained[1].hash);
        for chained_event in &chained {
            let input = EventHashInput {
                stream_type: "ticket",
                stream_id: &chained_event.event.aggregate_id,
                sequence: chained_event.sequence,
                event_type: "Commented",
                event_version: "1",
                occurred_at: chained_event.occurred_at,
                recorded_at: chained_event.recorded_at,
                prev_hash: &chained_event.prev_hash,
                payload: &chained_event.event.payload,
                metadata: &chained_event.event.metadata,
            };
            assert_eq!(chained_event.hash, canonical_event_hash(&input));
            assert_eq!(chained_event.recorded_at, chained_event.recorded_at.trunc_subsecs(6));
        }
    }

    #[test]
    fn stored_heads_needed_only_for_continued_streams() {
        let events = two_streams();
        assert_eq!(stored_heads_needed(&events), [("ticket".to_string(), "b".to_string(), 3)]);
    }

    #[test]
    fn chain_refuses_event_without_business_time() {
        let mut broken = event("a", 1, "2026-03-01T09:00:00Z");
        broken.payload = json!({"Commented": {"text": "без времени"}});
        let error = chain_events(vec![EventText::from_serialized(&broken)], |_, _| String::new()).err().unwrap();
        assert!(error.to_string().contains("has no occurred_at"), "{error}");
    }
}
