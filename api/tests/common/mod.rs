//! `opencity serve` as a child process, and the HTTP and WebSocket calls the tests make.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use opencity_projections::fold_from_scratch;
use opencity_projections::runner::ReadModel;
use opencity_store::{LogCheckpoint, Store};
use uuid::Uuid;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running `opencity serve`; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
    /// Secret of an administrator token in the server's store, sent with every request.
    pub token: String,
}

/// Creates an administrator token in the store of `store_args` with `opencity tokens create`
/// and returns its secret.
pub fn create_admin_token(store_args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_opencity"))
        .args(["tokens", "create", "--role", "admin", "--subject", "tests"])
        .args(store_args)
        .env("NO_COLOR", "1")
        .output()
        .expect("opencity tokens create runs");
    assert!(output.status.success(), "tokens create failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 secret").trim().to_string()
}

impl ServerProcess {
    /// Starts `opencity serve` with the store arguments `store_args` on a free local port;
    /// its output goes to a log file in `log_dir`.
    pub fn start(name: &str, store_args: &[&str], extra: &[&str], log_dir: &Path) -> ServerProcess {
        let token = create_admin_token(store_args);
        let port = free_port();
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(env!("CARGO_BIN_EXE_opencity"))
            .arg("serve")
            .args(store_args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("opencity serve starts");
        ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            token,
        }
    }

    /// Sends SIGKILL and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Returns the `/readyz` body, or `None` when the status is not 200.
    pub async fn readyz(&self) -> Option<Value> {
        let response = client().get(format!("{}/readyz", self.base)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Waits until `/readyz` returns 200, at most `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(ready) = self.readyz().await {
                return ready;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server at {} not ready in {limit:?}; log:\n{}",
                self.base,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn is_leader(&self) -> bool {
        self.readyz().await.is_some_and(|ready| ready["projectionLeader"] == true)
    }

    /// Posts a GraphQL request and returns the JSON response.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        client()
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON answer")
    }

    /// Opens a `graphql-transport-ws` connection and starts `subscription` under id "1".
    pub async fn subscribe(&self, subscription: &str) -> Socket {
        let url = format!("{}/graphql/ws", self.base.replace("http://", "ws://"));
        let mut request = url.into_client_request().expect("ws request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
        socket
            .send(Message::text(
                json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", self.token) } })
                    .to_string(),
            ))
            .await
            .expect("init");
        let ack = next_json(&mut socket, Duration::from_secs(30)).await.expect("ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": subscription } });
        socket.send(Message::text(subscribe.to_string())).await.expect("subscribe");
        socket
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Returns the next JSON text message, or `None` if none arrives within `limit`.
pub async fn next_json(socket: &mut Socket, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.ok()??.ok()?;
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).ok();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

pub const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) {
  registerTicket(input: $input) { ticketId position appended replayed }
}"#;

/// Builds the variables of a roof-leak registration in a test building in Kazan.
pub fn register_input(description: &str) -> Value {
    json!({
        "input": {
            "channel": "WEB",
            "requester": { "name": "Петрова Анна" },
            "building": { "id": "kzn-two-servers", "address": "Казань, ул. Баумана, 5", "district": "Вахитовский",
                          "timeZone": "Europe/Moscow", "region": "RU-TA" },
            "category": "roof_leak",
            "description": description
        }
    })
}

/// Asserts that the stored read-model tables equal a fold of the log from scratch up to their
/// checkpoint; returns that checkpoint.
pub async fn assert_tables_match_fold(store: &Store) -> LogCheckpoint {
    let stored = ReadModel::open(store.clone()).await.expect("read model");
    let checkpoint = stored.checkpoint();
    let mut events = Vec::new();
    let mut after = LogCheckpoint::START;
    loop {
        let batch = store.read_log(after, 1_000).await.expect("read log");
        let Some(last) = batch.last() else { break };
        after = last.checkpoint();
        for event in batch.into_iter().filter(|event| event.checkpoint() <= checkpoint) {
            let id = Uuid::parse_str(&event.stream_id).expect("ticket id");
            events.push((id, event.position, event.ticket_event().expect("event")));
        }
    }
    let expected = fold_from_scratch(events);
    let views = stored.views().await;
    assert_eq!(views.len(), expected.len(), "stored views against a fold from scratch");
    for (id, view) in &expected {
        assert_eq!(views.get(id), Some(view), "view of {id} differs from a fold from scratch");
    }
    checkpoint
}

/// Waits until `check` holds, polling every 200 ms, at most `limit`.
pub async fn wait_for<F, Fut>(condition: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{condition}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
