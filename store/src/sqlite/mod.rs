//! The SQLite backend, the embedded default: one database file under the data directory.
//!
//! SQLite has one writer at a time, and every append runs in a `BEGIN IMMEDIATE` transaction
//! that takes the write lock before it allocates a position. So `global_position` order is
//! commit order, and the log is read by position alone. Within one process the writers also
//! queue on an async mutex, so they wait in order instead of polling the file lock. Writers in
//! other processes wait for the file lock for up to `BUSY_TIMEOUT`.

mod repository;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use repository::SqliteEventRepository;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::model::{LogCheckpoint, StoredEvent};
use crate::postgres::clamp_limit;

/// Maximum connections of the pool. Readers run in parallel under WAL; writers take turns.
const MAX_CONNECTIONS: u32 = 8;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum `(stream_id, sequence)` pairs per position query, well below SQLite's limit of
/// bound parameters.
const CHECKPOINT_QUERY_CHUNK: usize = 400;

/// Schema of the store, with the logical columns of the PostgreSQL schema. Timestamps are
/// RFC 3339 text in UTC with six fractional digits and a `Z` suffix, so they sort as text.
/// The repository writes `recorded_at` from Rust's clock, truncated to microseconds, because
/// the hash covers it; the column default (SQLite's clock has milliseconds, padded to six
/// digits) only serves other writers.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        INTEGER NOT NULL CHECK (sequence >= 0),
    event_type      TEXT    NOT NULL,
    event_version   TEXT    NOT NULL,
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    metadata        TEXT    NOT NULL CHECK (json_valid(metadata)),
    occurred_at     TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type   TEXT    NOT NULL,
    aggregate_id     TEXT    NOT NULL,
    last_sequence    INTEGER NOT NULL CHECK (last_sequence >= 0),
    current_snapshot INTEGER NOT NULL CHECK (current_snapshot >= 0),
    payload          TEXT    NOT NULL CHECK (json_valid(payload)),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE IF NOT EXISTS log_checkpoints (
    id            INTEGER PRIMARY KEY,
    position      INTEGER NOT NULL,
    tx            INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    stream_count  INTEGER NOT NULL,
    heads_digest  TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    signature     TEXT    NOT NULL,
    public_key    TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS log_checkpoint_heads (
    checkpoint_id INTEGER NOT NULL REFERENCES log_checkpoints (id),
    stream_type   TEXT    NOT NULL,
    stream_id     TEXT    NOT NULL,
    sequence      INTEGER NOT NULL,
    hash          TEXT    NOT NULL,
    PRIMARY KEY (checkpoint_id, stream_type, stream_id)
);
"#;

/// Adds the hash chain columns to an `events` table created before they existed. SQLite has
/// no `ADD COLUMN IF NOT EXISTS`, so `open` runs this only when `hash` is missing.
const ADD_HASH_COLUMNS: &str = r#"
ALTER TABLE events ADD COLUMN prev_hash TEXT;
ALTER TABLE events ADD COLUMN hash TEXT;
"#;

/// Columns of a [`StoredEvent`], in the order `stored_event` reads them.
const EVENT_COLUMNS: &str = "global_position, aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata, occurred_at, recorded_at, prev_hash, hash";

/// One SQLite database: the pool and the in-process queue of writers.
#[derive(Clone, Debug)]
pub(crate) struct SqliteDatabase {
    pub(crate) pool: SqlitePool,
    write_lock: Arc<Mutex<()>>,
    /// Writers waiting for `write_lock`.
    waiting_writers: Arc<AtomicUsize>,
}

impl SqliteDatabase {
    /// Opens `<data_dir>/opencity.sqlite`, creating the directory, the file and the schema.
    pub(crate) async fn open(data_dir: &Path) -> Result<SqliteDatabase, StoreError> {
        tokio::fs::create_dir_all(data_dir).await.map_err(|error| {
            StoreError::Config(format!(
                "cannot create data directory {}: {error}",
                data_dir.display()
            ))
        })?;

        let options = SqliteConnectOptions::new()
            .filename(StoreConfig::sqlite_file(data_dir))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        let database = SqliteDatabase {
            pool,
            write_lock: Arc::new(Mutex::new(())),
            waiting_writers: Arc::new(AtomicUsize::new(0)),
        };

        let mut write = database.begin_write().await?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *write.transaction)
            .await?;
        sqlx::raw_sql(crate::tokens::SCHEMA)
            .execute(&mut *write.transaction)
            .await?;
        sqlx::raw_sql(crate::audit::SCHEMA)
            .execute(&mut *write.transaction)
            .await?;
        sqlx::raw_sql(crate::personal::SCHEMA)
            .execute(&mut *write.transaction)
            .await?;
        let has_hash: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('events') WHERE name = 'hash')",
        )
        .fetch_one(&mut *write.transaction)
        .await?;
        if !has_hash {
            sqlx::raw_sql(ADD_HASH_COLUMNS)
                .execute(&mut *write.transaction)
                .await?;
        }
        write.commit().await?;
        Ok(database)
    }

    /// Starts a write transaction with the database write lock already taken.
    pub(crate) async fn begin_write(&self) -> Result<SqliteWriteTransaction, sqlx::Error> {
        let guard = {
            let _waiting = WaitingWriter::enter(&self.waiting_writers);
            Arc::clone(&self.write_lock).lock_owned().await
        };
        let transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(SqliteWriteTransaction {
            transaction,
            _guard: guard,
        })
    }

    pub(crate) fn waiting_writers(&self) -> usize {
        self.waiting_writers.load(Ordering::SeqCst)
    }
}

/// Counts one writer as waiting until dropped, also when its future is cancelled.
struct WaitingWriter<'a>(&'a AtomicUsize);

impl<'a> WaitingWriter<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        WaitingWriter(counter)
    }
}

impl Drop for WaitingWriter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A transaction started with `BEGIN IMMEDIATE`, holding the store's writer queue until it
/// commits or is dropped (which rolls it back). Appends wait while it is open, so keep it short
/// and do not execute commands on the same store inside it.
pub struct SqliteWriteTransaction {
    /// Dropped before the guard, so the rollback of an abandoned transaction is queued before
    /// the next writer starts.
    pub transaction: sqlx::Transaction<'static, sqlx::Sqlite>,
    _guard: OwnedMutexGuard<()>,
}

impl SqliteWriteTransaction {
    /// Commits the transaction and lets the next writer in.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.transaction.commit().await
    }
}

pub(crate) async fn read_log(
    pool: &SqlitePool,
    after: LogCheckpoint,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > ?
          ORDER BY global_position LIMIT ?"
    );
    let rows = sqlx::query(&query)
        .bind(after.position)
        .bind(clamp_limit(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(stored_event).collect()
}

pub(crate) async fn load_stream(
    pool: &SqlitePool,
    stream_type: &str,
    stream_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM events
          WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence"
    );
    let rows = sqlx::query(&query)
        .bind(stream_type)
        .bind(stream_id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(stored_event).collect()
}

pub(crate) async fn stream_exists(
    pool: &SqlitePool,
    stream_type: &str,
    stream_id: &str,
) -> Result<bool, StoreError> {
    let exists = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = ? AND aggregate_id = ?)",
    )
    .bind(stream_type)
    .bind(stream_id)
    .fetch_one(pool)
    .await?;
    Ok(exists)
}

pub(crate) async fn last_position(pool: &SqlitePool) -> Result<i64, StoreError> {
    let position = sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(position)
}

pub(crate) async fn count_events(pool: &SqlitePool) -> Result<i64, StoreError> {
    let count = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(count)
}

/// Returns the checkpoints of the given `(stream_id, sequence)` pairs of one stream type;
/// pairs that are not stored are missing from the map.
pub(crate) async fn checkpoints_at(
    pool: &SqlitePool,
    stream_type: &str,
    event_keys: &[(String, i64)],
) -> Result<HashMap<(String, i64), LogCheckpoint>, StoreError> {
    let mut checkpoints = HashMap::with_capacity(event_keys.len());
    for chunk in event_keys.chunks(CHECKPOINT_QUERY_CHUNK) {
        let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
        let query = format!(
            "WITH requested(aggregate_id, sequence) AS (VALUES {pairs})
             SELECT e.aggregate_id, e.sequence, e.global_position
               FROM events e
               JOIN requested r ON e.aggregate_id = r.aggregate_id AND e.sequence = r.sequence
              WHERE e.aggregate_type = ?"
        );
        let mut statement = sqlx::query(&query);
        for (stream_id, sequence) in chunk {
            statement = statement.bind(stream_id).bind(sequence);
        }
        let rows = statement.bind(stream_type).fetch_all(pool).await?;

        for row in rows {
            let key = (row.try_get("aggregate_id")?, row.try_get("sequence")?);
            let checkpoint = LogCheckpoint {
                tx: 0,
                position: row.try_get("global_position")?,
            };
            checkpoints.insert(key, checkpoint);
        }
    }
    Ok(checkpoints)
}

pub(crate) fn stored_event(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
    let stored_payload: String = row.try_get("payload")?;
    let stored_metadata: String = row.try_get("metadata")?;
    let occurred_at: String = row.try_get("occurred_at")?;
    let recorded_at: String = row.try_get("recorded_at")?;
    Ok(StoredEvent {
        position: row.try_get("global_position")?,
        tx: 0,
        stream_type: row.try_get("aggregate_type")?,
        stream_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        // SQLite's text columns take any text, so the JSON is checked here.
        payload: serde_json::from_str::<serde_json::Value>(&stored_payload)?.into(),
        metadata: serde_json::from_str::<serde_json::Value>(&stored_metadata)?.into(),
        occurred_at: parse_timestamp(&occurred_at)?,
        recorded_at: parse_timestamp(&recorded_at)?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        stored_payload,
        stored_metadata,
    })
}

/// Formats a timestamp as stored: RFC 3339 in UTC, rounded to microseconds as PostgreSQL
/// rounds `timestamptz`.
pub(crate) fn format_timestamp(at: DateTime<Utc>) -> String {
    at.round_subsecs(6)
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| {
            StoreError::InvalidEvent(format!("invalid stored timestamp `{text}`: {error}").into())
        })
}
