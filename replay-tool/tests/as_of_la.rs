//! `as-of --position` at ten moments of an LA 311 import returns what the live `slaStats` and
//! `overdueCounters` GraphQL queries returned at those moments, on SQLite and on PostgreSQL.

mod common;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use opencity_api::graphql::ApiState;
use opencity_domain::access::Role;
use opencity_api::import::write_tickets;
use opencity_projections::runner::ReadModel;
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{Store, StoreConfig};
use serde_json::{json, Value};

const MOMENTS: usize = 10;

const SLA_FIELDS: &str = "group { dimension value } received resolved resolvedOnTime onTimeShare \
    acceptMedianSeconds acceptP90Seconds resolveMedianSeconds resolveP90Seconds reopened reopenedShare \
    confirmed confirmedShare ratingMean ratingCount cancelled flagged";
const OVERDUE_FIELDS: &str =
    "group { dimension value } open overdue overdueResponse overdueResolution";

/// What the API returned at one moment of the import.
struct Captured {
    position: i64,
    at: DateTime<Utc>,
    response: Value,
}

async fn query_api(base_url: &str, token: &str, at: DateTime<Utc>) -> Value {
    let at = at.to_rfc3339();
    let query = format!(
        "{{ byOrganization: slaStats(groupBy: [ORGANIZATION]) {{ {SLA_FIELDS} }}
            total: slaStats(groupBy: []) {{ {SLA_FIELDS} }}
            overdueByOrganization: overdueCounters(groupBy: [ORGANIZATION], asOf: \"{at}\") {{ {OVERDUE_FIELDS} }}
            overdueTotal: overdueCounters(asOf: \"{at}\") {{ {OVERDUE_FIELDS} }} }}"
    );
    let response: Value = reqwest::Client::new()
        .post(format!("{base_url}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("server answers")
        .json()
        .await
        .expect("JSON response");
    assert!(response["errors"].is_null(), "{response}");
    response["data"].clone()
}

/// Converts the tool's rows to the shape of the GraphQL rows.
fn as_graphql(rows: &Value) -> Value {
    let rows = rows.as_array().expect("rows");
    let converted: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut object = serde_json::Map::new();
            let group: Vec<Value> = row["key"]
                .as_array()
                .expect("key")
                .iter()
                .map(|pair| json!({ "dimension": pair[0], "value": pair[1] }))
                .collect();
            object.insert("group".to_string(), Value::Array(group));
            for (key, value) in row.as_object().expect("row") {
                if key == "key" || key == "reported_complete" || key == "resident_answers" {
                    continue;
                }
                object.insert(camel_case(key), value.clone());
            }
            Value::Object(object)
        })
        .collect();
    Value::Array(converted)
}

fn camel_case(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for character in name.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

fn tool_report(config: &StoreConfig, captured: &Captured, group_by: Option<&str>) -> Value {
    let position = captured.position.to_string();
    let at = captured.at.to_rfc3339();
    let mut args = vec!["as-of", "--position", &position, "--at", &at, "--json"];
    if let Some(group_by) = group_by {
        args.extend(["--group-by", group_by]);
    }
    let output = run_tool(config, &args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("JSON report")
}

#[tokio::test]
async fn as_of_matches_live_api_on_sqlite() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("sqlite opens");
    check_as_of_during_la_import(store, &config).await;
}

#[tokio::test]
async fn as_of_matches_live_api_on_postgres() {
    let database = temp_postgres().await;
    let config = database.config();
    let store = Store::open(&config).await.expect("postgres opens");
    check_as_of_during_la_import(store, &config).await;
    database.cleanup().await;
}

/// Imports the whole LA extract in ten batches, captures the live API after each, and compares
/// the tool's `as-of` at each captured position with it.
async fn check_as_of_during_la_import(store: Store, config: &StoreConfig) {
    let services = services();
    let tickets = la_tickets(&services);
    assert!(tickets.len() > 9_000, "LA tickets: {}", tickets.len());

    let token = store
        .create_token(Role::Analyst, "as-of test", None, None)
        .await
        .expect("token created")
        .secret;
    let read_model = ReadModel::open(store.clone())
        .await
        .expect("read model opens");
    let state = ApiState {
        store: store.clone(),
        services: services.clone(),
        read_model: read_model.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, opencity_api::app::router(state)).await;
    });

    // Import in ten batches; after each, bring the read model up to date and capture what the
    // API returns, with overdue counters asked as of a moment inside the LA data's range.
    let batch = tickets.len().div_ceil(MOMENTS);
    let first_moment = Utc.with_ymd_and_hms(2017, 12, 20, 12, 0, 0).unwrap();
    let mut captured = Vec::new();
    for (index, chunk) in tickets.chunks(batch).enumerate() {
        write_tickets(&store, &services, chunk.to_vec(), "import")
            .await
            .expect("import writes");
        read_model.catch_up().await.expect("projections catch up");
        let at = first_moment + Duration::days(5 * index as i64);
        let response = query_api(&base_url, &token, at).await;
        captured.push(Captured {
            position: read_model.checkpoint().position,
            at,
            response,
        });
    }
    assert_eq!(captured.len(), MOMENTS);
    assert!(captured
        .windows(2)
        .all(|pair| pair[0].position < pair[1].position));

    for moment in &captured {
        let context = format!("position {}", moment.position);
        let grouped = tool_report(config, moment, Some("organization"));
        assert_json_close(
            &as_graphql(&grouped["sla_stats"]),
            &moment.response["byOrganization"],
            &context,
        );
        assert_json_close(
            &as_graphql(&grouped["overdue_counters"]),
            &moment.response["overdueByOrganization"],
            &context,
        );

        let total = tool_report(config, moment, None);
        assert_json_close(
            &as_graphql(&total["sla_stats"]),
            &moment.response["total"],
            &context,
        );
        assert_json_close(
            &as_graphql(&total["overdue_counters"]),
            &moment.response["overdueTotal"],
            &context,
        );
        assert!(
            moment.response["total"][0]["received"]
                .as_i64()
                .unwrap_or(0)
                > 0,
            "{context}"
        );
    }
    // The comparison is only meaningful if some moment had open and overdue tickets.
    let overdue_moments = captured
        .iter()
        .filter(|moment| {
            moment.response["overdueTotal"][0]["overdue"]
                .as_i64()
                .unwrap_or(0)
                > 0
        })
        .count();
    assert!(overdue_moments > 0, "no moment had overdue tickets");
}
