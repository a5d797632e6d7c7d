//! Rebuilding the read models without downtime. The whole log is folded into new tables while
//! the live ones keep serving. Then one short transaction catches up with the events written
//! meanwhile, swaps the new tables in and bumps the generation, so every running server reloads
//! its memory from them.

use std::collections::{BTreeMap, BTreeSet};

use opencity_store::{DbPool, LogCheckpoint, Store, StoredEvent, WriteTransaction};
use uuid::Uuid;

use crate::fold::TicketView;
use crate::reference::{ReferenceEntity, ReferenceIndex};
use crate::runner::{compress_views_with_lz4, fold_into_maps, ProjectionError, TableRows, TABLES_KEY, TICKET_VIEWS};

/// Events read from the log at once.
const READ_BATCH: usize = 5_000;
/// Rows written to the new tables per statement group.
const WRITE_BATCH: usize = 1_000;

/// The progress of a rebuild, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebuildProgress {
    /// `done` of about `total` events folded.
    Folding { done: u64, total: u64 },
    /// `done` of `total` views written to the new tables.
    Writing { done: u64, total: u64 },
    /// The short final transaction: catching up and swapping the tables.
    Swapping,
}

/// The counts and result of a finished rebuild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildReport {
    /// Events folded from the log, including those caught up during the swap.
    pub events: u64,
    /// Events that arrived while the new tables were written and were applied in the swap.
    pub caught_up: u64,
    pub views: u64,
    pub reference_entities: u64,
    /// The checkpoint of the new tables.
    pub checkpoint: LogCheckpoint,
    /// The generation of the new tables.
    pub generation: i64,
}

/// Rebuilds the ticket views and reference tables from the whole log and swaps them in.
/// The live tables serve until the swap; `progress` is called as the work advances.
pub async fn rebuild(
    store: &Store,
    mut progress: impl FnMut(RebuildProgress),
) -> Result<RebuildReport, ProjectionError> {
    // Make sure the live tables exist, so the swap has something to replace.
    crate::runner::ReadModel::open(store.clone()).await?;
    let pool = store.pool();
    for statement in [
        "DROP TABLE IF EXISTS ticket_views_next",
        "DROP TABLE IF EXISTS reference_entities_next",
        "CREATE TABLE ticket_views_next (
            id TEXT PRIMARY KEY,
            external_id TEXT,
            last_position BIGINT NOT NULL,
            payload TEXT NOT NULL
        )",
        "CREATE TABLE reference_entities_next (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (kind, id)
        )",
    ] {
        execute(pool, statement).await?;
    }
    if let DbPool::Postgres(pool) = pool {
        compress_views_with_lz4(&mut *pool.acquire().await?, "ticket_views_next").await?;
    }

    let total = store.count_events().await?.max(0) as u64;
    let mut views: BTreeMap<Uuid, TicketView> = BTreeMap::new();
    let mut reference = ReferenceIndex::default();
    let mut checkpoint = LogCheckpoint::START;
    let mut events_folded = 0u64;
    loop {
        let events = store.read_log(checkpoint, READ_BATCH).await?;
        let Some(last) = events.last() else { break };
        checkpoint = last.checkpoint();
        fold_into_maps(&mut views, &mut reference, &events)?;
        events_folded += events.len() as u64;
        progress(RebuildProgress::Folding { done: events_folded, total: total.max(events_folded) });
    }

    let view_total = views.len() as u64;
    let rows: Vec<&TicketView> = views.values().collect();
    let mut written = 0u64;
    for chunk in rows.chunks(WRITE_BATCH) {
        let table_rows = TableRows::new(chunk.iter().copied(), &[])?;
        // The swap below commits synchronously, which flushes these commits too.
        let mut transaction = store.begin_derived_write(None).await?;
        table_rows.write(&mut transaction, "ticket_views_next", "reference_entities_next").await?;
        transaction.commit().await?;
        written += chunk.len() as u64;
        progress(RebuildProgress::Writing { done: written, total: view_total });
    }

    progress(RebuildProgress::Swapping);
    let mut transaction = store.begin_write().await?;
    if let WriteTransaction::Postgres(tx) = &mut transaction {
        // Waits for a projection commit in flight and holds off the next until the swap ends.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(TABLES_KEY).execute(&mut **tx).await?;
    }
    // Applies the events committed since the fold. On PostgreSQL the lock above does not stop
    // appends, so the servers apply whatever commits after this read once the swap is done.
    let mut caught_up = 0u64;
    let mut touched: BTreeSet<Uuid> = BTreeSet::new();
    loop {
        let events: Vec<StoredEvent> = store.read_log(checkpoint, READ_BATCH).await?;
        let Some(last) = events.last() else { break };
        checkpoint = last.checkpoint();
        for event in &events {
            if let Ok(id) = Uuid::parse_str(&event.stream_id) {
                touched.insert(id);
            }
        }
        fold_into_maps(&mut views, &mut reference, &events)?;
        caught_up += events.len() as u64;
    }
    let entities: Vec<ReferenceEntity> = reference.entities().collect();
    let late = TableRows::new(touched.iter().filter_map(|id| views.get(id)), &entities)?;
    late.write(&mut transaction, "ticket_views_next", "reference_entities_next").await?;

    let generation = swap_tables(&mut transaction, checkpoint).await?;
    transaction.commit().await?;

    Ok(RebuildReport {
        events: events_folded + caught_up,
        caught_up,
        views: views.len() as u64,
        reference_entities: entities.len() as u64,
        checkpoint,
        generation,
    })
}

/// Replaces the live tables by the new ones, sets the checkpoint and bumps the generation,
/// inside `transaction`. Returns the new generation.
async fn swap_tables(
    transaction: &mut WriteTransaction,
    checkpoint: LogCheckpoint,
) -> Result<i64, ProjectionError> {
    const SWAP: [&str; 8] = [
        "DROP TABLE ticket_views",
        "ALTER TABLE ticket_views_next RENAME TO ticket_views",
        "DROP TABLE reference_entities",
        "ALTER TABLE reference_entities_next RENAME TO reference_entities",
        "CREATE INDEX IF NOT EXISTS ticket_views_external_id ON ticket_views (external_id)",
        "UPDATE projection_checkpoints SET tx = $1, position = $2 WHERE name = $3",
        "UPDATE read_model_generations SET generation = generation + 1 WHERE name = $1",
        "SELECT generation FROM read_model_generations WHERE name = $1",
    ];
    macro_rules! swap {
        ($tx:expr) => {{
            for statement in &SWAP[..5] {
                sqlx::query(statement).execute(&mut *$tx).await?;
            }
            sqlx::query(SWAP[5])
                .bind(checkpoint.tx)
                .bind(checkpoint.position)
                .bind(TICKET_VIEWS)
                .execute(&mut *$tx)
                .await?;
            sqlx::query(SWAP[6]).bind(TICKET_VIEWS).execute(&mut *$tx).await?;
            let generation: i64 = sqlx::query_scalar(SWAP[7]).bind(TICKET_VIEWS).fetch_one(&mut *$tx).await?;
            generation
        }};
    }
    let generation = match transaction {
        WriteTransaction::Postgres(tx) => swap!(*tx),
        WriteTransaction::Sqlite(write) => swap!(write.transaction),
    };
    Ok(generation)
}

async fn execute(pool: &DbPool, statement: &str) -> Result<(), sqlx::Error> {
    match pool {
        DbPool::Postgres(pool) => sqlx::query(statement).execute(pool).await.map(|_| ()),
        DbPool::Sqlite(pool) => sqlx::query(statement).execute(pool).await.map(|_| ()),
    }
}
