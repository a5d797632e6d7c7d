//! Chicago's Open311 requests carry their notes: replaying them must rebuild each request's
//! status and last update time.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use opencity_fixtures::import::ImportFormat;
use opencity_store::testing::temp_sqlite;
use opencity_store::Store;

#[tokio::test]
async fn chicago_status_and_update_time_match() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let services = services();
    let summary = import(&store, &services, ImportFormat::Open311, "open311_chicago_requests_with_notes_2014.json").await;
    assert_eq!(summary.rejected, 0);
    let read_model = projected(&store).await;

    let text = std::fs::read_to_string(shared_data("open311_chicago_requests_with_notes_2014.json")).expect("file reads");
    let requests: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON array");
    assert_eq!(requests.len(), 50);
    for request in &requests {
        let id = request["service_request_id"].as_str().expect("request id");
        let ticket_id = read_model.id_for_external(id).await.unwrap_or_else(|| panic!("request {id} imported"));
        let view = read_model.view(ticket_id).await.expect("view exists");

        let expected_status = request["status"].as_str().expect("status");
        let is_open = view.status.is_open();
        assert_eq!(if is_open { "open" } else { "closed" }, expected_status, "status of {id}");

        let updated: DateTime<Utc> = DateTime::parse_from_rfc3339(request["updated_datetime"].as_str().expect("updated"))
            .expect("RFC 3339")
            .with_timezone(&Utc);
        assert_eq!(view.last_event_at, updated, "last update of {id}");
    }
}
