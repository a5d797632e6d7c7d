//! The cqrs-es event repository over SQLite, the counterpart of postgres-es's
//! `PostgresEventRepository`.

use std::collections::HashMap;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::{format_timestamp, SqliteDatabase, SqliteWriteTransaction};
use crate::error::StoreError;
use crate::chain::{chain_events, stored_heads_needed, EventText};

/// Events buffered between the database and a replay consumer.
const STREAM_CHANNEL_SIZE: usize = 200;

const SELECT_EVENTS: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata FROM events";

/// Stores cqrs-es events and snapshots in SQLite. A duplicate `(aggregate_type, aggregate_id,
/// sequence)` fails the whole append with `PersistenceError::OptimisticLockError`, which
/// cqrs-es reports as `AggregateError::AggregateConflict`.
#[derive(Clone, Debug)]
pub struct SqliteEventRepository {
    database: SqliteDatabase,
}

impl SqliteEventRepository {
    pub(crate) fn new(database: SqliteDatabase) -> Self {
        SqliteEventRepository { database }
    }

    fn pool(&self) -> &SqlitePool {
        &self.database.pool
    }

    async fn select_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let query = format!(
            "{SELECT_EVENTS} WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ?
              ORDER BY sequence"
        );
        let rows = sqlx::query(&query)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after_sequence)
            .fetch_all(self.pool())
            .await
            .map_err(persistence_error)?;
        rows.iter().map(serialized_event).collect()
    }

    /// Streams the rows of `query` into a replay stream from a background task; a database
    /// error ends the stream with that error.
    fn stream_rows(&self, query: String, binds: Vec<String>) -> ReplayStream {
        let (mut feed, stream) = ReplayStream::new(STREAM_CHANNEL_SIZE);
        let pool = self.pool().clone();
        tokio::spawn(async move {
            let mut statement = sqlx::query(&query);
            for bind in &binds {
                statement = statement.bind(bind);
            }
            let mut rows = statement.fetch(&pool);
            loop {
                let next = match rows.try_next().await {
                    Ok(Some(row)) => serialized_event(&row),
                    Ok(None) => return,
                    Err(error) => Err(persistence_error(error)),
                };
                let failed = next.is_err();
                // A closed channel means the consumer stopped reading.
                if feed.push(next).await.is_err() || failed {
                    return;
                }
            }
        });
        stream
    }

    /// Inserts events with their hash chain (see [`chain_events`]).
    async fn insert_events(
        write: &mut SqliteWriteTransaction,
        events: &[SerializedEvent],
    ) -> Result<(), PersistenceError> {
        let mut heads: HashMap<(String, String), String> = HashMap::new();
        for (stream_type, stream_id, previous) in stored_heads_needed(events) {
            let hash = Self::stored_hash(write, &stream_type, &stream_id, previous).await?;
            heads.insert((stream_type, stream_id), hash);
        }
        let texts = events.iter().map(EventText::from_serialized).collect();
        let chained = chain_events(texts, |stream_type, stream_id| {
            heads.get(&(stream_type.to_string(), stream_id.to_string())).cloned().unwrap_or_default()
        })?;
        for event in chained {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata, occurred_at,
                                     recorded_at, prev_hash, hash)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&event.event.aggregate_type)
            .bind(&event.event.aggregate_id)
            .bind(event.sequence)
            .bind(&event.event.event_type)
            .bind(&event.event.event_version)
            .bind(event.event.payload)
            .bind(event.event.metadata)
            .bind(format_timestamp(event.occurred_at))
            .bind(format_timestamp(event.recorded_at))
            .bind(event.prev_hash)
            .bind(event.hash)
            .execute(&mut *write.transaction)
            .await
            .map_err(persistence_error)?;
        }
        Ok(())
    }

    /// Returns the hash of event `sequence` of a stream, or an empty string for an event stored
    /// before hashes existed.
    async fn stored_hash(
        write: &mut SqliteWriteTransaction,
        stream_type: &str,
        stream_id: &str,
        sequence: i64,
    ) -> Result<String, PersistenceError> {
        let hash: Option<Option<String>> = sqlx::query_scalar(
            "SELECT hash FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?",
        )
        .bind(stream_type)
        .bind(stream_id)
        .bind(sequence)
        .fetch_optional(&mut *write.transaction)
        .await
        .map_err(persistence_error)?;
        Ok(hash.flatten().unwrap_or_default())
    }

    /// Writes the snapshot the same way postgres-es does: the first one is inserted, each later
    /// one replaces its predecessor only if that is still `current_snapshot - 1`.
    async fn write_snapshot(
        write: &mut SqliteWriteTransaction,
        aggregate_type: &str,
        (aggregate_id, payload, current_snapshot): (String, Value, usize),
        last_sequence: usize,
    ) -> Result<(), PersistenceError> {
        let to_i64 = |value: usize| {
            i64::try_from(value).map_err(|_| {
                PersistenceError::UnknownError(format!("{value} is out of range").into())
            })
        };
        let last_sequence = to_i64(last_sequence)?;
        let current = to_i64(current_snapshot)?;

        let statement = if current == 1 {
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence,
                                        current_snapshot, payload)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(last_sequence)
            .bind(current)
            .bind(payload.to_string())
        } else {
            sqlx::query(
                "UPDATE snapshots SET last_sequence = ?, current_snapshot = ?, payload = ?
                  WHERE aggregate_type = ? AND aggregate_id = ? AND current_snapshot = ?",
            )
            .bind(last_sequence)
            .bind(current)
            .bind(payload.to_string())
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(current - 1)
        };
        let result = statement
            .execute(&mut *write.transaction)
            .await
            .map_err(persistence_error)?;
        if result.rows_affected() != 1 {
            return Err(PersistenceError::OptimisticLockError);
        }
        Ok(())
    }
}

impl PersistedEventRepository for SqliteEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events(A::TYPE, aggregate_id, -1).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after = i64::try_from(last_sequence).unwrap_or(i64::MAX);
        self.select_events(A::TYPE, aggregate_id, after).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let row = sqlx::query(
            "SELECT aggregate_id, last_sequence, current_snapshot, payload FROM snapshots
              WHERE aggregate_type = ? AND aggregate_id = ?",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_optional(self.pool())
        .await
        .map_err(persistence_error)?;
        let Some(row) = row else {
            return Ok(None);
        };

        let payload: String = row.try_get("payload").map_err(persistence_error)?;
        Ok(Some(SerializedSnapshot {
            aggregate_id: row.try_get("aggregate_id").map_err(persistence_error)?,
            aggregate: serde_json::from_str(&payload)?,
            current_sequence: column_usize(&row, "last_sequence")?,
            current_snapshot: column_usize(&row, "current_snapshot")?,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let mut write = self
            .database
            .begin_write()
            .await
            .map_err(persistence_error)?;
        Self::insert_events(&mut write, events).await?;
        if let Some(snapshot) = snapshot_update {
            let last_sequence = events.last().map_or(0, |event| event.sequence);
            Self::write_snapshot(&mut write, A::TYPE, snapshot, last_sequence).await?;
        }
        write.commit().await.map_err(persistence_error)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let query = format!(
            "{SELECT_EVENTS} WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence"
        );
        Ok(self.stream_rows(query, vec![A::TYPE.to_string(), aggregate_id.to_string()]))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let query = format!("{SELECT_EVENTS} WHERE aggregate_type = ? ORDER BY global_position");
        Ok(self.stream_rows(query, vec![A::TYPE.to_string()]))
    }
}

fn serialized_event(row: &SqliteRow) -> Result<SerializedEvent, PersistenceError> {
    let payload: String = row.try_get("payload").map_err(persistence_error)?;
    let metadata: String = row.try_get("metadata").map_err(persistence_error)?;
    Ok(SerializedEvent {
        aggregate_id: row.try_get("aggregate_id").map_err(persistence_error)?,
        sequence: column_usize(row, "sequence")?,
        aggregate_type: row.try_get("aggregate_type").map_err(persistence_error)?,
        event_type: row.try_get("event_type").map_err(persistence_error)?,
        event_version: row.try_get("event_version").map_err(persistence_error)?,
        payload: serde_json::from_str(&payload)?,
        metadata: serde_json::from_str(&metadata)?,
    })
}

fn column_usize(row: &SqliteRow, column: &str) -> Result<usize, PersistenceError> {
    let value: i64 = row.try_get(column).map_err(persistence_error)?;
    usize::try_from(value).map_err(|_| {
        PersistenceError::DeserializationError(format!("negative {column} {value}").into())
    })
}

/// Maps a database error; a unique violation is a concurrent append to the same stream.
fn persistence_error(error: sqlx::Error) -> PersistenceError {
    if let sqlx::Error::Database(database_error) = &error {
        if database_error.is_unique_violation() {
            return PersistenceError::OptimisticLockError;
        }
    }
    StoreError::from(error).into()
}
