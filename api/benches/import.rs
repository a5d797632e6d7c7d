//! Import rate of the LA 311 extract on both stores, against a raw-SQL baseline in the same run.
//!
//! Run: `cargo bench -p opencity-api --bench import` (PostgreSQL on 127.0.0.1:5432, trust auth).
//! Each round imports the file into a fresh SQLite file and a fresh PostgreSQL database through
//! the engine: parse, decide, and append 100 tickets per transaction, 4 transactions at once.
//! The raw baseline then writes the same stored events into a plain table with one INSERT per
//! event and the same transaction grouping. The report gives medians of events per second and
//! the engine/raw ratio.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use opencity_api::import::write_tickets;
use opencity_domain::TicketServices;
use opencity_fixtures::import::{parse_file, ImportFormat};
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{DbPool, LogCheckpoint, Store, StoredEvent, WriteTransaction};

/// The allocator of the `opencity` binary (api/src/main.rs), so that the import is measured
/// as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 3;
const BASELINE_CONCURRENCY: usize = 4;
const BATCH_STREAMS: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/la311_2017_subset_hackforla.csv");
    let bytes = std::fs::read(&path)?;
    let services = TicketServices { sla: Arc::new(opencity_fixtures::sla::default_catalogue()?) };

    let mut results: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let mut engine_rates = Vec::new();
        let mut raw_rates = Vec::new();
        for round in 0..ROUNDS {
            let (engine, raw) = match backend {
                "sqlite" => {
                    let (_dir, config) = temp_sqlite();
                    let store = Store::open(&config).await?;
                    measure(&store, &services, &bytes).await?
                }
                _ => {
                    let database = temp_postgres().await;
                    let store = Store::open(&database.config()).await?;
                    let rates = measure(&store, &services, &bytes).await?;
                    drop(store);
                    database.cleanup().await;
                    rates
                }
            };
            eprintln!("{backend} round {}: engine {engine:.0} events/s, raw {raw:.0} events/s", round + 1);
            engine_rates.push(engine);
            raw_rates.push(raw);
        }
        results.push((backend, engine_rates, raw_rates));
    }

    println!("| store | engine import, events/s (median of {ROUNDS}) | raw INSERT baseline, events/s | engine / raw |");
    println!("|---|---|---|---|");
    for (backend, engine, raw) in results {
        let (engine, raw) = (median(engine), median(raw));
        println!("| {backend} | {engine:.0} | {raw:.0} | {:.2} |", engine / raw);
    }
    Ok(())
}

/// Imports the file through the engine, then replays its stored events as raw INSERTs.
async fn measure(store: &Store, services: &TicketServices, bytes: &[u8]) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let mut parsed = parse_file(ImportFormat::La311, bytes).map_err(|error| anyhow::anyhow!(error.message_ru()))?;
    parsed.fit_to_catalogue(&services.sla);
    let summary = write_tickets(store, services, parsed.tickets, "bench").await?;
    let engine_rate = summary.events as f64 / started.elapsed().as_secs_f64();

    let events = store.read_log(LogCheckpoint::default(), usize::MAX).await?;
    let raw_rate = raw_insert(store, events).await?;
    Ok((engine_rate, raw_rate))
}

async fn raw_insert(store: &Store, events: Vec<StoredEvent>) -> anyhow::Result<f64> {
    const CREATE: &str = "CREATE TABLE raw_events (stream_id TEXT NOT NULL, sequence BIGINT NOT NULL, \
        event_type TEXT NOT NULL, payload TEXT NOT NULL, metadata TEXT NOT NULL, PRIMARY KEY (stream_id, sequence))";
    const INSERT: &str = "INSERT INTO raw_events (stream_id, sequence, event_type, payload, metadata) VALUES ($1, $2, $3, $4, $5)";
    match store.pool() {
        DbPool::Postgres(pool) => sqlx::query(CREATE).execute(pool).await.map(|_| ())?,
        DbPool::Sqlite(pool) => sqlx::query(CREATE).execute(pool).await.map(|_| ())?,
    }

    // The same grouping as the import: the events of 100 streams per transaction, 4 at once.
    let mut streams: std::collections::BTreeMap<String, Vec<StoredEvent>> = Default::default();
    let total = events.len();
    for event in events {
        streams.entry(event.stream_id.clone()).or_default().push(event);
    }
    let streams: Vec<Vec<StoredEvent>> = streams.into_values().collect();
    let batches: Vec<Vec<StoredEvent>> = streams.chunks(BATCH_STREAMS).map(|chunk| chunk.concat()).collect();

    let started = Instant::now();
    let outcomes: Vec<anyhow::Result<()>> = stream::iter(batches)
        .map(|batch| async move {
            macro_rules! write_batch {
                ($tx:expr) => {{
                    for event in &batch {
                        sqlx::query(INSERT)
                            .bind(&event.stream_id)
                            .bind(event.sequence)
                            .bind(&event.event_type)
                            .bind(event.payload.to_string())
                            .bind(event.metadata.to_string())
                            .execute(&mut *$tx)
                            .await?;
                    }
                }};
            }
            let mut transaction = store.begin_write().await?;
            match &mut transaction {
                WriteTransaction::Postgres(tx) => write_batch!(*tx),
                WriteTransaction::Sqlite(write) => write_batch!(write.transaction),
            }
            transaction.commit().await?;
            Ok(())
        })
        .buffer_unordered(BASELINE_CONCURRENCY)
        .collect()
        .await;
    for outcome in outcomes {
        outcome?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
