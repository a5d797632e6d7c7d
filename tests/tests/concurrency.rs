//! Fifty concurrent commands on one ticket through the GraphQL API of a server, on both
//! backends. Each command must be applied exactly once or rejected: with `CONFLICT` when the
//! stream kept changing through all of the store's attempts, or with `INVALID_TRANSITION` when
//! another command moved the ticket on first. No update may be lost, and the read model and the
//! statistics must agree with the log.

mod child;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use child::{error_code, post_graphql};
use common::{services, TestServer};
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_projections::fold_from_scratch;
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{Store, StoreConfig};
use serde_json::{json, Value};
use uuid::Uuid;

const COMMENTS: usize = 30;
const ESCALATIONS: usize = 10;
const ACCEPTS: usize = 10;

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) {
  registerTicket(input: $input) { ticketId position appended replayed }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_commands_on_one_ticket_sqlite() {
    let (_dir, config) = temp_sqlite();
    fifty_commands_on_one_ticket(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_commands_on_one_ticket_postgres() {
    let database = temp_postgres().await;
    fifty_commands_on_one_ticket(database.config()).await;
    database.cleanup().await;
}

/// The kind of one concurrent command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Comment,
    Escalate,
    Accept,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Comment => "commentTicket",
            Kind::Escalate => "escalateTicket",
            Kind::Accept => "acceptTicket",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Kind::Comment => "TicketCommented",
            Kind::Escalate => "TicketEscalated",
            Kind::Accept => "TicketAccepted",
        }
    }
}

/// One command of the burst and the server's response to it.
struct CommandResponse {
    kind: Kind,
    /// Text of a comment; empty for the other kinds.
    text: String,
    body: Value,
}

impl CommandResponse {
    fn position(&self) -> Option<i64> {
        self.body["data"][self.kind.field()]["position"].as_i64()
    }
}

async fn fifty_commands_on_one_ticket(config: StoreConfig) {
    let store = Store::open(&config).await.expect("store opens");
    let server = TestServer::start(store.clone(), services()).await;
    let client = server.client();

    // Given a ticket routed to an organization, so that exactly one acceptance can succeed.
    let (_, registered) = post_graphql(&client, &server.base_url, REGISTER, register_input(), None).await.expect("server responds");
    let id = registered["data"]["registerTicket"]["ticketId"].as_str().unwrap_or_else(|| panic!("{registered}")).to_string();
    let route = format!(r#"mutation {{ routeTicket(id: "{id}", organization: {{ id: "uk-concurrency", name: "УК Проверка" }}) {{ position }} }}"#);
    let (_, routed) = post_graphql(&client, &server.base_url, &route, json!({}), None).await.expect("server responds");
    assert!(routed["errors"].is_null(), "{routed}");

    // When 50 commands arrive at once.
    let mut commands: Vec<(Kind, String, String)> = Vec::new();
    for number in 0..COMMENTS {
        let text = format!("Комментарий диспетчера № {number}");
        let query = format!(r#"mutation {{ commentTicket(id: "{id}", author: "диспетчер", text: "{text}") {{ position appended replayed }} }}"#);
        commands.push((Kind::Comment, text, query));
    }
    for number in 0..ESCALATIONS {
        let query = format!(r#"mutation {{ escalateTicket(id: "{id}", reason: "Жалоба № {number}") {{ position appended replayed }} }}"#);
        commands.push((Kind::Escalate, String::new(), query));
    }
    for _ in 0..ACCEPTS {
        let query = format!(r#"mutation {{ acceptTicket(id: "{id}") {{ position appended replayed }} }}"#);
        commands.push((Kind::Accept, String::new(), query));
    }
    let responses = send_at_once(&client, &server.base_url, commands).await;

    // Then every response is a success or an allowed rejection.
    let mut tally: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for response in &responses {
        let outcome = match (response.position(), error_code(&response.body)) {
            (Some(_), None) => {
                let result = &response.body["data"][response.kind.field()];
                assert_eq!(result["appended"], 1, "{}", response.body);
                assert_eq!(result["replayed"], false, "{}", response.body);
                "applied".to_string()
            }
            (None, Some("CONFLICT")) => "CONFLICT".to_string(),
            (None, Some("INVALID_TRANSITION")) if response.kind == Kind::Accept => "INVALID_TRANSITION".to_string(),
            _ => panic!("unexpected response to {:?}: {}", response.kind, response.body),
        };
        *tally.entry((response.kind, outcome)).or_default() += 1;
    }
    println!("{:?}: {tally:?}", store.backend());
    let count = |kind: Kind, outcome: &str| tally.get(&(kind, outcome.to_string())).copied().unwrap_or(0);
    assert!(count(Kind::Comment, "applied") > 0, "no comment was applied: {tally:?}");
    assert!(count(Kind::Accept, "applied") <= 1, "the ticket was accepted twice: {tally:?}");
    if count(Kind::Accept, "applied") == 0 {
        assert_eq!(count(Kind::Accept, "INVALID_TRANSITION"), 0, "acceptance refused although none succeeded: {tally:?}");
    }

    // The log contains exactly the applied commands, each once, at the positions reported.
    let mut stream = store.load_stream(TICKET_STREAM_TYPE, &id).await.expect("stream loads");
    let mut payloads: Vec<&mut serde_json::Value> = stream.iter_mut().map(|event| &mut *event.payload).collect();
    store.open_personal_data(&id, &mut payloads).await.expect("comments open");
    let sequences: Vec<i64> = stream.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, (1..=stream.len() as i64).collect::<Vec<_>>(), "sequences have gaps or repeats");
    let by_position: BTreeMap<i64, &str> = stream.iter().map(|event| (event.position, event.event_type.as_str())).collect();
    let mut reported = BTreeSet::new();
    for response in responses.iter().filter(|response| response.position().is_some()) {
        let position = response.position().expect("position");
        assert!(reported.insert(position), "two commands reported position {position}");
        assert_eq!(by_position.get(&position).copied(), Some(response.kind.event_type()), "event at the position reported for {:?}", response.kind);
    }
    for kind in [Kind::Comment, Kind::Escalate, Kind::Accept] {
        let stored = stream.iter().filter(|event| event.event_type == kind.event_type()).count();
        assert_eq!(stored, count(kind, "applied"), "stored {} events", kind.event_type());
    }
    let stored_texts: Vec<String> = stream
        .iter()
        .filter(|event| event.event_type == "TicketCommented")
        .map(|event| event.payload["TicketCommented"]["text"].as_str().expect("comment text").to_string())
        .collect();
    let applied_texts: BTreeSet<String> =
        responses.iter().filter(|response| response.kind == Kind::Comment && response.position().is_some()).map(|response| response.text.clone()).collect();
    assert_eq!(stored_texts.iter().cloned().collect::<BTreeSet<_>>(), applied_texts, "stored comments are not the applied ones");
    assert_eq!(stored_texts.len(), applied_texts.len(), "a comment is stored twice");

    // No escalation was lost: the levels count up without gaps.
    let levels: Vec<u64> = stream
        .iter()
        .filter(|event| event.event_type == "TicketEscalated")
        .map(|event| event.payload["TicketEscalated"]["level"].as_u64().expect("level"))
        .collect();
    assert_eq!(levels, (1..=levels.len() as u64).collect::<Vec<_>>(), "escalation levels");

    // The read model equals a fold of the stream, and the API serves it.
    let ticket_id = Uuid::parse_str(&id).expect("ticket id");
    let folded = fold_from_scratch(stream.iter().map(|event| (ticket_id, event.position, event.ticket_event().expect("event decodes"))));
    let expected_view = folded.get(&ticket_id).expect("folded view").clone();
    tokio::time::timeout(Duration::from_secs(60), async {
        while server.read_model.view(ticket_id).await.as_ref() != Some(&expected_view) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read model never matched the fold: {:#?}", expected_view));

    let query = format!(
        r#"{{ ticket(id: "{id}") {{ status escalationLevel events {{ eventType }} }}
            slaStats(groupBy: []) {{ received resolved cancelled }}
            overdueCounters(groupBy: []) {{ open }} }}"#
    );
    let (_, served) = post_graphql(&client, &server.base_url, &query, json!({}), None).await.expect("server responds");
    assert!(served["errors"].is_null(), "{served}");
    let expected_status = if count(Kind::Accept, "applied") == 1 { "accepted" } else { "routed" };
    assert_eq!(served["data"]["ticket"]["status"], expected_status, "{served}");
    assert_eq!(served["data"]["ticket"]["escalationLevel"], json!(count(Kind::Escalate, "applied")), "{served}");
    assert_eq!(served["data"]["ticket"]["events"].as_array().expect("events").len(), stream.len());
    assert_eq!(served["data"]["slaStats"][0]["received"], 1, "{served}");
    assert_eq!(served["data"]["slaStats"][0]["resolved"], 0, "{served}");
    assert_eq!(served["data"]["slaStats"][0]["cancelled"], 0, "{served}");
    assert_eq!(served["data"]["overdueCounters"][0]["open"], 1, "{served}");
}

/// Sends every command from its own task; the tasks wait at a barrier so that the requests
/// leave together.
async fn send_at_once(client: &reqwest::Client, base_url: &str, commands: Vec<(Kind, String, String)>) -> Vec<CommandResponse> {
    let barrier = Arc::new(tokio::sync::Barrier::new(commands.len()));
    let tasks: Vec<_> = commands
        .into_iter()
        .map(|(kind, text, query)| {
            let client = client.clone();
            let base_url = base_url.to_string();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let (_, body) = post_graphql(&client, &base_url, &query, json!({}), None).await.expect("server responds");
                CommandResponse { kind, text, body }
            })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(tokio::time::timeout(Duration::from_secs(120), task).await.expect("response within 120 s").expect("task ran"));
    }
    responses
}

fn register_input() -> Value {
    json!({
        "input": {
            "channel": "CALL_CENTER",
            "requester": { "name": "Петров Иван", "phone": "+7 900 000-00-01" },
            "building": { "id": "kzn-concurrency-1", "address": "Казань, ул. Баумана, 5", "district": "Вахитовский",
                          "timeZone": "Europe/Moscow", "region": "RU-TA" },
            "premises": "7",
            "category": "roof_leak",
            "description": "Течёт крыша в подъезде",
        }
    })
}
