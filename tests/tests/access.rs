//! Every role against every mutation, query and subscription of the GraphQL API.
//!
//! Two tickets are set up by an administrator: ticket A of resident `res-1` in the district
//! «Вахитовский», routed to `org-1` and assigned to `con-1`, and ticket B of `res-2` in
//! «Советский», routed to `org-2` and assigned to `con-2`. The scoped tokens (resident,
//! dispatcher, organization, contractor) have A in scope and B out of it. An operation counts
//! as allowed when it is not rejected with `FORBIDDEN` or `TICKET_NOT_FOUND`; the domain may
//! still reject it for the ticket's state. A denied mutation appends nothing.

mod common;

use std::collections::BTreeMap;
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

const ROLES: [Role; 7] = Role::ALL;

/// Subject of each role's token: ticket A is in the scope of every scoped one.
fn subject(role: Role) -> &'static str {
    match role {
        Role::Resident => "res-1",
        Role::Dispatcher => "Вахитовский",
        Role::Organization => "org-1",
        Role::Contractor => "con-1",
        Role::Analyst => "Аналитик",
        Role::Auditor => "Аудитор",
        Role::Admin => "Администратор",
    }
}

/// Roles written as the letters of `R D O C N U A` (resident, dispatcher, organization,
/// contractor, analyst, auditor, admin); a dot denies that role.
fn allowed_roles(pattern: &str) -> Vec<Role> {
    let letters: Vec<&str> = pattern.split_whitespace().collect();
    assert_eq!(letters.len(), ROLES.len(), "{pattern}");
    ROLES.iter().zip(letters).filter(|(_, letter)| *letter != ".").map(|(role, _)| *role).collect()
}

/// Mutations on an existing ticket: name, GraphQL document (with `$id`), allowed roles. `ORG`
/// and `CON` stand for the ticket's own organization and contractor, so that no mutation moves
/// a ticket into or out of a scope.
const MUTATIONS: [(&str, &str, &str); 15] = [
    ("classifyTicket", r#"mutation($id: ID!) { classifyTicket(id: $id, category: "roof_leak") { position } }"#, ". D O . . . A"),
    ("routeTicket", r#"mutation($id: ID!) { routeTicket(id: $id, organization: { id: "ORG", name: "УК ORG" }) { position } }"#, ". D O . . . A"),
    ("acceptTicket", r#"mutation($id: ID!) { acceptTicket(id: $id) { position } }"#, ". . O . . . A"),
    ("assignContractor", r#"mutation($id: ID!) { assignContractor(id: $id, contractor: { id: "CON", name: "Подрядчик CON" }) { position } }"#, ". . O . . . A"),
    ("startWork", r#"mutation($id: ID!) { startWork(id: $id) { position } }"#, ". . O C . . A"),
    ("suspendWork", r#"mutation($id: ID!) { suspendWork(id: $id, reason: "Нет доступа в квартиру") { position } }"#, ". . O C . . A"),
    ("resumeWork", r#"mutation($id: ID!) { resumeWork(id: $id) { position } }"#, ". . O C . . A"),
    ("reportCompletion", r#"mutation($id: ID!) { reportCompletion(id: $id, note: "Кровля заделана") { position } }"#, ". . O C . . A"),
    ("confirmCompletion", r#"mutation($id: ID!) { confirmCompletion(id: $id) { position } }"#, "R D . . . . A"),
    ("rejectCompletion", r#"mutation($id: ID!) { rejectCompletion(id: $id, reason: "Снова течёт") { position } }"#, "R D . . . . A"),
    ("rateTicket", r#"mutation($id: ID!) { rateTicket(id: $id, rating: 4) { position } }"#, "R D . . . . A"),
    ("commentTicket", r#"mutation($id: ID!) { commentTicket(id: $id, author: "Проверка", text: "Комментарий") { position } }"#, "R D O C . . A"),
    ("escalateTicket", r#"mutation($id: ID!) { escalateTicket(id: $id, reason: "Срок прошёл") { position } }"#, "R D . . . . A"),
    ("cancelTicket", r#"mutation($id: ID!) { cancelTicket(id: $id, reason: WITHDRAWN_BY_REQUESTER) { position } }"#, "R D O . . . A"),
    ("closeTicket", r#"mutation($id: ID!) { closeTicket(id: $id, reason: ADMINISTRATIVE) { position } }"#, ". D O . . . A"),
];

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) { registerTicket(input: $input) { ticketId position } }"#;

fn register_input(resident: Option<&str>, district: &str) -> Value {
    json!({
        "input": {
            "channel": "MOBILE",
            "requester": { "name": "Жильцова Ольга", "phone": "+7 900 111-22-33", "residentId": resident },
            "building": { "id": format!("kzn-{district}"), "address": format!("Казань, {district} район, д. 1"),
                          "district": district, "timeZone": "Europe/Moscow", "region": "RU-TA" },
            "premises": "7",
            "category": "roof_leak",
            "description": "Протекает крыша над кухней",
        }
    })
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    server: TestServer,
    ticket_a: String,
    ticket_b: String,
    tokens: BTreeMap<Role, String>,
}

async fn admin_call(server: &TestServer, query: &str, variables: Value) -> Value {
    let response = server.graphql(query, variables).await;
    assert!(response["errors"].is_null(), "{query}: {response}");
    response
}

/// Registers, routes, accepts and assigns one ticket as the administrator and returns its id.
async fn set_up_ticket(server: &TestServer, resident: &str, district: &str, organization: &str, contractor: &str) -> String {
    let registered = admin_call(server, REGISTER, register_input(Some(resident), district)).await;
    let id = registered["data"]["registerTicket"]["ticketId"].as_str().expect("ticket id").to_string();
    let route = format!(r#"mutation($id: ID!) {{ routeTicket(id: $id, organization: {{ id: "{organization}", name: "УК {organization}" }}) {{ position }} }}"#);
    admin_call(server, &route, json!({ "id": id })).await;
    admin_call(server, r#"mutation($id: ID!) { acceptTicket(id: $id) { position } }"#, json!({ "id": id })).await;
    let assign = format!(r#"mutation($id: ID!) {{ assignContractor(id: $id, contractor: {{ id: "{contractor}", name: "Подрядчик {contractor}" }}) {{ position }} }}"#);
    let assigned = admin_call(server, &assign, json!({ "id": id })).await;
    let position = assigned["data"]["assignContractor"]["position"].as_i64().expect("position");
    let wait = "query($id: ID, $p: Int) { ticket(id: $id, afterPosition: $p) { id } }";
    admin_call(server, wait, json!({ "id": id, "p": position })).await;
    id
}

async fn world() -> World {
    let (dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let server = TestServer::start(store.clone(), services()).await;
    let ticket_a = set_up_ticket(&server, "res-1", "Вахитовский", "org-1", "con-1").await;
    let ticket_b = set_up_ticket(&server, "res-2", "Советский", "org-2", "con-2").await;
    let mut tokens = BTreeMap::new();
    for role in ROLES {
        let issued = store.create_token(role, subject(role), None, None).await.expect("token");
        tokens.insert(role, issued.secret);
    }
    World { _dir: dir, store, server, ticket_a, ticket_b, tokens }
}

impl World {
    async fn call(&self, role: Role, query: &str, variables: Value) -> Value {
        authorized_client(&self.tokens[&role])
            .post(self.server.graphql_url())
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("server answers")
            .json()
            .await
            .expect("JSON body")
    }

    async fn events_of(&self, ticket: &str) -> usize {
        self.store.load_stream(TICKET_STREAM_TYPE, ticket).await.expect("stream").len()
    }
}

fn error_code(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// Tells whether the response passed the access check.
fn passed_access(response: &Value) -> bool {
    !matches!(error_code(response), Some("FORBIDDEN") | Some("TICKET_NOT_FOUND"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_mutation() {
    let world = world().await;
    let mut mismatches = Vec::new();
    for (name, document, pattern) in MUTATIONS {
        let allowed = allowed_roles(pattern);
        for role in ROLES {
            for (ticket, in_scope) in [(&world.ticket_a, true), (&world.ticket_b, false)] {
                let scoped = matches!(role, Role::Resident | Role::Dispatcher | Role::Organization | Role::Contractor);
                let expected = allowed.contains(&role) && (in_scope || !scoped);
                let before = world.events_of(ticket).await;
                let (organization, contractor) = if in_scope { ("org-1", "con-1") } else { ("org-2", "con-2") };
                let document = document.replace("ORG", organization).replace("CON", contractor);
                let response = world.call(role, &document, json!({ "id": ticket })).await;
                let passed = passed_access(&response);
                if passed != expected {
                    mismatches.push(format!("{name} by {role} on {}: expected {expected}, got {response}", if in_scope { "A" } else { "B" }));
                }
                if !passed {
                    assert_eq!(world.events_of(ticket).await, before, "{name} by {role} was denied but appended");
                    let message = response["errors"][0]["message"].as_str().unwrap_or_default();
                    assert!(!message.is_empty(), "{name} by {role}: {response}");
                    assert!(!message.is_ascii(), "{name} by {role}: the message is not Russian: {response}");
                    if error_code(&response) == Some("FORBIDDEN") {
                        assert!(message.contains(&format!("«{name}»")), "{name} by {role}: {message}");
                    }
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_registration() {
    let world = world().await;
    let allowed = allowed_roles("R D . . . . A");
    for role in ROLES {
        let response = world.call(role, REGISTER, register_input(None, "Вахитовский")).await;
        assert_eq!(passed_access(&response), allowed.contains(&role), "{role}: {response}");
        assert_eq!(response["errors"].is_null(), allowed.contains(&role), "{role}: {response}");
    }

    // A resident files for themselves only, and a dispatcher in their own district only.
    let foreign = world.call(Role::Resident, REGISTER, register_input(Some("res-2"), "Вахитовский")).await;
    assert_eq!(error_code(&foreign), Some("FORBIDDEN"), "{foreign}");
    let elsewhere = world.call(Role::Dispatcher, REGISTER, register_input(None, "Советский")).await;
    assert_eq!(error_code(&elsewhere), Some("FORBIDDEN"), "{elsewhere}");

    // The resident's own registration is in their scope afterwards.
    let own = world.call(Role::Resident, REGISTER, register_input(None, "Советский")).await;
    let id = own["data"]["registerTicket"]["ticketId"].as_str().expect("ticket id");
    let events = world.store.load_stream(TICKET_STREAM_TYPE, id).await.expect("stream");
    assert_eq!(events[0].payload["TicketRegistered"]["requester"]["resident_id"], "res-1", "{}", events[0].payload);
    assert_eq!(events[0].metadata["role"], "resident");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_query() {
    let world = world().await;
    let ticket = "query($id: ID) { ticket(id: $id) { id } }";
    let statistics = [
        "{ slaStats(groupBy: [ORGANIZATION]) { received } }",
        "{ overdueCounters { open overdue } }",
        "{ contractorRatings { contractorId } }",
    ];
    let reference = ["{ categories { code } }", "{ buildings { id } }", "{ organizations { id } }", "{ contractors { id } }", "{ projectedPosition }"];
    for role in ROLES {
        let scoped = matches!(role, Role::Resident | Role::Dispatcher | Role::Organization | Role::Contractor);

        let a = world.call(role, ticket, json!({ "id": world.ticket_a })).await;
        assert!(a["errors"].is_null(), "{role} reads A: {a}");
        let b = world.call(role, ticket, json!({ "id": world.ticket_b })).await;
        if scoped {
            assert_eq!(error_code(&b), Some("TICKET_NOT_FOUND"), "{role} reads B: {b}");
        } else {
            assert!(b["errors"].is_null(), "{role} reads B: {b}");
        }

        let listed = world.call(role, "{ tickets(first: 50) { totalCount edges { node { id } } } }", json!({})).await;
        let ids: Vec<&str> = listed["data"]["tickets"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|edge| edge["node"]["id"].as_str().expect("id"))
            .collect();
        assert!(ids.contains(&world.ticket_a.as_str()), "{role}: {listed}");
        assert_eq!(ids.contains(&world.ticket_b.as_str()), !scoped, "{role}: {listed}");
        assert_eq!(listed["data"]["tickets"]["totalCount"].as_u64(), Some(ids.len() as u64), "{role}: {listed}");

        for query in statistics {
            let response = world.call(role, query, json!({})).await;
            let denied = matches!(role, Role::Resident | Role::Contractor);
            if denied {
                assert_eq!(error_code(&response), Some("FORBIDDEN"), "{role} {query}: {response}");
            } else {
                assert!(response["errors"].is_null(), "{role} {query}: {response}");
            }
        }
        for query in reference {
            let response = world.call(role, query, json!({})).await;
            assert!(response["errors"].is_null(), "{role} {query}: {response}");
        }

        // The history of A: analysts get it without personal data.
        let history = "query($id: ID) { ticket(id: $id) { events { eventType payload } } }";
        let events = world.call(role, history, json!({ "id": world.ticket_a })).await;
        let registered = &events["data"]["ticket"]["events"][0]["payload"];
        if role == Role::Analyst {
            assert_eq!(registered["requester"], "[скрыто]", "{events}");
            assert_eq!(registered["description"], "[скрыто]", "{events}");
            assert!(!events.to_string().contains("Жильцова"), "{events}");
        } else {
            assert_eq!(registered["requester"]["name"], "Жильцова Ольга", "{role}: {events}");
        }
    }

    // Every read of A's personal data but the resident's own and the analyst's hidden one is
    // recorded, and only auditors and administrators may list the reads.
    let reads = "query($id: ID) { personalDataReads(ticketId: $id) { role subject field ticketId } }";
    let listed = world.call(Role::Auditor, reads, json!({ "id": world.ticket_a })).await;
    assert!(listed["errors"].is_null(), "{listed}");
    let mut roles: Vec<&str> = listed["data"]["personalDataReads"]
        .as_array()
        .expect("reads")
        .iter()
        .map(|read| read["role"].as_str().expect("role"))
        .collect();
    roles.sort();
    assert_eq!(roles, ["admin", "auditor", "contractor", "dispatcher", "organization"], "{listed}");
    assert!(listed.to_string().contains("Ticket.events"), "{listed}");
    for role in ROLES {
        let response = world.call(role, reads, json!({ "id": world.ticket_a })).await;
        let allowed = matches!(role, Role::Auditor | Role::Admin);
        assert_eq!(error_code(&response) != Some("FORBIDDEN"), allowed, "{role}: {response}");
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(world: &World, role: Role, query: &str) -> Socket {
    let mut request = world.server.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("ws connects");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", world.tokens[&role]) } });
    socket.send(Message::text(init.to_string())).await.expect("init");
    let ack = next_message(&mut socket, Duration::from_secs(10)).await.expect("ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    socket.send(Message::text(subscribe.to_string())).await.expect("subscribe");
    socket
}

async fn next_message(socket: &mut Socket, limit: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await.ok()?? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_only_scope() {
    let world = world().await;
    let events = r#"subscription { ticketEvents(filter: { eventTypes: ["TicketCommented"] }) { ticketId payload } }"#;
    let mut sockets = Vec::new();
    for role in ROLES {
        sockets.push((role, subscribe(&world, role, events).await));
    }

    // Comments on B, then on A: a scoped subscriber's first delivery must be A's.
    let comment = r#"mutation($id: ID!, $text: String!) { commentTicket(id: $id, author: "Мастер Петров", text: $text) { position } }"#;
    let mut delivered: BTreeMap<Role, Vec<Value>> = BTreeMap::new();
    for round in 0..10 {
        admin_call(&world.server, comment, json!({ "id": world.ticket_b, "text": format!("B {round}") })).await;
        admin_call(&world.server, comment, json!({ "id": world.ticket_a, "text": format!("A {round}") })).await;
        for (role, socket) in sockets.iter_mut() {
            while let Some(message) = next_message(socket, Duration::from_millis(300)).await {
                delivered.entry(*role).or_default().push(message);
            }
        }
        if ROLES.iter().all(|role| delivered.get(role).is_some_and(|messages| messages.len() >= 2)) {
            break;
        }
    }
    for role in ROLES {
        let messages = delivered.get(&role).cloned().unwrap_or_default();
        assert!(!messages.is_empty(), "{role}: nothing delivered");
        let scoped = matches!(role, Role::Resident | Role::Dispatcher | Role::Organization | Role::Contractor);
        for message in &messages {
            assert_eq!(message["type"], "next", "{role}: {message}");
            let record = &message["payload"]["data"]["ticketEvents"];
            let ticket = record["ticketId"].as_str().expect("ticket id");
            if scoped {
                assert_eq!(ticket, world.ticket_a, "{role} received an event of B: {message}");
            }
            let author = &record["payload"]["author"];
            if role == Role::Analyst {
                assert_eq!(author, "[скрыто]", "{message}");
            } else {
                assert_eq!(author, "Мастер Петров", "{role}: {message}");
            }
        }
        if !scoped {
            let tickets: Vec<&str> = messages.iter().filter_map(|message| message["payload"]["data"]["ticketEvents"]["ticketId"].as_str()).collect();
            assert!(tickets.contains(&world.ticket_b.as_str()), "{role} sees every ticket: {tickets:?}");
        }
    }

    // Deliveries of comments, whose author and text may name a person, are recorded as reads.
    let reads = world.call(Role::Admin, "{ personalDataReads(first: 1000) { role field } }", json!({})).await;
    let fields: Vec<&str> = reads["data"]["personalDataReads"]
        .as_array()
        .expect("reads")
        .iter()
        .map(|read| read["field"].as_str().expect("field"))
        .collect();
    assert!(fields.contains(&"Subscription.ticketEvents"), "{reads}");
    assert!(!reads.to_string().contains("\"resident\""), "{reads}");
    assert!(!reads.to_string().contains("\"analyst\""), "{reads}");

    // The counters subscription follows the statistics rule.
    for role in ROLES {
        let mut socket = subscribe(&world, role, "subscription { overdueCounters { open } }").await;
        let first = next_message(&mut socket, Duration::from_secs(10)).await.expect("first message");
        assert_eq!(first["type"], "next", "{role}: {first}");
        if matches!(role, Role::Resident | Role::Contractor) {
            assert_eq!(first["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN", "{role}: {first}");
            assert!(first["payload"]["data"].is_null(), "{role}: {first}");
        } else {
            assert!(first["payload"]["errors"].is_null(), "{role}: {first}");
        }
    }
}
