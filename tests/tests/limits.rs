//! Per-token limits of the API: the request rate and the open subscription sockets. Each
//! rejection has a Russian message and a stable code, and other tokens are not affected.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use opencity_api::limits::Limits;
use opencity_domain::access::Role;
use opencity_store::testing::temp_sqlite;
use opencity_store::Store;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const QUERY: &str = "{ projectedPosition }";

async fn server(limits: Limits) -> (tempfile::TempDir, Store, TestServer) {
    let (dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let server = TestServer::start_with_limits(store.clone(), services(), limits).await;
    (dir, store, server)
}

#[tokio::test]
async fn rate_over_burst_gets_429() {
    let limits = Limits { requests_per_second: 1, burst: 3, connections_per_token: 0 };
    let (_dir, store, server) = server(limits).await;
    let busy = authorized_client(&store.create_token(Role::Analyst, "busy", None, None).await.expect("token").secret);
    let calm = authorized_client(&store.create_token(Role::Analyst, "calm", None, None).await.expect("token").secret);

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = busy.post(server.graphql_url()).json(&json!({ "query": QUERY })).send().await.expect("answer");
        statuses.push(response.status().as_u16());
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response.headers().get("retry-after").map(|value| value.to_str().expect("ASCII").to_string());
            assert_eq!(retry_after.as_deref(), Some("1"));
            let body: Value = response.json().await.expect("JSON body");
            assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{body}");
            assert!(body["errors"][0]["message"].as_str().expect("message").starts_with("Слишком много запросов"), "{body}");
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");

    let other = calm.post(server.graphql_url()).json(&json!({ "query": QUERY })).send().await.expect("answer");
    assert_eq!(other.status(), reqwest::StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = busy.post(server.graphql_url()).json(&json!({ "query": QUERY })).send().await.expect("answer");
    assert_eq!(later.status(), reqwest::StatusCode::OK);
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket, sends `connection_init` with the token and returns the socket and the
/// first message, `None` when the server closed it instead.
async fn connect(server: &TestServer, token: &str) -> (Socket, Option<Value>) {
    let mut request = server.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.expect("init");
    let first = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("answer in time") {
            Some(Ok(Message::Text(text))) => break Some(serde_json::from_str(&text).expect("JSON")),
            Some(Ok(Message::Close(frame))) => break frame.map(|frame| json!({ "close": frame.reason.to_string() })),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break None,
        }
    };
    (socket, first)
}

#[tokio::test]
async fn sockets_per_token_are_limited() {
    let limits = Limits { requests_per_second: 0, burst: 0, connections_per_token: 2 };
    let (_dir, store, server) = server(limits).await;
    let token = store.create_token(Role::Analyst, "dashboard", None, None).await.expect("token").secret;

    let (first, ack) = connect(&server, &token).await;
    assert_eq!(ack.expect("ack")["type"], "connection_ack");
    let (_second, ack) = connect(&server, &token).await;
    assert_eq!(ack.expect("ack")["type"], "connection_ack");

    let (_third, rejected) = connect(&server, &token).await;
    let rejected = rejected.unwrap_or(Value::Null);
    assert_ne!(rejected["type"], "connection_ack", "{rejected}");
    assert!(rejected.to_string().contains("TOO_MANY_CONNECTIONS"), "{rejected}");

    // The other token still connects, and closing a socket frees its place.
    let other = store.create_token(Role::Analyst, "other", None, None).await.expect("token").secret;
    let (_elsewhere, ack) = connect(&server, &other).await;
    assert_eq!(ack.expect("ack")["type"], "connection_ack");
    drop(first);
    let mut freed = None;
    for _ in 0..50 {
        let (socket, ack) = connect(&server, &token).await;
        if ack.as_ref().is_some_and(|ack| ack["type"] == "connection_ack") {
            freed = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed.is_some(), "the closed socket's place was not freed");
}
