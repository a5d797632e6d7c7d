//! `verify` with hash chains and signed checkpoints: an intact log passes with the operator's
//! key, and a changed event, a deleted head or a foreign key are reported.

mod common;

use common::*;
use opencity_store::integrity::{generate_key_files, public_key_path, read_signing_key};
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{Store, StoreConfig};

fn findings(config: &StoreConfig, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let output = run_tool(config, &all);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("JSON report: {error}: {}", stderr(&output)));
    (
        output.status.code(),
        report["findings"].as_array().expect("findings").clone(),
    )
}

async fn first_stream(store: &Store) -> String {
    let query = "SELECT aggregate_id FROM events WHERE sequence = 2 ORDER BY aggregate_id LIMIT 1";
    match store.pool() {
        opencity_store::DbPool::Postgres(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
        opencity_store::DbPool::Sqlite(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
    }
    .expect("a stream with two events")
}

async fn check_integrity(store: Store, config: StoreConfig) {
    import_la(&store, 60).await;
    let keys = tempfile::tempdir().expect("key dir");
    let key_file = keys.path().join("checkpoint.key");
    generate_key_files(&key_file).expect("key files");
    let key = read_signing_key(&key_file).expect("signing key");
    store.create_checkpoint(&key).await.expect("checkpoint");
    let public_key = public_key_path(&key_file).display().to_string();

    let (code, found) = findings(&config, &["--public-key", &public_key]);
    assert_eq!(code, Some(0), "{found:?}");
    let text = run_tool(&config, &["verify", "--public-key", &public_key]);
    assert!(
        stdout(&text).contains("контрольных точек: 1"),
        "{}",
        stdout(&text)
    );

    let other_file = keys.path().join("other.key");
    generate_key_files(&other_file).expect("other key files");
    let other_key = public_key_path(&other_file).display().to_string();
    let (code, found) = findings(&config, &["--public-key", &other_key]);
    assert_eq!(code, Some(1));
    assert!(
        found
            .iter()
            .any(|finding| finding["kind"] == "BAD_SIGNATURE"),
        "{found:?}"
    );

    let not_a_key = keys.path().join("checkpoint.key");
    let invalid = run_tool(
        &config,
        &["verify", "--public-key", &not_a_key.display().to_string()],
    );
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        stderr(&invalid).contains("PUBLIC_KEY_INVALID"),
        "{}",
        stderr(&invalid)
    );

    // A payload changed to another valid event: only the hash tells.
    let stream_id = first_stream(&store).await;
    execute_sql(
        &store,
        &format!(
            "UPDATE events SET metadata = '{{\"actor\":\"someone-else\"}}' \
             WHERE aggregate_id = '{stream_id}' AND sequence = 2"
        ),
    )
    .await;
    let (code, found) = findings(&config, &["--public-key", &public_key]);
    assert_eq!(code, Some(1));
    let changed = found
        .iter()
        .find(|finding| finding["kind"] == "HASH_MISMATCH")
        .unwrap_or_else(|| panic!("hash mismatch reported: {found:?}"));
    assert_eq!(changed["stream_id"], stream_id.as_str());
    assert_eq!(changed["sequence"], 2);

    // The last event of a stream deleted behind the checkpoint.
    let last_stream = {
        let query = "SELECT aggregate_id FROM events ORDER BY global_position DESC LIMIT 1";
        match store.pool() {
            opencity_store::DbPool::Postgres(pool) => {
                sqlx::query_scalar::<_, String>(query).fetch_one(pool).await
            }
            opencity_store::DbPool::Sqlite(pool) => {
                sqlx::query_scalar::<_, String>(query).fetch_one(pool).await
            }
        }
        .expect("last stream")
    };
    execute_sql(
        &store,
        &format!(
            "DELETE FROM events WHERE global_position = (SELECT max(global_position) FROM events \
             WHERE aggregate_id = '{last_stream}')"
        ),
    )
    .await;
    let (code, found) = findings(&config, &["--public-key", &public_key]);
    assert_eq!(code, Some(1));
    assert!(
        found.iter().any(|finding| finding["kind"] == "MISSING_HEAD"
            && finding["stream_id"] == last_stream.as_str()),
        "{found:?}"
    );
}

#[tokio::test]
async fn integrity_on_sqlite() {
    let (_dir, config) = temp_sqlite();
    let store = Store::open(&config).await.expect("sqlite opens");
    check_integrity(store, config).await;
}

#[tokio::test]
async fn integrity_on_postgres() {
    let database = temp_postgres().await;
    let config = database.config();
    let store = Store::open(&config).await.expect("postgres opens");
    check_integrity(store.clone(), config).await;
    drop(store);
    database.cleanup().await;
}
