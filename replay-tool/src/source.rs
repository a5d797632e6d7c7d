//! Read-only access to the event log and the live read model.
//!
//! `Store::open` creates the schema and replaces the PostgreSQL trigger function, so the tool
//! opens its own pools instead: PostgreSQL sessions run with `default_transaction_read_only`,
//! and SQLite is opened read-only and never created.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use opencity_projections::TicketView;
use opencity_store::integrity::{Checkpoint, EventHashInput, StreamHead};
use opencity_store::{LogCheckpoint, StoreConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, PgPool, Row, SqlitePool};
use uuid::Uuid;

/// Number of events fetched per query while the log is scanned.
pub const BATCH_SIZE: usize = 5_000;

/// A failure to reach or read the database. Every variant maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("файл базы данных {0} не найден; укажите каталог данных сервера в --data-dir")]
    MissingSqliteFile(String),
    #[error("в базе данных нет журнала событий (таблицы events); проверьте --data-dir или --database-url")]
    NoEventTable,
    #[error("некорректный адрес базы данных: {0}")]
    InvalidUrl(String),
    #[error("ошибка базы данных: {0}")]
    Database(#[from] sqlx::Error),
    #[error("в базе данных записано некорректное значение: {0}")]
    InvalidValue(String),
}

impl SourceError {
    /// Returns the stable code of the error, printed with the Russian message.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::MissingSqliteFile(_) => "DATABASE_NOT_FOUND",
            SourceError::NoEventTable => "EVENT_LOG_NOT_FOUND",
            SourceError::InvalidUrl(_) => "INVALID_DATABASE_URL",
            SourceError::Database(_) => "DATABASE_ERROR",
            SourceError::InvalidValue(_) => "INVALID_STORED_VALUE",
        }
    }
}

/// One event row as stored, with the hash columns when the schema has them.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    pub position: i64,
    /// Writing transaction (`xid8`) on PostgreSQL, 0 on SQLite.
    pub tx: i64,
    pub stream_type: String,
    pub stream_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The payload as it parses from the stored JSON text.
    pub payload: Result<serde_json::Value, String>,
    pub metadata: Result<serde_json::Value, String>,
    /// The payload's JSON text exactly as stored, which the hash covers.
    pub payload_text: String,
    /// The metadata's JSON text exactly as stored, which the hash covers.
    pub metadata_text: String,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl LogEvent {
    /// Returns the fields the event's stored hash covers, chained to its stored `prev_hash`.
    pub fn hash_input(&self) -> EventHashInput<'_> {
        EventHashInput {
            stream_type: &self.stream_type,
            stream_id: &self.stream_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            prev_hash: self.prev_hash.as_deref().unwrap_or(""),
            payload: &self.payload_text,
            metadata: &self.metadata_text,
        }
    }

    /// Returns the place of the event in the global log.
    pub fn checkpoint(&self) -> LogCheckpoint {
        LogCheckpoint {
            tx: self.tx,
            position: self.position,
        }
    }
}

/// The live read model as committed: views and the checkpoint they are current to.
#[derive(Debug, Default)]
pub struct LiveReadModel {
    pub checkpoint: LogCheckpoint,
    /// Rows of `ticket_views` by their `id` column.
    pub rows: BTreeMap<String, LiveViewRow>,
}

/// One row of `ticket_views`.
#[derive(Debug)]
pub struct LiveViewRow {
    pub external_id: Option<String>,
    pub last_position: i64,
    /// The payload decoded as a view, or the decoding error.
    pub view: Result<TicketView, String>,
}

/// A read-only connection to the store's database.
#[derive(Clone, Debug)]
pub enum LogSource {
    Postgres { pool: PgPool, has_hashes: bool },
    Sqlite { pool: SqlitePool, has_hashes: bool },
}

/// Formats a timestamp as the export and the store's SQLite text do: RFC 3339, UTC, microseconds.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl LogSource {
    /// Connects read-only to the configured database and checks that it has an event log.
    pub async fn open(config: &StoreConfig) -> Result<LogSource, SourceError> {
        match config {
            StoreConfig::Postgres { url } => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|error| SourceError::InvalidUrl(error.to_string()))?
                    .options([("default_transaction_read_only", "on")]);
                // One direct connection first: the pool retries refused connections until its
                // acquire timeout, and an auditor with a wrong address should learn it at once.
                options.connect().await?.close().await?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await?;
                let columns: Vec<String> = sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'events'",
                )
                .fetch_all(&pool)
                .await?;
                let has_hashes = check_columns(&columns)?;
                Ok(LogSource::Postgres { pool, has_hashes })
            }
            StoreConfig::Sqlite { data_dir } => {
                let file = StoreConfig::sqlite_file(data_dir);
                if !file.is_file() {
                    return Err(SourceError::MissingSqliteFile(file.display().to_string()));
                }
                let options = SqliteConnectOptions::new()
                    .filename(&file)
                    .read_only(true)
                    .create_if_missing(false);
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await?;
                let columns: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info('events')")
                        .fetch_all(&pool)
                        .await?;
                let has_hashes = check_columns(&columns)?;
                Ok(LogSource::Sqlite { pool, has_hashes })
            }
        }
    }

    /// Returns true when the events table has `prev_hash` and `hash` columns.
    pub fn has_hashes(&self) -> bool {
        match self {
            LogSource::Postgres { has_hashes, .. } | LogSource::Sqlite { has_hashes, .. } => {
                *has_hashes
            }
        }
    }

    /// Returns true on SQLite, where global positions have no gaps unless rows were deleted.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, LogSource::Sqlite { .. })
    }

    fn columns(&self) -> String {
        let hashes = if self.has_hashes() {
            ", prev_hash, hash"
        } else {
            ""
        };
        match self {
            LogSource::Postgres { .. } => format!(
                "global_position, tx_id::text::bigint AS tx, aggregate_type, aggregate_id, \
                 sequence, event_type, event_version, payload::text AS payload, \
                 metadata::text AS metadata, occurred_at, recorded_at{hashes}"
            ),
            LogSource::Sqlite { .. } => format!(
                "global_position, 0 AS tx, aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata, occurred_at, recorded_at{hashes}"
            ),
        }
    }

    /// Reads at most `limit` events strictly after `after`, in the store's gap-safe log order:
    /// `(tx_id, global_position)` on PostgreSQL, limited to transactions that have ended, and
    /// `global_position` on SQLite.
    pub async fn read_log(
        &self,
        after: LogCheckpoint,
        limit: usize,
    ) -> Result<Vec<LogEvent>, SourceError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match self {
            LogSource::Postgres { pool, .. } => {
                let query = format!(
                    "SELECT {} FROM events
                      WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2)
                        AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                      ORDER BY tx_id, global_position
                      LIMIT $3",
                    self.columns()
                );
                let rows = sqlx::query(&query)
                    .bind(after.tx)
                    .bind(after.position)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| self.pg_event(row)).collect()
            }
            LogSource::Sqlite { pool, .. } => {
                let query = format!(
                    "SELECT {} FROM events WHERE global_position > ?
                      ORDER BY global_position LIMIT ?",
                    self.columns()
                );
                let rows = sqlx::query(&query)
                    .bind(after.position)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| self.sqlite_event(row)).collect()
            }
        }
    }

    /// Reads the whole log in order and passes each event to `visit`; stops early when `visit`
    /// returns false.
    ///
    /// On PostgreSQL all pages are read in one repeatable-read transaction, so the scan reads
    /// every event committed before it began and none committed later. Pages read in separate
    /// transactions would have to stop at the oldest transaction running anywhere on the
    /// server, as [`read_log`](Self::read_log) does, and one long transaction in any database
    /// would then hide the end of the log.
    pub async fn scan(&self, mut visit: impl FnMut(LogEvent) -> bool) -> Result<(), SourceError> {
        let mut after = LogCheckpoint::START;
        match self {
            LogSource::Postgres { pool, .. } => {
                let mut transaction = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *transaction)
                    .await?;
                let query = format!(
                    "SELECT {} FROM events
                      WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2)
                      ORDER BY tx_id, global_position
                      LIMIT $3",
                    self.columns()
                );
                let limit = i64::try_from(BATCH_SIZE).unwrap_or(i64::MAX);
                loop {
                    let rows = sqlx::query(&query)
                        .bind(after.tx)
                        .bind(after.position)
                        .bind(limit)
                        .fetch_all(&mut *transaction)
                        .await?;
                    let batch = rows
                        .iter()
                        .map(|row| self.pg_event(row))
                        .collect::<Result<Vec<_>, _>>()?;
                    match visit_batch(batch, &mut visit) {
                        Some(last) => after = last,
                        None => break,
                    }
                }
                transaction.rollback().await?;
            }
            LogSource::Sqlite { .. } => loop {
                let batch = self.read_log(after, BATCH_SIZE).await?;
                match visit_batch(batch, &mut visit) {
                    Some(last) => after = last,
                    None => break,
                }
            },
        }
        Ok(())
    }

    /// Returns the events of one stream ordered by sequence.
    pub async fn load_stream(
        &self,
        stream_type: &str,
        stream_id: &str,
    ) -> Result<Vec<LogEvent>, SourceError> {
        let query = format!(
            "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
            self.columns()
        );
        match self {
            LogSource::Postgres { pool, .. } => {
                let rows = sqlx::query(&query)
                    .bind(stream_type)
                    .bind(stream_id)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| self.pg_event(row)).collect()
            }
            LogSource::Sqlite { pool, .. } => {
                let rows = sqlx::query(&query)
                    .bind(stream_type)
                    .bind(stream_id)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| self.sqlite_event(row)).collect()
            }
        }
    }

    /// Returns the place in the log of the event at global `position`, or `None` when no event
    /// has it.
    pub async fn checkpoint_of(&self, position: i64) -> Result<Option<LogCheckpoint>, SourceError> {
        let tx: Option<i64> = match self {
            LogSource::Postgres { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT tx_id::text::bigint FROM events WHERE global_position = $1",
                )
                .bind(position)
                .fetch_optional(pool)
                .await?
            }
            LogSource::Sqlite { pool, .. } => {
                sqlx::query_scalar("SELECT 0 FROM events WHERE global_position = ?")
                    .bind(position)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(tx.map(|tx| LogCheckpoint { tx, position }))
    }

    /// Returns the ids of the residents' keys that were erased (`opencity residents forget`).
    /// A database from before personal data was encrypted has none.
    pub async fn erased_key_ids(&self) -> Result<HashSet<Uuid>, SourceError> {
        const ERASED: &str = "SELECT key_id FROM resident_keys WHERE erased_at IS NOT NULL";
        let ids: Vec<String> = match self {
            LogSource::Postgres { pool, .. } => {
                let exists: bool = sqlx::query_scalar("SELECT to_regclass('resident_keys') IS NOT NULL")
                    .fetch_one(pool)
                    .await?;
                if !exists {
                    return Ok(HashSet::new());
                }
                sqlx::query_scalar(ERASED).fetch_all(pool).await?
            }
            LogSource::Sqlite { pool, .. } => {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'resident_keys')",
                )
                .fetch_one(pool)
                .await?;
                if !exists {
                    return Ok(HashSet::new());
                }
                sqlx::query_scalar(ERASED).fetch_all(pool).await?
            }
        };
        Ok(ids.iter().filter_map(|id| Uuid::parse_str(id).ok()).collect())
    }

    /// Returns the stream id of the ticket registered with `external_id`, if any.
    pub async fn find_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<String>, SourceError> {
        let id = match self {
            LogSource::Postgres { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT aggregate_id FROM events
                      WHERE event_type = 'TicketRegistered'
                        AND payload -> 'TicketRegistered' ->> 'external_id' = $1
                      ORDER BY global_position LIMIT 1",
                )
                .bind(external_id)
                .fetch_optional(pool)
                .await?
            }
            LogSource::Sqlite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT aggregate_id FROM events
                      WHERE event_type = 'TicketRegistered'
                        AND json_extract(payload, '$.TicketRegistered.external_id') = ?
                      ORDER BY global_position LIMIT 1",
                )
                .bind(external_id)
                .fetch_optional(pool)
                .await?
            }
        };
        Ok(id)
    }

    /// Reads the committed `ticket_views` rows and their checkpoint in one read transaction, so
    /// a projection runner committing meanwhile cannot mix two states. Returns `None` when the
    /// projection tables do not exist.
    pub async fn live_read_model(&self) -> Result<Option<LiveReadModel>, SourceError> {
        const CHECKPOINT: &str =
            "SELECT tx, position FROM projection_checkpoints WHERE name = 'ticket_views'";
        const VIEWS: &str = "SELECT id, external_id, last_position, payload FROM ticket_views";

        type ViewRow = (String, Option<String>, i64, String);
        let (checkpoint, rows): (Option<(i64, i64)>, Vec<ViewRow>) = match self {
            LogSource::Postgres { pool, .. } => {
                let tables: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM information_schema.tables
                          WHERE table_schema = current_schema()
                            AND table_name IN ('ticket_views', 'projection_checkpoints')",
                )
                .fetch_one(pool)
                .await?;
                if tables < 2 {
                    return Ok(None);
                }
                let mut transaction = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *transaction)
                    .await?;
                let checkpoint = sqlx::query_as(CHECKPOINT)
                    .fetch_optional(&mut *transaction)
                    .await?;
                let rows = sqlx::query_as(VIEWS).fetch_all(&mut *transaction).await?;
                transaction.rollback().await?;
                (checkpoint, rows)
            }
            LogSource::Sqlite { pool, .. } => {
                let tables: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM sqlite_master
                          WHERE type = 'table' AND name IN ('ticket_views', 'projection_checkpoints')",
                    )
                    .fetch_one(pool)
                    .await?;
                if tables < 2 {
                    return Ok(None);
                }
                let mut transaction = pool.begin().await?;
                let checkpoint = sqlx::query_as(CHECKPOINT)
                    .fetch_optional(&mut *transaction)
                    .await?;
                let rows = sqlx::query_as(VIEWS).fetch_all(&mut *transaction).await?;
                transaction.rollback().await?;
                (checkpoint, rows)
            }
        };

        let checkpoint = checkpoint
            .map(|(tx, position)| LogCheckpoint { tx, position })
            .unwrap_or_default();
        let rows = rows
            .into_iter()
            .map(|(id, external_id, last_position, payload)| {
                let view = serde_json::from_str(&payload).map_err(|error| error.to_string());
                (
                    id,
                    LiveViewRow {
                        external_id,
                        last_position,
                        view,
                    },
                )
            })
            .collect();
        Ok(Some(LiveReadModel { checkpoint, rows }))
    }

    /// Returns the signed checkpoints, oldest first, each with the stream heads it recorded
    /// as changed since the previous one. Returns none when the checkpoint tables are missing.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, SourceError> {
        const CHECKPOINTS: &str =
            "SELECT id, position, tx, created_at, stream_count, heads_digest, \
             signature, public_key FROM log_checkpoints ORDER BY id";
        const HEADS: &str = "SELECT checkpoint_id, stream_type, stream_id, sequence, hash \
             FROM log_checkpoint_heads ORDER BY checkpoint_id, stream_type, stream_id";
        type CheckpointRow = (i64, i64, i64, i64, String, String, String);
        type HeadRow = (i64, String, String, i64, String);
        /// Columns of `CHECKPOINTS`, generic over how `created_at` is stored.
        type StoredCheckpoint<Time> = (i64, i64, i64, Time, i64, String, String, String);

        let (rows, heads): (Vec<(CheckpointRow, DateTime<Utc>)>, Vec<HeadRow>) = match self {
            LogSource::Postgres { pool, .. } => {
                let tables: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM information_schema.tables
                      WHERE table_schema = current_schema()
                        AND table_name IN ('log_checkpoints', 'log_checkpoint_heads')",
                )
                .fetch_one(pool)
                .await?;
                if tables < 2 {
                    return Ok(Vec::new());
                }
                let rows: Vec<StoredCheckpoint<DateTime<Utc>>> =
                    sqlx::query_as(CHECKPOINTS).fetch_all(pool).await?;
                let rows = rows
                    .into_iter()
                    .map(|(id, position, tx, at, count, digest, signature, key)| {
                        ((id, position, tx, count, digest, signature, key), at)
                    })
                    .collect();
                (rows, sqlx::query_as(HEADS).fetch_all(pool).await?)
            }
            LogSource::Sqlite { pool, .. } => {
                let tables: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                        AND name IN ('log_checkpoints', 'log_checkpoint_heads')",
                )
                .fetch_one(pool)
                .await?;
                if tables < 2 {
                    return Ok(Vec::new());
                }
                let rows: Vec<StoredCheckpoint<String>> =
                    sqlx::query_as(CHECKPOINTS).fetch_all(pool).await?;
                let mut parsed = Vec::with_capacity(rows.len());
                for (id, position, tx, at, count, digest, signature, key) in rows {
                    parsed.push((
                        (id, position, tx, count, digest, signature, key),
                        parse_time(&at)?,
                    ));
                }
                (parsed, sqlx::query_as(HEADS).fetch_all(pool).await?)
            }
        };

        let mut by_checkpoint: BTreeMap<i64, Vec<StreamHead>> = BTreeMap::new();
        for (checkpoint_id, stream_type, stream_id, sequence, hash) in heads {
            by_checkpoint
                .entry(checkpoint_id)
                .or_default()
                .push(StreamHead {
                    stream_type,
                    stream_id,
                    sequence,
                    hash,
                });
        }
        let checkpoints = rows
            .into_iter()
            .map(
                |(
                    (id, position, tx, stream_count, heads_digest, signature, public_key),
                    created_at,
                )| {
                    Checkpoint {
                        id,
                        position,
                        tx,
                        created_at,
                        stream_count,
                        heads_digest,
                        signature,
                        public_key,
                        changed_heads: by_checkpoint.remove(&id).unwrap_or_default(),
                    }
                },
            )
            .collect();
        Ok(checkpoints)
    }

    fn pg_event(&self, row: &PgRow) -> Result<LogEvent, SourceError> {
        let (prev_hash, hash) = if self.has_hashes() {
            (row.try_get("prev_hash")?, row.try_get("hash")?)
        } else {
            (None, None)
        };
        let payload: String = row.try_get("payload")?;
        let metadata: String = row.try_get("metadata")?;
        Ok(LogEvent {
            position: row.try_get("global_position")?,
            tx: row.try_get("tx")?,
            stream_type: row.try_get("aggregate_type")?,
            stream_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: parse_json(&payload),
            metadata: parse_json(&metadata),
            payload_text: payload,
            metadata_text: metadata,
            occurred_at: row.try_get("occurred_at")?,
            recorded_at: row.try_get("recorded_at")?,
            prev_hash,
            hash,
        })
    }

    fn sqlite_event(&self, row: &SqliteRow) -> Result<LogEvent, SourceError> {
        let (prev_hash, hash) = if self.has_hashes() {
            (row.try_get("prev_hash")?, row.try_get("hash")?)
        } else {
            (None, None)
        };
        let payload: String = row.try_get("payload")?;
        let metadata: String = row.try_get("metadata")?;
        let occurred_at: String = row.try_get("occurred_at")?;
        let recorded_at: String = row.try_get("recorded_at")?;
        Ok(LogEvent {
            position: row.try_get("global_position")?,
            tx: 0,
            stream_type: row.try_get("aggregate_type")?,
            stream_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: parse_json(&payload),
            metadata: parse_json(&metadata),
            payload_text: payload,
            metadata_text: metadata,
            occurred_at: parse_time(&occurred_at)?,
            recorded_at: parse_time(&recorded_at)?,
            prev_hash,
            hash,
        })
    }
}

/// Passes one page of the log to `visit`. Returns the place to read on from, or `None` when the
/// page was the last one or `visit` stopped.
fn visit_batch(
    batch: Vec<LogEvent>,
    visit: &mut impl FnMut(LogEvent) -> bool,
) -> Option<LogCheckpoint> {
    let last = batch.last()?.checkpoint();
    let complete = batch.len() < BATCH_SIZE;
    for event in batch {
        if !visit(event) {
            return None;
        }
    }
    (!complete).then_some(last)
}

/// Checks that the columns listed for `events` form an event log, and returns whether the hash
/// columns are there.
fn check_columns(columns: &[String]) -> Result<bool, SourceError> {
    if columns.is_empty() {
        return Err(SourceError::NoEventTable);
    }
    let has = |name: &str| columns.iter().any(|column| column == name);
    Ok(has("hash") && has("prev_hash"))
}

fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|error| error.to_string())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, SourceError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| SourceError::InvalidValue(format!("время «{text}»: {error}")))
}

/// Parses a ticket stream id.
pub fn parse_ticket_id(stream_id: &str) -> Option<Uuid> {
    Uuid::parse_str(stream_id).ok()
}
