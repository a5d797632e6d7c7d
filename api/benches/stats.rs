//! Latency of the GraphQL queries `slaStats` and `overdueCounters` with one million tickets in
//! the read model, each beside the reference functions over the same views in the same run.
//!
//! Run: `cargo bench -p opencity-api --bench stats`. It needs no database server: the store is
//! a temporary SQLite file (about 3 GB at one million tickets), and the process peaks at about
//! 10 GB of memory while the read model loads.
//!
//! Steps:
//! 1. Generates demo-city tickets in chunks of 10,000 (`demo_city` with one seed per chunk and
//!    renumbered ids) and decides their commands with the ticket aggregate. It folds the events
//!    into views and writes the views into the `ticket_views` table, as the projection runner
//!    stores them. The log itself stays empty: replaying eight million events through the
//!    runner would take hours on this kind of machine and would not change what a query reads.
//! 2. Opens the read model on that store, which loads the views and builds the statistics index
//!    as `opencity serve` does at start, and reports the memory it holds.
//! 3. Sends each query through the GraphQL schema (`Schema::execute`, as the HTTP handler does,
//!    response serialized to JSON) `REQUESTS` times after 5 warm-up requests, with the answer
//!    cache off. Then it repeats `slaStats` by organization with the cache on, and calls the
//!    reference functions over the read model's views `BASELINE_REQUESTS` times. Before
//!    timing, each query's index answer is checked against the reference answer.
//!
//! Environment: `TICKETS` (default 1,000,000), `REQUESTS` (default 300), `BASELINE_REQUESTS`
//! (default 10).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::Aggregate;
use opencity_api::graphql::{build_schema, ApiState};
use opencity_domain::ticket::TicketCommand;
use opencity_domain::{Ticket, TicketServices};
use opencity_fixtures::import::ImportedTicket;
use opencity_projections::runner::ReadModel;
use opencity_projections::{
    apply_event, overdue_counters_filtered, sla_stats, Dimension, StatsFilter, StatsIndex, TicketView,
    DEFAULT_TIME_ZONE,
};
use opencity_store::testing::temp_sqlite;
use opencity_store::{Store, WriteTransaction};
use uuid::Uuid;

/// Counts the bytes the process holds on the heap, and the peak since the last reset, over the
/// allocator of the `opencity` binary.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on to mimalloc.
        let pointer = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `alloc` above with this layout.
        unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const CHUNK_TICKETS: usize = 10_000;
const WARM_UP_REQUESTS: usize = 5;
const SEED: u64 = 2026;

/// One measured query: its GraphQL text and the reference computation it replaces.
struct Case {
    name: &'static str,
    graphql: String,
    group_by: Vec<Dimension>,
    kind: Kind,
}

enum Kind {
    Sla,
    /// Overdue counters at the time of the request.
    OverdueNow,
    OverdueAt(DateTime<Utc>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tickets = env_number("TICKETS", 1_000_000)?;
    let requests = env_number("REQUESTS", 300)?;
    let baseline_requests = env_number("BASELINE_REQUESTS", 10)?;
    let services = TicketServices { sla: Arc::new(opencity_fixtures::sla::default_catalogue()?) };
    eprintln!("load average at start: {}", load_average());

    // 1. Views into the store.
    let (_directory, config) = temp_sqlite();
    let store = Store::open(&config).await?;
    drop(ReadModel::open(store.clone()).await?);
    let now = Utc::now().trunc_subsecs(0);
    let started = Instant::now();
    let written = write_demo_views(&store, &services, tickets, now).await?;
    eprintln!("{written} views generated and stored in {:.0?}", started.elapsed());

    // 2. The read model, as the server opens it.
    let before_open = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before_open, Ordering::Relaxed);
    let started = Instant::now();
    let read_model = ReadModel::open(store.clone()).await?;
    let open_time = started.elapsed();
    let read_model_bytes = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before_open);
    let open_peak_bytes = PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(before_open);
    let (index_bytes, index_estimate, index_build_time) = {
        let views = read_model.views().await;
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let started = Instant::now();
        let index = StatsIndex::from_views(views.values());
        let build_time = started.elapsed();
        let bytes = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before);
        (bytes, index.heap_bytes(), build_time)
    };
    eprintln!("read model opened in {open_time:.0?}");

    // 3. Queries.
    let schema = build_schema(ApiState { store: store.clone(), services: services.clone(), read_model: read_model.clone() });
    let month_ago = now - chrono::Duration::days(30);
    let cases = cases(month_ago);
    read_model.stats().await.set_cache_capacity(0);
    check_answers(&read_model, &cases).await?;

    let mut rows = Vec::new();
    for case in &cases {
        let (engine, engine_cpu) = time_graphql(&schema, &case.graphql, requests).await?;
        let reference = time_reference(&read_model, case, baseline_requests).await;
        eprintln!("{}: engine p50 {:.2} ms, reference p50 {:.1} ms", case.name, engine.p50(), reference.p50());
        rows.push((case.name.to_string(), engine, engine_cpu, Some(reference)));
    }
    read_model.stats().await.set_cache_capacity(64);
    let (cached, cached_cpu) = time_graphql(&schema, &cases[1].graphql, requests).await?;
    rows.push((format!("{} (answer cache on)", cases[1].name), cached, cached_cpu, None));

    println!("Tickets: {written}; load average at the end: {}", load_average());
    println!(
        "Read model: opened in {:.1} s, holds {:.0} MiB (peak {:.0} MiB while loading); statistics index {:.0} MiB \
         (estimate {:.0} MiB), built in {:.1} s",
        open_time.as_secs_f64(),
        mebibytes(read_model_bytes),
        mebibytes(open_peak_bytes),
        mebibytes(index_bytes),
        mebibytes(index_estimate),
        index_build_time.as_secs_f64(),
    );
    println!();
    println!(
        "| query | engine p50, ms | engine p99, ms | engine CPU p50 / p99, ms | reference p50, ms | reference p99, ms \
         | reference / engine (p50) | p99 under 20 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, engine, engine_cpu, reference) in rows {
        let (reference_p50, reference_p99, ratio) = match &reference {
            Some(reference) => (
                format!("{:.0}", reference.p50()),
                format!("{:.0}", reference.p99()),
                format!("{:.0}", reference.p50() / engine.p50()),
            ),
            None => ("-".to_string(), "-".to_string(), "-".to_string()),
        };
        let met = if engine.p99() < 20.0 { "met" } else { "missed" };
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} / {:.2} | {reference_p50} | {reference_p99} | {ratio} | {met} |",
            engine.p50(),
            engine.p99(),
            engine_cpu.p50(),
            engine_cpu.p99()
        );
    }
    println!();
    println!("engine: {requests} GraphQL requests each; reference: {baseline_requests} calls each (p99 of so few is their maximum)");
    Ok(())
}

fn cases(month_ago: DateTime<Utc>) -> Vec<Case> {
    const SLA_FIELDS: &str = "received resolved resolvedOnTime onTimeShare acceptMedianSeconds acceptP90Seconds \
        resolveMedianSeconds resolveP90Seconds reopenedShare confirmedShare ratingMean cancelled flagged";
    const OVERDUE_FIELDS: &str = "open overdue overdueResponse overdueResolution";
    let month_ago_text = month_ago.to_rfc3339();
    vec![
        Case {
            name: "slaStats, no grouping",
            graphql: format!("{{ slaStats(groupBy: []) {{ {SLA_FIELDS} }} }}"),
            group_by: vec![],
            kind: Kind::Sla,
        },
        Case {
            name: "slaStats by organization",
            graphql: format!("{{ slaStats(groupBy: [ORGANIZATION]) {{ group {{ value label }} {SLA_FIELDS} }} }}"),
            group_by: vec![Dimension::Organization],
            kind: Kind::Sla,
        },
        Case {
            name: "slaStats by category and month",
            graphql: format!("{{ slaStats(groupBy: [CATEGORY, MONTH]) {{ group {{ value label }} {SLA_FIELDS} }} }}"),
            group_by: vec![Dimension::Category, Dimension::Month],
            kind: Kind::Sla,
        },
        Case {
            name: "overdueCounters by organization, now",
            graphql: format!("{{ overdueCounters(groupBy: [ORGANIZATION]) {{ group {{ value label }} {OVERDUE_FIELDS} }} }}"),
            group_by: vec![Dimension::Organization],
            kind: Kind::OverdueNow,
        },
        Case {
            name: "overdueCounters by organization, 30 days ago",
            graphql: format!(
                "{{ overdueCounters(groupBy: [ORGANIZATION], asOf: \"{month_ago_text}\") {{ group {{ value label }} {OVERDUE_FIELDS} }} }}"
            ),
            group_by: vec![Dimension::Organization],
            kind: Kind::OverdueAt(month_ago),
        },
    ]
}

/// Generates `count` demo tickets chunk by chunk and stores their views; returns how many
/// views were stored. A ticket whose history the aggregate rejects is left out, as an import
/// leaves it out.
async fn write_demo_views(store: &Store, services: &TicketServices, count: usize, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut position = 0i64;
    let mut written = 0;
    let mut rejected = 0;
    for chunk in 0..count.div_ceil(CHUNK_TICKETS) {
        let size = CHUNK_TICKETS.min(count - chunk * CHUNK_TICKETS);
        let city = opencity_fixtures::demo::demo_city(SEED + chunk as u64, size, now);
        let mut views: BTreeMap<Uuid, TicketView> = BTreeMap::new();
        for (number, ticket) in city.tickets.into_iter().enumerate() {
            let ticket_id = Uuid::from_u128(((chunk as u128) << 32) | number as u128);
            let Some(events) = decide(renumber(ticket, ticket_id, chunk, number), services) else {
                rejected += 1;
                continue;
            };
            for event in events {
                position += 1;
                apply_event(&mut views, ticket_id, position, &event);
            }
        }
        written += views.len();
        insert_views(store, &views).await?;
    }
    if rejected > 0 {
        eprintln!("{rejected} generated tickets rejected by the aggregate and left out");
    }
    Ok(written)
}

/// Gives a demo ticket an id and external id unique across chunks.
fn renumber(mut ticket: ImportedTicket, ticket_id: Uuid, chunk: usize, number: usize) -> ImportedTicket {
    ticket.ticket_id = ticket_id;
    ticket.external_id = format!("bench-{chunk:04}-{number:05}");
    for command in &mut ticket.commands {
        if let TicketCommand::Register(register) = command {
            register.ticket_id = ticket_id;
            register.external_id = Some(ticket.external_id.clone());
        }
    }
    ticket
}

/// Decides a ticket's commands in order; `None` when the aggregate rejects one.
fn decide(ticket: ImportedTicket, services: &TicketServices) -> Option<Vec<opencity_domain::TicketEvent>> {
    let mut aggregate = Ticket::default();
    let mut events = Vec::new();
    for command in ticket.commands {
        for event in aggregate.decide(command, services).ok()? {
            aggregate.apply(event.clone());
            events.push(event);
        }
    }
    Some(events)
}

async fn insert_views(store: &Store, views: &BTreeMap<Uuid, TicketView>) -> anyhow::Result<()> {
    const INSERT: &str = "INSERT INTO ticket_views (id, external_id, last_position, payload) VALUES ($1, $2, $3, $4)";
    let mut transaction = store.begin_write().await?;
    macro_rules! write_all {
        ($tx:expr) => {{
            for (id, view) in views {
                sqlx::query(INSERT)
                    .bind(id.to_string())
                    .bind(&view.external_id)
                    .bind(view.last_position)
                    .bind(serde_json::to_string(view)?)
                    .execute(&mut *$tx)
                    .await?;
            }
        }};
    }
    match &mut transaction {
        WriteTransaction::Postgres(tx) => write_all!(*tx),
        WriteTransaction::Sqlite(write) => write_all!(write.transaction),
    }
    transaction.commit().await?;
    Ok(())
}

/// Checks that the index returns what the reference functions return for each case.
async fn check_answers(read_model: &ReadModel, cases: &[Case]) -> anyhow::Result<()> {
    let filter = StatsFilter::default();
    let views = read_model.views().await;
    let stats = read_model.stats().await;
    for case in cases {
        let equal = match case.kind {
            Kind::Sla => {
                stats.sla_stats(&case.group_by, &filter, DEFAULT_TIME_ZONE)
                    == sla_stats(views.values(), &case.group_by, &filter, DEFAULT_TIME_ZONE)
            }
            Kind::OverdueNow | Kind::OverdueAt(_) => {
                let as_of = match case.kind {
                    Kind::OverdueAt(as_of) => as_of,
                    _ => Utc::now(),
                };
                stats.overdue_counters(&case.group_by, &filter, as_of, DEFAULT_TIME_ZONE)
                    == overdue_counters_filtered(views.values(), &case.group_by, &filter, as_of, DEFAULT_TIME_ZONE)
            }
        };
        anyhow::ensure!(equal, "the index and the reference differ on {}", case.name);
    }
    Ok(())
}

/// Latencies of one query, in milliseconds.
struct Samples(Vec<f64>);

impl Samples {
    fn from_durations(durations: Vec<Duration>) -> Samples {
        let mut milliseconds: Vec<f64> = durations.iter().map(|duration| duration.as_secs_f64() * 1000.0).collect();
        milliseconds.sort_by(f64::total_cmp);
        Samples(milliseconds)
    }

    /// Returns the nearest-rank percentile `p` (0 to 1).
    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    fn p50(&self) -> f64 {
        self.percentile(0.5)
    }

    fn p99(&self) -> f64 {
        self.percentile(0.99)
    }
}

/// Times `requests` executions of `query` through the schema after a warm-up, each one up to a
/// serialized JSON response. Returns the wall-clock latencies and the CPU time the request
/// took on this thread, which excludes the time other processes held the cores.
async fn time_graphql(
    schema: &opencity_api::graphql::OpenCitySchema,
    query: &str,
    requests: usize,
) -> anyhow::Result<(Samples, Samples)> {
    let mut wall = Vec::with_capacity(requests);
    let mut cpu = Vec::with_capacity(requests);
    for request in 0..WARM_UP_REQUESTS + requests {
        let cpu_before = thread_cpu_time()?;
        let started = Instant::now();
        let response = schema.execute(query).await;
        let body = serde_json::to_string(&response)?;
        let elapsed = started.elapsed();
        let cpu_used = thread_cpu_time()?.saturating_sub(cpu_before);
        anyhow::ensure!(response.errors.is_empty(), "query failed: {body}");
        if request >= WARM_UP_REQUESTS {
            wall.push(elapsed);
            cpu.push(cpu_used);
        }
    }
    Ok((Samples::from_durations(wall), Samples::from_durations(cpu)))
}

/// Returns the CPU time of the calling thread from `/proc/thread-self/schedstat` (Linux). The
/// benchmark's requests run on the main thread, which `#[tokio::main]` blocks on.
fn thread_cpu_time() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let nanoseconds: u64 = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("/proc/thread-self/schedstat has no CPU time: {text:?}"))?;
    Ok(Duration::from_nanos(nanoseconds))
}

/// Times the reference function of `case` over the read model's views.
async fn time_reference(read_model: &ReadModel, case: &Case, requests: usize) -> Samples {
    let filter = StatsFilter::default();
    let mut durations = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        let views = read_model.views().await;
        let rows = match case.kind {
            Kind::Sla => sla_stats(views.values(), &case.group_by, &filter, DEFAULT_TIME_ZONE).len(),
            Kind::OverdueNow => {
                overdue_counters_filtered(views.values(), &case.group_by, &filter, Utc::now(), DEFAULT_TIME_ZONE).len()
            }
            Kind::OverdueAt(as_of) => {
                overdue_counters_filtered(views.values(), &case.group_by, &filter, as_of, DEFAULT_TIME_ZONE).len()
            }
        };
        drop(views);
        durations.push(started.elapsed());
        std::hint::black_box(rows);
    }
    Samples::from_durations(durations)
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value.parse().map_err(|_| anyhow::anyhow!("{name}={value} is not a whole number")),
        Err(_) => Ok(default),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}

fn mebibytes(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
