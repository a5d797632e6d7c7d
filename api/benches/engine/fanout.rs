//! Subscription fan-out: many WebSocket clients subscribed to `ticketEvents` on an in-process
//! server over PostgreSQL, and the latency from an event's `recordedAt` to each client's receipt.
//!
//! `recordedAt` is the database clock inside the inserting transaction, just before its commit,
//! and the clients read the same machine's clock. The latency therefore covers the commit, the
//! projection runner's poll and batch, the broadcast, GraphQL execution per subscriber and the
//! WebSocket write. The clients run in the same process and share the 2 cores with the server.

use std::time::Duration;

use chrono::{DateTime, Utc};
use opencity_api::app::router_with_limits;
use opencity_api::limits::Limits;
use opencity_api::graphql::ApiState;
use opencity_domain::access::Role;
use opencity_domain::ticket::CommentTicket;
use opencity_domain::TicketCommand;
use opencity_projections::runner::ReadModel;
use opencity_store::testing::{temp_postgres, TempDatabase};
use opencity_store::{CommandMetadata, Store};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::report::{self, Figure, Target};
use crate::subscriber::{self, next_json, ticket_event};
use crate::Settings;

const QUERY: &str = "subscription { ticketEvents { position recordedAt } }";

/// How long the warm-up may take until every subscriber has received an event.
const WARM_UP_LIMIT: Duration = Duration::from_secs(120);

/// How long clients may wait for the last measured events after the writer is done.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub async fn run(settings: &Settings) -> anyhow::Result<Vec<Figure>> {
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for round in 1..=settings.repeats {
        let database = temp_postgres().await;
        let result = fanout_round(settings, &database).await;
        database.cleanup().await;
        let result = result?;
        eprintln!(
            "fan-out round {round}: {} subscribers, {} of {} deliveries, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} client errors (load: {})",
            settings.fanout_subscribers,
            result.latencies.len(),
            settings.fanout_subscribers * settings.fanout_events,
            report::percentile(&result.latencies, 0.5).unwrap_or(f64::NAN),
            report::percentile(&result.latencies, 0.99).unwrap_or(f64::NAN),
            report::percentile(&result.latencies, 1.0).unwrap_or(f64::NAN),
            result.errors,
            report::load_average()
        );
        anyhow::ensure!(result.errors == 0, "{} subscription errors in fan-out round {round}", result.errors);
        p50.extend(report::percentile(&result.latencies, 0.5));
        p99.extend(report::percentile(&result.latencies, 0.99));
    }
    let name = |quantile: &str| format!("fan-out, {} subscribers, event-to-client {quantile}", settings.fanout_subscribers);
    Ok(vec![
        Figure { name: name("p50"), unit: "ms", engine: p50, baseline_name: String::new(), baseline: Vec::new(), target: Target::None },
        Figure { name: name("p99"), unit: "ms", engine: p99, baseline_name: String::new(), baseline: Vec::new(), target: Target::MaxValue(200.0) },
    ])
}

struct RoundResult {
    latencies: Vec<f64>,
    errors: usize,
}

struct ClientResult {
    latencies: Vec<f64>,
    errors: usize,
}

async fn fanout_round(settings: &Settings, database: &TempDatabase) -> anyhow::Result<RoundResult> {
    let store = Store::open(&database.config()).await?;
    let ticket = register_ticket(&store, settings).await?;
    let token = store.create_token(Role::Admin, "fanout", None, None).await?.secret;
    let read_model = ReadModel::open(store.clone()).await?;
    read_model.catch_up().await?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let runner = tokio::spawn(read_model.clone().run(shutdown_rx));
    let state = ApiState { store: store.clone(), services: settings.services.clone(), read_model };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/graphql/ws", listener.local_addr()?);
    // Every subscriber uses one token, so the per-token limits are off.
    let limits = Limits { requests_per_second: 0, burst: 0, connections_per_token: 0 };
    let server = tokio::spawn(async move { axum::serve(listener, router_with_limits(state, limits)).await });

    let outcome = measure(settings, &store, ticket, &url, &token).await;

    let _ = shutdown.send(true);
    server.abort();
    let _ = runner.await;
    outcome
}

async fn measure(settings: &Settings, store: &Store, ticket: Uuid, url: &str, token: &str) -> anyhow::Result<RoundResult> {
    // Events at or below the threshold are warm-up events and are not measured.
    let (threshold, threshold_rx) = watch::channel(i64::MAX);
    let (stop, stop_rx) = watch::channel(false);
    let (ready, mut ready_rx) = mpsc::channel::<()>(settings.fanout_subscribers);
    let mut clients = Vec::with_capacity(settings.fanout_subscribers);
    for _ in 0..settings.fanout_subscribers {
        let socket = subscriber::subscribe(url, QUERY, token).await?;
        clients.push(tokio::spawn(client(socket, settings.fanout_events, threshold_rx.clone(), stop_rx.clone(), ready.clone())));
    }
    drop(ready);

    // graphql-transport-ws does not acknowledge a subscription, so comment until every client
    // has received an event.
    let warm_up_started = tokio::time::Instant::now();
    let mut ready_count = 0;
    let mut last_position = 0;
    while ready_count < settings.fanout_subscribers {
        anyhow::ensure!(warm_up_started.elapsed() < WARM_UP_LIMIT, "only {ready_count} subscribers received a warm-up event");
        last_position = comment(store, settings, ticket).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        while ready_rx.try_recv().is_ok() {
            ready_count += 1;
        }
    }
    threshold.send_replace(last_position);
    tokio::time::sleep(Duration::from_millis(500)).await;

    for _ in 0..settings.fanout_events {
        comment(store, settings, ticket).await?;
        tokio::time::sleep(settings.fanout_interval).await;
    }
    let drain = tokio::spawn(async move {
        tokio::time::sleep(DRAIN_LIMIT).await;
        let _ = stop.send(true);
    });

    let mut result = RoundResult { latencies: Vec::new(), errors: 0 };
    for client in clients {
        let client = client.await?;
        result.latencies.extend(client.latencies);
        result.errors += client.errors;
    }
    drain.abort();
    Ok(result)
}

/// Receives events until `expected` measured ones arrived or `stop` fires.
async fn client(
    mut socket: subscriber::Socket,
    expected: usize,
    threshold: watch::Receiver<i64>,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::Sender<()>,
) -> ClientResult {
    let mut result = ClientResult { latencies: Vec::with_capacity(expected), errors: 0 };
    let mut announced = false;
    while result.latencies.len() < expected {
        let message = tokio::select! {
            message = next_json(&mut socket) => message,
            _ = stop.changed() => break,
        };
        let received_at = Utc::now();
        let Some(message) = message else {
            result.errors += 1;
            break;
        };
        let event = match message.and_then(|message| ticket_event(&message).map(Option::<&serde_json::Value>::cloned)) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(error) => {
                eprintln!("fan-out client: {error}");
                result.errors += 1;
                continue;
            }
        };
        if !announced {
            announced = true;
            let _ = ready.send(()).await;
        }
        let position = event["position"].as_i64().unwrap_or(0);
        if position <= *threshold.borrow() {
            continue;
        }
        match event["recordedAt"].as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(recorded_at)) => {
                let latency = received_at.signed_duration_since(recorded_at.with_timezone(&Utc));
                result.latencies.push(latency.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3);
            }
            _ => {
                eprintln!("fan-out client: event without a valid recordedAt: {event}");
                result.errors += 1;
            }
        }
    }
    let _ = socket.close(None).await;
    result
}

async fn register_ticket(store: &Store, settings: &Settings) -> anyhow::Result<Uuid> {
    let city = opencity_fixtures::demo::demo_city(2026, 1, Utc::now());
    let ticket = city.tickets.into_iter().next().ok_or_else(|| anyhow::anyhow!("the demo city has no ticket"))?;
    let register = ticket.commands.into_iter().take(1).collect();
    store.execute(ticket.ticket_id, register, &CommandMetadata::default(), &settings.services).await?;
    Ok(ticket.ticket_id)
}

/// Appends one comment and returns its global position.
async fn comment(store: &Store, settings: &Settings, ticket: Uuid) -> anyhow::Result<i64> {
    let command = TicketCommand::Comment(CommentTicket {
        author: "dispatcher-0042".to_string(),
        text: "Проверили стояк, течи нет.".to_string(),
        at: Utc::now(),
    });
    let metadata = CommandMetadata { actor: Some("dispatcher-0042".to_string()), ..CommandMetadata::default() };
    let outcome = store.execute(ticket, vec![command], &metadata, &settings.services).await?;
    Ok(outcome.last_position)
}
