//! Types the store hands out: stored events, log checkpoints, command metadata and outcomes.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use opencity_domain::TicketEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A place in the global log, compared as the pair `(tx, position)`.
///
/// On PostgreSQL `tx` is the `xid8` of the transaction that wrote the event and the log is read
/// in `(tx, position)` order, because positions are taken at insert time and commit in a
/// different order. On SQLite `tx` is always 0 and `position` alone orders the log. The default
/// checkpoint `(0, 0)` is before the first event on both.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogCheckpoint {
    pub tx: i64,
    pub position: i64,
}

impl LogCheckpoint {
    /// The checkpoint before the first event of the log.
    pub const START: LogCheckpoint = LogCheckpoint { tx: 0, position: 0 };
}

/// One event as stored, with its place in the global log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Global position, unique and increasing in insert order.
    pub position: i64,
    /// Id of the writing transaction on PostgreSQL (`xid8`), 0 on SQLite.
    pub tx: i64,
    pub stream_type: String,
    pub stream_id: String,
    /// Sequence in the stream, starting at 1.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event as cqrs-es serializes it: `{"VariantName": {...}}`.
    pub payload: LazyJson,
    /// A JSON object of strings, see [`CommandMetadata`].
    pub metadata: LazyJson,
    /// Business time of the event, taken from the payload's `occurred_at`.
    pub occurred_at: DateTime<Utc>,
    /// Time the database recorded the event.
    pub recorded_at: DateTime<Utc>,
    /// Hash of the previous event of the stream (empty for the first event), see
    /// [`integrity`](crate::integrity); `None` for events stored before hashes existed.
    pub prev_hash: Option<String>,
    /// Hash of this event over its canonical encoding; `None` for events stored before
    /// hashes existed.
    pub hash: Option<String>,
    /// The payload's JSON text exactly as stored, which the hash covers.
    #[serde(skip)]
    pub stored_payload: String,
    /// The metadata's JSON text exactly as stored, which the hash covers.
    #[serde(skip)]
    pub stored_metadata: String,
}

impl StoredEvent {
    /// Returns the checkpoint just past this event.
    pub fn checkpoint(&self) -> LogCheckpoint {
        LogCheckpoint {
            tx: self.tx,
            position: self.position,
        }
    }

    /// Decodes the payload as a ticket event.
    pub fn ticket_event(&self) -> Result<TicketEvent, serde_json::Error> {
        // From the stored text: decoding the parsed value would first need a copy of it.
        if self.stored_payload.is_empty() {
            return serde_json::from_value(self.payload.value().clone());
        }
        serde_json::from_str(&self.stored_payload)
    }

    /// Decodes the metadata written with the event.
    pub fn command_metadata(&self) -> Result<CommandMetadata, serde_json::Error> {
        let map: HashMap<String, String> = if self.stored_metadata.is_empty() {
            serde_json::from_value(self.metadata.value().clone())?
        } else {
            serde_json::from_str(&self.stored_metadata)?
        };
        CommandMetadata::from_map(&map)
    }
}

/// A JSON value of a stored event, parsed on first use and read as a
/// [`Value`](serde_json::Value) through `Deref`. Projections decode events from the stored text,
/// so only subscriptions and the API parse the values they show.
#[derive(Clone, Default)]
pub struct LazyJson {
    /// The JSON text, empty when the value was given parsed or was edited.
    text: String,
    value: OnceLock<serde_json::Value>,
}

impl LazyJson {
    /// JSON text from a column the database checked (PostgreSQL's `json`), parsed on first use.
    pub fn from_text(text: String) -> LazyJson {
        LazyJson { text, value: OnceLock::new() }
    }

    /// Returns the parsed value. Text that is not JSON, which a `json` column cannot hold,
    /// reads as `null` and is logged.
    pub fn value(&self) -> &serde_json::Value {
        self.value.get_or_init(|| {
            serde_json::from_str(&self.text).unwrap_or_else(|error| {
                tracing::error!(%error, "a stored JSON text is invalid, so it reads as null");
                serde_json::Value::Null
            })
        })
    }

    /// Takes out the parsed value.
    pub fn into_value(self) -> serde_json::Value {
        self.value();
        self.value.into_inner().unwrap_or_default()
    }
}

impl From<serde_json::Value> for LazyJson {
    fn from(value: serde_json::Value) -> LazyJson {
        LazyJson { text: String::new(), value: OnceLock::from(value) }
    }
}

impl std::ops::Deref for LazyJson {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        self.value()
    }
}

impl std::ops::DerefMut for LazyJson {
    fn deref_mut(&mut self) -> &mut serde_json::Value {
        self.value();
        // The value was set just above; an edited value no longer matches the text.
        self.text.clear();
        self.value.get_mut().expect("the value was parsed above")
    }
}

impl PartialEq for LazyJson {
    fn eq(&self, other: &LazyJson) -> bool {
        self.value() == other.value()
    }
}

impl PartialEq<serde_json::Value> for LazyJson {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.value() == other
    }
}

impl std::fmt::Debug for LazyJson {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.value(), formatter)
    }
}

impl std::fmt::Display for LazyJson {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self.value(), formatter)
    }
}

impl Serialize for LazyJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

/// Context of a command: the actor, the channel and the chain of requests. It is stored as the
/// metadata of every event the command appends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandMetadata {
    pub actor: Option<String>,
    pub role: Option<String>,
    /// The actor's principal when the actor acts for someone else (a dispatcher filing for a
    /// resident).
    pub on_behalf_of: Option<String>,
    pub channel: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// A key the client chooses per logical request; a command with a key already present in
    /// the stream appends nothing.
    pub idempotency_key: Option<String>,
}

const ACTOR: &str = "actor";
const ROLE: &str = "role";
const ON_BEHALF_OF: &str = "on_behalf_of";
const CHANNEL: &str = "channel";
const CORRELATION_ID: &str = "correlation_id";
const CAUSATION_ID: &str = "causation_id";
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency_key";

impl CommandMetadata {
    /// Converts the metadata to the string map cqrs-es stores; absent fields are left out.
    pub fn to_map(&self) -> HashMap<String, String> {
        let fields = [
            (ACTOR, self.actor.clone()),
            (ROLE, self.role.clone()),
            (ON_BEHALF_OF, self.on_behalf_of.clone()),
            (CHANNEL, self.channel.clone()),
            (CORRELATION_ID, self.correlation_id.map(|id| id.to_string())),
            (CAUSATION_ID, self.causation_id.map(|id| id.to_string())),
            (IDEMPOTENCY_KEY, self.idempotency_key.clone()),
        ];
        fields
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| (key.to_string(), value)))
            .collect()
    }

    /// Reads the metadata back from the stored map; unknown keys are ignored.
    pub fn from_map(map: &HashMap<String, String>) -> Result<CommandMetadata, serde_json::Error> {
        Ok(CommandMetadata {
            actor: map.get(ACTOR).cloned(),
            role: map.get(ROLE).cloned(),
            on_behalf_of: map.get(ON_BEHALF_OF).cloned(),
            channel: map.get(CHANNEL).cloned(),
            correlation_id: parse_uuid(map, CORRELATION_ID)?,
            causation_id: parse_uuid(map, CAUSATION_ID)?,
            idempotency_key: map.get(IDEMPOTENCY_KEY).cloned(),
        })
    }
}

fn parse_uuid(map: &HashMap<String, String>, key: &str) -> Result<Option<Uuid>, serde_json::Error> {
    match map.get(key) {
        Some(text) => serde_json::from_value(serde_json::Value::String(text.clone())).map(Some),
        None => Ok(None),
    }
}

/// The result of [`Store::execute`](crate::Store::execute).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommandOutcome {
    pub ticket_id: Uuid,
    /// Global position of the stream's last event after the command; 0 when the stream is empty.
    pub last_position: i64,
    /// Checkpoint of that event: a reader whose checkpoint is at or past it has seen the
    /// command's events. On PostgreSQL compare this, not `last_position`, because positions
    /// commit out of order.
    pub last_checkpoint: LogCheckpoint,
    /// Number of events the command appended; for a replayed command, the number the first
    /// execution appended.
    pub appended: usize,
    /// True when the idempotency key was found in the stream and nothing was appended now.
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lazy_json_parses_on_first_read() {
        let lazy = LazyJson::from_text(r#"{"TicketCommented":{"text":"течёт кран"}}"#.to_string());
        assert!(lazy.value.get().is_none(), "nothing is parsed before the first read");
        assert_eq!(lazy["TicketCommented"]["text"], "течёт кран");
        assert_eq!(lazy, json!({"TicketCommented": {"text": "течёт кран"}}));
        assert_eq!(lazy.to_string(), r#"{"TicketCommented":{"text":"течёт кран"}}"#);
    }

    #[test]
    fn lazy_json_invalid_text_is_null() {
        let lazy = LazyJson::from_text("{не json".to_string());
        assert!(lazy.is_null());
        assert_eq!(lazy.into_value(), serde_json::Value::Null);
    }

    #[test]
    fn lazy_json_edits_and_takes_the_value() {
        let mut lazy = LazyJson::from_text(r#"{"a":1}"#.to_string());
        lazy["a"] = json!(2);
        assert_eq!(lazy, LazyJson::from(json!({"a": 2})));
        assert_eq!(lazy.into_value(), json!({"a": 2}));
    }
}
