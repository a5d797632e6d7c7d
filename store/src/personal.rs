//! Residents' personal data, encrypted with a key per resident so that it can be erased from an
//! immutable log.
//!
//! Before events are appended, every text that [`TicketEvent::personal_texts_mut`] names is
//! replaced by a sealed text, `oc:pd:1:<key id>:<base64url of nonce and ciphertext>`. The UTF-8
//! text is encrypted with XChaCha20-Poly1305 (ChaCha20-Poly1305 with a 192-bit random nonce)
//! under the resident's key. The ticket id is the associated data, so a sealed text copied into
//! another ticket does not open. The domain types keep `String` fields, so folds,
//! projections and the replay tool handle sealed texts as they are. Only what shows the texts
//! to people opens them ([`open_value`] with a [`KeyRing`]).
//!
//! Keys live in `resident_keys`, one in force per subject: the requester's resident id, or
//! `ticket:<ticket id>` for a ticket filed without one. Forgetting a subject
//! ([`Store::forget_resident`]) deletes the bytes of its keys and keeps the row as the record
//! of the erasure. The sealed texts stay in the log unchanged, so the hash chain still
//! verifies; they read as [`ERASED`] from then on. A later ticket of the same subject gets a
//! new key.

use std::collections::{BTreeSet, HashMap};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use opencity_domain::TicketEvent;
use rand::RngCore;
use serde_json::Value;
use uuid::Uuid;

use crate::error::StoreError;
use crate::sqlite::{format_timestamp, parse_timestamp};
use crate::store::{Backend, Store};
use crate::tokens::numbered;

/// The key table, the same on both backends. At most one key per subject is in force.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS resident_keys (
    key_id     TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    key_hex    TEXT,
    created_at TEXT NOT NULL,
    erased_at  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS resident_keys_in_force ON resident_keys (subject)
    WHERE erased_at IS NULL;
"#;

/// The start of every sealed text.
pub const SEALED_PREFIX: &str = "oc:pd:1:";

/// The marker that replaces an erased text.
pub const ERASED: &str = "[удалено по требованию жителя]";

/// The marker that replaces a sealed text whose key is not in the database (a log copied
/// without its keys) or which does not open with it (changed after it was sealed).
pub const UNREADABLE: &str = "[не расшифровано: ключа нет в базе или текст повреждён]";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// Returns the key subject of a ticket filed without a resident id.
pub fn ticket_subject(ticket_id: Uuid) -> String {
    format!("ticket:{ticket_id}")
}

/// A resident's key in force.
#[derive(Clone)]
pub(crate) struct ResidentKey {
    id: Uuid,
    cipher: XChaCha20Poly1305,
}

impl ResidentKey {
    /// Decodes a key in force as `resident_keys` stores it: its id and its bytes in hex.
    pub(crate) fn from_row(id: &str, key_hex: Option<&str>) -> Result<ResidentKey, StoreError> {
        let id = Uuid::parse_str(id)
            .map_err(|error| StoreError::InvalidEvent(format!("invalid resident key id `{id}`: {error}").into()))?;
        let key_hex = key_hex.ok_or_else(|| StoreError::InvalidEvent(format!("resident key {id} in force has no bytes").into()))?;
        ResidentKey::from_hex(id, key_hex)
    }

    fn from_hex(id: Uuid, key_hex: &str) -> Result<ResidentKey, StoreError> {
        let bytes = hex::decode(key_hex)
            .ok()
            .filter(|bytes| bytes.len() == KEY_BYTES)
            .ok_or_else(|| StoreError::InvalidEvent(format!("resident key {id} is not {KEY_BYTES} bytes of hex").into()))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| StoreError::InvalidEvent(format!("resident key {id} has the wrong length").into()))?;
        Ok(ResidentKey { id, cipher })
    }

    /// Seals `text` of the ticket `stream_id`.
    fn seal(&self, stream_id: &str, text: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload { msg: text.as_bytes(), aad: stream_id.as_bytes() };
        // Encryption fails only for messages longer than the cipher's limit (256 GiB).
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("a text of an event is far below the cipher's length limit");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}:{}", self.id, URL_SAFE_NO_PAD.encode(sealed))
    }

    fn open(&self, stream_id: &str, encoded: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(encoded).ok()?;
        if bytes.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = Payload { msg: ciphertext, aad: stream_id.as_bytes() };
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), payload).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Splits a sealed text into its key id and the encoded nonce and ciphertext.
fn parse_sealed(text: &str) -> Option<(Uuid, &str)> {
    let rest = text.strip_prefix(SEALED_PREFIX)?;
    let (key_id, encoded) = rest.split_once(':')?;
    Some((Uuid::parse_str(key_id).ok()?, encoded))
}

/// Tells whether `text` is a sealed text.
pub fn is_sealed(text: &str) -> bool {
    parse_sealed(text).is_some()
}

/// Returns the key subject of a ticket from its events: the resident id of its registration,
/// or [`ticket_subject`] when there is none.
pub(crate) fn key_subject<'a>(ticket_id: Uuid, events: impl IntoIterator<Item = &'a TicketEvent>) -> String {
    events
        .into_iter()
        .find_map(|event| match event {
            TicketEvent::TicketRegistered(registered) => Some(registered.requester.resident_id.clone()),
            _ => None,
        })
        .flatten()
        .filter(|resident_id| !resident_id.trim().is_empty())
        .unwrap_or_else(|| ticket_subject(ticket_id))
}

/// Tells whether any of `events` has a text that is not sealed yet.
pub(crate) fn needs_sealing<'a>(events: impl IntoIterator<Item = &'a mut TicketEvent>) -> bool {
    events
        .into_iter()
        .any(|event| event.personal_texts_mut().into_iter().any(|text| !text.is_empty() && !is_sealed(text)))
}

/// Seals every personal text of `events` of the ticket `stream_id` that is not sealed yet.
/// Empty texts stay empty.
pub(crate) fn seal_events(key: &ResidentKey, stream_id: &str, events: &mut [TicketEvent]) {
    for event in events {
        for text in event.personal_texts_mut() {
            if !text.is_empty() && !is_sealed(text) {
                *text = key.seal(stream_id, text);
            }
        }
    }
}

/// The keys a set of sealed texts names, as the database has them now.
#[derive(Default)]
pub struct KeyRing {
    /// `None` for a key that was erased.
    keys: HashMap<Uuid, Option<ResidentKey>>,
}

/// Counts of the sealed texts of a value, by what opening them gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Sealed texts that were opened.
    pub opened: usize,
    /// Sealed texts whose key was erased, now [`ERASED`].
    pub erased: usize,
    /// Sealed texts without a key or that did not open, now [`UNREADABLE`].
    pub unreadable: usize,
}

impl Opened {
    fn add(&mut self, other: Opened) {
        self.opened += other.opened;
        self.erased += other.erased;
        self.unreadable += other.unreadable;
    }
}

/// Collects the key ids of the sealed texts anywhere in `value`.
fn collect_key_ids(value: &Value, ids: &mut BTreeSet<Uuid>) {
    match value {
        Value::String(text) => {
            if let Some((key_id, _)) = parse_sealed(text) {
                ids.insert(key_id);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_key_ids(item, ids)),
        Value::Object(fields) => fields.values().for_each(|field| collect_key_ids(field, ids)),
        _ => {}
    }
}

/// Returns the key ids of the sealed texts anywhere in `value`.
pub fn sealed_key_ids(value: &Value) -> BTreeSet<Uuid> {
    let mut ids = BTreeSet::new();
    collect_key_ids(value, &mut ids);
    ids
}

/// Replaces every sealed text in `value` of the ticket `stream_id` with its plain text,
/// [`ERASED`] or [`UNREADABLE`].
pub fn open_value(ring: &KeyRing, stream_id: &str, value: &mut Value) -> Opened {
    let mut opened = Opened::default();
    match value {
        Value::String(text) => {
            if let Some((key_id, encoded)) = parse_sealed(text) {
                let replacement = match ring.keys.get(&key_id) {
                    Some(None) => {
                        opened.erased += 1;
                        ERASED.to_string()
                    }
                    Some(Some(key)) => match key.open(stream_id, encoded) {
                        Some(plain) => {
                            opened.opened += 1;
                            plain
                        }
                        None => {
                            opened.unreadable += 1;
                            UNREADABLE.to_string()
                        }
                    },
                    None => {
                        opened.unreadable += 1;
                        UNREADABLE.to_string()
                    }
                };
                *text = replacement;
            }
        }
        Value::Array(items) => {
            for item in items {
                opened.add(open_value(ring, stream_id, item));
            }
        }
        Value::Object(fields) => {
            for field in fields.values_mut() {
                opened.add(open_value(ring, stream_id, field));
            }
        }
        _ => {}
    }
    opened
}

/// The sealed texts of a subject after [`Store::forget_resident`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// Keys whose bytes were deleted now.
    pub keys_erased: u64,
    /// When the subject's keys were erased, now or earlier; `None` if the subject never had a
    /// key.
    pub erased_at: Option<DateTime<Utc>>,
}

/// One stored key row: id, key bytes as hex (`None` once erased).
type KeyRow = (String, Option<String>);

fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

fn ring_from_rows(rows: Vec<KeyRow>) -> Result<KeyRing, StoreError> {
    let mut ring = KeyRing::default();
    for (id, key_hex) in rows {
        let id = Uuid::parse_str(&id)
            .map_err(|error| StoreError::InvalidEvent(format!("invalid resident key id `{id}`: {error}").into()))?;
        let key = key_hex.map(|key_hex| ResidentKey::from_hex(id, &key_hex)).transpose()?;
        ring.keys.insert(id, key);
    }
    Ok(ring)
}

/// Stores a new key for each subject without a key in force and returns every key in force of
/// the subjects: `$1` subjects, `$2` new key ids, `$3` new keys in hex, `$4` the creation time.
/// The final query does not see the rows the `WITH` inserts, so each subject comes once: from
/// the insert or from the keys stored before. A key that another writer stores after this
/// statement began makes the insert skip its subject unseen, so the caller reads it afterwards.
const KEYS_IN_FORCE_OR_NEW: &str = "WITH wanted AS (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS wanted(subject, key_id, key_hex)
    ), inserted AS (
        INSERT INTO resident_keys (key_id, subject, key_hex, created_at)
        SELECT key_id, subject, key_hex, $4 FROM wanted
        ON CONFLICT (subject) WHERE erased_at IS NULL DO NOTHING
        RETURNING subject, key_id, key_hex
    )
    SELECT subject, key_id, key_hex FROM inserted
    UNION ALL
    SELECT k.subject, k.key_id, k.key_hex FROM resident_keys k JOIN wanted USING (subject)
     WHERE k.erased_at IS NULL";

/// A key made for a subject, as `resident_keys` stores it.
struct NewResidentKey {
    id: String,
    subject: String,
    key_hex: String,
}

impl NewResidentKey {
    /// Makes a random key for each of `subjects`.
    fn generate(subjects: &[String]) -> Vec<NewResidentKey> {
        subjects
            .iter()
            .map(|subject| {
                let mut key = [0u8; KEY_BYTES];
                rand::rngs::OsRng.fill_bytes(&mut key);
                NewResidentKey { id: Uuid::new_v4().to_string(), subject: subject.clone(), key_hex: hex::encode(key) }
            })
            .collect()
    }
}

impl Store {
    /// Returns the key in force of each subject, creating the missing ones. On PostgreSQL this
    /// is one statement, which stores a new key for each subject without one and returns every
    /// key in force.
    pub(crate) async fn keys_in_force(&self, subjects: &[String]) -> Result<HashMap<String, ResidentKey>, StoreError> {
        let subjects: Vec<String> = subjects.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        if subjects.is_empty() {
            return Ok(HashMap::new());
        }
        let mut keys = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let new_keys = NewResidentKey::generate(&subjects);
                let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(KEYS_IN_FORCE_OR_NEW)
                    .bind(new_keys.iter().map(|key| key.subject.as_str()).collect::<Vec<_>>())
                    .bind(new_keys.iter().map(|key| key.id.as_str()).collect::<Vec<_>>())
                    .bind(new_keys.iter().map(|key| key.key_hex.as_str()).collect::<Vec<_>>())
                    .bind(format_timestamp(Utc::now()))
                    .fetch_all(pool)
                    .await?;
                let mut keys = HashMap::with_capacity(rows.len());
                for (subject, id, key_hex) in rows {
                    let key = ResidentKey::from_row(&id, key_hex.as_deref())?;
                    keys.insert(subject, key);
                }
                keys
            }
            Backend::Sqlite { database, .. } => {
                let keys = self.select_keys_in_force(&subjects).await?;
                let missing: Vec<String> = subjects.iter().filter(|subject| !keys.contains_key(*subject)).cloned().collect();
                if !missing.is_empty() {
                    let new_keys = NewResidentKey::generate(&missing);
                    let created_at = format_timestamp(Utc::now());
                    let insert = format!(
                        "INSERT INTO resident_keys (key_id, subject, key_hex, created_at) VALUES {} \
                         ON CONFLICT (subject) WHERE erased_at IS NULL DO NOTHING",
                        vec!["(?, ?, ?, ?)"; new_keys.len()].join(", ")
                    );
                    let mut query = sqlx::query(&insert);
                    for key in &new_keys {
                        query = query.bind(&key.id).bind(&key.subject).bind(&key.key_hex).bind(&created_at);
                    }
                    let mut write = database.begin_write().await?;
                    query.execute(&mut *write.transaction).await?;
                    write.commit().await?;
                }
                keys
            }
        };

        // When another writer stored a key for the same subject at the same moment, the unique
        // index kept that key. It is read here, after that writer's commit.
        let missing: Vec<String> = subjects.iter().filter(|subject| !keys.contains_key(*subject)).cloned().collect();
        if !missing.is_empty() {
            keys.extend(self.select_keys_in_force(&missing).await?);
        }
        if keys.len() != subjects.len() {
            return Err(StoreError::Database("a resident key was not stored".into()));
        }
        Ok(keys)
    }

    async fn select_keys_in_force(&self, subjects: &[String]) -> Result<HashMap<String, ResidentKey>, StoreError> {
        let query = format!(
            "SELECT subject, key_id, key_hex FROM resident_keys WHERE erased_at IS NULL AND subject IN ({})",
            placeholders(subjects.len())
        );
        let rows: Vec<(String, String, Option<String>)> = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let query = numbered(&query);
                let mut select = sqlx::query_as(&query);
                for subject in subjects {
                    select = select.bind(subject);
                }
                select.fetch_all(pool).await?
            }
            Backend::Sqlite { database, .. } => {
                let mut select = sqlx::query_as(&query);
                for subject in subjects {
                    select = select.bind(subject);
                }
                select.fetch_all(&database.pool).await?
            }
        };
        let mut keys = HashMap::with_capacity(rows.len());
        for (subject, id, key_hex) in rows {
            keys.insert(subject, ResidentKey::from_row(&id, key_hex.as_deref())?);
        }
        Ok(keys)
    }

    /// Seals the personal texts of `events` about to be appended to the ticket's stream with
    /// the key of `subject` (see [`key_subject`]). `known` is a key in force read beforehand
    /// with its subject, and is used when that subject is `subject`. Otherwise the key is read
    /// or created, and only when there is something to seal.
    pub(crate) async fn seal_new_events(
        &self,
        ticket_id: Uuid,
        subject: String,
        known: Option<&(String, ResidentKey)>,
        events: &mut [TicketEvent],
    ) -> Result<(), StoreError> {
        if !needs_sealing(events.iter_mut()) {
            return Ok(());
        }
        let stream_id = ticket_id.to_string();
        if let Some((_, key)) = known.filter(|(known_subject, _)| *known_subject == subject) {
            seal_events(key, &stream_id, events);
            return Ok(());
        }
        let keys = self.keys_in_force(std::slice::from_ref(&subject)).await?;
        let key = keys.get(&subject).ok_or_else(|| StoreError::Database("a resident key was not stored".into()))?;
        seal_events(key, &stream_id, events);
        Ok(())
    }

    /// Reads the keys that the sealed texts of `values` name, as they are now.
    pub async fn key_ring(&self, values: &[&Value]) -> Result<KeyRing, StoreError> {
        let mut ids = BTreeSet::new();
        for value in values {
            collect_key_ids(value, &mut ids);
        }
        if ids.is_empty() {
            return Ok(KeyRing::default());
        }
        let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
        let query = format!("SELECT key_id, key_hex FROM resident_keys WHERE key_id IN ({})", placeholders(ids.len()));
        let rows: Vec<KeyRow> = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let query = numbered(&query);
                let mut select = sqlx::query_as(&query);
                for id in &ids {
                    select = select.bind(id);
                }
                select.fetch_all(pool).await?
            }
            Backend::Sqlite { database, .. } => {
                let mut select = sqlx::query_as(&query);
                for id in &ids {
                    select = select.bind(id);
                }
                select.fetch_all(&database.pool).await?
            }
        };
        ring_from_rows(rows)
    }

    /// Opens the sealed texts of `values`, all of the ticket `stream_id`: each becomes its plain
    /// text, [`ERASED`] or [`UNREADABLE`].
    pub async fn open_personal_data(&self, stream_id: &str, values: &mut [&mut Value]) -> Result<Opened, StoreError> {
        let ring = {
            let shared: Vec<&Value> = values.iter().map(|value| &**value).collect();
            self.key_ring(&shared).await?
        };
        let mut opened = Opened::default();
        for value in values.iter_mut() {
            opened.add(open_value(&ring, stream_id, value));
        }
        Ok(opened)
    }

    /// Erases the personal data of `subject` (a resident id, or `ticket:<id>`): deletes the
    /// bytes of its keys and records when. Texts sealed with them read as [`ERASED`] from
    /// the next read on, in every process.
    ///
    /// On SQLite the freed bytes are overwritten with zeros (`secure_delete`) and the write-ahead
    /// log is checkpointed into the database file. On PostgreSQL the key table is rewritten
    /// (`VACUUM FULL`), so that no old row version keeps a key. Backups taken before still
    /// hold the keys.
    pub async fn forget_resident(&self, subject: &str, now: DateTime<Utc>) -> Result<Erasure, StoreError> {
        let update = "UPDATE resident_keys SET key_hex = NULL, erased_at = ? WHERE subject = ? AND erased_at IS NULL";
        let erased_at_query = "SELECT MAX(erased_at) FROM resident_keys WHERE subject = ?";
        let (keys_erased, erased_at): (u64, Option<String>) = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let erased = sqlx::query(&numbered(update))
                    .bind(format_timestamp(now))
                    .bind(subject)
                    .execute(pool)
                    .await?
                    .rows_affected();
                if erased > 0 {
                    sqlx::query("VACUUM FULL resident_keys").execute(pool).await?;
                }
                let erased_at = sqlx::query_scalar(&numbered(erased_at_query)).bind(subject).fetch_one(pool).await?;
                (erased, erased_at)
            }
            Backend::Sqlite { database, .. } => {
                let mut write = database.begin_write().await?;
                sqlx::query("PRAGMA secure_delete = ON").execute(&mut *write.transaction).await?;
                let erased = sqlx::query(update)
                    .bind(format_timestamp(now))
                    .bind(subject)
                    .execute(&mut *write.transaction)
                    .await?
                    .rows_affected();
                let erased_at = sqlx::query_scalar(erased_at_query)
                    .bind(subject)
                    .fetch_one(&mut *write.transaction)
                    .await?;
                sqlx::query("PRAGMA secure_delete = OFF").execute(&mut *write.transaction).await?;
                write.commit().await?;
                if erased > 0 {
                    // The pages that held the keys may still be in the write-ahead log. A
                    // checkpoint blocked by readers leaves them there until the next one.
                    let (busy, _, _): (i64, i64, i64) =
                        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&database.pool).await?;
                    if busy != 0 {
                        tracing::warn!(subject, "write-ahead log not truncated after erasure: readers were active");
                    }
                }
                (erased, erased_at)
            }
        };
        Ok(Erasure {
            keys_erased,
            erased_at: erased_at.as_deref().map(parse_timestamp).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ResidentKey {
        ResidentKey::from_hex(Uuid::new_v4(), &"7".repeat(KEY_BYTES * 2)).unwrap()
    }

    #[test]
    fn sealed_text_needs_key_and_ticket() {
        let key = key();
        let ticket = Uuid::new_v4().to_string();
        let sealed = key.seal(&ticket, "Течёт кран, кв. 17");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("кран"));
        assert_ne!(sealed, key.seal(&ticket, "Течёт кран, кв. 17"), "nonces differ");

        let mut ring = KeyRing::default();
        ring.keys.insert(key.id, Some(key.clone()));
        let mut value = json!({ "description": sealed.clone(), "category": "water_leak" });
        let opened = open_value(&ring, &ticket, &mut value);
        assert_eq!(value["description"], "Течёт кран, кв. 17");
        assert_eq!(value["category"], "water_leak");
        assert_eq!(opened, Opened { opened: 1, erased: 0, unreadable: 0 });

        let mut moved = json!(sealed.clone());
        assert_eq!(open_value(&ring, "another-ticket", &mut moved).unreadable, 1);
        assert_eq!(moved, UNREADABLE);

        ring.keys.insert(key.id, None);
        let mut erased = json!([sealed]);
        assert_eq!(open_value(&ring, &ticket, &mut erased).erased, 1);
        assert_eq!(erased[0], ERASED);
    }

    #[test]
    fn plain_and_malformed_texts_stay() {
        let ring = KeyRing::default();
        for text in ["обычный текст", "oc:pd:1:", "oc:pd:1:not-a-uuid:abc"] {
            let mut value = json!(text);
            assert_eq!(open_value(&ring, "t", &mut value), Opened::default());
            assert_eq!(value, text);
        }
    }

    #[test]
    fn subject_is_the_resident_or_the_ticket() {
        let ticket_id = Uuid::new_v4();
        assert_eq!(key_subject(ticket_id, []), ticket_subject(ticket_id));
    }
}
