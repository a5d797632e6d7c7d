//! Bulk import, projection catch-up and rebuild over one imported log per round, against raw
//! writes and reads of PostgreSQL.
//!
//! A round imports the demo city through `write_tickets`, the path of `opencity import`: 100
//! tickets per `Store::execute_many` transaction, 8 transactions at once. Over that log it then
//! measures a fresh `ReadModel` catching up from an empty checkpoint and `opencity-replay
//! rebuild`. The same-rows baselines write the very rows the engine stored into a plain table
//! of the same database (10-row INSERTs on 4 connections, and one COPY), and read the engine's
//! table in log order. `run_raw.sh` then gives the script baselines on a database of its own.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use opencity_api::import::write_tickets;
use opencity_projections::runner::ReadModel;
use opencity_store::testing::{temp_postgres, TempDatabase};
use opencity_store::Store;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgPool, Row};

use crate::command::checkpoint;
use crate::raw::{self, RawScripts};
use crate::report::{self, Figure, Target};
use crate::Settings;

/// Rows per INSERT statement of the same-rows baseline, as in `append_10_multirow.sql`.
const MULTIROW: usize = 10;

/// Connections of the same-rows INSERT baseline, as many as the import's parallel transactions.
const MULTIROW_CONNECTIONS: usize = 4;

/// Seconds of each pgbench run in `run_raw.sh read`, which this benchmark does not report.
const READ_PGBENCH_SECONDS: &str = "2";

#[derive(Default)]
struct Rounds {
    import: Vec<f64>,
    same_rows_insert: Vec<f64>,
    same_rows_copy: Vec<f64>,
    catch_up: Vec<f64>,
    rebuild: Vec<f64>,
    same_table_scan: Vec<f64>,
    store_read_log: Vec<f64>,
}

pub async fn run(settings: &Settings, raw_scripts: &RawScripts) -> anyhow::Result<Vec<Figure>> {
    let mut rounds = Rounds::default();
    for round in 1..=settings.repeats {
        let database = temp_postgres().await;
        let outcome = engine_round(settings, &database, &mut rounds).await;
        database.cleanup().await;
        outcome?;
        eprintln!(
            "engine bulk round {round}: import {:.0}, same-rows INSERT {:.0}, same-rows COPY {:.0}, catch-up {:.0}, rebuild {}, same-table scan {:.0}, Store::read_log {:.0} events/s (load: {})",
            rounds.import[round - 1],
            rounds.same_rows_insert[round - 1],
            rounds.same_rows_copy[round - 1],
            rounds.catch_up[round - 1],
            rounds.rebuild.get(round - 1).map_or("not run".to_string(), |rate| format!("{rate:.0}")),
            rounds.same_table_scan[round - 1],
            rounds.store_read_log[round - 1],
            report::load_average()
        );
    }

    let lines = if settings.raw_baselines { raw_baselines(settings, raw_scripts).await? } else { Vec::new() };
    let multirow_4 = raw::rates(&lines, "append_10_multirow", 4);
    let multirow_16 = raw::rates(&lines, "append_10_multirow", 16);
    let copy = raw::rates(&lines, "copy_in_1m", 1);
    let read_rows = raw::rates(&lines, "read_ordered_client_rows", 1);
    let read_copy = raw::rates(&lines, "read_ordered_client", 1);

    let figure = |name: &str, engine: &[f64], baseline_name: &str, baseline: Vec<f64>, target: Target| Figure {
        name: name.to_string(),
        unit: "events/s",
        engine: engine.to_vec(),
        baseline_name: baseline_name.to_string(),
        baseline,
        target,
    };
    let mut figures = vec![
        figure("bulk import", &rounds.import, "COPY of 1M rows (run_raw.sh copy)", copy, Target::MinRatio(0.5)),
        figure("bulk import", &rounds.import, "COPY of the same rows", rounds.same_rows_copy.clone(), Target::MinRatio(0.5)),
        figure("bulk import", &rounds.import, "10-row INSERTs, 16 clients (pgbench)", multirow_16, Target::None),
        figure("bulk import", &rounds.import, "10-row INSERTs, 4 clients (pgbench)", multirow_4, Target::None),
        figure("bulk import", &rounds.import, "10-row INSERTs of the same rows, 4 connections", rounds.same_rows_insert.clone(), Target::None),
        figure("projection catch-up", &rounds.catch_up, "ordered scan read by psql, rows (run_raw.sh read)", read_rows.clone(), Target::MinRatio(0.6)),
        figure("projection catch-up", &rounds.catch_up, "ordered scan read by psql, COPY (run_raw.sh read)", read_copy, Target::None),
        figure("projection catch-up", &rounds.catch_up, "ordered scan of the engine's log read by sqlx", rounds.same_table_scan.clone(), Target::MinRatio(0.6)),
    ];
    figures.push(figure(
        "log read by Store::read_log (part of catch-up)",
        &rounds.store_read_log,
        "ordered scan of the engine's log read by sqlx",
        rounds.same_table_scan.clone(),
        Target::None,
    ));
    if !rounds.rebuild.is_empty() {
        figures.push(figure("full rebuild (opencity-replay rebuild)", &rounds.rebuild, "ordered scan read by psql, rows (run_raw.sh read)", read_rows, Target::None));
        figures.push(figure("full rebuild (opencity-replay rebuild)", &rounds.rebuild, "ordered scan of the engine's log read by sqlx", rounds.same_table_scan, Target::None));
    }
    Ok(figures)
}

async fn engine_round(settings: &Settings, database: &TempDatabase, rounds: &mut Rounds) -> anyhow::Result<()> {
    let store = Store::open(&database.config()).await?;
    let pool = match store.pool() {
        opencity_store::DbPool::Postgres(pool) => pool.clone(),
        opencity_store::DbPool::Sqlite(_) => anyhow::bail!("the bulk benchmark runs on PostgreSQL only"),
    };
    let city = opencity_fixtures::demo::demo_city(2026, settings.bulk_tickets, Utc::now());
    checkpoint(&store).await?;

    let started = Instant::now();
    let summary = write_tickets(&store, &settings.services, city.tickets, "bench").await?;
    rounds.import.push(report::rate(summary.events, started.elapsed()));
    anyhow::ensure!(summary.rejected == 0, "{} demo tickets were rejected", summary.rejected);
    let events = summary.events;

    let read_model = ReadModel::open(store.clone()).await?;
    let started = Instant::now();
    let applied = read_model.catch_up().await?;
    rounds.catch_up.push(report::rate(applied, started.elapsed()));
    anyhow::ensure!(applied == events, "catch-up applied {applied} of {events} events");
    drop(read_model);

    if let Some(binary) = &settings.replay_binary {
        rounds.rebuild.push(report::rate(events, replay_rebuild(binary, &database.url).await?));
    }
    rounds.same_table_scan.push(report::rate(events, scan_log(&pool).await?));
    rounds.store_read_log.push(report::rate(events, read_whole_log(&store).await?));

    let rows = stored_rows(&pool).await?;
    checkpoint(&store).await?;
    rounds.same_rows_insert.push(report::rate(rows.len(), insert_multirow(&pool, &rows).await?));
    rounds.same_rows_copy.push(report::rate(rows.len(), copy_rows(&pool, &rows).await?));
    Ok(())
}

/// Runs `opencity-replay rebuild`, which folds the whole log in memory and writes nothing.
async fn replay_rebuild(binary: &std::path::Path, url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = tokio::process::Command::new(binary)
        .args(["rebuild", "--database-url", url])
        .output()
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "opencity-replay rebuild failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

/// Reads the engine's events table in log order on one connection, as a client that receives
/// every column, without decoding the JSON.
async fn scan_log(pool: &PgPool) -> anyhow::Result<Duration> {
    const SCAN: &str = "SELECT global_position, tx_id::text::bigint AS tx, aggregate_type, aggregate_id, sequence, \
        event_type, event_version, payload::text AS payload, metadata::text AS metadata, occurred_at, recorded_at, \
        prev_hash, hash FROM events ORDER BY tx_id, global_position";
    let started = Instant::now();
    let mut rows = sqlx::query(SCAN).fetch(pool);
    let mut bytes = 0usize;
    while let Some(row) = rows.try_next().await? {
        let payload: &str = row.try_get("payload")?;
        bytes += payload.len();
    }
    anyhow::ensure!(bytes > 0, "the log scan read no payloads");
    Ok(started.elapsed())
}

/// Reads the whole log through `Store::read_log` in the runner's batches of 1,000 events.
async fn read_whole_log(store: &Store) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut after = opencity_store::LogCheckpoint::START;
    while let Some(last) = store.read_log(after, 1_000).await?.last() {
        after = last.checkpoint();
    }
    Ok(started.elapsed())
}

/// A stored event as text, in the columns the INSERT and COPY baselines write.
#[derive(Clone)]
struct RawRow {
    stream_type: String,
    stream_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

async fn stored_rows(pool: &PgPool) -> anyhow::Result<Vec<RawRow>> {
    const CREATE: &str = "CREATE TABLE raw_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
        sequence bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, \
        metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))";
    const SELECT: &str = "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, \
        payload::text AS payload, metadata::text AS metadata FROM events ORDER BY global_position";
    sqlx::query(CREATE).execute(pool).await?;
    let rows = sqlx::query(SELECT).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(RawRow {
                stream_type: row.try_get("aggregate_type")?,
                stream_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
            })
        })
        .collect()
}

/// Writes `rows` as autocommitted 10-row INSERTs on 4 connections, then empties the table.
async fn insert_multirow(pool: &PgPool, rows: &[RawRow]) -> anyhow::Result<Duration> {
    let statement = multirow_statement(MULTIROW);
    let started = Instant::now();
    stream::iter(rows.chunks(MULTIROW))
        .map(|chunk| {
            let statement = if chunk.len() == MULTIROW { statement.clone() } else { multirow_statement(chunk.len()) };
            async move {
                let mut query = sqlx::query(&statement);
                for row in chunk {
                    query = query
                        .bind(&row.stream_type)
                        .bind(&row.stream_id)
                        .bind(row.sequence)
                        .bind(&row.event_type)
                        .bind(&row.event_version)
                        .bind(&row.payload)
                        .bind(&row.metadata);
                }
                query.execute(pool).await.map(|_| ())
            }
        })
        .buffer_unordered(MULTIROW_CONNECTIONS)
        .try_collect::<Vec<()>>()
        .await?;
    let elapsed = started.elapsed();
    sqlx::query("TRUNCATE raw_events").execute(pool).await?;
    Ok(elapsed)
}

fn multirow_statement(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let base = row * 7;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}::json, ${}::json)",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6,
                base + 7
            )
        })
        .collect();
    format!(
        "INSERT INTO raw_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES {}",
        values.join(", ")
    )
}

/// Writes `rows` with one `COPY ... FROM STDIN` in CSV; the CSV is built before the clock starts,
/// as the raw script's file exists before its COPY.
async fn copy_rows(pool: &PgPool, rows: &[RawRow]) -> anyhow::Result<Duration> {
    let mut csv = Vec::with_capacity(rows.len() * 512);
    for row in rows {
        let fields = [
            row.stream_type.as_str(),
            row.stream_id.as_str(),
            &row.sequence.to_string(),
            row.event_type.as_str(),
            row.event_version.as_str(),
            row.payload.as_str(),
            row.metadata.as_str(),
        ];
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                csv.push(b',');
            }
            csv.push(b'"');
            csv.extend_from_slice(field.replace('"', "\"\"").as_bytes());
            csv.push(b'"');
        }
        csv.push(b'\n');
    }

    let started = Instant::now();
    let mut copy = pool.copy_in_raw("COPY raw_events FROM STDIN WITH (FORMAT csv)").await?;
    for chunk in csv.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let copied = copy.finish().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(copied as usize == rows.len(), "COPY wrote {copied} of {} rows", rows.len());
    Ok(elapsed)
}

/// Runs the script baselines on a database of their own: 10-row INSERTs at 4 and 16 clients,
/// COPY of 1,000,000 generated rows, then the ordered scans of that table.
async fn raw_baselines(settings: &Settings, raw_scripts: &RawScripts) -> anyhow::Result<Vec<raw::RawLine>> {
    let csv_dir = tempfile::tempdir()?;
    let csv = csv_dir.path().join("events-1m.csv").display().to_string();
    let duration = settings.duration.as_secs().to_string();
    let repeats = settings.repeats.to_string();
    let multirow = raw_scripts.pg_script("append_10_multirow.sql").display().to_string();

    let database = raw_scripts.database().await?;
    let mut lines = Vec::new();
    let runs: [(Vec<&str>, &str); 3] = [
        (vec!["append", &multirow, "4", "16"], &duration),
        (vec!["copy"], &duration),
        (vec!["read"], READ_PGBENCH_SECONDS),
    ];
    for (args, pgbench_seconds) in runs {
        let env = [("DURATION", pgbench_seconds.to_string()), ("REPEATS", repeats.clone()), ("CSV", csv.clone())];
        match raw_scripts.run(&database, &args, &env).await {
            Ok(run_lines) => lines.extend(run_lines),
            Err(error) => {
                database.cleanup().await;
                return Err(error);
            }
        }
    }
    database.cleanup().await;
    Ok(lines)
}
