//! The GraphQL API end to end on SQLite: the demo city, the ticket lifecycle through mutations,
//! errors with codes for bad input, and subscriptions over `graphql-transport-ws`.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use opencity_api::cli::DemoOptions;
use opencity_api::import::load_demo;
use opencity_store::testing::temp_sqlite;
use opencity_store::Store;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) {
  registerTicket(input: $input) { ticketId position appended replayed }
}"#;

fn register_input(key: Option<&str>) -> Value {
    json!({
        "input": {
            "channel": "CALL_CENTER",
            "requester": { "name": "Иванова Мария", "phone": "+7 900 000-00-00" },
            "building": { "id": "kzn-test-1", "address": "Казань, ул. Пушкина, 1", "district": "Вахитовский",
                          "timeZone": "Europe/Moscow", "region": "RU-TA" },
            "premises": "12",
            "category": "roof_leak",
            "description": "Протекает крыша над квартирой",
            "idempotencyKey": key,
        }
    })
}

async fn demo_server(tickets: usize) -> (tempfile::TempDir, TestServer) {
    let (dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let services = services();
    load_demo(&store, &services, &DemoOptions { demo_tickets: tickets, demo_seed: 7 }).await.expect("demo loads");
    (dir, TestServer::start(store, services).await)
}

fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

async fn wait_for_projection(server: &TestServer, position: i64) {
    let mut checkpoints = server.read_model.watch_checkpoint();
    tokio::time::timeout(Duration::from_secs(30), async {
        while checkpoints.borrow_and_update().position < position {
            checkpoints.changed().await.expect("runner alive");
        }
    })
    .await
    .expect("projections reach the position");
}

#[tokio::test]
async fn sla_stats_by_organization_after_demo() {
    let (_dir, server) = demo_server(300).await;
    let response = server
        .graphql("{ slaStats(groupBy: [ORGANIZATION]) { group { dimension value } received resolved onTimeShare } }", json!({}))
        .await;
    assert!(response["errors"].is_null(), "{response}");
    let rows = response["data"]["slaStats"].as_array().expect("rows");
    assert!(rows.len() >= 2, "{response}");
    assert!(rows.iter().all(|row| row["received"].as_i64().unwrap_or(0) > 0));
    assert_eq!(rows[0]["group"][0]["dimension"], "organization");
}

#[tokio::test]
async fn ticket_lifecycle_through_mutations() {
    let (_dir, server) = demo_server(20).await;
    let registered = server.graphql(REGISTER, register_input(None)).await;
    assert!(registered["errors"].is_null(), "{registered}");
    let id = registered["data"]["registerTicket"]["ticketId"].as_str().expect("id").to_string();

    let steps = [
        format!(r#"mutation {{ routeTicket(id: "{id}", organization: {{ id: "uk-test", name: "УК Тест" }}) {{ position }} }}"#),
        format!(r#"mutation {{ acceptTicket(id: "{id}") {{ position }} }}"#),
        format!(r#"mutation {{ assignContractor(id: "{id}", contractor: {{ id: "c-test", name: "Кровля-Сервис" }}) {{ position }} }}"#),
        format!(r#"mutation {{ startWork(id: "{id}") {{ position }} }}"#),
        format!(r#"mutation {{ reportCompletion(id: "{id}", note: "Заделали") {{ position }} }}"#),
        format!(r#"mutation {{ rejectCompletion(id: "{id}", reason: "Течёт снова") {{ position }} }}"#),
        format!(r#"mutation {{ reportCompletion(id: "{id}") {{ position }} }}"#),
        format!(r#"mutation {{ confirmCompletion(id: "{id}") {{ position }} }}"#),
        format!(r#"mutation {{ rateTicket(id: "{id}", rating: 4) {{ position }} }}"#),
        format!(r#"mutation {{ closeTicket(id: "{id}", reason: CONFIRMED) {{ position }} }}"#),
    ];
    let mut position = 0;
    for step in &steps {
        let response = server.graphql(step, json!({})).await;
        assert!(response["errors"].is_null(), "{step}: {response}");
        let data = response["data"].as_object().expect("data");
        position = data.values().next().expect("one field")["position"].as_i64().expect("position");
    }
    wait_for_projection(&server, position).await;

    let ticket = server
        .graphql(
            &format!(r#"{{ ticket(id: "{id}") {{ status reopenCount rating resolvedAt resolutionOnTime events {{ eventType }} }} }}"#),
            json!({}),
        )
        .await;
    let ticket = &ticket["data"]["ticket"];
    assert_eq!(ticket["status"], "closed");
    assert_eq!(ticket["reopenCount"], 1);
    assert_eq!(ticket["rating"], 4);
    assert_eq!(ticket["resolutionOnTime"], true);
    assert_eq!(ticket["events"].as_array().expect("events").len(), 11);
}

#[tokio::test]
async fn duplicate_submit_creates_one_ticket() {
    let (_dir, server) = demo_server(10).await;
    let first = server.graphql(REGISTER, register_input(Some("form-42"))).await;
    let second = server.graphql(REGISTER, register_input(Some("form-42"))).await;
    assert_eq!(first["data"]["registerTicket"]["ticketId"], second["data"]["registerTicket"]["ticketId"]);
    assert_eq!(first["data"]["registerTicket"]["position"], second["data"]["registerTicket"]["position"]);
    assert_eq!(second["data"]["registerTicket"]["replayed"], true);
    assert_eq!(second["data"]["registerTicket"]["appended"], first["data"]["registerTicket"]["appended"]);
    assert_eq!(first["data"]["registerTicket"]["replayed"], false);
}

#[tokio::test]
async fn bad_input_gets_codes_and_changes_nothing() {
    let (_dir, server) = demo_server(10).await;
    let events_before = server.read_model.checkpoint();

    let malformed = server.graphql("{ slaStats(groupBy: [ORGANIZATION] { received }", json!({})).await;
    assert_eq!(error_code(&malformed), Some("GRAPHQL_PARSE_FAILED"), "{malformed}");
    assert!(malformed["errors"][0]["message"].as_str().expect("message").starts_with("Синтаксическая ошибка"));

    let unknown_field = server.graphql("{ slaStats(groupBy: [ORGANIZATION]) { nonsense } }", json!({})).await;
    assert_eq!(error_code(&unknown_field), Some("GRAPHQL_VALIDATION_FAILED"), "{unknown_field}");
    assert!(unknown_field["errors"][0]["message"].as_str().expect("message").contains("«nonsense»"));

    let broken_json = server
        .client()
        .post(server.graphql_url())
        .header("content-type", "application/json")
        .body("{\"query\": ")
        .send()
        .await
        .expect("server answers");
    assert_eq!(broken_json.status(), reqwest::StatusCode::BAD_REQUEST);
    let broken_json: Value = broken_json.json().await.expect("JSON error body");
    assert_eq!(error_code(&broken_json), Some("GRAPHQL_PARSE_FAILED"));

    let bad_uuid = server.graphql(r#"{ ticket(id: "not-a-uuid") { id } }"#, json!({})).await;
    assert_eq!(error_code(&bad_uuid), Some("INVALID_ID"));
    assert!(bad_uuid["errors"][0]["message"].as_str().expect("message").contains("not-a-uuid"));

    let unknown = server.graphql(r#"{ ticket(id: "00000000-0000-4000-8000-000000000000") { id } }"#, json!({})).await;
    assert_eq!(error_code(&unknown), Some("TICKET_NOT_FOUND"));

    let unknown_external = server.graphql(r#"{ ticket(externalId: "no-such-record") { id } }"#, json!({})).await;
    assert_eq!(error_code(&unknown_external), Some("TICKET_NOT_FOUND"));

    let mut input = register_input(None);
    input["input"]["category"] = json!("flying_saucer");
    let unknown_category = server.graphql(REGISTER, input).await;
    assert_eq!(error_code(&unknown_category), Some("UNKNOWN_CATEGORY"));
    assert!(unknown_category["errors"][0]["message"].as_str().expect("message").contains("flying_saucer"));

    let mut input = register_input(None);
    input["input"]["building"]["timeZone"] = json!("Mars/Olympus");
    let bad_zone = server.graphql(REGISTER, input).await;
    assert_eq!(error_code(&bad_zone), Some("UNKNOWN_TIME_ZONE"));

    let registered = server.graphql(REGISTER, register_input(None)).await;
    let id = registered["data"]["registerTicket"]["ticketId"].as_str().expect("id").to_string();
    let early_confirm = server.graphql(&format!(r#"mutation {{ confirmCompletion(id: "{id}") {{ position }} }}"#), json!({})).await;
    assert_eq!(error_code(&early_confirm), Some("INVALID_TRANSITION"));

    let cancel = server.graphql(&format!(r#"mutation {{ cancelTicket(id: "{id}", reason: SPAM) {{ position }} }}"#), json!({})).await;
    let cancel_position = cancel["data"]["cancelTicket"]["position"].as_i64().expect("cancelled");
    let after_cancel = server.graphql(&format!(r#"mutation {{ acceptTicket(id: "{id}") {{ position }} }}"#), json!({})).await;
    assert_eq!(error_code(&after_cancel), Some("TICKET_CANCELLED"));

    let bad_rating = server.graphql(&format!(r#"mutation {{ rateTicket(id: "{id}", rating: 9) {{ position }} }}"#), json!({})).await;
    assert_eq!(error_code(&bad_rating), Some("INVALID_RATING"));

    let big_page = server.graphql("{ tickets(first: 100000) { totalCount } }", json!({})).await;
    assert_eq!(error_code(&big_page), Some("INVALID_PAGE_SIZE"));

    wait_for_projection(&server, cancel_position).await;
    let history = server.graphql(&format!(r#"{{ ticket(id: "{id}") {{ status events {{ eventType }} }} }}"#), json!({})).await;
    assert_eq!(history["data"]["ticket"]["status"], "cancelled");
    assert_eq!(history["data"]["ticket"]["events"].as_array().expect("events").len(), 2);
    assert!(server.read_model.checkpoint().position > events_before.position);

    let health = reqwest::get(format!("{}/healthz", server.base_url)).await.expect("health answers");
    assert!(health.status().is_success(), "server keeps serving");
}

#[tokio::test]
async fn tickets_pagination_visits_each_once() {
    let (_dir, server) = demo_server(57).await;
    let mut seen = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let response = server
            .graphql(
                "query($after: String) { tickets(first: 10, after: $after) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after }),
            )
            .await;
        let page = &response["data"]["tickets"];
        for edge in page["edges"].as_array().expect("edges") {
            assert!(seen.insert(edge["node"]["id"].as_str().expect("id").to_string()), "ticket seen twice");
        }
        if page["pageInfo"]["hasNextPage"] != true {
            assert_eq!(seen.len() as i64, page["totalCount"].as_i64().expect("count"));
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 57);
}

#[tokio::test]
async fn subscription_delivers_new_ticket_events() {
    let (_dir, server) = demo_server(10).await;
    let mut request = server.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");

    socket.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", server.token) } }).to_string())).await.expect("init");
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack");
    let subscribe = json!({
        "id": "1",
        "type": "subscribe",
        "payload": { "query": "subscription { ticketEvents(filter: { eventTypes: [\"TicketRegistered\"] }) { eventType ticketId position } }" }
    });
    socket.send(Message::text(subscribe.to_string())).await.expect("subscribe");

    // graphql-transport-ws does not acknowledge a subscription, so register tickets until the
    // first event arrives; it must be one of ours.
    let mut registered_ids = Vec::new();
    let mut delivered = None;
    for _ in 0..20 {
        let registered = server.graphql(REGISTER, register_input(None)).await;
        registered_ids.push(registered["data"]["registerTicket"]["ticketId"].as_str().expect("id").to_string());
        if let Ok(message) = tokio::time::timeout(Duration::from_secs(2), next_json(&mut socket)).await {
            delivered = Some(message);
            break;
        }
    }
    let message = delivered.expect("an event within 20 registrations");
    assert_eq!(message["type"], "next", "{message}");
    assert_eq!(message["payload"]["data"]["ticketEvents"]["eventType"], "TicketRegistered");
    let ticket_id = message["payload"]["data"]["ticketEvents"]["ticketId"].as_str().expect("ticket id");
    assert!(registered_ids.iter().any(|id| id == ticket_id), "{ticket_id} is not one of ours");
}

#[tokio::test]
async fn overdue_subscription_sends_counters() {
    let (_dir, server) = demo_server(200).await;
    let mut request = server.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
    socket.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", server.token) } }).to_string())).await.expect("init");
    assert_eq!(next_json(&mut socket).await["type"], "connection_ack");

    let subscribe = json!({
        "id": "overdue",
        "type": "subscribe",
        "payload": { "query": "subscription { overdueCounters(groupBy: [DISTRICT]) { group { value label } open overdue } }" }
    });
    socket.send(Message::text(subscribe.to_string())).await.expect("subscribe");
    let message = next_json(&mut socket).await;
    assert_eq!(message["type"], "next", "{message}");
    let rows = message["payload"]["data"]["overdueCounters"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{message}");

    let query = server.graphql("{ overdueCounters(groupBy: [DISTRICT]) { group { value label } open overdue } }", json!({})).await;
    let queried_open: i64 = query["data"]["overdueCounters"].as_array().expect("rows").iter().map(|row| row["open"].as_i64().unwrap_or(0)).sum();
    let pushed_open: i64 = rows.iter().map(|row| row["open"].as_i64().unwrap_or(0)).sum();
    assert_eq!(pushed_open, queried_open);
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("socket open")
            .expect("valid frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON message");
        }
    }
}
