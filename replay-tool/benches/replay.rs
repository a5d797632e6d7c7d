//! Rates of `opencity-replay verify` and `rebuild` on a log of one million events, against a
//! plain ordered scan of the same `events` table in the same run.
//!
//! Run: `cargo bench -p opencity-replay-tool --bench replay` (PostgreSQL on 127.0.0.1:5432 with
//! trust authentication; the benchmark creates and drops its own databases). Two variables
//! change the run: `OPENCITY_BENCH_EVENTS`, the log size (default 1,000,000), and
//! `OPENCITY_BENCH_BACKENDS`, the stores (default `postgres,sqlite`).
//!
//! For each store, the demo city is written through the import path (`write_tickets`, so the
//! store's bulk appends compute the real hash chain) until the log has the wanted size, and a
//! signed checkpoint is recorded. Each round then reads the log over a read-only connection,
//! opened as the tool opens it, four ways:
//! - scan: `SELECT * FROM events ORDER BY global_position` in one query, decoding the position
//!   and the payload text of every row;
//! - verify: the tool's `verify` with the operator's public key;
//! - rebuild: the tool's `replay_all`, which folds every ticket view from scratch;
//! - hash: the tool's batched log read plus the canonical encoding and SHA-256 of every event,
//!   with only the hashing timed.
//!
//! On PostgreSQL a round also times the SQL hash function of the insert trigger over the whole
//! table, against the same query without the hash. The report gives medians of the rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{TimeZone, Utc};
use futures::TryStreamExt;
use opencity_api::import::write_tickets;
use opencity_domain::TicketServices;
use opencity_fixtures::demo::demo_city;
use opencity_fixtures::import::ImportedTicket;
use opencity_replay_tool::replay::replay_all;
use opencity_replay_tool::source::{LogEvent, LogSource, BATCH_SIZE};
use opencity_replay_tool::verify::verify;
use opencity_store::integrity::{canonical_event_hash, SigningKey};
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{Store, StoreConfig};
use sqlx::Row;

const ROUNDS: usize = 3;
const DEFAULT_EVENTS: i64 = 1_000_000;
/// Tickets per `write_tickets` call while the log is filled.
const FILL_CHUNK: usize = 5_000;
/// Tickets of the first call, which measures the events per ticket for the calls after it.
const FIRST_CHUNK: usize = 500;
/// Demo tickets generated per wanted event. The demo city's events per ticket fall as it grows,
/// because more tickets in its 90 days give more duplicates, cancelled early: 37,727 events
/// came from 5,000 tickets and 908,974 from 200,000, so 0.35 leaves a margin.
const TICKETS_PER_EVENT: f64 = 0.35;
const DEMO_SEED: u64 = 20_261_201;

/// Times of one round, in seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Round {
    scan: f64,
    verify: f64,
    rebuild: f64,
    hash: f64,
    /// PostgreSQL only: the trigger's hash function over the table, and the same query
    /// without it.
    sql_hash: Option<(f64, f64)>,
}

/// Measurements of one store's run.
struct Measured {
    backend: &'static str,
    events: i64,
    import_rate: f64,
    checkpoint_seconds: f64,
    rounds: Vec<Round>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target: i64 = match std::env::var("OPENCITY_BENCH_EVENTS") {
        Ok(text) => text
            .parse()
            .context("OPENCITY_BENCH_EVENTS must be a whole number of events")?,
        Err(_) => DEFAULT_EVENTS,
    };
    let backends =
        std::env::var("OPENCITY_BENCH_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".to_string());
    let services = TicketServices {
        sla: Arc::new(opencity_fixtures::sla::default_catalogue()?),
    };

    let started = Instant::now();
    let ticket_count = (target as f64 * TICKETS_PER_EVENT).ceil() as usize;
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let tickets = demo_city(DEMO_SEED, ticket_count, now).tickets;
    eprintln!(
        "generated {} demo tickets in {:.1} s",
        tickets.len(),
        started.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        let measured = match backend {
            "sqlite" => {
                let (_dir, config) = temp_sqlite();
                measure("sqlite", &config, &services, &tickets, target).await?
            }
            "postgres" => {
                let database = temp_postgres().await;
                let measured =
                    measure("postgres", &database.config(), &services, &tickets, target).await;
                database.cleanup().await;
                measured?
            }
            other => bail!("unknown store «{other}» in OPENCITY_BENCH_BACKENDS"),
        };
        results.push(measured);
    }
    print_report(&results);
    Ok(())
}

/// Fills a fresh store, signs a checkpoint and times the rounds.
async fn measure(
    backend: &'static str,
    config: &StoreConfig,
    services: &TicketServices,
    tickets: &[ImportedTicket],
    target: i64,
) -> anyhow::Result<Measured> {
    let store = Store::open(config).await?;
    let (events, import_seconds) = fill(&store, services, tickets, target).await?;
    let import_rate = events as f64 / import_seconds;
    eprintln!("{backend}: imported {events} events at {import_rate:.0} events/s");

    let key = SigningKey::from_bytes(&[11; 32]);
    let started = Instant::now();
    store.create_checkpoint(&key).await?;
    let checkpoint_seconds = started.elapsed().as_secs_f64();
    drop(store);

    let source = LogSource::open(config).await?;
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let times = time_round(&source, &key, events).await?;
        eprintln!("{backend} round {round}: {times:?}");
        rounds.push(times);
    }
    Ok(Measured {
        backend,
        events,
        import_rate,
        checkpoint_seconds,
        rounds,
    })
}

/// Writes tickets until the log has at least `target` events; returns the events written and
/// the seconds spent in `write_tickets`.
async fn fill(
    store: &Store,
    services: &TicketServices,
    tickets: &[ImportedTicket],
    target: i64,
) -> anyhow::Result<(i64, f64)> {
    let mut written = 0_i64;
    let mut tickets_written = 0_usize;
    let mut elapsed = Duration::ZERO;
    while written < target {
        // Near the end, take only about as many tickets as the remaining events need.
        let take = if tickets_written == 0 {
            FIRST_CHUNK
        } else {
            let per_ticket = written as f64 / tickets_written as f64;
            let needed = ((target - written) as f64 / per_ticket).ceil() as usize;
            needed.clamp(1, FILL_CHUNK)
        };
        let Some(chunk) = tickets.get(tickets_written..tickets_written + take) else {
            bail!("the demo city ran out of tickets at {written} events; raise TICKETS_PER_EVENT");
        };

        let started = Instant::now();
        let summary = write_tickets(store, services, chunk.to_vec(), "bench").await?;
        elapsed += started.elapsed();
        if summary.rejected > 0 {
            bail!("{} demo tickets were rejected", summary.rejected);
        }
        written += summary.events as i64;
        tickets_written += take;
    }
    let stored = store.count_events().await?;
    if stored != written {
        bail!("the store contains {stored} events, but the import reported {written}");
    }
    Ok((written, elapsed.as_secs_f64()))
}

async fn time_round(source: &LogSource, key: &SigningKey, events: i64) -> anyhow::Result<Round> {
    let started = Instant::now();
    let scanned = scan_table(source).await?;
    let scan = started.elapsed().as_secs_f64();
    check_count("scan", scanned, events)?;

    let started = Instant::now();
    let report = verify(source, Some(key.verifying_key())).await?;
    let verify_seconds = started.elapsed().as_secs_f64();
    check_count("verify", report.events as i64, events)?;
    if !report.is_intact() {
        bail!(
            "verify found {} problems in an intact log",
            report.findings.len()
        );
    }

    let started = Instant::now();
    let replay = replay_all(source).await?;
    let rebuild = started.elapsed().as_secs_f64();
    check_count("rebuild", replay.events as i64, events)?;

    let hash = time_hashing(source, events).await?;
    let sql_hash = match source {
        LogSource::Postgres { pool, .. } => Some(time_sql_hash(pool).await?),
        LogSource::Sqlite { .. } => None,
    };
    Ok(Round {
        scan,
        verify: verify_seconds,
        rebuild,
        hash,
        sql_hash,
    })
}

fn check_count(what: &str, seen: i64, events: i64) -> anyhow::Result<()> {
    if seen != events {
        bail!("{what} read {seen} events of {events}");
    }
    Ok(())
}

/// Reads every row of `events` in position order in one query, decoding the position and the
/// payload text; returns the rows read.
async fn scan_table(source: &LogSource) -> anyhow::Result<i64> {
    const SCAN: &str = "SELECT * FROM events ORDER BY global_position";
    let mut rows = 0_i64;
    let mut last_position = 0_i64;
    let mut payload_bytes = 0_usize;
    macro_rules! scan {
        ($pool:expr) => {{
            let mut stream = sqlx::query(SCAN).fetch($pool);
            while let Some(row) = stream.try_next().await? {
                let position: i64 = row.try_get("global_position")?;
                // The PostgreSQL column is `json`, whose wire form is its text.
                let payload: &str = row.try_get_unchecked("payload")?;
                if position <= last_position {
                    bail!("scan out of order at position {position}");
                }
                last_position = position;
                payload_bytes += payload.len();
                rows += 1;
            }
        }};
    }
    match source {
        LogSource::Postgres { pool, .. } => scan!(pool),
        LogSource::Sqlite { pool, .. } => scan!(pool),
    }
    if payload_bytes == 0 && rows > 0 {
        bail!("scan read no payload bytes");
    }
    Ok(rows)
}

/// Reads the log as the tool does and returns the seconds spent computing the canonical hash
/// of every event, which must equal the stored one. Events are hashed in pages of
/// [`BATCH_SIZE`], so the clock is read once per page.
async fn time_hashing(source: &LogSource, events: i64) -> anyhow::Result<f64> {
    let mut hashing = Duration::ZERO;
    let mut hashed = 0_i64;
    let mut mismatched = 0_usize;
    let mut page: Vec<LogEvent> = Vec::with_capacity(BATCH_SIZE);
    let mut hash_page = |page: &mut Vec<LogEvent>| {
        let started = Instant::now();
        for event in page.iter() {
            let hash = canonical_event_hash(&event.hash_input());
            mismatched += usize::from(event.hash.as_deref() != Some(hash.as_str()));
        }
        hashing += started.elapsed();
        hashed += page.len() as i64;
        page.clear();
    };
    source
        .scan(|event| {
            page.push(event);
            if page.len() == BATCH_SIZE {
                hash_page(&mut page);
            }
            true
        })
        .await?;
    hash_page(&mut page);

    if mismatched > 0 {
        bail!("{mismatched} events have another hash than the stored one");
    }
    check_count("hash", hashed, events)?;
    Ok(hashing.as_secs_f64())
}

/// Times the insert trigger's hash function over every row, and the same query with the
/// fields only measured. Parallel workers are off for both, so they run alike.
async fn time_sql_hash(pool: &sqlx::PgPool) -> anyhow::Result<(f64, f64)> {
    const FIELDS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
        occurred_at, recorded_at, COALESCE(prev_hash, ''), payload::text, metadata::text";
    let hashed =
        format!("SELECT count(*), sum(length(events_canonical_hash({FIELDS}))) FROM events");
    let plain = "SELECT count(*), sum(length(aggregate_type) + length(aggregate_id) \
        + length(sequence::text) + length(event_type) + length(event_version) \
        + length(events_format_time(occurred_at)) + length(events_format_time(recorded_at)) \
        + length(COALESCE(prev_hash, '')) + length(payload::text) + length(metadata::text)) \
        FROM events";

    let mut connection = pool.acquire().await?;
    sqlx::query("SET max_parallel_workers_per_gather = 0")
        .execute(&mut *connection)
        .await?;
    let mut seconds = Vec::new();
    for query in [hashed.as_str(), plain] {
        let started = Instant::now();
        let (rows, _): (i64, Option<i64>) =
            sqlx::query_as(query).fetch_one(&mut *connection).await?;
        seconds.push(started.elapsed().as_secs_f64());
        if rows == 0 {
            bail!("the events table is empty");
        }
    }
    sqlx::query("RESET max_parallel_workers_per_gather")
        .execute(&mut *connection)
        .await?;
    Ok((seconds[0], seconds[1]))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_report(results: &[Measured]) {
    println!("| store | events | figure | events/s (median of {ROUNDS}) | ordered scan, events/s | figure / scan |");
    println!("|---|---|---|---|---|---|");
    for measured in results {
        let events = measured.events as f64;
        let rate =
            |pick: fn(&Round) -> f64| events / median(measured.rounds.iter().map(pick).collect());
        let scan = rate(|round| round.scan);
        for (figure, value) in [
            ("verify", rate(|round| round.verify)),
            ("rebuild", rate(|round| round.rebuild)),
        ] {
            println!(
                "| {} | {} | {figure} | {value:.0} | {scan:.0} | {:.2} |",
                measured.backend,
                measured.events,
                value / scan
            );
        }
    }

    println!();
    println!(
        "| store | import, events/s (1 round) | import time per event, µs | hash in Rust, µs/event \
         | SQL hash function, µs/event | hash of the append path / import time per event \
         | checkpoint over the log, s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for measured in results {
        let events = measured.events as f64;
        let micros = |seconds: f64| seconds / events * 1e6;
        let import = 1e6 / measured.import_rate;
        let rust_hash = micros(median(measured.rounds.iter().map(|r| r.hash).collect()));
        let sql: Vec<(f64, f64)> = measured.rounds.iter().filter_map(|r| r.sql_hash).collect();

        // SQLite appends hash in Rust, PostgreSQL appends in the insert trigger's SQL.
        let (sql_hash, append_hash) = if sql.is_empty() {
            ("—".to_string(), rust_hash)
        } else {
            let with = median(sql.iter().map(|pair| pair.0).collect());
            let without = median(sql.iter().map(|pair| pair.1).collect());
            let per_event = micros(with - without);
            let text =
                format!("{per_event:.1} (query {with:.1} s, without the hash {without:.1} s)");
            (text, per_event)
        };
        println!(
            "| {} | {:.0} | {import:.0} | {rust_hash:.2} | {sql_hash} | {:.1} % | {:.1} |",
            measured.backend,
            measured.import_rate,
            append_hash / import * 100.0,
            measured.checkpoint_seconds
        );
    }
}
