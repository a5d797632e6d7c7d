//! A `graphql-transport-ws` client for `ticketEvents`, and the standalone mode that keeps
//! subscribers connected during the load test.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the handshake and the first acknowledgement may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Read buffer of a client socket, in bytes. tungstenite zero-fills its whole read buffer on every
/// read attempt. With its default of 128 KiB the clients, which share the cores with the server,
/// would spend much of their time in memset, although the messages are far smaller.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Connects to `url`, completes `connection_init` with the bearer `token`, and subscribes with
/// `query`.
pub async fn subscribe(url: &str, query: &str, token: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
    let (mut socket, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await??;

    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await?;
    let ack = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_json(&mut socket))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the server closed the socket before connection_ack"))??;
    anyhow::ensure!(ack["type"] == "connection_ack", "expected connection_ack, received {ack}");

    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(socket)
}

/// Returns the next JSON text message, `None` when the socket closes. tungstenite replies to
/// WebSocket pings itself.
pub async fn next_json(socket: &mut Socket) -> Option<anyhow::Result<Value>> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).map_err(Into::into)),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(error) => return Some(Err(error.into())),
        }
    }
}

/// Returns the `ticketEvents` record of a `next` message, or an error for `error` messages and
/// GraphQL errors.
pub fn ticket_event(message: &Value) -> anyhow::Result<Option<&Value>> {
    match message["type"].as_str() {
        Some("next") if message["payload"]["errors"].is_null() => Ok(Some(&message["payload"]["data"]["ticketEvents"])),
        Some("next") | Some("error") => anyhow::bail!("subscription error: {message}"),
        Some("complete") => anyhow::bail!("the server completed the subscription: {message}"),
        _ => Ok(None),
    }
}

/// Counts of one standalone subscriber.
#[derive(Default)]
struct Tally {
    received: u64,
    errors: u64,
    closed: bool,
    /// Positions of the first and the last event received.
    first: Option<i64>,
    last: Option<i64>,
    /// Events whose position was not above the one before (SQLite numbers the log in order).
    out_of_order: u64,
}

impl Tally {
    fn count(&mut self, event: &Value) {
        self.received += 1;
        let Some(position) = event["position"].as_i64() else {
            self.errors += 1;
            eprintln!("subscriber: an event without a position: {event}");
            return;
        };
        if self.last.is_some_and(|last| position <= last) {
            self.out_of_order += 1;
        }
        self.first.get_or_insert(position);
        self.last = Some(position);
    }
}

/// `subscribers URL COUNT SECONDS`: keeps COUNT subscriptions open for SECONDS and prints what
/// they received: a `subscriber` line each with the count and the first and last positions,
/// for the caller to compare with the log, then a summary. Prints `subscribed COUNT` once all
/// are connected. Fails when a subscriber saw an error, a closed socket, or an event at or
/// before the one it received last.
pub async fn run_standalone(args: &[String]) -> anyhow::Result<()> {
    let [url, count, seconds] = args else {
        anyhow::bail!("usage: engine subscribers WS_URL COUNT SECONDS");
    };
    let count: usize = count.parse().map_err(|_| anyhow::anyhow!("COUNT={count:?} is not a number"))?;
    let seconds: u64 = seconds.parse().map_err(|_| anyhow::anyhow!("SECONDS={seconds:?} is not a number"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let token = std::env::var("OPENCITY_TOKEN")
        .map_err(|_| anyhow::anyhow!("OPENCITY_TOKEN is not set; create one with `opencity tokens create`"))?;

    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let mut socket = subscribe(url, "subscription { ticketEvents { position eventType recordedAt } }", &token).await?;
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let message = match tokio::time::timeout_at(deadline, next_json(&mut socket)).await {
                    Err(_) => break,
                    Ok(None) => {
                        tally.closed = true;
                        break;
                    }
                    Ok(Some(message)) => message,
                };
                match message.and_then(|message| ticket_event(&message).map(|event| event.cloned())) {
                    Ok(Some(event)) => tally.count(&event),
                    Ok(None) => {}
                    Err(error) => {
                        tally.errors += 1;
                        eprintln!("subscriber: {error}");
                    }
                }
            }
            let _ = socket.close(None).await;
            tally
        }));
    }
    println!("subscribed {count}");

    let mut received = Vec::with_capacity(count);
    let (mut errors, mut closed, mut out_of_order) = (0, 0, 0);
    for (index, task) in tasks.into_iter().enumerate() {
        let tally = task.await?;
        let position = |value: Option<i64>| value.map_or_else(|| "none".to_string(), |p| p.to_string());
        println!(
            "subscriber={index} received={} first={} last={} out_of_order={}",
            tally.received,
            position(tally.first),
            position(tally.last),
            tally.out_of_order
        );
        received.push(tally.received);
        errors += tally.errors;
        closed += usize::from(tally.closed);
        out_of_order += tally.out_of_order;
    }
    println!(
        "subscribers={count} received_total={} received_min={} received_max={} errors={errors} closed_early={closed} out_of_order={out_of_order}",
        received.iter().sum::<u64>(),
        received.iter().min().copied().unwrap_or(0),
        received.iter().max().copied().unwrap_or(0),
    );
    anyhow::ensure!(
        errors == 0 && closed == 0 && out_of_order == 0,
        "{errors} subscription errors, {closed} sockets closed early, {out_of_order} events out of order"
    );
    Ok(())
}
