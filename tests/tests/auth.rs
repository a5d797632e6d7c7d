//! Bearer tokens on the GraphQL API: requests without a token in force get 401 with a Russian
//! message and a code, subscriptions need a token too, and mutations record who acted.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use opencity_domain::access::Role;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_store::testing::temp_sqlite;
use opencity_store::Store;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) {
  registerTicket(input: $input) { ticketId position }
}"#;

fn register_input() -> Value {
    json!({
        "input": {
            "channel": "WEB",
            "requester": { "name": "Петрова Анна" },
            "building": { "id": "kzn-auth-1", "address": "Казань, ул. Баумана, 5", "district": "Вахитовский", "timeZone": "Europe/Moscow" },
            "category": "roof_leak",
            "description": "Протекает крыша",
        }
    })
}

async fn server() -> (tempfile::TempDir, Store, TestServer) {
    let (dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let server = TestServer::start(store.clone(), services()).await;
    (dir, store, server)
}

/// Posts `query` with the given `Authorization` header value and returns status and body.
async fn post(server: &TestServer, authorization: Option<&str>) -> (reqwest::StatusCode, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(server.graphql_url())
        .json(&json!({ "query": "{ overdueCounters { open overdue } }" }));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.expect("server answers");
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().expect("ASCII header").to_string());
    (status, challenge, response.json().await.expect("JSON body"))
}

fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test]
async fn requests_without_valid_token_get_401() {
    let (_dir, store, server) = server().await;
    let revoked = store.create_token(Role::Analyst, "Сидорова", None, None).await.expect("token");
    store.revoke_token(revoked.record.id, chrono::Utc::now()).await.expect("revoked");
    let unknown = format!("Bearer oc_{}", "ab".repeat(32));
    let revoked_header = format!("Bearer {}", revoked.secret);

    let cases = [
        (None, "UNAUTHENTICATED"),
        (Some("Basic YWRtaW46YWRtaW4="), "AUTHORIZATION_MALFORMED"),
        (Some("Bearer not-a-token"), "AUTHORIZATION_MALFORMED"),
        (Some(unknown.as_str()), "TOKEN_INVALID"),
        (Some(revoked_header.as_str()), "TOKEN_REVOKED"),
    ];
    for (authorization, code) in cases {
        let (status, challenge, body) = post(&server, authorization).await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{authorization:?}: {body}");
        assert_eq!(challenge.as_deref(), Some("Bearer realm=\"opencity\""), "{authorization:?}");
        assert_eq!(error_code(&body), Some(code), "{authorization:?}: {body}");
        let message = body["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains("токен") || message.contains("Токен"), "{message}");
        assert!(body["data"].is_null(), "{body}");
    }
}

#[tokio::test]
async fn valid_token_is_served() {
    let (_dir, store, server) = server().await;
    let analyst = store.create_token(Role::Analyst, "Сидорова", None, None).await.expect("token");
    let header = format!("Bearer {}", analyst.secret);
    let (status, _, body) = post(&server, Some(&header)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn health_and_graphiql_need_no_token() {
    let (_dir, _store, server) = server().await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/graphql"] {
        let response = client.get(format!("{}{path}", server.base_url)).send().await.expect("server answers");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn mutation_records_acting_subject_and_role() {
    let (_dir, store, server) = server().await;
    let dispatcher = store.create_token(Role::Dispatcher, "Вахитовский", None, None).await.expect("token");
    let response = authorized_client(&dispatcher.secret)
        .post(server.graphql_url())
        .json(&json!({ "query": REGISTER, "variables": register_input() }))
        .send()
        .await
        .expect("server answers")
        .json::<Value>()
        .await
        .expect("JSON body");
    assert!(response["errors"].is_null(), "{response}");
    let ticket_id = response["data"]["registerTicket"]["ticketId"].as_str().expect("ticket id");

    let events = store.load_stream(TICKET_STREAM_TYPE, ticket_id).await.expect("stream");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata["actor"], "Вахитовский", "{}", events[0].metadata);
    assert_eq!(events[0].metadata["role"], "dispatcher", "{}", events[0].metadata);
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a `graphql-transport-ws` socket and sends `connection_init` with `payload`.
async fn init_socket(
    server: &TestServer,
    header: Option<&str>,
    payload: Value,
) -> Result<Socket, u16> {
    let mut request = server.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    if let Some(value) = header {
        request.headers_mut().insert("Authorization", value.parse().expect("header"));
    }
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => return Err(response.status().as_u16()),
        Err(error) => panic!("ws connect failed: {error}"),
    };
    let init = json!({ "type": "connection_init", "payload": payload });
    socket.send(Message::text(init.to_string())).await.expect("connection_init sent");
    Ok(socket)
}

/// Returns the next text message as JSON, or `None` when the socket closes first.
async fn next_message(socket: &mut Socket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.expect("socket answers in time") {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).expect("JSON message")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn subscription_needs_token() {
    let (_dir, store, server) = server().await;
    let analyst = store.create_token(Role::Analyst, "Сидорова", None, None).await.expect("token");
    let bearer = format!("Bearer {}", analyst.secret);

    // Without a token the connection is not acknowledged.
    let mut anonymous = init_socket(&server, None, json!({})).await.expect("upgrade");
    let answer = next_message(&mut anonymous).await;
    assert!(answer.as_ref().is_none_or(|message| message["type"] != "connection_ack"), "{answer:?}");

    // A wrong token in the upgrade request's header is rejected before the upgrade.
    let wrong = format!("Bearer oc_{}", "cd".repeat(32));
    let status = init_socket(&server, Some(&wrong), json!({})).await.err();
    assert_eq!(status, Some(401));

    // The token in the payload or in the header opens the connection.
    let mut by_payload = init_socket(&server, None, json!({ "Authorization": bearer })).await.expect("upgrade");
    assert_eq!(next_message(&mut by_payload).await.expect("ack")["type"], "connection_ack");
    let mut by_header = init_socket(&server, Some(&bearer), json!({})).await.expect("upgrade");
    assert_eq!(next_message(&mut by_header).await.expect("ack")["type"], "connection_ack");
}
