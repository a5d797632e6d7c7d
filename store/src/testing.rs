//! Throwaway databases for tests of this and other crates.
//!
//! PostgreSQL tests create a database named `opencity_test_<uuid>` and drop it afterwards. The
//! server is given by the `OPENCITY_TEST_PG` variable, a URL without a database name, with the
//! default `postgres://postgres@127.0.0.1:5432`.

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;

use crate::config::StoreConfig;
use crate::error::StoreError;

/// Environment variable with the PostgreSQL server for tests.
pub const TEST_PG_VARIABLE: &str = "OPENCITY_TEST_PG";

const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432";

/// A PostgreSQL database that exists for one test. Call [`cleanup`](TempDatabase::cleanup) at
/// the end; if the test panics first, dropping the value drops the database.
#[derive(Debug)]
pub struct TempDatabase {
    pub name: String,
    /// Connection URL of the database.
    pub url: String,
    /// URL of the server's `postgres` database, used to create and drop this one.
    admin_url: String,
    dropped: bool,
}

impl TempDatabase {
    /// Returns the store configuration for this database.
    pub fn config(&self) -> StoreConfig {
        StoreConfig::Postgres {
            url: self.url.clone(),
        }
    }

    /// Drops the database, closing any connections still open to it.
    pub async fn cleanup(mut self) {
        if let Err(error) = drop_database(&self.admin_url, &self.name).await {
            tracing::warn!(database = %self.name, cause = %error, "failed to drop test database");
        }
        self.dropped = true;
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and the caller's runtime may be shutting down, so the database is
        // dropped from a thread with its own runtime.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(drop_database(&admin_url, &name));
            }
        });
        let _ = dropper.join();
    }
}

/// Creates an empty database for one test.
pub async fn try_temp_postgres() -> Result<TempDatabase, StoreError> {
    let base = std::env::var(TEST_PG_VARIABLE).unwrap_or_else(|_| DEFAULT_TEST_PG.to_string());
    let base = base.trim_end_matches('/');
    let name = format!("opencity_test_{}", Uuid::new_v4().simple());
    let admin_url = format!("{base}/postgres");

    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;

    Ok(TempDatabase {
        url: format!("{base}/{name}"),
        name,
        admin_url,
        dropped: false,
    })
}

/// Creates an empty database for one test.
///
/// # Panics
/// Panics when the PostgreSQL server of `OPENCITY_TEST_PG` cannot be reached.
pub async fn temp_postgres() -> TempDatabase {
    match try_temp_postgres().await {
        Ok(database) => database,
        Err(error) => panic!(
            "cannot create a test database on the server of {TEST_PG_VARIABLE} \
             (default {DEFAULT_TEST_PG}): {error}"
        ),
    }
}

/// Returns a fresh data directory and the SQLite configuration that uses it. The directory is
/// deleted when the `TempDir` is dropped.
///
/// # Panics
/// Panics when no temporary directory can be created.
pub fn temp_sqlite() -> (TempDir, StoreConfig) {
    let directory = match tempfile::tempdir() {
        Ok(directory) => directory,
        Err(error) => panic!("cannot create a temporary data directory: {error}"),
    };
    // A subdirectory that does not exist yet, so tests also cover its creation on open.
    let config = StoreConfig::Sqlite {
        data_dir: directory.path().join("data"),
    };
    (directory, config)
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await
}

/// Tampering with a stored log by direct SQL, as someone with write access to the database but
/// without the checkpoint signing key could do it. Tests of the store and of the replay tool
/// use these to check that verification finds each change.
///
/// Every function panics when its statement fails or changes no row, because a tampering that
/// silently did nothing would let a verification test pass for the wrong reason.
pub mod tamper {
    use chrono::{DateTime, Utc};
    use ed25519_dalek::SigningKey;

    use crate::config::DbPool;
    use crate::integrity::{canonical_event_hash, format_timestamp, sign_message, EventHashInput};
    use crate::model::StoredEvent;
    use crate::store::Store;

    /// Sequence added to events while they are renumbered, above any real sequence, so that
    /// no intermediate row collides with the primary key.
    const RENUMBER_OFFSET: i64 = 1_000_000_000;

    /// Runs one statement with bound parameters on either backend and returns the rows it
    /// changed. SQLite reads `$1`, `$2`, … as parameters numbered in order of appearance.
    macro_rules! execute {
        ($store:expr, $sql:expr $(, $bind:expr)* $(,)?) => {{
            let sql: &str = $sql;
            let done = match $store.pool() {
                DbPool::Postgres(pool) => sqlx::query(sql)$(.bind($bind))*.execute(pool).await
                    .map(|done| done.rows_affected()),
                DbPool::Sqlite(pool) => sqlx::query(sql)$(.bind($bind))*.execute(pool).await
                    .map(|done| done.rows_affected()),
            };
            match done {
                Ok(rows) => rows,
                Err(error) => panic!("tampering statement failed: {error}\n{sql}"),
            }
        }};
    }

    /// Returns `cast` (such as `::json`) on PostgreSQL, where a bound text needs it to fill a
    /// typed column, and nothing on SQLite, whose columns hold the text itself.
    fn pg_cast(store: &Store, cast: &'static str) -> &'static str {
        match store.pool() {
            DbPool::Postgres(_) => cast,
            DbPool::Sqlite(_) => "",
        }
    }

    async fn stream(store: &Store, stream_type: &str, stream_id: &str) -> Vec<StoredEvent> {
        match store.load_stream(stream_type, stream_id).await {
            Ok(events) => events,
            Err(error) => panic!("cannot load stream {stream_type}/{stream_id}: {error}"),
        }
    }

    async fn event(
        store: &Store,
        stream_type: &str,
        stream_id: &str,
        sequence: i64,
    ) -> StoredEvent {
        let events = stream(store, stream_type, stream_id).await;
        match events.into_iter().find(|event| event.sequence == sequence) {
            Some(event) => event,
            None => panic!("stream {stream_type}/{stream_id} has no event {sequence}"),
        }
    }

    /// Parses a stored payload, applies `edit` and returns the new JSON text.
    ///
    /// # Panics
    /// Panics when the payload is not JSON or `edit` leaves it unchanged.
    fn edited(stored_payload: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut payload: serde_json::Value = match serde_json::from_str(stored_payload) {
            Ok(payload) => payload,
            Err(error) => panic!("stored payload is not JSON: {error}"),
        };
        let original = payload.clone();
        edit(&mut payload);
        assert_ne!(payload, original, "the payload edit changed nothing");
        payload.to_string()
    }

    /// Rewrites the payload of one event with `edit` applied, keeping its stored hash.
    pub async fn edit_payload(
        store: &Store,
        stream_type: &str,
        stream_id: &str,
        sequence: i64,
        edit: impl FnOnce(&mut serde_json::Value),
    ) {
        let target = event(store, stream_type, stream_id, sequence).await;
        let payload = edited(&target.stored_payload, edit);
        let sql = format!(
            "UPDATE events SET payload = $1{}
              WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4",
            pg_cast(store, "::json")
        );
        let rows = execute!(store, &sql, payload, stream_type, stream_id, sequence);
        assert_eq!(rows, 1, "payload of {stream_id}/{sequence} not changed");
    }

    /// Rewrites the metadata of one event, keeping its stored hash.
    pub async fn set_metadata(
        store: &Store,
        stream_type: &str,
        stream_id: &str,
        sequence: i64,
        metadata: &serde_json::Value,
    ) {
        let sql = format!(
            "UPDATE events SET metadata = $1{}
              WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4",
            pg_cast(store, "::json")
        );
        let metadata = metadata.to_string();
        let rows = execute!(store, &sql, metadata, stream_type, stream_id, sequence);
        assert_eq!(rows, 1, "metadata of {stream_id}/{sequence} not changed");
    }

    /// Rewrites the business time column (`occurred_at`) of one event, keeping its payload
    /// and stored hash.
    pub async fn set_occurred_at(
        store: &Store,
        stream_type: &str,
        stream_id: &str,
        sequence: i64,
        at: DateTime<Utc>,
    ) {
        let sql = format!(
            "UPDATE events SET occurred_at = $1{}
              WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4",
            pg_cast(store, "::timestamptz")
        );
        let at = format_timestamp(at);
        let rows = execute!(store, &sql, at, stream_type, stream_id, sequence);
        assert_eq!(
            rows, 1,
            "business time of {stream_id}/{sequence} not changed"
        );
    }

    /// Deletes one event.
    pub async fn delete_event(store: &Store, stream_type: &str, stream_id: &str, sequence: i64) {
        let rows = execute!(
            store,
            "DELETE FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
            stream_type,
            stream_id,
            sequence,
        );
        assert_eq!(rows, 1, "event {stream_id}/{sequence} not deleted");
    }

    /// Swaps the sequences of two events of a stream. Their places in the log do not change.
    pub async fn swap_events(
        store: &Store,
        stream_type: &str,
        stream_id: &str,
        first: i64,
        second: i64,
    ) {
        const RENUMBER: &str = "UPDATE events SET sequence = $1
              WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4";
        let parked = first + RENUMBER_OFFSET;
        for (to, from) in [(parked, first), (first, second), (second, parked)] {
            let rows = execute!(store, RENUMBER, to, stream_type, stream_id, from);
            assert_eq!(rows, 1, "event {stream_id}/{from} not renumbered");
        }
    }

    /// Inserts a forged event at `sequence`: a copy of the event now there with `edit`
    /// applied to its payload. The events from `sequence` on move up by one, and the chain of
    /// the whole stream is recomputed, so every stored hash matches again. The forgery gets a
    /// new, later place in the log.
    pub async fn forge_event(
        store: &Store,
        stream_type: &str,
        stream_id: &str,
        sequence: i64,
        edit: impl FnOnce(&mut serde_json::Value),
    ) {
        let template = event(store, stream_type, stream_id, sequence).await;
        let payload = edited(&template.stored_payload, edit);

        const SHIFT: &str = "UPDATE events SET sequence = sequence + $1
              WHERE aggregate_type = $2 AND aggregate_id = $3 AND sequence >= $4";
        execute!(
            store,
            SHIFT,
            RENUMBER_OFFSET,
            stream_type,
            stream_id,
            sequence
        );
        let parked = sequence + RENUMBER_OFFSET;
        execute!(
            store,
            SHIFT,
            1 - RENUMBER_OFFSET,
            stream_type,
            stream_id,
            parked
        );

        // On PostgreSQL the insert trigger sets `occurred_at`, `prev_hash` and `hash` itself;
        // the chain is recomputed below on both backends anyway.
        let sql = format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, occurred_at, recorded_at,
                                 prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6{json}, $7{json}, $8{time}, $9{time}, '', '')",
            json = pg_cast(store, "::json"),
            time = pg_cast(store, "::timestamptz"),
        );
        let rows = execute!(
            store,
            &sql,
            stream_type,
            stream_id,
            sequence,
            template.event_type.as_str(),
            template.event_version.as_str(),
            payload,
            template.stored_metadata.as_str(),
            format_timestamp(template.occurred_at),
            format_timestamp(template.recorded_at),
        );
        assert_eq!(rows, 1, "forged event {stream_id}/{sequence} not inserted");

        recompute_chain(store, stream_type, stream_id).await;
    }

    /// Recomputes `prev_hash` and `hash` of every event of a stream in sequence order, as any
    /// forger can, because the hash format is public.
    pub async fn recompute_chain(store: &Store, stream_type: &str, stream_id: &str) {
        let mut previous = String::new();
        for event in stream(store, stream_type, stream_id).await {
            let hash = canonical_event_hash(&EventHashInput::of_stored(&event, &previous));
            let rows = execute!(
                store,
                "UPDATE events SET prev_hash = $1, hash = $2
                  WHERE aggregate_type = $3 AND aggregate_id = $4 AND sequence = $5",
                previous.as_str(),
                hash.as_str(),
                stream_type,
                stream_id,
                event.sequence,
            );
            assert_eq!(
                rows, 1,
                "hash of {stream_id}/{} not rewritten",
                event.sequence
            );
            previous = hash;
        }
    }

    /// Replaces the signature of checkpoint `checkpoint_id` with a valid signature of the same
    /// message by `impostor`, leaving the recorded public key as it is.
    pub async fn replace_checkpoint_signature(
        store: &Store,
        checkpoint_id: i64,
        impostor: &SigningKey,
    ) {
        let checkpoints = match store.list_checkpoints().await {
            Ok(checkpoints) => checkpoints,
            Err(error) => panic!("cannot list checkpoints: {error}"),
        };
        let Some(checkpoint) = checkpoints.iter().find(|c| c.id == checkpoint_id) else {
            panic!("no checkpoint {checkpoint_id}");
        };
        let signature = sign_message(impostor, &checkpoint.message());
        assert_ne!(
            signature, checkpoint.signature,
            "the impostor is the signer"
        );
        let rows = execute!(
            store,
            "UPDATE log_checkpoints SET signature = $1 WHERE id = $2",
            signature,
            checkpoint_id,
        );
        assert_eq!(
            rows, 1,
            "signature of checkpoint {checkpoint_id} not replaced"
        );
    }
}
