//! The PostgreSQL backend: schema, connection, appends with the hash chain computed by the
//! writer (`chain.rs`), ticket stream loads, and the reads postgres-es does not offer (the
//! global log, positions, counts). postgres-es's `PostgresEventRepository` remains for
//! [`Store::append_events`](crate::Store::append_events); the insert trigger hashes its rows.

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::persist::PersistenceError;
use chrono::{DateTime, Utc};
use cqrs_es::EventEnvelope;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::Ticket;
use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row};

use crate::chain::{chain_events, ChainedEvent, EventText};
use crate::error::StoreError;
use crate::execute::LoadedStream;
use crate::model::{LazyJson, LogCheckpoint, StoredEvent};
use crate::personal::ResidentKey;

/// Maximum connections of the pool; the api, the projection runner and the importer share it.
const MAX_CONNECTIONS: u32 = 10;

/// How long a caller waits for a free connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Schema of the store. Every statement is idempotent. PostgreSQL runs a multi-statement
/// simple query as one transaction, so the advisory lock (an arbitrary key owned by this
/// schema) serializes servers that start at the same time. The `events` table is postgres-es's, extended by:
/// - `global_position`: taken from an identity sequence at insert time, so it is unique but
///   commits out of order;
/// - `tx_id`: the writing transaction's `xid8`, which orders the log for gap-safe readers
///   (see `READ_LOG`);
/// - `occurred_at`: the business time from the payload (`{"Variant": {..., "occurred_at": ...}}`);
/// - `recorded_at`: the writer's clock at the append;
/// - `prev_hash`, `hash`: the hash chain of the stream (docs/log-format.md).
///
/// The engine's own appends ([`append_stream`], [`append_many`]) write the last four columns,
/// computed in the writing process as on SQLite. A row inserted without a hash (postgres-es's
/// seven columns) gets them from the insert trigger, with the database clock as `recorded_at`.
/// For every other row the trigger's `WHEN` condition skips it without calling PL/pgSQL.
///
/// The writing process sends `NOTIFY opencity_events_appended` after its appends commit, so
/// that the projection runners of every server wake (see [`announce_appends`]). `log_checkpoints` and `log_checkpoint_heads` hold the signed
/// checkpoints.
const SCHEMA: &str = r#"
SELECT pg_advisory_xact_lock(7061626);

CREATE TABLE IF NOT EXISTS events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         json        NOT NULL,
    metadata        json        NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    CONSTRAINT events_global_position_key UNIQUE (global_position)
);

CREATE INDEX IF NOT EXISTS events_tx_id_global_position_idx ON events (tx_id, global_position);

CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          json   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

ALTER TABLE events ADD COLUMN IF NOT EXISTS prev_hash text, ADD COLUMN IF NOT EXISTS hash text;

-- The hash functions are single STABLE expressions (to_char and convert_to are STABLE), so
-- PostgreSQL inlines them into the insert trigger. Called as SQL functions that cannot be
-- inlined, they cost about 150 microseconds per inserted event (measured on PostgreSQL 15).
CREATE OR REPLACE FUNCTION events_format_time(at timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- One field of the hash input: its length in UTF-8 bytes, ':', the value and a newline. A NULL
-- field adds nothing.
CREATE OR REPLACE FUNCTION events_hash_field(value text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(octet_length(convert_to(value, 'UTF8'))::text || ':' || value || E'\n', '')
$$;

-- The canonical v1 event hash of docs/log-format.md; `canonical_event_hash` in Rust.
CREATE OR REPLACE FUNCTION events_canonical_hash(
    stream_type text, stream_id text, seq bigint, event_type text, event_version text,
    occurred_at timestamptz, recorded_at timestamptz, prev_hash text, payload text,
    metadata text
) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(
               events_hash_field('opencity-event-v1') || events_hash_field(stream_type)
               || events_hash_field(stream_id) || events_hash_field(seq::text)
               || events_hash_field(event_type) || events_hash_field(event_version)
               || events_hash_field(events_format_time(occurred_at))
               || events_hash_field(events_format_time(recorded_at))
               || events_hash_field(prev_hash) || events_hash_field(payload)
               || events_hash_field(metadata),
               'UTF8')), 'hex')
$$;

CREATE OR REPLACE FUNCTION events_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    business_time text;
BEGIN
    IF json_typeof(NEW.payload) = 'object' THEN
        SELECT value ->> 'occurred_at' INTO business_time FROM json_each(NEW.payload) LIMIT 1;
    END IF;
    IF business_time IS NULL THEN
        RAISE EXCEPTION 'event % of stream %/% at sequence % has no occurred_at in its payload',
            NEW.event_type, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence
            USING ERRCODE = 'not_null_violation';
    END IF;
    NEW.occurred_at := business_time::timestamptz;

    NEW.prev_hash := '';
    IF NEW.sequence > 1 THEN
        SELECT COALESCE(previous.hash, '') INTO NEW.prev_hash
          FROM events previous
         WHERE previous.aggregate_type = NEW.aggregate_type
           AND previous.aggregate_id = NEW.aggregate_id
           AND previous.sequence = NEW.sequence - 1;
        NEW.prev_hash := COALESCE(NEW.prev_hash, '');
    END IF;
    NEW.hash := events_canonical_hash(
        NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.event_type, NEW.event_version,
        NEW.occurred_at, NEW.recorded_at, NEW.prev_hash, NEW.payload::text, NEW.metadata::text);
    RETURN NEW;
END
$$;

-- Rows that arrive with their hash were chained by the writer.
CREATE OR REPLACE TRIGGER events_before_insert
    BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.hash IS NULL) EXECUTE FUNCTION events_before_insert();

DROP TRIGGER IF EXISTS events_set_occurred_at ON events;
DROP FUNCTION IF EXISTS events_set_occurred_at();

-- Appends are announced by the writing process after the commit (Store::notify_appended): a
-- NOTIFY inside the appending transaction makes every commit wait for a database-wide lock.
DROP TRIGGER IF EXISTS events_after_insert_notify ON events;
DROP FUNCTION IF EXISTS events_notify_appended();

CREATE TABLE IF NOT EXISTS log_checkpoints (
    id            bigint      PRIMARY KEY,
    position      bigint      NOT NULL,
    tx            bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    stream_count  bigint      NOT NULL,
    heads_digest  text        NOT NULL,
    message       text        NOT NULL,
    signature     text        NOT NULL,
    public_key    text        NOT NULL
);

CREATE TABLE IF NOT EXISTS log_checkpoint_heads (
    checkpoint_id bigint NOT NULL REFERENCES log_checkpoints (id),
    stream_type   text   NOT NULL,
    stream_id     text   NOT NULL,
    sequence      bigint NOT NULL,
    hash          text   NOT NULL,
    PRIMARY KEY (checkpoint_id, stream_type, stream_id)
);
"#;

/// The `NOTIFY` channel on which writers announce committed appends.
pub(crate) const APPEND_CHANNEL: &str = "opencity_events_appended";

/// Sends one `NOTIFY` on [`APPEND_CHANNEL`] for each wake-up in `pending`, on a connection of its
/// own, until the store is dropped. The store requests a wake-up after each append has committed
/// and keeps at most one waiting, so a burst of appends costs one or two notifications.
///
/// PostgreSQL serializes the commits of all transactions that notify (one lock for the whole
/// database, held until the commit is flushed), so a `NOTIFY` inside each appending transaction
/// halved the rate of concurrent commands. Sent here, it is a transaction of its own and a
/// listener receives it only after the events are committed. Servers that miss one (a writer
/// killed between its commit and the notification) find the events at their next poll.
pub(crate) async fn announce_appends(pool: PgPool, mut pending: tokio::sync::mpsc::Receiver<()>) {
    while pending.recv().await.is_some() {
        if let Err(error) = sqlx::query("SELECT pg_notify($1, '')").bind(APPEND_CHANNEL).execute(&pool).await {
            tracing::warn!(%error, "announcing appends to other servers failed; they find them at their next poll");
        }
    }
}

/// Columns of a [`StoredEvent`], in the order `stored_event` reads them.
const EVENT_COLUMNS: &str = "global_position, tx_id::text::bigint AS tx, aggregate_type, \
     aggregate_id, sequence, event_type, event_version, payload::text AS payload, \
     metadata::text AS metadata, occurred_at, recorded_at, prev_hash, hash";

/// Reads the log after a checkpoint in `(tx_id, global_position)` order, and only the events of
/// transactions below the snapshot's xmin. Every transaction below xmin has ended and any
/// transaction still to write gets a larger xid, so no event can later appear before a
/// checkpoint the reader has passed. An open transaction delays the reader until it ends.
fn read_log_query() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events
          WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2)
            AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY tx_id, global_position
          LIMIT $3"
    )
}

/// Connects to `url` and creates the schema if it is missing.
pub(crate) async fn open(url: &str) -> Result<PgPool, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    sqlx::raw_sql(crate::tokens::SCHEMA).execute(&pool).await?;
    sqlx::raw_sql(crate::audit::SCHEMA).execute(&pool).await?;
    sqlx::raw_sql(crate::personal::SCHEMA).execute(&pool).await?;
    Ok(pool)
}

/// Rows of one multi-row insert of [`append_stream`]: 11 parameters each stay far below the
/// limit of 65,535 parameters per statement.
const APPEND_ROWS_PER_STATEMENT: usize = 1_000;

/// The columns the engine's appends write, in the order of [`insert_statement`] and
/// [`append_many_statement`].
const APPEND_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata, occurred_at, recorded_at, prev_hash, hash";

/// Appends events of several ticket streams in one statement, which is atomic by itself: all
/// rows are stored or none. `heads` maps the id of each stream that continues stored events to
/// the hash of its last stored event, as [`load_ticket_streams`] returned it. Returns the
/// checkpoint of every appended event by (stream id, sequence). A sequence that is already
/// taken fails with `OptimisticLockError`.
pub(crate) async fn append_many(
    pool: &PgPool,
    events: Vec<EventText>,
    heads: &HashMap<String, String>,
) -> Result<HashMap<(String, i64), LogCheckpoint>, PersistenceError> {
    let chained = chain_events(events, |_, stream_id| heads.get(stream_id).cloned().unwrap_or_default())?;
    let rows = insert_columns(pool, &append_many_statement(""), &chained).await.map_err(append_error)?;
    checkpoints_by_event(&rows).map_err(append_error)
}

/// Runs `statement` ([`append_many_statement`]) with the columns of `events` as its arrays.
async fn insert_columns(pool: &PgPool, statement: &str, events: &[ChainedEvent]) -> Result<Vec<PgRow>, sqlx::Error> {
    let columns = EventColumns::from_events(events);
    sqlx::query(statement)
        .bind(columns.stream_types)
        .bind(columns.stream_ids)
        .bind(columns.sequences)
        .bind(columns.event_types)
        .bind(columns.event_versions)
        .bind(columns.payloads)
        .bind(columns.metadata)
        .bind(columns.occurred_at)
        .bind(columns.recorded_at)
        .bind(columns.prev_hashes)
        .bind(columns.hashes)
        .fetch_all(pool)
        .await
}

/// Reads rows with `aggregate_id`, `sequence`, `tx` and `global_position` into the checkpoint of
/// each event by (stream id, sequence).
fn checkpoints_by_event(rows: &[PgRow]) -> Result<HashMap<(String, i64), LogCheckpoint>, sqlx::Error> {
    let mut checkpoints = HashMap::with_capacity(rows.len());
    for row in rows {
        let key = (row.try_get("aggregate_id")?, row.try_get("sequence")?);
        let checkpoint = LogCheckpoint { tx: row.try_get("tx")?, position: row.try_get("global_position")? };
        checkpoints.insert(key, checkpoint);
    }
    Ok(checkpoints)
}

/// Returns the statement of [`append_many`], which takes one array per column, so its text is the
/// same for any number of events, and returns the positions. `on_conflict` is put before
/// `RETURNING`.
fn append_many_statement(on_conflict: &str) -> String {
    format!(
        "INSERT INTO events ({APPEND_COLUMNS})
         SELECT stream_type, stream_id, sequence, event_type, event_version, payload::json, metadata::json,
                occurred_at, recorded_at, prev_hash, hash
           FROM (SELECT unnest($1::text[]) AS stream_type, unnest($2::text[]) AS stream_id,
                        unnest($3::bigint[]) AS sequence, unnest($4::text[]) AS event_type,
                        unnest($5::text[]) AS event_version, unnest($6::text[]) AS payload,
                        unnest($7::text[]) AS metadata, unnest($8::timestamptz[]) AS occurred_at,
                        unnest($9::timestamptz[]) AS recorded_at, unnest($10::text[]) AS prev_hash,
                        unnest($11::text[]) AS hash) AS appended
         {on_conflict}
         RETURNING aggregate_id, sequence, tx_id::text::bigint AS tx, global_position"
    )
}

/// Chained events as one array per column, for [`append_many_statement`].
#[derive(Default)]
struct EventColumns<'a> {
    stream_types: Vec<&'a str>,
    stream_ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    event_versions: Vec<&'a str>,
    payloads: Vec<&'a str>,
    metadata: Vec<&'a str>,
    occurred_at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hashes: Vec<&'a str>,
    hashes: Vec<&'a str>,
}

impl<'a> EventColumns<'a> {
    fn from_events(events: &'a [ChainedEvent]) -> EventColumns<'a> {
        let mut columns = EventColumns::default();
        for event in events {
            columns.push(event);
        }
        columns
    }

    fn push(&mut self, event: &'a ChainedEvent) {
        self.stream_types.push(&event.event.aggregate_type);
        self.stream_ids.push(&event.event.aggregate_id);
        self.sequences.push(event.sequence);
        self.event_types.push(&event.event.event_type);
        self.event_versions.push(&event.event.event_version);
        self.payloads.push(&event.event.payload);
        self.metadata.push(&event.event.metadata);
        self.occurred_at.push(event.occurred_at);
        self.recorded_at.push(event.recorded_at);
        self.prev_hashes.push(&event.prev_hash);
        self.hashes.push(&event.hash);
    }
}

/// Appends the events of one command, chained to `head_hash` (the hash of the stream's last
/// stored event, empty for a new stream), in a single statement without an explicit
/// transaction, and returns their checkpoints in sequence order. A statement is atomic by
/// itself, so this is one round trip where postgres-es needs three (`BEGIN`, `INSERT`,
/// `COMMIT`) and the caller a fourth to learn the positions. A taken sequence fails with
/// `OptimisticLockError`.
pub(crate) async fn append_stream(
    pool: &PgPool,
    events: Vec<EventText>,
    head_hash: &str,
) -> Result<Vec<LogCheckpoint>, PersistenceError> {
    if events.len() > APPEND_ROWS_PER_STATEMENT {
        return Err(PersistenceError::UnknownError(
            format!("{} events for one command, more than one statement takes", events.len()).into(),
        ));
    }
    let chained = chain_events(events, |_, _| head_hash.to_string())?;
    let insert = insert_statement(
        chained.len(),
        " RETURNING sequence, tx_id::text::bigint AS tx, global_position",
    );
    let mut rows = bind_events(sqlx::query(&insert), &chained)
        .fetch_all(pool)
        .await
        .map_err(append_error)?
        .iter()
        .map(|row| -> Result<(i64, LogCheckpoint), sqlx::Error> {
            let checkpoint = LogCheckpoint { tx: row.try_get("tx")?, position: row.try_get("global_position")? };
            Ok((row.try_get("sequence")?, checkpoint))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(append_error)?;
    rows.sort_by_key(|(sequence, _)| *sequence);
    Ok(rows.into_iter().map(|(_, checkpoint)| checkpoint).collect())
}

/// The events of one command and the hash they chain to, for a group append.
pub(crate) struct AppendRequest {
    pub(crate) events: Vec<EventText>,
    /// The hash of the stream's last stored event; empty for a new stream.
    pub(crate) head_hash: String,
}

/// Maximum number of commands in one load or append group. Later commands wait for the next
/// group.
pub(crate) const MAX_COMMAND_GROUP: usize = 64;

/// Groups of one kind that run at a time. With one, a group gathers every command that arrives
/// while the one before runs, which pays most under heavy load: at 16 clients
/// (api/benches/engine) one gave 6,475 commands/s and two 6,267. Under a light load a command
/// may wait for a statement it could have run beside (4 clients: 2,501 commands/s against 2,659
/// with two).
pub(crate) const MAX_RUNNING_GROUPS: usize = 1;

/// Appends the events of several commands, each on a stream of its own and each of one event,
/// in one statement, and returns the checkpoints of each command's events, or
/// `OptimisticLockError` for a command whose sequence another writer took. A group of one
/// command (of any number of events) is [`append_stream`].
///
/// `ON CONFLICT DO NOTHING` settles each command on its own: a taken sequence skips that row
/// and the others are stored. With one event per command, a command is then stored whole or not
/// at all, which is why a command of several events is never appended in a group.
pub(crate) async fn append_group(pool: PgPool, mut requests: Vec<AppendRequest>) -> Vec<Result<Vec<LogCheckpoint>, PersistenceError>> {
    if requests.len() == 1 {
        let request = requests.remove(0);
        return vec![append_stream(&pool, request.events, &request.head_hash).await];
    }
    debug_assert!(requests.iter().all(|request| request.events.len() == 1));
    let mut chained = Vec::with_capacity(requests.len());
    for request in requests.iter_mut() {
        let head_hash = std::mem::take(&mut request.head_hash);
        match chain_events(std::mem::take(&mut request.events), |_, _| head_hash.clone()) {
            Ok(mut events) => chained.append(&mut events),
            Err(error) => return each_failed(requests.len(), &StoreError::Database(error.to_string().into())),
        }
    }
    let rows = insert_columns(&pool, &append_group_statement(), &chained).await;
    let stored = match rows.map_err(StoreError::from).and_then(|rows| Ok(checkpoints_by_event(&rows)?)) {
        Ok(stored) => stored,
        Err(error) => return each_failed(requests.len(), &error),
    };
    chained
        .iter()
        .map(|event| {
            stored
                .get(&(event.event.aggregate_id.clone(), event.sequence))
                .map(|checkpoint| vec![*checkpoint])
                .ok_or(PersistenceError::OptimisticLockError)
        })
        .collect()
}

/// Returns the error of a failed group once for each of its `count` requests.
fn each_failed<T>(count: usize, error: &StoreError) -> Vec<Result<T, PersistenceError>> {
    (0..count).map(|_| Err(PersistenceError::from(error.duplicate()))).collect()
}

/// Returns the statement of [`append_group`]: [`append_many_statement`] that skips taken sequences.
fn append_group_statement() -> String {
    append_many_statement("ON CONFLICT (aggregate_type, aggregate_id, sequence) DO NOTHING")
}

/// Returns a multi-row `INSERT` of `rows` events, eleven parameters each, followed by `tail`.
fn insert_statement(rows: usize, tail: &str) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = row * 11;
            let [type_, id, sequence, event_type, version, payload, metadata, occurred, recorded, prev, hash] =
                std::array::from_fn(|column| first + column + 1);
            format!(
                "(${type_}, ${id}, ${sequence}, ${event_type}, ${version}, ${payload}::json, ${metadata}::json, \
                  ${occurred}, ${recorded}, ${prev}, ${hash})"
            )
        })
        .collect();
    format!("INSERT INTO events ({APPEND_COLUMNS}) VALUES {}{tail}", values.join(", "))
}

/// Binds the columns of `events` in the order of [`insert_statement`].
fn bind_events<'q>(
    mut query: sqlx::query::Query<'q, Postgres, PgArguments>,
    events: &'q [ChainedEvent],
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    for event in events {
        query = query
            .bind(&event.event.aggregate_type)
            .bind(&event.event.aggregate_id)
            .bind(event.sequence)
            .bind(&event.event.event_type)
            .bind(&event.event.event_version)
            .bind(&event.event.payload)
            .bind(&event.event.metadata)
            .bind(event.occurred_at)
            .bind(event.recorded_at)
            .bind(&event.prev_hash)
            .bind(&event.hash);
    }
    query
}

/// Loads a ticket stream for a command, with the hash of its last event and the key of the
/// subject its registration names (see [`LoadedStream`] and [`LOAD_WITH_KEY`]).
pub(crate) async fn load_ticket_stream(pool: &PgPool, stream_id: &str) -> Result<LoadedStream, StoreError> {
    let rows = sqlx::query(&format!("{LOAD_WITH_KEY} WHERE e.aggregate_type = $1 AND e.aggregate_id = $2 ORDER BY e.sequence"))
        .bind(TICKET_STREAM_TYPE)
        .bind(stream_id)
        .fetch_all(pool)
        .await?;
    let mut loaded = LoadedStream::default();
    for row in &rows {
        loaded.push_with_key(row)?;
    }
    Ok(loaded)
}

/// The stream load of a command without its condition: events with the key in force of the
/// subject the registration names, from a lateral join on the first event only, so that the
/// other rows cost nothing more. A subject has at most one key in force; the `LIMIT` keeps the
/// join a lookup per stream. Without it, the planner may join the streams of a group with every
/// key in force by hashing (2 ms for 6 streams and 7,764 keys, against 0.4 ms).
const LOAD_WITH_KEY: &str = "SELECT e.aggregate_id, e.sequence, e.payload::text AS payload, e.metadata::text AS metadata,
            e.hash, k.subject AS key_subject, k.key_id, k.key_hex
       FROM events e
       LEFT JOIN LATERAL (
           SELECT subject, key_id, key_hex FROM resident_keys
            WHERE e.sequence = 1 AND erased_at IS NULL
              AND subject = COALESCE(
                  NULLIF(btrim(e.payload -> 'TicketRegistered' -> 'requester' ->> 'resident_id'), ''),
                  'ticket:' || e.aggregate_id)
            LIMIT 1
       ) k ON true";

/// Loads the streams of several commands in one query, as [`load_ticket_stream`] loads one,
/// and returns them in the order of `stream_ids`, which contains each stream once. A group of one
/// stream is [`load_ticket_stream`].
pub(crate) async fn load_group(pool: PgPool, stream_ids: Vec<String>) -> Vec<Result<LoadedStream, StoreError>> {
    if let [stream_id] = stream_ids.as_slice() {
        return vec![load_ticket_stream(&pool, stream_id).await];
    }
    let rows = sqlx::query(&format!("{LOAD_WITH_KEY} WHERE e.aggregate_type = $1 AND e.aggregate_id = ANY($2) ORDER BY e.aggregate_id, e.sequence"))
        .bind(TICKET_STREAM_TYPE)
        .bind(&stream_ids)
        .fetch_all(&pool)
        .await;
    let fail_all = |error: sqlx::Error| {
        let error = StoreError::from(error);
        stream_ids.iter().map(|_| Err(error.duplicate())).collect()
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) => return fail_all(error),
    };
    let mut streams: HashMap<String, Result<LoadedStream, StoreError>> = HashMap::new();
    for row in &rows {
        let id: String = match row.try_get("aggregate_id") {
            Ok(id) => id,
            Err(error) => return fail_all(error),
        };
        // A row that does not decode fails its own stream's command only.
        let stream = streams.entry(id).or_insert_with(|| Ok(LoadedStream::default()));
        let failed = match stream {
            Ok(loaded) => loaded.push_with_key(row).err(),
            Err(_) => None,
        };
        if let Some(error) = failed {
            *stream = Err(error);
        }
    }
    stream_ids.iter().map(|id| streams.remove(id).unwrap_or_else(|| Ok(LoadedStream::default()))).collect()
}

/// Loads several ticket streams in one query, for a bulk execution: the events and head hash of
/// each stream that has any, by stream id.
pub(crate) async fn load_ticket_streams(
    pool: &PgPool,
    stream_ids: &[String],
) -> Result<HashMap<String, LoadedStream>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {TICKET_STREAM_COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence"
    ))
    .bind(TICKET_STREAM_TYPE)
    .bind(stream_ids)
    .fetch_all(pool)
    .await?;
    let mut streams: HashMap<String, LoadedStream> = HashMap::new();
    for row in &rows {
        streams.entry(row.try_get("aggregate_id")?).or_default().push(row)?;
    }
    Ok(streams)
}

/// Columns of a ticket stream load, as [`ticket_envelope`] reads them.
const TICKET_STREAM_COLUMNS: &str =
    "aggregate_id, sequence, payload::text AS payload, metadata::text AS metadata, hash";

impl LoadedStream {
    /// Appends the next row of a command's stream load ([`LOAD_WITH_KEY`]): its event, its hash
    /// as the head, and the resident's key when the row carries it.
    fn push_with_key(&mut self, row: &PgRow) -> Result<(), StoreError> {
        self.push(row)?;
        let subject: Option<String> = row.try_get("key_subject")?;
        let id: Option<String> = row.try_get("key_id")?;
        if let (Some(subject), Some(id)) = (subject, id) {
            let key_hex: Option<String> = row.try_get("key_hex")?;
            self.key = Some((subject, ResidentKey::from_row(&id, key_hex.as_deref())?));
        }
        Ok(())
    }

    /// Appends the next row of a ticket stream load: its event, and its hash as the head.
    fn push(&mut self, row: &PgRow) -> Result<(), StoreError> {
        self.events.push(ticket_envelope(row)?);
        self.head_hash = row.try_get::<Option<String>, _>("hash")?.unwrap_or_default();
        Ok(())
    }
}

/// Decodes one row of a ticket stream load, as postgres-es's `load_events` does.
fn ticket_envelope(row: &PgRow) -> Result<EventEnvelope<Ticket>, StoreError> {
    let aggregate_id: String = row.try_get("aggregate_id")?;
    let sequence: i64 = row.try_get("sequence")?;
    let payload: &str = row.try_get("payload")?;
    let metadata: &str = row.try_get("metadata")?;
    Ok(EventEnvelope {
        sequence: usize::try_from(sequence).map_err(|_| {
            StoreError::Database(format!("sequence {sequence} of stream {aggregate_id} is negative").into())
        })?,
        aggregate_id,
        payload: serde_json::from_str(payload)?,
        metadata: serde_json::from_str(metadata)?,
    })
}

fn append_error(error: sqlx::Error) -> PersistenceError {
    let unique_violation = error
        .as_database_error()
        .is_some_and(|database| database.code().as_deref() == Some("23505"));
    if unique_violation {
        PersistenceError::OptimisticLockError
    } else {
        PersistenceError::from(StoreError::from(error))
    }
}

pub(crate) async fn read_log(
    pool: &PgPool,
    after: LogCheckpoint,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(&read_log_query())
        .bind(after.tx)
        .bind(after.position)
        .bind(clamp_limit(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(stored_event).collect()
}

pub(crate) async fn read_committed_log(
    pool: &PgPool,
    after: LogCheckpoint,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM events
          WHERE (tx_id, global_position) > (($1::bigint)::text::xid8, $2)
          ORDER BY tx_id, global_position
          LIMIT $3"
    );
    let rows = sqlx::query(&query)
        .bind(after.tx)
        .bind(after.position)
        .bind(clamp_limit(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(stored_event).collect()
}

pub(crate) async fn load_stream(
    pool: &PgPool,
    stream_type: &str,
    stream_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2
          ORDER BY sequence"
    );
    let rows = sqlx::query(&query)
        .bind(stream_type)
        .bind(stream_id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(stored_event).collect()
}

pub(crate) async fn stream_exists(
    pool: &PgPool,
    stream_type: &str,
    stream_id: &str,
) -> Result<bool, StoreError> {
    let exists = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2)",
    )
    .bind(stream_type)
    .bind(stream_id)
    .fetch_one(pool)
    .await?;
    Ok(exists)
}

pub(crate) async fn last_position(pool: &PgPool) -> Result<i64, StoreError> {
    let position = sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(position)
}

pub(crate) async fn count_events(pool: &PgPool) -> Result<i64, StoreError> {
    let count = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(count)
}

/// Returns the checkpoints of the given `(stream_id, sequence)` pairs of one stream type;
/// pairs that are not stored are missing from the map.
pub(crate) async fn checkpoints_at(
    pool: &PgPool,
    stream_type: &str,
    event_keys: &[(String, i64)],
) -> Result<HashMap<(String, i64), LogCheckpoint>, StoreError> {
    let (ids, sequences): (Vec<String>, Vec<i64>) = event_keys.iter().cloned().unzip();
    let rows = sqlx::query(
        "SELECT e.aggregate_id, e.sequence, e.global_position, e.tx_id::text::bigint AS tx
           FROM events e
           JOIN unnest($2::text[], $3::bigint[]) AS requested(aggregate_id, sequence)
             ON e.aggregate_id = requested.aggregate_id AND e.sequence = requested.sequence
          WHERE e.aggregate_type = $1",
    )
    .bind(stream_type)
    .bind(ids)
    .bind(sequences)
    .fetch_all(pool)
    .await?;
    Ok(checkpoints_by_event(&rows)?)
}

pub(crate) fn stored_event(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let stored_payload: String = row.try_get("payload")?;
    let stored_metadata: String = row.try_get("metadata")?;
    Ok(StoredEvent {
        position: row.try_get("global_position")?,
        tx: row.try_get("tx")?,
        stream_type: row.try_get("aggregate_type")?,
        stream_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        // The `json` columns hold valid JSON; it is parsed only where a `Value` is read.
        payload: LazyJson::from_text(stored_payload.clone()),
        metadata: LazyJson::from_text(stored_metadata.clone()),
        occurred_at: row.try_get("occurred_at")?,
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        stored_payload,
        stored_metadata,
    })
}

/// Converts a read limit to SQL, where `LIMIT` takes a signed integer.
pub(crate) fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
