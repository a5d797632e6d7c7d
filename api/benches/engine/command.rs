//! The command path: `Store::execute` of one comment on an existing ticket (load the stream,
//! decide, append one event) at 1, 4 and 16 concurrent clients, against pgbench `command_1.sql`.
//!
//! Both sides walk their tickets the same way: each client owns a window of 1,000 tickets and
//! comments on them round-robin. A stream then contains 1 to 10 events before the append, and
//! the raw baseline's streams contain 0 to 9.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use opencity_domain::ticket::CommentTicket;
use opencity_domain::{TicketCommand, TicketServices};
use opencity_store::testing::temp_postgres;
use opencity_store::{BulkItem, CommandMetadata, DbPool, Store};
use uuid::Uuid;

use crate::raw::{self, RawScripts};
use crate::report::{self, Figure, Target};
use crate::Settings;

/// Tickets each client comments on in turn, as in the raw script's window.
const TICKETS_PER_CLIENT: usize = 1_000;

/// A comment about as long as the raw script's payload text.
const COMMENT_TEXT: &str = "Заменили картридж, принтер на третьем этаже всё ещё заедает.";

pub async fn run(settings: &Settings, raw_scripts: &RawScripts) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &clients in &settings.command_clients {
        let mut engine = Vec::new();
        for round in 1..=settings.repeats {
            let result = engine_round(settings, clients as usize).await?;
            eprintln!(
                "engine command path, {clients} clients, round {round}: {:.0} commands/s, latency p50 {:.1} ms, p99 {:.1} ms, {} errors (load: {})",
                result.rate,
                result.p50_ms,
                result.p99_ms,
                result.errors,
                report::load_average()
            );
            engine.push(result.rate);
        }

        let baseline = if settings.raw_baselines {
            let database = raw_scripts.database().await?;
            let lines = raw_scripts
                .run(
                    &database,
                    &["append", &script_path(raw_scripts, "command_1.sql"), &clients.to_string()],
                    &[("DURATION", settings.duration.as_secs().to_string()), ("REPEATS", settings.repeats.to_string())],
                )
                .await;
            database.cleanup().await;
            raw::rates(&lines?, "command_1", clients)
        } else {
            Vec::new()
        };
        figures.push(Figure {
            name: format!("command path, {clients} client{}", if clients == 1 { "" } else { "s" }),
            unit: "commands/s",
            engine,
            baseline_name: "pgbench command_1.sql (SELECT stream, INSERT 1 row)".to_string(),
            baseline,
            target: if clients == 16 { Target::MinRatio(0.75) } else { Target::None },
        });
    }
    Ok(figures)
}

fn script_path(raw_scripts: &RawScripts, name: &str) -> String {
    raw_scripts.pg_script(name).display().to_string()
}

struct RoundResult {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// Registers the tickets on a fresh database (untimed), then comments for `settings.duration`.
async fn engine_round(settings: &Settings, clients: usize) -> anyhow::Result<RoundResult> {
    let database = temp_postgres().await;
    let store = Store::open(&database.config()).await?;
    let tickets = register_tickets(&store, &settings.services, clients * TICKETS_PER_CLIENT).await?;
    checkpoint(&store).await?;

    let result = drive(&store, &settings.services, &tickets, clients, settings.duration).await;
    drop(store);
    database.cleanup().await;
    result
}

/// Registers `count` demo tickets through the bulk path and returns their ids.
async fn register_tickets(store: &Store, services: &TicketServices, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let city = opencity_fixtures::demo::demo_city(2026, count, Utc::now());
    let items: Vec<BulkItem> = city
        .tickets
        .into_iter()
        .map(|ticket| (ticket.ticket_id, ticket.commands.into_iter().take(1).collect(), CommandMetadata::default()))
        .collect();
    let ids: Vec<Uuid> = items.iter().map(|(id, _, _)| *id).collect();
    let chunks: Vec<Vec<BulkItem>> = items.chunks(100).map(<[BulkItem]>::to_vec).collect();
    let results: Vec<_> = stream::iter(chunks)
        .map(|chunk| store.execute_many(chunk, services))
        .buffer_unordered(4)
        .collect()
        .await;
    for result in results.into_iter().flatten() {
        result.map_err(|error| anyhow::anyhow!("registering a bench ticket failed: {error}"))?;
    }
    Ok(ids)
}

/// Writes dirty pages out before a timed run, as the raw script does before each repeat.
pub async fn checkpoint(store: &Store) -> anyhow::Result<()> {
    if let DbPool::Postgres(pool) = store.pool() {
        sqlx::query("CHECKPOINT").execute(pool).await?;
    }
    Ok(())
}

async fn drive(store: &Store, services: &TicketServices, tickets: &[Uuid], clients: usize, duration: Duration) -> anyhow::Result<RoundResult> {
    let window = tickets.len() / clients;
    let services = Arc::new(services.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let store = store.clone();
        let services = services.clone();
        let own = tickets[client * window..(client + 1) * window].to_vec();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut next = 0usize;
            while Instant::now() < deadline {
                let ticket = own[next % own.len()];
                next += 1;
                let command = TicketCommand::Comment(CommentTicket {
                    author: "dispatcher-0042".to_string(),
                    text: COMMENT_TEXT.to_string(),
                    at: Utc::now(),
                });
                let metadata = CommandMetadata {
                    actor: Some("dispatcher-0042".to_string()),
                    channel: Some("web".to_string()),
                    correlation_id: Some(Uuid::new_v4()),
                    ..CommandMetadata::default()
                };
                let begun = Instant::now();
                match store.execute(ticket, vec![command], &metadata, &services).await {
                    Ok(_) => latencies.push(begun.elapsed().as_secs_f64() * 1e3),
                    Err(error) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("command failed on ticket {ticket}: {error}");
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }

    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (task_latencies, task_errors) = task.await?;
        latencies.extend(task_latencies);
        errors += task_errors;
    }
    let elapsed = started.elapsed();
    Ok(RoundResult {
        rate: report::rate(latencies.len(), elapsed),
        p50_ms: report::percentile(&latencies, 0.5).unwrap_or(f64::NAN),
        p99_ms: report::percentile(&latencies, 0.99).unwrap_or(f64::NAN),
        errors,
    })
}
