//! [`verify_log`]: checks the hash chains of a log and its signed checkpoints.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use serde::Serialize;

use super::{canonical_event_hash, head_map_digest, Checkpoint, EventHashInput, HeadMap};
use crate::model::{LogCheckpoint, StoredEvent};

/// The kind of problem found in the log or a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FindingKind {
    /// The stored hash does not match the event's stored fields: the event was changed.
    HashMismatch,
    /// The event's `prev_hash` is not the hash of the previous event of its stream.
    BrokenChain,
    /// Sequences of a stream are missing or out of order; `sequence` is the one expected.
    SequenceGap,
    /// The event has no hash: written before hashes existed, or the hash was removed.
    MissingHash,
    /// A checkpoint recorded a head of the stream that the log no longer has at that point:
    /// its last event was deleted, or the head's hash differs. `sequence` is the recorded head.
    MissingHead,
    /// The log has, at or before a checkpoint, a head the checkpoint did not record: a stream
    /// or events inserted behind it. `sequence` is the log's head.
    UnrecordedHead,
    /// The checkpoint's signature does not verify with the expected key.
    BadSignature,
    /// The checkpoint's recorded heads do not give its signed digest or stream count.
    CheckpointDigestMismatch,
    /// A checkpoint number is missing between two stored checkpoints.
    MissingCheckpoint,
    /// The event type or stream type is not one this version recognizes.
    UnknownEventType,
    /// The payload does not decode as an event of its type.
    UndeserializablePayload,
}

impl FindingKind {
    /// Returns the stable code of the kind.
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::HashMismatch => "HASH_MISMATCH",
            FindingKind::BrokenChain => "BROKEN_CHAIN",
            FindingKind::SequenceGap => "SEQUENCE_GAP",
            FindingKind::MissingHash => "MISSING_HASH",
            FindingKind::MissingHead => "MISSING_HEAD",
            FindingKind::UnrecordedHead => "UNRECORDED_HEAD",
            FindingKind::BadSignature => "BAD_SIGNATURE",
            FindingKind::CheckpointDigestMismatch => "CHECKPOINT_DIGEST_MISMATCH",
            FindingKind::MissingCheckpoint => "MISSING_CHECKPOINT",
            FindingKind::UnknownEventType => "UNKNOWN_EVENT_TYPE",
            FindingKind::UndeserializablePayload => "UNDESERIALIZABLE_PAYLOAD",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One problem found by [`verify_log`]. Findings about a checkpoint as a whole have empty
/// stream fields and name the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub stream_type: String,
    pub stream_id: String,
    pub sequence: Option<i64>,
    /// Global position of the event, or of the checkpoint.
    pub position: Option<i64>,
    /// Number of the checkpoint the finding comes from, if any.
    pub checkpoint_id: Option<i64>,
    pub kind: FindingKind,
    /// English explanation for logs and reports.
    pub detail: String,
}

/// Checks a log read in log order (as [`Store::read_log`](crate::Store::read_log) returns it)
/// against the checkpoints, and returns what is wrong; an intact log gives no findings.
///
/// `public_key` is the key the operator published. Without it each checkpoint is checked with
/// the key it names. That proves only that no one without that key altered the checkpoint.
pub fn verify_log(
    events: impl IntoIterator<Item = StoredEvent>,
    checkpoints: &[Checkpoint],
    public_key: Option<&VerifyingKey>,
) -> Vec<Finding> {
    let mut verifier = LogVerifier::new(checkpoints.to_vec(), public_key.copied());
    for event in events {
        verifier.push(&event);
    }
    verifier.finish()
}

/// The state of [`verify_log`], for callers that read the log in pages: [`push`](Self::push)
/// each event in log order, then [`finish`](Self::finish). Memory grows with the number of
/// streams, not events.
#[derive(Debug)]
pub struct LogVerifier {
    /// Checkpoints not yet reached, in log order, the next one last.
    pending: Vec<Checkpoint>,
    public_key: Option<VerifyingKey>,
    /// Heads of the streams in the log read so far.
    log_heads: HeadMap,
    /// Heads the checkpoints recorded, folded up to the last checkpoint reached.
    recorded_heads: HeadMap,
    last_checkpoint_id: Option<i64>,
    findings: Vec<Finding>,
}

impl LogVerifier {
    pub fn new(mut checkpoints: Vec<Checkpoint>, public_key: Option<VerifyingKey>) -> Self {
        checkpoints.sort_by_key(|checkpoint| {
            std::cmp::Reverse((checkpoint.tx, checkpoint.position, checkpoint.id))
        });
        LogVerifier {
            pending: checkpoints,
            public_key,
            log_heads: HeadMap::new(),
            recorded_heads: HeadMap::new(),
            last_checkpoint_id: None,
            findings: Vec::new(),
        }
    }

    /// Checks the next event of the log.
    pub fn push(&mut self, event: &StoredEvent) {
        self.pass_checkpoints_before(Some(event.checkpoint()));
        self.check_payload(event);

        let key = (event.stream_type.clone(), event.stream_id.clone());
        let previous = self.log_heads.get(&key).cloned();
        let expected_sequence = previous.as_ref().map_or(1, |(sequence, _)| sequence + 1);
        if event.sequence != expected_sequence {
            self.findings.push(event_finding(
                event,
                expected_sequence,
                FindingKind::SequenceGap,
                format!(
                    "expected sequence {expected_sequence}, found {} at position {}",
                    event.sequence, event.position
                ),
            ));
        }

        // The hash the event's prev_hash must equal, when the previous event is known.
        let chain_prev = if event.sequence == 1 {
            Some(String::new())
        } else {
            previous
                .as_ref()
                .filter(|(sequence, _)| *sequence == event.sequence - 1)
                .map(|(_, hash)| hash.clone())
        };

        let own_hash = match &event.hash {
            None => {
                self.findings.push(event_finding(
                    event,
                    event.sequence,
                    FindingKind::MissingHash,
                    "the event has no stored hash".to_string(),
                ));
                String::new()
            }
            Some(stored) => {
                let prev_hash = event.prev_hash.as_deref().unwrap_or("");
                let computed = canonical_event_hash(&EventHashInput::of_stored(event, prev_hash));
                if &computed != stored {
                    self.findings.push(event_finding(
                        event,
                        event.sequence,
                        FindingKind::HashMismatch,
                        format!("stored hash {stored}, computed {computed}"),
                    ));
                }
                if let Some(chain_prev) = chain_prev {
                    if prev_hash != chain_prev {
                        self.findings.push(event_finding(
                            event,
                            event.sequence,
                            FindingKind::BrokenChain,
                            format!(
                                "prev_hash {prev_hash:?} differs from the previous event's hash {chain_prev:?}"
                            ),
                        ));
                    }
                }
                stored.clone()
            }
        };

        let keeps_head = previous
            .as_ref()
            .is_some_and(|(sequence, _)| *sequence > event.sequence);
        if !keeps_head {
            self.log_heads.insert(key, (event.sequence, own_hash));
        }
    }

    /// Checks the checkpoints after the last event and returns all findings.
    pub fn finish(mut self) -> Vec<Finding> {
        self.pass_checkpoints_before(None);
        self.findings
    }

    /// Evaluates every pending checkpoint before `place`, or all of them for `None`.
    fn pass_checkpoints_before(&mut self, place: Option<LogCheckpoint>) {
        while let Some(next) = self.pending.last() {
            let at = LogCheckpoint {
                tx: next.tx,
                position: next.position,
            };
            if place.is_some_and(|place| at >= place) {
                return;
            }
            if let Some(checkpoint) = self.pending.pop() {
                self.check_checkpoint(&checkpoint);
            }
        }
    }

    fn check_checkpoint(&mut self, checkpoint: &Checkpoint) {
        let expected_id = self.last_checkpoint_id.map_or(1, |id| id + 1);
        if checkpoint.id != expected_id {
            self.findings.push(checkpoint_finding(
                checkpoint,
                FindingKind::MissingCheckpoint,
                format!("expected checkpoint {expected_id}, found {}", checkpoint.id),
            ));
        }
        self.last_checkpoint_id = Some(checkpoint.id);

        if let Err(reason) = checkpoint.verify_signature(self.public_key.as_ref()) {
            self.findings.push(checkpoint_finding(
                checkpoint,
                FindingKind::BadSignature,
                reason,
            ));
        }

        for head in &checkpoint.changed_heads {
            self.recorded_heads.insert(
                (head.stream_type.clone(), head.stream_id.clone()),
                (head.sequence, head.hash.clone()),
            );
        }
        let recorded_digest = head_map_digest(&self.recorded_heads);
        let recorded_count = i64::try_from(self.recorded_heads.len()).unwrap_or(i64::MAX);
        if recorded_digest != checkpoint.heads_digest || recorded_count != checkpoint.stream_count {
            self.findings.push(checkpoint_finding(
                checkpoint,
                FindingKind::CheckpointDigestMismatch,
                format!(
                    "recorded heads give {recorded_count} streams and digest {recorded_digest}, \
                     the signed message says {} and {}",
                    checkpoint.stream_count, checkpoint.heads_digest
                ),
            ));
        }

        if head_map_digest(&self.log_heads) == checkpoint.heads_digest {
            return;
        }
        let before = self.findings.len();
        self.name_differing_heads(checkpoint);
        if self.findings.len() == before {
            self.findings.push(checkpoint_finding(
                checkpoint,
                FindingKind::CheckpointDigestMismatch,
                "the heads of the log at this checkpoint do not give its digest".to_string(),
            ));
        }
    }

    /// Reports each stream whose head in the log differs from the recorded one.
    fn name_differing_heads(&mut self, checkpoint: &Checkpoint) {
        let mut findings = Vec::new();
        for ((stream_type, stream_id), (sequence, hash)) in &self.recorded_heads {
            let key = (stream_type.clone(), stream_id.clone());
            let (kind, at_sequence, detail) = match self.log_heads.get(&key) {
                None => (
                    FindingKind::MissingHead,
                    *sequence,
                    format!("the checkpoint recorded head {sequence}, the log has no events"),
                ),
                Some((log_sequence, _)) if log_sequence < sequence => (
                    FindingKind::MissingHead,
                    *sequence,
                    format!(
                        "the checkpoint recorded head {sequence}, the log ends at {log_sequence}"
                    ),
                ),
                Some((log_sequence, log_hash)) if log_sequence == sequence && log_hash != hash => (
                    FindingKind::MissingHead,
                    *sequence,
                    format!("the checkpoint recorded head hash {hash}, the log has {log_hash}"),
                ),
                Some((log_sequence, _)) if log_sequence > sequence => (
                    FindingKind::UnrecordedHead,
                    *log_sequence,
                    format!("the checkpoint recorded head {sequence}, the log has {log_sequence}"),
                ),
                Some(_) => continue,
            };
            findings.push(Finding {
                stream_type: stream_type.clone(),
                stream_id: stream_id.clone(),
                sequence: Some(at_sequence),
                position: None,
                checkpoint_id: Some(checkpoint.id),
                kind,
                detail,
            });
        }
        for ((stream_type, stream_id), (sequence, _)) in &self.log_heads {
            if !self
                .recorded_heads
                .contains_key(&(stream_type.clone(), stream_id.clone()))
            {
                findings.push(Finding {
                    stream_type: stream_type.clone(),
                    stream_id: stream_id.clone(),
                    sequence: Some(*sequence),
                    position: None,
                    checkpoint_id: Some(checkpoint.id),
                    kind: FindingKind::UnrecordedHead,
                    detail: "the checkpoint recorded no events of this stream".to_string(),
                });
            }
        }
        self.findings.extend(findings);
    }

    fn check_payload(&mut self, event: &StoredEvent) {
        if event.stream_type != TICKET_STREAM_TYPE {
            self.findings.push(event_finding(
                event,
                event.sequence,
                FindingKind::UnknownEventType,
                format!("unknown stream type {:?}", event.stream_type),
            ));
            return;
        }
        match event.ticket_event() {
            Ok(decoded) => {
                let decoded_type = cqrs_es::DomainEvent::event_type(&decoded);
                if decoded_type != event.event_type {
                    self.findings.push(event_finding(
                        event,
                        event.sequence,
                        FindingKind::UnknownEventType,
                        format!(
                            "event type {:?} differs from the payload's {decoded_type:?}",
                            event.event_type
                        ),
                    ));
                }
            }
            Err(error) => {
                let kind = if error.to_string().contains("unknown variant") {
                    FindingKind::UnknownEventType
                } else {
                    FindingKind::UndeserializablePayload
                };
                self.findings.push(event_finding(
                    event,
                    event.sequence,
                    kind,
                    error.to_string(),
                ));
            }
        }
    }
}

fn event_finding(event: &StoredEvent, sequence: i64, kind: FindingKind, detail: String) -> Finding {
    Finding {
        stream_type: event.stream_type.clone(),
        stream_id: event.stream_id.clone(),
        sequence: Some(sequence),
        position: Some(event.position),
        checkpoint_id: None,
        kind,
        detail,
    }
}

fn checkpoint_finding(checkpoint: &Checkpoint, kind: FindingKind, detail: String) -> Finding {
    Finding {
        stream_type: String::new(),
        stream_id: String::new(),
        sequence: None,
        position: Some(checkpoint.position),
        checkpoint_id: Some(checkpoint.id),
        kind,
        detail,
    }
}
