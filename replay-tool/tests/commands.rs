//! The commands of `opencity-replay` run as a user runs them, on a small LA import in SQLite and
//! in PostgreSQL: exit codes, findings after deliberate corruption, and repeatable output.

mod common;

use common::*;
use opencity_projections::runner::ReadModel;
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{DbPool, Store, StoreConfig};

/// Tickets imported by each test: enough for several statuses, few enough to stay fast.
const TICKETS: usize = 150;

/// Returns the id and event count of the first stream with at least three events.
async fn long_stream(store: &Store) -> (String, i64) {
    const QUERY: &str = "SELECT aggregate_id, count(*) AS events FROM events
         GROUP BY aggregate_id HAVING count(*) >= 3 ORDER BY aggregate_id LIMIT 1";
    let row: (String, i64) = match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_as(QUERY).fetch_one(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_as(QUERY).fetch_one(pool).await,
    }
    .expect("a stream with three events");
    row
}

async fn position_of(store: &Store, stream_id: &str, sequence: i64) -> i64 {
    let query = format!(
        "SELECT global_position FROM events WHERE aggregate_id = '{stream_id}' AND sequence = {sequence}"
    );
    match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_scalar(&query).fetch_one(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_scalar(&query).fetch_one(pool).await,
    }
    .expect("event exists")
}

async fn check_verify_and_export(store: &Store, config: &StoreConfig) {
    let intact = run_tool(config, &["verify"]);
    assert_eq!(
        intact.status.code(),
        Some(0),
        "{}{}",
        stdout(&intact),
        stderr(&intact)
    );
    assert!(
        stdout(&intact).contains("журнал цел"),
        "{}",
        stdout(&intact)
    );

    let first = run_tool(config, &["export"]);
    let second = run_tool(config, &["export"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout, "two exports of one log differ");
    let events = store.count_events().await.expect("count");
    assert_eq!(stdout(&first).lines().count() as i64, events);

    let (stream_id, _) = long_stream(store).await;
    let position = position_of(store, &stream_id, 2).await;
    let corrupted = format!(
        "UPDATE events SET payload = '{{\"TicketVanished\":{{\"occurred_at\":\"2017-01-01T00:00:00Z\"}}}}' \
         WHERE global_position = {position}"
    );
    execute_sql(store, &corrupted).await;
    let broken = run_tool(config, &["verify"]);
    let report = stdout(&broken);
    assert_eq!(broken.status.code(), Some(1), "{report}{}", stderr(&broken));
    assert!(
        report.contains(&format!(
            "поток ticket/{stream_id}, событие № 2, позиция {position}"
        )),
        "{report}"
    );
    assert!(report.contains("UNDECODABLE_PAYLOAD"), "{report}");

    let third_position = position_of(store, &stream_id, 3).await;
    execute_sql(
        store,
        &format!("DELETE FROM events WHERE global_position = {position}"),
    )
    .await;
    let gap = run_tool(config, &["verify", "--json"]);
    assert_eq!(gap.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&gap.stdout).expect("JSON report");
    let findings = report["findings"].as_array().expect("findings");
    let sequence_gap = findings
        .iter()
        .find(|finding| finding["kind"] == "SEQUENCE_GAP")
        .expect("a sequence gap is reported");
    assert_eq!(sequence_gap["stream_id"], stream_id.as_str());
    assert_eq!(sequence_gap["sequence"], 3);
    assert_eq!(sequence_gap["position"], third_position);
}

async fn check_history(store: &Store, config: &StoreConfig) {
    let (stream_id, events) = long_stream(store).await;
    let by_id = run_tool(config, &["history", &stream_id]);
    let text = stdout(&by_id);
    assert_eq!(by_id.status.code(), Some(0), "{}", stderr(&by_id));
    assert!(text.contains(&format!("Заявка {stream_id}")), "{text}");
    assert!(text.contains("Что: заявка зарегистрирована"), "{text}");
    assert!(text.contains("SLA: "), "{text}");
    assert_eq!(text.matches("\n№ ").count() as i64, events, "{text}");

    let json = run_tool(config, &["history", &stream_id, "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON history");
    let external_id = history["external_id"]
        .as_str()
        .expect("LA tickets have numbers")
        .to_string();
    let by_number = run_tool(config, &["history", &external_id, "--json"]);
    assert_eq!(by_number.stdout, json.stdout);

    let missing = run_tool(config, &["history", "no-such-ticket"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("TICKET_NOT_FOUND"),
        "{}",
        stderr(&missing)
    );
}

async fn check_diff(store: &Store, config: &StoreConfig) {
    let clean = run_tool(config, &["diff"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}{}",
        stdout(&clean),
        stderr(&clean)
    );
    assert!(
        stdout(&clean).contains("Расхождений нет"),
        "{}",
        stdout(&clean)
    );

    let (stream_id, _) = long_stream(store).await;
    let select = format!("SELECT payload FROM ticket_views WHERE id = '{stream_id}'");
    let payload: String = match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_scalar(&select).fetch_one(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_scalar(&select).fetch_one(pool).await,
    }
    .expect("live view");
    let mut view: serde_json::Value = serde_json::from_str(&payload).expect("view JSON");
    view["reopen_count"] = serde_json::json!(7);
    let update = format!(
        "UPDATE ticket_views SET payload = '{}' WHERE id = '{stream_id}'",
        view.to_string().replace('\'', "''")
    );
    execute_sql(store, &update).await;

    let drifted = run_tool(config, &["diff", "--json"]);
    assert_eq!(drifted.status.code(), Some(1), "{}", stderr(&drifted));
    let report: serde_json::Value = serde_json::from_slice(&drifted.stdout).expect("JSON report");
    let drifts = report["drifts"].as_array().expect("drifts");
    assert_eq!(drifts.len(), 1, "{report}");
    assert_eq!(drifts[0]["kind"], "CHANGED_FIELDS");
    assert_eq!(drifts[0]["ticket_id"], stream_id.as_str());
    assert_eq!(drifts[0]["fields"], serde_json::json!(["reopen_count"]));

    execute_sql(
        store,
        &format!("DELETE FROM ticket_views WHERE id = '{stream_id}'"),
    )
    .await;
    let missing = run_tool(config, &["diff"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stdout(&missing).contains("заявки нет в рабочей витрине"),
        "{}",
        stdout(&missing)
    );
}

async fn check_as_of(read_model: &ReadModel, config: &StoreConfig) {
    let position = read_model.checkpoint().position.to_string();
    let views = read_model.views().await;
    let expected = opencity_projections::sla_stats(
        views.values(),
        &[opencity_projections::Dimension::Category],
        &opencity_projections::StatsFilter::default(),
        opencity_projections::DEFAULT_TIME_ZONE,
    );
    let output = run_tool(
        config,
        &[
            "as-of",
            "--position",
            &position,
            "--group-by",
            "category",
            "--json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_json_close(
        &report["sla_stats"],
        &serde_json::to_value(&expected).expect("rows"),
        "sla_stats",
    );

    let text = run_tool(config, &["as-of", "--position", &position]);
    assert!(
        stdout(&text).contains("Статистика SLA"),
        "{}",
        stdout(&text)
    );
    assert!(stdout(&text).contains("Просрочки на"), "{}", stdout(&text));

    let before = run_tool(config, &["as-of", "2000-01-01T00:00:00Z", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&before.stdout).expect("JSON report");
    assert_eq!(report["events"], 0);
    assert_eq!(report["sla_stats"][0]["received"], 0);
    assert_eq!(report["overdue_counters"][0]["open"], 0);

    let now = chrono::Utc::now().to_rfc3339();
    let after = run_tool(config, &["as-of", &now, "--group-by", "category", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&after.stdout).expect("JSON report");
    assert_eq!(report["position"].to_string(), position);
    assert_json_close(
        &report["sla_stats"],
        &serde_json::to_value(&expected).expect("rows"),
        "sla_stats now",
    );

    let unknown = run_tool(config, &["as-of", "--position", "999999999"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("POSITION_NOT_FOUND"),
        "{}",
        stderr(&unknown)
    );
}

async fn check_all(store: Store, config: StoreConfig) {
    let read_model = import_la(&store, TICKETS).await;
    check_history(&store, &config).await;
    check_as_of(&read_model, &config).await;
    check_diff(&store, &config).await;
    check_verify_and_export(&store, &config).await;
}

#[tokio::test]
async fn commands_on_sqlite() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("sqlite opens");
    check_all(store, config).await;
}

#[tokio::test]
async fn commands_on_postgres() {
    let database = temp_postgres().await;
    let config = database.config();
    let store = Store::open(&config).await.expect("postgres opens");
    check_all(store.clone(), config).await;
    drop(store);
    database.cleanup().await;
}

#[tokio::test]
async fn export_is_byte_identical() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("sqlite opens");
    import_la(&store, 40).await;
    let first = run_tool(&config, &["export"]);
    let second = run_tool(&config, &["export"]);
    assert_eq!(first.stdout, second.stdout);

    let part = run_tool(&config, &["export", "--from", "5", "--to", "9"]);
    let positions: Vec<i64> = stdout(&part)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("JSON line")["position"]
                .as_i64()
                .expect("position")
        })
        .collect();
    assert_eq!(positions, vec![5, 6, 7, 8, 9]);

    let line = stdout(&first).lines().next().expect("a line").to_string();
    let keys: Vec<String> = line
        .trim_start_matches('{')
        .split(",\"")
        .filter_map(|part| {
            part.trim_start_matches('"')
                .split_once("\":")
                .map(|(key, _)| key.to_string())
        })
        .collect();
    assert_eq!(
        &keys[..8],
        [
            "position",
            "stream_type",
            "stream_id",
            "sequence",
            "event_type",
            "event_version",
            "occurred_at",
            "recorded_at"
        ]
    );
}

#[tokio::test]
async fn missing_sqlite_file_exits_2() {
    let directory = tempfile::tempdir().expect("temp dir");
    let data_dir = directory.path().join("absent");
    let config = StoreConfig::Sqlite {
        data_dir: data_dir.clone(),
    };
    let output = run_tool(&config, &["verify"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("DATABASE_NOT_FOUND"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("не найден"), "{}", stderr(&output));
    assert!(!data_dir.exists(), "the tool created the data directory");
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("sqlite opens");
    drop(store);
    for args in [
        vec!["as-of"],
        vec!["as-of", "--position", "many"],
        vec!["as-of", "yesterday"],
        vec!["as-of", "--position", "1", "--group-by", "planet"],
        vec!["no-such-command"],
    ] {
        let output = run_tool(&config, &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let unreachable = StoreConfig::Postgres {
        url: "postgres://postgres@127.0.0.1:1/none".to_string(),
    };
    let output = run_tool(&unreachable, &["verify"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("DATABASE_ERROR"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn diff_without_read_model_exits_2() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("sqlite opens");
    drop(store);
    let output = run_tool(&config, &["diff"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("READ_MODEL_NOT_FOUND"),
        "{}",
        stderr(&output)
    );
}
