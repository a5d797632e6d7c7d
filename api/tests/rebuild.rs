//! `opencity projections rebuild` beside a running server: queries keep succeeding, the new
//! tables replace a damaged one, and the server reloads them.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_tables_match_fold, register_input, wait_for, ServerProcess, REGISTER};
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{DbPool, Store, StoreConfig};

const STATS: &str = "{ slaStats(groupBy: [ORGANIZATION]) { group { value } received resolved resolvedOnTime } }";

fn opencity(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opencity"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("opencity runs")
}

async fn execute(pool: &DbPool, statement: &str) -> u64 {
    match pool {
        DbPool::Postgres(pool) => sqlx::query(statement).execute(pool).await.expect("SQL").rows_affected(),
        DbPool::Sqlite(pool) => sqlx::query(statement).execute(pool).await.expect("SQL").rows_affected(),
    }
}

/// On a PostgreSQL built with lz4, the views' payload column is compressed with it: the server
/// sets it on its tables, and the rebuild on the tables it swaps in.
async fn assert_views_use_lz4(pool: &DbPool) {
    let DbPool::Postgres(pool) = pool else { return };
    let (supported, compression): (bool, String) = sqlx::query_as(
        "SELECT (SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'),
                attcompression::text
           FROM pg_attribute WHERE attrelid = 'ticket_views'::regclass AND attname = 'payload'",
    )
    .fetch_one(pool)
    .await
    .expect("column compression");
    if supported {
        assert_eq!(compression, "l", "ticket_views.payload is not compressed with lz4");
    }
}

async fn rebuild_beside_a_server(config: StoreConfig, store_args: Vec<String>) {
    let args: Vec<&str> = store_args.iter().map(String::as_str).collect();
    let demo = opencity(&[&["demo", "--demo-tickets", "400"][..], &args].concat());
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));

    let logs = tempfile::tempdir().expect("log dir");
    let server = Arc::new(ServerProcess::start("server", &args, &["--deadline-check-interval", "0"], logs.path()));
    let ready = server.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(ready["readModelGeneration"], 1, "{ready}");
    let before = server.graphql(STATS, serde_json::json!({})).await;
    assert!(before["errors"].is_null(), "{before}");

    assert_views_use_lz4(Store::open(&config).await.expect("store").pool()).await;

    // Damage the stored tables: a view goes missing. The server still serves it from memory.
    let store = Store::open(&config).await.expect("store");
    let deleted = execute(store.pool(), "DELETE FROM ticket_views WHERE id IN (SELECT id FROM ticket_views ORDER BY id LIMIT 3)").await;
    assert_eq!(deleted, 3);

    // Query all through the rebuild; not one query may fail.
    let answered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let querier = {
        let server = server.clone();
        let answered = answered.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            while !*stop_rx.borrow() {
                let answer = server.graphql(STATS, serde_json::json!({})).await;
                if answer["errors"].is_null() && answer["data"]["slaStats"].is_array() {
                    answered.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop_rx.changed() => {}
                }
            }
        })
    };

    let rebuild_args: Vec<String> = ["projections", "rebuild"]
        .iter()
        .map(|arg| arg.to_string())
        .chain(store_args.iter().cloned())
        .collect();
    let rebuild = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = rebuild_args.iter().map(String::as_str).collect();
        opencity(&args)
    })
    .await
    .expect("rebuild ran");
    let stdout = String::from_utf8_lossy(&rebuild.stdout).to_string();
    assert!(rebuild.status.success(), "{stdout}{}", String::from_utf8_lossy(&rebuild.stderr));
    assert!(stdout.contains("Чтение журнала:"), "{stdout}");
    assert!(stdout.contains("Запись новых таблиц:"), "{stdout}");
    assert!(stdout.contains("Проекции перестроены"), "{stdout}");

    let reloaded = tokio::time::timeout(Duration::from_secs(30), async {
        while !server.readyz().await.is_some_and(|ready| ready["readModelGeneration"] == 2) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(reloaded.is_ok(), "the server did not reload the new tables; log:\n{}", server.log_text());
    let _ = stop_tx.send(true);
    querier.await.expect("querier");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "queries failed during the rebuild");
    assert!(answered.load(Ordering::SeqCst) > 0);

    // The rebuilt tables are whole again, and the statistics are unchanged.
    assert_tables_match_fold(&store).await;
    assert_views_use_lz4(store.pool()).await;
    let after = server.graphql(STATS, serde_json::json!({})).await;
    assert_eq!(after, before);

    // New events land in the new tables.
    let answer = server.graphql(REGISTER, register_input("после перестройки")).await;
    let position = answer["data"]["registerTicket"]["position"].as_i64().expect("position");
    let event = store.checkpoint_of_position(position).await.expect("lookup").expect("stored");
    wait_for("the new event reaches the tables", Duration::from_secs(15), || async {
        opencity_projections::runner::ReadModel::open(store.clone())
            .await
            .expect("read model")
            .checkpoint()
            >= event
    })
    .await;
    assert_tables_match_fold(&store).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_on_sqlite() {
    let (_dir, config) = temp_sqlite();
    let StoreConfig::Sqlite { data_dir } = &config else { unreachable!("temp_sqlite gives SQLite") };
    let args = vec!["--data-dir".to_string(), data_dir.display().to_string()];
    tokio::time::timeout(Duration::from_secs(240), rebuild_beside_a_server(config, args))
        .await
        .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_on_postgres() {
    let database = temp_postgres().await;
    let args = vec!["--database-url".to_string(), database.url.clone()];
    tokio::time::timeout(Duration::from_secs(240), rebuild_beside_a_server(database.config(), args))
        .await
        .expect("bounded");
    database.cleanup().await;
}
