//! Boston 311 is the only file with the city's own verdict (`ontime`): every closed case with a
//! target date must get the same verdict from our projections.

mod common;

use common::*;
use opencity_fixtures::import::ImportFormat;
use opencity_store::testing::temp_sqlite;
use opencity_store::Store;

#[tokio::test]
async fn boston_on_time_matches_city_verdict() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let services = services();

    let summary = import(&store, &services, ImportFormat::Boston311, "boston311_100_qsv.csv").await;
    assert_eq!(summary.rejected, 0, "no Boston record should be rejected");
    assert_eq!(summary.imported, 100);
    let read_model = projected(&store).await;

    let mut reader = csv::Reader::from_path(shared_data("boston311_100_qsv.csv")).expect("file opens");
    let headers = reader.headers().expect("header row").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect("column exists");
    let (id_col, closed_col, target_col, ontime_col) =
        (column("case_enquiry_id"), column("closed_dt"), column("target_dt"), column("ontime"));

    let mut compared = 0;
    for record in reader.records() {
        let record = record.expect("record parses");
        if record[closed_col].is_empty() || record[target_col].is_empty() {
            continue;
        }
        let external_id = &record[id_col];
        let ticket_id = read_model.id_for_external(external_id).await.expect("case imported");
        let view = read_model.view(ticket_id).await.expect("view exists");
        let expected = match &record[ontime_col] {
            "ONTIME" => true,
            "OVERDUE" => false,
            other => panic!("unexpected ontime value {other}"),
        };
        assert_eq!(view.resolution_on_time(), Some(expected), "case {external_id}");
        compared += 1;
    }
    assert!(compared >= 70, "only {compared} cases had both dates");
}

#[tokio::test]
async fn boston_second_import_appends_nothing() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let services = services();

    let first = import(&store, &services, ImportFormat::Boston311, "boston311_100_qsv.csv").await;
    let events_after_first = store.count_events().await.expect("count");
    let second = import(&store, &services, ImportFormat::Boston311, "boston311_100_qsv.csv").await;

    assert!(first.events > 0);
    assert_eq!(second.imported, 0);
    assert_eq!(second.events, 0);
    assert_eq!(second.already_present, first.imported);
    assert_eq!(store.count_events().await.expect("count"), events_after_first);
}

#[tokio::test]
async fn read_model_reopens_after_restart() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("store opens");
    let services = services();
    import(&store, &services, ImportFormat::Boston311, "boston311_100_qsv.csv").await;
    let first = projected(&store).await;
    let organizations = first.reference().await.organizations.len();
    drop(first);

    let reopened = opencity_projections::runner::ReadModel::open(store.clone()).await.expect("read model reopens");
    assert_eq!(reopened.views().await.len(), 100);
    assert_eq!(reopened.reference().await.organizations.len(), organizations);
    assert!(organizations > 0);
}
