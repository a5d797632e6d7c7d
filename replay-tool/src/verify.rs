//! `verify`: integrity checks of the event log.
//!
//! This module checks what needs no hashes: sequences, positions, payloads, types, versions,
//! metadata and registrations. Hash chains and signed checkpoints are checked by the store's
//! [`LogVerifier`], whose hash and checkpoint findings are merged into the same report.

use std::collections::HashMap;

use cqrs_es::DomainEvent;
use opencity_domain::ticket::TICKET_EVENT_VERSION;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::TicketEvent;
use serde::Serialize;

use opencity_store::integrity::{Checkpoint, LogVerifier, VerifyingKey};
use opencity_store::{FindingKind as StoreFindingKind, StoredEvent};

use crate::source::{LogEvent, LogSource, SourceError};

/// Kind of a problem found in the log; the code is stable and printed with each finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingKind {
    /// A stream's sequence skips numbers.
    SequenceGap,
    /// A stream's sequence repeats or goes back in log order.
    SequenceOutOfOrder,
    /// A stream does not start at sequence 1.
    StreamStartMissing,
    /// A global position is missing on SQLite, where positions have no gaps unless rows were
    /// deleted.
    PositionGap,
    /// The stream type is not `ticket`.
    UnknownStreamType,
    /// The stream id is not a UUID.
    InvalidStreamId,
    /// The payload is not JSON or is not a known ticket event.
    UndecodablePayload,
    /// The stored event type differs from the payload's variant.
    EventTypeMismatch,
    /// The event version is not one this build reads.
    UnknownEventVersion,
    /// The metadata is not a JSON object of strings.
    InvalidMetadata,
    /// The `occurred_at` column differs from the payload's business time.
    OccurredAtMismatch,
    /// The first event of a stream is not its registration, or registers another ticket.
    InvalidRegistration,
    /// The stored hash does not match the event's stored fields.
    HashMismatch,
    /// The event's `prev_hash` is not the hash of the previous event of its stream.
    BrokenChain,
    /// The event has no hash.
    MissingHash,
    /// A checkpoint recorded a stream head the log no longer has.
    MissingHead,
    /// The log has a head at or before a checkpoint that the checkpoint did not record.
    UnrecordedHead,
    /// A checkpoint's signature does not verify with the expected key.
    BadSignature,
    /// A checkpoint's recorded heads do not give its signed digest or stream count.
    CheckpointDigestMismatch,
    /// A checkpoint number is missing.
    MissingCheckpoint,
}

impl FindingKind {
    /// Returns the Russian description of the kind.
    pub fn name_ru(self) -> &'static str {
        match self {
            FindingKind::SequenceGap => "пропуск в нумерации событий потока",
            FindingKind::SequenceOutOfOrder => "повтор или обратный порядок номеров в потоке",
            FindingKind::StreamStartMissing => "поток начинается не с события № 1",
            FindingKind::PositionGap => "пропуск глобальной позиции журнала",
            FindingKind::UnknownStreamType => "неизвестный тип потока",
            FindingKind::InvalidStreamId => "идентификатор потока не является UUID",
            FindingKind::UndecodablePayload => "содержимое события не читается",
            FindingKind::EventTypeMismatch => "тип события не совпадает с содержимым",
            FindingKind::UnknownEventVersion => "неизвестная версия события",
            FindingKind::InvalidMetadata => "некорректные метаданные события",
            FindingKind::OccurredAtMismatch => "время события не совпадает с содержимым",
            FindingKind::InvalidRegistration => "поток начинается не с регистрации этой заявки",
            FindingKind::HashMismatch => "хеш не совпадает с содержимым события: событие изменено",
            FindingKind::BrokenChain => {
                "цепочка хешей разорвана: prev_hash не равен хешу предыдущего события"
            }
            FindingKind::MissingHash => "у события нет хеша",
            FindingKind::MissingHead => "контрольная точка помнит событие, которого в журнале нет",
            FindingKind::UnrecordedHead => {
                "в журнале есть событие до контрольной точки, которого она не помнит"
            }
            FindingKind::BadSignature => "подпись контрольной точки не проходит проверку",
            FindingKind::CheckpointDigestMismatch => {
                "сводка контрольной точки не совпадает с её подписанными данными"
            }
            FindingKind::MissingCheckpoint => "пропущена контрольная точка",
        }
    }

    /// Maps the store's hash and checkpoint findings; the kinds this module checks itself
    /// (sequences, types, payloads) return `None`, so they are not reported twice.
    fn from_store(kind: StoreFindingKind) -> Option<FindingKind> {
        match kind {
            StoreFindingKind::HashMismatch => Some(FindingKind::HashMismatch),
            StoreFindingKind::BrokenChain => Some(FindingKind::BrokenChain),
            StoreFindingKind::MissingHash => Some(FindingKind::MissingHash),
            StoreFindingKind::MissingHead => Some(FindingKind::MissingHead),
            StoreFindingKind::UnrecordedHead => Some(FindingKind::UnrecordedHead),
            StoreFindingKind::BadSignature => Some(FindingKind::BadSignature),
            StoreFindingKind::CheckpointDigestMismatch => {
                Some(FindingKind::CheckpointDigestMismatch)
            }
            StoreFindingKind::MissingCheckpoint => Some(FindingKind::MissingCheckpoint),
            StoreFindingKind::SequenceGap
            | StoreFindingKind::UnknownEventType
            | StoreFindingKind::UndeserializablePayload => None,
        }
    }
}

/// One problem: where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub stream_type: String,
    pub stream_id: String,
    /// Sequence of the event; `None` for findings about a checkpoint as a whole.
    pub sequence: Option<i64>,
    /// Global position of the event or of the checkpoint.
    pub position: Option<i64>,
    /// Number of the checkpoint the finding comes from, if any.
    pub checkpoint_id: Option<i64>,
    /// Details, in Russian for this module's checks and in English for the store's.
    pub detail: String,
}

/// The result of `verify`.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: usize,
    pub findings: Vec<Finding>,
    /// Whether the events table has hash columns at all.
    pub hashes_present: bool,
    /// Signed checkpoints found in the database.
    pub checkpoints: usize,
    /// Whether checkpoint signatures were checked against a key the auditor gave.
    pub public_key_given: bool,
}

impl VerifyReport {
    /// Returns true when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Per-stream state while the log is scanned.
struct StreamState {
    last_sequence: i64,
}

/// Reads the whole log and checks every event, and with hash columns present also the hash
/// chains and the signed checkpoints, against `public_key` when given.
pub async fn verify(
    source: &LogSource,
    public_key: Option<VerifyingKey>,
) -> Result<VerifyReport, SourceError> {
    let checkpoints: Vec<Checkpoint> = if source.has_hashes() {
        source.checkpoints().await?
    } else {
        Vec::new()
    };
    let mut report = VerifyReport {
        hashes_present: source.has_hashes(),
        checkpoints: checkpoints.len(),
        public_key_given: public_key.is_some(),
        ..VerifyReport::default()
    };
    let mut chain = source
        .has_hashes()
        .then(|| LogVerifier::new(checkpoints, public_key));
    let mut streams: HashMap<(String, String), StreamState> = HashMap::new();
    let mut last_position = 0_i64;
    let check_positions = source.is_sqlite();

    source
        .scan(|event| {
            report.events += 1;
            if check_positions && event.position != last_position + 1 {
                let detail = format!(
                    "после позиции {last_position} идёт {}: пропущено {} поз.",
                    event.position,
                    event.position - last_position - 1
                );
                report
                    .findings
                    .push(finding(FindingKind::PositionGap, &event, detail));
            }
            last_position = event.position;

            let key = (event.stream_type.clone(), event.stream_id.clone());
            let previous = streams.get(&key).map(|state| state.last_sequence);
            check_sequence(&event, previous, &mut report.findings);
            let stored = streams
                .entry(key)
                .or_insert(StreamState { last_sequence: 0 });
            stored.last_sequence = stored.last_sequence.max(event.sequence);

            check_event(&event, previous.is_none(), &mut report.findings);
            if let Some(chain) = chain.as_mut() {
                chain.push(&stored_event(event));
            }
            true
        })
        .await?;

    if let Some(chain) = chain {
        for found in chain.finish() {
            let Some(kind) = FindingKind::from_store(found.kind) else {
                continue;
            };
            report.findings.push(Finding {
                kind,
                stream_type: found.stream_type,
                stream_id: found.stream_id,
                sequence: found.sequence,
                position: found.position,
                checkpoint_id: found.checkpoint_id,
                detail: found.detail,
            });
        }
    }

    report.streams = streams.len();
    Ok(report)
}

fn finding(kind: FindingKind, event: &LogEvent, detail: String) -> Finding {
    Finding {
        kind,
        stream_type: event.stream_type.clone(),
        stream_id: event.stream_id.clone(),
        sequence: Some(event.sequence),
        position: Some(event.position),
        checkpoint_id: None,
        detail,
    }
}

/// Converts a row to the store's event type, which the store's chain verifier reads.
fn stored_event(event: LogEvent) -> StoredEvent {
    StoredEvent {
        position: event.position,
        tx: event.tx,
        stream_type: event.stream_type,
        stream_id: event.stream_id,
        sequence: event.sequence,
        event_type: event.event_type,
        event_version: event.event_version,
        payload: event.payload.unwrap_or(serde_json::Value::Null).into(),
        metadata: event.metadata.unwrap_or(serde_json::Value::Null).into(),
        occurred_at: event.occurred_at,
        recorded_at: event.recorded_at,
        prev_hash: event.prev_hash,
        hash: event.hash,
        stored_payload: event.payload_text,
        stored_metadata: event.metadata_text,
    }
}

/// Checks that the stream's sequence continues `previous` (None for the stream's first event).
fn check_sequence(event: &LogEvent, previous: Option<i64>, findings: &mut Vec<Finding>) {
    match previous {
        None if event.sequence != 1 => {
            let detail = format!("первое событие потока имеет № {}", event.sequence);
            findings.push(finding(FindingKind::StreamStartMissing, event, detail));
        }
        None => {}
        Some(previous) if event.sequence <= previous => {
            let detail = format!("№ {} после № {previous}", event.sequence);
            findings.push(finding(FindingKind::SequenceOutOfOrder, event, detail));
        }
        Some(previous) if event.sequence > previous + 1 => {
            // The finding sits at the event found, so the detail names the missing numbers.
            let (first_missing, last_missing) = (previous + 1, event.sequence - 1);
            let missing = if first_missing == last_missing {
                format!("пропущен № {first_missing}")
            } else {
                format!("пропущены № {first_missing}–{last_missing}")
            };
            let detail = format!("после № {previous} идёт № {}: {missing}", event.sequence);
            findings.push(finding(FindingKind::SequenceGap, event, detail));
        }
        Some(_) => {}
    }
}

/// Checks the stream type and id, the payload, type, version, metadata and business time.
fn check_event(event: &LogEvent, first_in_stream: bool, findings: &mut Vec<Finding>) {
    if event.stream_type != TICKET_STREAM_TYPE {
        let detail = format!(
            "тип потока «{}», ожидался «{TICKET_STREAM_TYPE}»",
            event.stream_type
        );
        findings.push(finding(FindingKind::UnknownStreamType, event, detail));
        return;
    }
    let ticket_id = uuid::Uuid::parse_str(&event.stream_id).ok();
    if ticket_id.is_none() {
        let detail = format!("«{}»", event.stream_id);
        findings.push(finding(FindingKind::InvalidStreamId, event, detail));
    }

    if event.event_version != TICKET_EVENT_VERSION {
        let detail = format!(
            "версия «{}», эта сборка читает версию «{TICKET_EVENT_VERSION}»",
            event.event_version
        );
        findings.push(finding(FindingKind::UnknownEventVersion, event, detail));
    }
    check_metadata(event, findings);

    let decoded = match &event.payload {
        Err(error) => Err(format!("не JSON: {error}")),
        Ok(payload) => serde_json::from_value::<TicketEvent>(payload.clone())
            .map_err(|error| format!("не событие заявки: {error}")),
    };
    let ticket_event = match decoded {
        Ok(ticket_event) => ticket_event,
        Err(detail) => {
            findings.push(finding(FindingKind::UndecodablePayload, event, detail));
            return;
        }
    };

    let payload_type = ticket_event.event_type();
    if payload_type != event.event_type {
        let detail = format!(
            "в столбце «{}», в содержимом «{payload_type}»",
            event.event_type
        );
        findings.push(finding(FindingKind::EventTypeMismatch, event, detail));
    }
    let occurred_at = ticket_event.occurred_at();
    // The column keeps microseconds, rounded from the payload's time by the database, so they
    // agree when they are less than a microsecond apart.
    if (occurred_at - event.occurred_at).num_nanoseconds().is_none_or(|apart| apart.abs() >= 1_000) {
        let detail = format!(
            "в столбце {}, в содержимом {}",
            crate::source::format_time(event.occurred_at),
            crate::source::format_time(occurred_at)
        );
        findings.push(finding(FindingKind::OccurredAtMismatch, event, detail));
    }

    if first_in_stream {
        match &ticket_event {
            TicketEvent::TicketRegistered(registered)
                if Some(registered.ticket_id) == ticket_id => {}
            TicketEvent::TicketRegistered(registered) => {
                let detail = format!("регистрирует заявку {}", registered.ticket_id);
                findings.push(finding(FindingKind::InvalidRegistration, event, detail));
            }
            _ => {
                let detail = format!("первое событие — {payload_type}");
                findings.push(finding(FindingKind::InvalidRegistration, event, detail));
            }
        }
    }
}

fn check_metadata(event: &LogEvent, findings: &mut Vec<Finding>) {
    let problem = match &event.metadata {
        Err(error) => Some(format!("не JSON: {error}")),
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .find(|(_, value)| !value.is_string())
            .map(|(key, _)| format!("значение ключа «{key}» не строка")),
        Ok(_) => Some("не JSON-объект".to_string()),
    };
    if let Some(detail) = problem {
        findings.push(finding(FindingKind::InvalidMetadata, event, detail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(sequence: i64) -> LogEvent {
        LogEvent {
            position: 10 + sequence,
            tx: 0,
            stream_type: TICKET_STREAM_TYPE.to_string(),
            stream_id: "00000000-0000-0000-0000-000000000001".to_string(),
            sequence,
            event_type: "TicketCommented".to_string(),
            event_version: TICKET_EVENT_VERSION.to_string(),
            payload: Ok(serde_json::json!({})),
            metadata: Ok(serde_json::json!({})),
            payload_text: "{}".to_string(),
            metadata_text: "{}".to_string(),
            occurred_at: Utc::now(),
            recorded_at: Utc::now(),
            prev_hash: None,
            hash: None,
        }
    }

    fn kinds(sequence: i64, previous: Option<i64>) -> Vec<FindingKind> {
        let mut findings = Vec::new();
        check_sequence(&event(sequence), previous, &mut findings);
        findings.into_iter().map(|finding| finding.kind).collect()
    }

    #[test]
    fn check_sequence_cases() {
        assert_eq!(kinds(1, None), vec![]);
        assert_eq!(kinds(2, None), vec![FindingKind::StreamStartMissing]);
        assert_eq!(kinds(4, Some(3)), vec![]);
        assert_eq!(kinds(6, Some(3)), vec![FindingKind::SequenceGap]);
        assert_eq!(kinds(3, Some(3)), vec![FindingKind::SequenceOutOfOrder]);
        assert_eq!(kinds(2, Some(3)), vec![FindingKind::SequenceOutOfOrder]);
    }

    #[test]
    fn check_sequence_names_missing_numbers() {
        let mut findings = Vec::new();
        check_sequence(&event(4), Some(2), &mut findings);
        check_sequence(&event(7), Some(3), &mut findings);
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].sequence, Some(4));
        assert_eq!(findings[0].detail, "после № 2 идёт № 4: пропущен № 3");
        assert_eq!(findings[1].detail, "после № 3 идёт № 7: пропущены № 4–6");
    }

    /// Checks a comment whose payload time is `payload_at` and whose column time is `column_at`.
    fn timed_comment(payload_at: &str, column_at: &str) -> Vec<FindingKind> {
        let mut comment = event(2);
        let payload = serde_json::json!({ "TicketCommented": { "author": "a", "text": "t", "occurred_at": payload_at } });
        comment.payload_text = payload.to_string();
        comment.payload = Ok(payload);
        comment.occurred_at = column_at.parse().expect("column time");
        let mut findings = Vec::new();
        check_event(&comment, false, &mut findings);
        findings.into_iter().map(|finding| finding.kind).collect()
    }

    #[test]
    fn business_time_column_may_round_to_the_microsecond() {
        // The databases round nanoseconds to microseconds, also upwards.
        assert_eq!(timed_comment("2026-12-05T07:48:28.382693750Z", "2026-12-05T07:48:28.382694Z"), vec![]);
        assert_eq!(timed_comment("2026-12-05T07:48:28.382693250Z", "2026-12-05T07:48:28.382693Z"), vec![]);
        assert_eq!(
            timed_comment("2026-12-05T07:48:28.382693Z", "2026-12-05T07:48:28.382695Z"),
            vec![FindingKind::OccurredAtMismatch]
        );
    }

    #[test]
    fn check_metadata_requires_string_values() {
        let mut findings = Vec::new();
        let mut valid = event(1);
        valid.metadata = Ok(serde_json::json!({ "actor": "operator-7" }));
        check_metadata(&valid, &mut findings);
        assert!(findings.is_empty());

        let mut numeric = event(1);
        numeric.metadata = Ok(serde_json::json!({ "actor": 7 }));
        check_metadata(&numeric, &mut findings);
        let mut list = event(1);
        list.metadata = Ok(serde_json::json!(["actor"]));
        check_metadata(&list, &mut findings);
        assert_eq!(findings.len(), 2);
        assert!(findings
            .iter()
            .all(|finding| finding.kind == FindingKind::InvalidMetadata));
    }
}
