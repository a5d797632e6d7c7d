//! Idempotent intake through the GraphQL API of a server, on both backends. A mutation's
//! idempotency key comes from the `Idempotency-Key` HTTP header or from the `idempotencyKey`
//! argument (for registration, the input field). Repeated and concurrent submissions with one
//! key append once and get the same `ticketId`, `position` and `appended`; every response but the
//! first has `replayed: true`. A header and an argument that differ are rejected.

mod child;
mod common;

use std::sync::Arc;
use std::time::Duration;

use child::{error_code, post_graphql};
use common::{services, TestServer};
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::values::ticket_id_for_key;
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{Store, StoreConfig};
use serde_json::{json, Value};
use uuid::Uuid;

/// Submissions of one request sent at once.
const SUBMISSIONS: usize = 20;

/// Sequential resubmissions after the concurrent ones.
const REPEATS: usize = 3;

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) {
  registerTicket(input: $input) { ticketId position appended replayed }
}"#;

const COMMENT: &str = r#"mutation($id: ID!, $key: String) {
  commentTicket(id: $id, author: "диспетчер", text: "Мастер придёт завтра", idempotencyKey: $key) { ticketId position appended replayed }
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_intake_sqlite() {
    let (_dir, config) = temp_sqlite();
    idempotent_intake(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_intake_postgres() {
    let database = temp_postgres().await;
    idempotent_intake(database.config()).await;
    database.cleanup().await;
}

/// One request of a test case: the body and the header key.
#[derive(Clone)]
struct Submission {
    query: &'static str,
    variables: Value,
    header_key: Option<String>,
}

/// The fields of a mutation response that every submission with one key must share.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    ticket_id: String,
    position: i64,
    appended: i64,
}

async fn idempotent_intake(config: StoreConfig) {
    let store = Store::open(&config).await.expect("store opens");
    let server = TestServer::start(store.clone(), services()).await;
    let client = server.client();
    let base_url = server.base_url.clone();
    let run = Uuid::new_v4().simple().to_string();

    // Registration keyed by the header: one ticket, at the id the key maps to.
    let header_key = format!("form-header-{run}");
    let header_registration = Submission { query: REGISTER, variables: register_input(None), header_key: Some(header_key.clone()) };
    let responses = submit_at_once(&client, &base_url, &header_registration, SUBMISSIONS).await;
    let registered_by_header = single_outcome("registerTicket", &responses);
    assert_eq!(registered_by_header.ticket_id, ticket_id_for_key(&header_key).to_string(), "the header is the ticket's key");
    assert_eq!(registered_by_header.appended, 1);

    // Registration keyed by the input field.
    let field_key = format!("form-field-{run}");
    let field_registration = Submission { query: REGISTER, variables: register_input(Some(&field_key)), header_key: None };
    let responses = submit_at_once(&client, &base_url, &field_registration, SUBMISSIONS).await;
    let registered_by_field = single_outcome("registerTicket", &responses);
    assert_eq!(registered_by_field.ticket_id, ticket_id_for_key(&field_key).to_string());
    assert_eq!(registered_by_field.appended, 1);
    assert_ne!(registered_by_field.ticket_id, registered_by_header.ticket_id);

    // Later resubmissions, in either form and with both forms agreeing, replay the first response.
    let both_forms = Submission { query: REGISTER, variables: register_input(Some(&header_key)), header_key: Some(header_key.clone()) };
    for _ in 0..REPEATS {
        assert_replayed("registerTicket", &submit(&client, &base_url, &header_registration).await, &registered_by_header);
        assert_replayed("registerTicket", &submit(&client, &base_url, &field_registration).await, &registered_by_field);
        assert_replayed("registerTicket", &submit(&client, &base_url, &both_forms).await, &registered_by_header);
    }
    assert_eq!(store.count_events().await.expect("events are countable"), 2, "two registrations, each stored once");

    // A header and an input field that differ are rejected, and nothing is stored.
    let mismatch = Submission {
        query: REGISTER,
        variables: register_input(Some(&format!("form-other-{run}"))),
        header_key: Some(format!("form-mismatch-{run}")),
    };
    let rejected = submit(&client, &base_url, &mismatch).await;
    assert_eq!(error_code(&rejected), Some("IDEMPOTENCY_KEY_MISMATCH"), "{rejected}");
    let message = rejected["errors"][0]["message"].as_str().expect("message");
    assert!(message.chars().any(|letter| ('а'..='я').contains(&letter)), "message is not Russian: {message}");
    assert!(rejected["data"].is_null() || rejected["data"]["registerTicket"].is_null(), "{rejected}");
    assert_eq!(store.count_events().await.expect("events are countable"), 2, "a rejected request stores nothing");

    // A comment keyed by the header, then one keyed by the argument, on the same ticket.
    let ticket = registered_by_header.ticket_id.clone();
    let comment_header_key = format!("comment-header-{run}");
    let comment_by_header =
        Submission { query: COMMENT, variables: json!({ "id": ticket, "key": null }), header_key: Some(comment_header_key.clone()) };
    let responses = submit_at_once(&client, &base_url, &comment_by_header, SUBMISSIONS).await;
    let commented_by_header = single_outcome("commentTicket", &responses);
    assert_eq!(commented_by_header.ticket_id, ticket);
    assert_eq!(commented_by_header.appended, 1);

    let comment_argument_key = format!("comment-argument-{run}");
    let comment_by_argument = Submission { query: COMMENT, variables: json!({ "id": ticket, "key": comment_argument_key }), header_key: None };
    let responses = submit_at_once(&client, &base_url, &comment_by_argument, SUBMISSIONS).await;
    let commented_by_argument = single_outcome("commentTicket", &responses);
    assert_eq!(commented_by_argument.appended, 1);
    assert_ne!(commented_by_argument.position, commented_by_header.position);

    // The first comment's key still returns its own position, not the ticket's last one.
    for _ in 0..REPEATS {
        assert_replayed("commentTicket", &submit(&client, &base_url, &comment_by_header).await, &commented_by_header);
        assert_replayed("commentTicket", &submit(&client, &base_url, &comment_by_argument).await, &commented_by_argument);
    }

    // The log contains each keyed command once, with its key in the metadata.
    assert_eq!(store.count_events().await.expect("events are countable"), 4);
    let stream = store.load_stream(TICKET_STREAM_TYPE, &ticket).await.expect("stream loads");
    let stored: Vec<(&str, i64, Option<&str>)> = stream
        .iter()
        .map(|event| (event.event_type.as_str(), event.position, event.metadata["idempotency_key"].as_str()))
        .collect();
    assert_eq!(
        stored,
        vec![
            ("TicketRegistered", registered_by_header.position, Some(header_key.as_str())),
            ("TicketCommented", commented_by_header.position, Some(comment_header_key.as_str())),
            ("TicketCommented", commented_by_argument.position, Some(comment_argument_key.as_str())),
        ]
    );
    let other = store.load_stream(TICKET_STREAM_TYPE, &registered_by_field.ticket_id).await.expect("stream loads");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].metadata["idempotency_key"].as_str(), Some(field_key.as_str()));
}

/// Sends `count` copies of a submission from separate tasks that start together.
async fn submit_at_once(client: &reqwest::Client, base_url: &str, submission: &Submission, count: usize) -> Vec<Value> {
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            let base_url = base_url.to_string();
            let submission = submission.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                submit(&client, &base_url, &submission).await
            })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(tokio::time::timeout(Duration::from_secs(120), task).await.expect("response within 120 s").expect("task ran"));
    }
    responses
}

async fn submit(client: &reqwest::Client, base_url: &str, submission: &Submission) -> Value {
    let (_, body) = post_graphql(client, base_url, submission.query, submission.variables.clone(), submission.header_key.as_deref())
        .await
        .expect("server responds");
    body
}

fn outcome(field: &str, response: &Value) -> (Outcome, bool) {
    assert!(response["errors"].is_null(), "{response}");
    let result = &response["data"][field];
    let outcome = Outcome {
        ticket_id: result["ticketId"].as_str().unwrap_or_else(|| panic!("{response}")).to_string(),
        position: result["position"].as_i64().unwrap_or_else(|| panic!("{response}")),
        appended: result["appended"].as_i64().unwrap_or_else(|| panic!("{response}")),
    };
    let replayed = result["replayed"].as_bool().unwrap_or_else(|| panic!("{response}"));
    (outcome, replayed)
}

/// Asserts that all responses share one outcome and exactly one is not replayed; returns it.
fn single_outcome(field: &str, responses: &[Value]) -> Outcome {
    let outcomes: Vec<(Outcome, bool)> = responses.iter().map(|response| outcome(field, response)).collect();
    let first = outcomes[0].0.clone();
    for (outcome, _) in &outcomes {
        assert_eq!(outcome, &first, "responses to one key differ");
    }
    let fresh = outcomes.iter().filter(|(_, replayed)| !replayed).count();
    assert_eq!(fresh, 1, "responses not marked replayed, of {}", responses.len());
    first
}

fn assert_replayed(field: &str, response: &Value, expected: &Outcome) {
    let (outcome, replayed) = outcome(field, response);
    assert_eq!(&outcome, expected, "{response}");
    assert!(replayed, "a resubmission is not marked replayed: {response}");
}

fn register_input(key: Option<&str>) -> Value {
    json!({
        "input": {
            "channel": "WEB",
            "requester": { "name": "Сидорова Анна", "phone": "+7 900 000-00-02" },
            "building": { "id": "kzn-idempotency-1", "address": "Казань, ул. Кремлёвская, 9", "district": "Вахитовский",
                          "timeZone": "Europe/Moscow", "region": "RU-TA" },
            "premises": "3",
            "category": "roof_leak",
            "description": "Капает с потолка на кухне",
            "idempotencyKey": key,
        }
    })
}
