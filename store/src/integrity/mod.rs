//! Tamper evidence for the event log: a per-stream hash chain over a canonical encoding of
//! every stored event, and Ed25519-signed checkpoints over the heads of all streams.
//!
//! The formats are specified in `docs/log-format.md`, so that an auditor can check a log
//! without this code. [`verify_log`] checks a log read in log order against the checkpoints.
//!
//! # Layout
//! - this file: the canonical event encoding and hash, checkpoints and their messages;
//! - `storage.rs`: creating and listing checkpoints on both backends;
//! - `verify.rs`: [`verify_log`] and its [`Finding`]s.

mod storage;
mod verify;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, Verifier};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use storage::{generate_key_files, public_key_path, read_signing_key, KeyFileError};
pub use verify::{verify_log, Finding, FindingKind, LogVerifier};

/// First field of every encoded event; names the encoding version.
pub const EVENT_HASH_DOMAIN: &str = "opencity-event-v1";

/// First line of every checkpoint message; names the message version.
pub const CHECKPOINT_DOMAIN: &str = "opencity-checkpoint-v1";

/// The stored fields of one event that its hash covers, as text exactly as stored.
#[derive(Clone, Copy, Debug)]
pub struct EventHashInput<'a> {
    pub stream_type: &'a str,
    pub stream_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Hash of the previous event of the stream; empty for the first event.
    pub prev_hash: &'a str,
    /// The payload's JSON text as stored.
    pub payload: &'a str,
    /// The metadata's JSON text as stored.
    pub metadata: &'a str,
}

impl<'a> EventHashInput<'a> {
    /// Returns the hashed fields of a stored event, chained to `prev_hash`.
    pub fn of_stored(event: &'a crate::model::StoredEvent, prev_hash: &'a str) -> EventHashInput<'a> {
        EventHashInput {
            stream_type: &event.stream_type,
            stream_id: &event.stream_id,
            sequence: event.sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            occurred_at: event.occurred_at,
            recorded_at: event.recorded_at,
            prev_hash,
            payload: &event.stored_payload,
            metadata: &event.stored_metadata,
        }
    }
}

/// Returns the lowercase hex SHA-256 of the canonical v1 encoding of an event: for each field,
/// `<byte length>:<value>\n`.
pub fn canonical_event_hash(input: &EventHashInput<'_>) -> String {
    let sequence = input.sequence.to_string();
    let occurred_at = format_timestamp(input.occurred_at);
    let recorded_at = format_timestamp(input.recorded_at);
    let fields: [&str; 11] = [
        EVENT_HASH_DOMAIN,
        input.stream_type,
        input.stream_id,
        &sequence,
        input.event_type,
        input.event_version,
        &occurred_at,
        &recorded_at,
        input.prev_hash,
        input.payload,
        input.metadata,
    ];

    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update(field.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(field.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Formats a timestamp as the encodings use it: `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, with
/// the sub-microsecond part dropped.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format_with_items(TIMESTAMP_FORMAT.iter()).to_string()
}

/// The format of [`format_timestamp`], parsed once because every event hash formats two
/// timestamps.
static TIMESTAMP_FORMAT: LazyLock<Vec<Item<'static>>> =
    LazyLock::new(|| StrftimeItems::new("%Y-%m-%dT%H:%M:%S%.6fZ").collect());

/// The last event of one stream at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamHead {
    pub stream_type: String,
    pub stream_id: String,
    pub sequence: i64,
    /// Hash of the event; empty for an event stored before hashes existed.
    pub hash: String,
}

/// Returns the lowercase hex SHA-256 over the sorted lines
/// `<stream_type>\t<stream_id>\t<sequence>\t<hash>\n` of the heads of all streams.
pub fn heads_digest<'a>(heads: impl IntoIterator<Item = &'a StreamHead>) -> String {
    let mut lines: Vec<String> = heads
        .into_iter()
        .map(|head| {
            format!(
                "{}\t{}\t{}\t{}\n",
                head.stream_type, head.stream_id, head.sequence, head.hash
            )
        })
        .collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for line in &lines {
        hasher.update(line.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Heads of all streams keyed by `(stream_type, stream_id)`.
pub type HeadMap = BTreeMap<(String, String), (i64, String)>;

/// Returns the digest of a head map, see [`heads_digest`].
pub fn head_map_digest(heads: &HeadMap) -> String {
    let heads: Vec<StreamHead> = heads
        .iter()
        .map(|((stream_type, stream_id), (sequence, hash))| StreamHead {
            stream_type: stream_type.clone(),
            stream_id: stream_id.clone(),
            sequence: *sequence,
            hash: hash.clone(),
        })
        .collect();
    heads_digest(&heads)
}

/// A signed statement of the heads of all streams at a place in the global log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Number of the checkpoint, from 1, increasing by one.
    pub id: i64,
    /// Global position of the last event the checkpoint covers; 0 for an empty log.
    pub position: i64,
    /// Transaction of that event on PostgreSQL (`xid8`), 0 on SQLite. The checkpoint covers
    /// the events at or before `(tx, position)` in log order.
    pub tx: i64,
    /// When the checkpoint was made, to the microsecond.
    pub created_at: DateTime<Utc>,
    /// Number of streams with at least one covered event.
    pub stream_count: i64,
    /// [`heads_digest`] of the heads of all streams at the checkpoint.
    pub heads_digest: String,
    /// Ed25519 signature of [`Checkpoint::message`], lowercase hex.
    pub signature: String,
    /// The signer's Ed25519 public key, lowercase hex of its 32 bytes.
    pub public_key: String,
    /// Heads of the streams with events after the previous checkpoint; folding these over all
    /// checkpoints in order gives every head at each checkpoint, so a verifier can name the
    /// streams whose heads differ.
    pub changed_heads: Vec<StreamHead>,
}

impl Checkpoint {
    /// Returns the signed message, `opencity-checkpoint-v1\n<position>\n<tx>\n<stream_count>\n
    /// <digest>\n<created_at>\n`.
    pub fn message(&self) -> String {
        checkpoint_message(
            self.position,
            self.tx,
            self.stream_count,
            &self.heads_digest,
            self.created_at,
        )
    }

    /// Checks the signature with `public_key`, or with the key the checkpoint names when
    /// none is given. An auditor should pass the key published by the operator.
    pub fn verify_signature(&self, public_key: Option<&VerifyingKey>) -> Result<(), String> {
        let stored_key = parse_public_key(&self.public_key);
        let key = match (public_key, &stored_key) {
            (Some(key), Ok(stored)) if key != stored => {
                return Err("signed by a different key than the expected one".to_string())
            }
            (Some(key), _) => *key,
            (None, Ok(stored)) => *stored,
            (None, Err(error)) => return Err(error.clone()),
        };
        let bytes = hex::decode(&self.signature)
            .map_err(|error| format!("signature is not hex: {error}"))?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|error| format!("signature is malformed: {error}"))?;
        key.verify(self.message().as_bytes(), &signature)
            .map_err(|_| "signature does not match the checkpoint".to_string())
    }
}

/// Builds the checkpoint message that is signed.
pub fn checkpoint_message(
    position: i64,
    tx: i64,
    stream_count: i64,
    heads_digest: &str,
    created_at: DateTime<Utc>,
) -> String {
    format!(
        "{CHECKPOINT_DOMAIN}\n{position}\n{tx}\n{stream_count}\n{heads_digest}\n{}\n",
        format_timestamp(created_at)
    )
}

/// Signs a checkpoint message, returning the lowercase hex signature.
pub(crate) fn sign_message(key: &SigningKey, message: &str) -> String {
    hex::encode(key.sign(message.as_bytes()).to_bytes())
}

/// Parses a public key given as lowercase hex of its 32 bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes =
        hex::decode(text.trim()).map_err(|error| format!("public key is not hex: {error}"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "public key is not 32 bytes long".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|error| format!("public key is invalid: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn input<'a>(prev_hash: &'a str, payload: &'a str) -> EventHashInput<'a> {
        EventHashInput {
            stream_type: "ticket",
            stream_id: "Ж-1",
            sequence: 1,
            event_type: "TicketRegistered",
            event_version: "1.0",
            occurred_at: Utc.with_ymd_and_hms(2024, 3, 4, 7, 0, 0).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2024, 3, 4, 7, 0, 1).unwrap()
                + chrono::Duration::nanoseconds(123_456_789),
            prev_hash,
            payload,
            metadata: "{}",
        }
    }

    #[test]
    fn event_hash_matches_hand_encoding() {
        let encoded = "17:opencity-event-v1\n6:ticket\n4:Ж-1\n1:1\n16:TicketRegistered\n3:1.0\n\
             27:2024-03-04T07:00:00.000000Z\n27:2024-03-04T07:00:01.123456Z\n0:\n2:{}\n2:{}\n";
        let expected = hex::encode(Sha256::digest(encoded.as_bytes()));
        assert_eq!(canonical_event_hash(&input("", "{}")), expected);
    }

    #[test]
    fn event_hash_covers_prev_hash_and_payload() {
        let base = canonical_event_hash(&input("", "{}"));
        assert_ne!(canonical_event_hash(&input("ab", "{}")), base);
        assert_ne!(canonical_event_hash(&input("", "{ }")), base);
    }

    #[test]
    fn heads_digest_ignores_input_order() {
        let head = |id: &str, sequence| StreamHead {
            stream_type: "ticket".to_string(),
            stream_id: id.to_string(),
            sequence,
            hash: "00".to_string(),
        };
        let forward = heads_digest(&[head("a", 1), head("b", 2)]);
        let backward = heads_digest(&[head("b", 2), head("a", 1)]);
        assert_eq!(forward, backward);
        assert_ne!(forward, heads_digest(&[head("a", 1), head("b", 3)]));
    }

    #[test]
    fn checkpoint_signature_verifies_and_detects_changes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let created_at = Utc.with_ymd_and_hms(2024, 3, 4, 7, 0, 0).unwrap();
        let message = checkpoint_message(10, 0, 2, "abcd", created_at);
        let mut checkpoint = Checkpoint {
            id: 1,
            position: 10,
            tx: 0,
            created_at,
            stream_count: 2,
            heads_digest: "abcd".to_string(),
            signature: sign_message(&key, &message),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            changed_heads: Vec::new(),
        };
        assert_eq!(
            message,
            "opencity-checkpoint-v1\n10\n0\n2\nabcd\n2024-03-04T07:00:00.000000Z\n"
        );
        assert_eq!(
            checkpoint.verify_signature(Some(&key.verifying_key())),
            Ok(())
        );

        checkpoint.position = 11;
        assert!(checkpoint.verify_signature(None).is_err());
        checkpoint.position = 10;
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(checkpoint
            .verify_signature(Some(&other.verifying_key()))
            .is_err());
    }
}
