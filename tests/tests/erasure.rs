//! Erasure of a resident's personal data on both backends. Two residents file tickets and one is
//! forgotten with `opencity residents forget`. Then no query, history or export shows that
//! resident's data, and the other resident's data reads as before. The statistics are unchanged,
//! the log still verifies, and a dump of the database has none of the erased texts.

mod common;

use std::path::Path;
use std::process::Command;

use clap::Parser;
use common::*;
use opencity_replay_tool::source::LogSource;
use opencity_store::personal::ERASED;
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{DbPool, Store, StoreConfig};
use serde_json::{json, Value};

/// Texts of resident A, who is forgotten, and of resident B, who is not.
const A_TEXTS: [&str; 5] = ["Эрасова Анна Павловна", "+7 917 555-01-23", "erasova@example.ru", "Течёт стояк у Эрасовой", "Ключи у соседки Эрасовой"];
const B_TEXTS: [&str; 5] = ["Остаётся Борис Ильич", "+7 917 555-98-76", "ostaetsya@example.ru", "Нет отопления у Бориса", "Борис ждёт мастера"];

const REGISTER: &str = r#"mutation($input: RegisterTicketInput!) { registerTicket(input: $input) { ticketId position } }"#;
const COMMENT: &str = r#"mutation($id: ID!, $text: String!) { commentTicket(id: $id, author: "Диспетчер", text: $text) { position } }"#;
const EVENTS: &str = "query($id: ID, $p: Int) { ticket(id: $id, afterPosition: $p) { events { eventType payload personalDataErased } } }";
const STATISTICS: &str = "{ slaStats(groupBy: [CATEGORY]) { group { dimension value } received resolved onTimeShare } overdueCounters { open overdue } }";

#[tokio::test]
async fn sqlite_forget_erases_one_resident() {
    let (_dir, config) = temp_sqlite();
    forget_erases_one_resident(config).await;
}

#[tokio::test]
async fn postgres_forget_erases_one_resident() {
    let database = temp_postgres().await;
    forget_erases_one_resident(database.config()).await;
    database.cleanup().await;
}

/// Files a ticket of `resident` with its texts and a comment; returns the ticket id and the
/// position of the comment.
async fn file_ticket(server: &TestServer, resident: &str, texts: &[&str; 5]) -> (String, i64) {
    let input = json!({
        "channel": "MOBILE",
        "requester": { "name": texts[0], "phone": texts[1], "email": texts[2], "residentId": resident },
        "building": { "id": "kzn-1", "address": "Казань, ул. Баумана, 1", "district": "Вахитовский",
                      "timeZone": "Europe/Moscow", "region": "RU-TA" },
        "premises": "17",
        "category": "roof_leak",
        "description": texts[3],
    });
    let registered = server.graphql(REGISTER, json!({ "input": input })).await;
    let id = registered["data"]["registerTicket"]["ticketId"].as_str().unwrap_or_else(|| panic!("{registered}")).to_string();
    let commented = server.graphql(COMMENT, json!({ "id": id, "text": texts[4] })).await;
    let position = commented["data"]["commentTicket"]["position"].as_i64().unwrap_or_else(|| panic!("{commented}"));
    (id, position)
}

async fn events(server: &TestServer, id: &str, position: i64) -> Value {
    let response = server.graphql(EVENTS, json!({ "id": id, "p": position })).await;
    assert!(response["errors"].is_null(), "{response}");
    response["data"]["ticket"]["events"].clone()
}

/// Returns the database as a dump would have it: `pg_dump` output on PostgreSQL, the bytes of
/// every file of the data directory (database, write-ahead log) on SQLite.
///
/// The SQLite files are read by `cat` in its own process. Closing a descriptor of the database
/// file in this process would drop the POSIX locks that the server's connections hold on it, and
/// the next writer of another process would then corrupt the database.
fn dump(config: &StoreConfig) -> Vec<u8> {
    let output = match config {
        StoreConfig::Postgres { url } => Command::new("pg_dump").arg("--no-owner").arg(url).output().expect("pg_dump runs"),
        StoreConfig::Sqlite { data_dir } => {
            let files: Vec<_> = std::fs::read_dir(data_dir).expect("data directory").map(|entry| entry.expect("entry").path()).collect();
            Command::new("cat").args(files).output().expect("cat runs")
        }
    };
    assert!(output.status.success(), "dump: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// Returns the store flags of both command-line tools for `config`.
fn store_flags(config: &StoreConfig) -> Vec<String> {
    match config {
        StoreConfig::Postgres { url } => vec!["--database-url".to_string(), url.clone()],
        StoreConfig::Sqlite { data_dir } => vec!["--data-dir".to_string(), path_text(data_dir)],
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

fn forget(config: &StoreConfig, id: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_opencity-under-test"))
        .args(["residents", "forget"])
        .args(store_flags(config))
        .arg(id)
        .output()
        .expect("opencity runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

async fn key_hex(store: &Store, subject: &str) -> String {
    const SELECT: &str = "SELECT key_hex FROM resident_keys WHERE subject = $1";
    let key: Option<String> = match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_scalar(SELECT).bind(subject).fetch_one(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_scalar(SELECT).bind(subject).fetch_one(pool).await,
    }
    .expect("key row");
    key.expect("key in force")
}

async fn export(config: &StoreConfig) -> String {
    let source = LogSource::open(config).await.expect("log opens");
    let mut out = Vec::new();
    opencity_replay_tool::export::export(&source, None, None, &mut out).await.expect("export");
    String::from_utf8(out).expect("UTF-8 export")
}

async fn history(config: &StoreConfig, id: &str) -> String {
    let source = LogSource::open(config).await.expect("log opens");
    let history = opencity_replay_tool::history::history(&source, id).await.expect("history");
    opencity_replay_tool::history::render(&history)
}

async fn replay_verify(config: &StoreConfig) -> std::process::ExitCode {
    let mut args = vec!["opencity-replay".to_string()];
    args.extend(store_flags(config));
    args.push("verify".to_string());
    let cli = opencity_replay_tool::cli::Cli::try_parse_from(args).expect("arguments parse");
    opencity_replay_tool::cli::run(cli).await.expect("verify runs")
}

async fn forget_erases_one_resident(config: StoreConfig) {
    let store = Store::open(&config).await.expect("store opens");
    let server = TestServer::start(store.clone(), services()).await;
    let (a, _) = file_ticket(&server, "res-a", &A_TEXTS).await;
    let (b, position) = file_ticket(&server, "res-b", &B_TEXTS).await;

    // Before: each resident's texts read back in full, and none is stored in plain text.
    for (id, texts) in [(&a, &A_TEXTS), (&b, &B_TEXTS)] {
        let history = events(&server, id, position).await.to_string();
        for text in texts {
            assert!(history.contains(text), "{text} missing: {history}");
        }
    }
    let statistics = server.graphql(STATISTICS, json!({})).await;
    assert!(statistics["errors"].is_null(), "{statistics}");
    let key_a = key_hex(&store, "res-a").await;
    let before = dump(&config);
    for text in A_TEXTS.iter().chain(&B_TEXTS) {
        assert!(!contains(&before, text), "{text} is stored in plain text");
    }
    assert!(contains(&before, &key_a), "the dump does not hold resident A's key, so it cannot show its erasure");
    assert!(export(&config).await.contains(r#""personal_data":"encrypted""#));

    let (code, output) = forget(&config, "res-a");
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("удалены"), "{output}");

    // A reads as erased everywhere; B as before.
    let erased = events(&server, &a, position).await;
    let registered = &erased[0]["payload"];
    assert_eq!(erased[0]["personalDataErased"], true, "{erased}");
    for field in ["name", "phone", "email"] {
        assert_eq!(registered["requester"][field], ERASED, "{erased}");
    }
    assert_eq!(registered["requester"]["resident_id"], "res-a");
    assert_eq!(registered["description"], ERASED);
    assert_eq!(registered["premises"], ERASED);
    assert_eq!(erased[1]["payload"]["text"], ERASED);
    assert_eq!(registered["category"], "roof_leak", "facts that are not personal stay");
    let events_of_b = events(&server, &b, position).await;
    assert_eq!(events_of_b[0]["personalDataErased"], false);
    let events_of_b = events_of_b.to_string();
    for text in B_TEXTS {
        assert!(events_of_b.contains(text), "{text} of B missing: {events_of_b}");
    }

    let after = server.graphql(STATISTICS, json!({})).await;
    assert_eq!(after, statistics, "statistics changed with the erasure");

    let exported = export(&config).await;
    let lines_of_a: Vec<&str> = exported.lines().filter(|line| line.contains(&a)).collect();
    assert!(lines_of_a.iter().any(|line| line.contains(r#""personal_data":"erased""#)), "{exported}");
    assert!(exported.lines().filter(|line| line.contains(&b)).any(|line| line.contains(r#""personal_data":"encrypted""#)));
    let history_a = history(&config, &a).await;
    assert!(history_a.contains(&format!("Персональные данные: {ERASED}")), "{history_a}");
    assert!(!history(&config, &b).await.contains(ERASED));
    for text in A_TEXTS {
        assert!(!exported.contains(text), "{text} in the export");
        assert!(!history_a.contains(text), "{text} in the replay history");
    }
    assert_eq!(replay_verify(&config).await, std::process::ExitCode::from(0), "the log no longer verifies");

    let dumped = dump(&config);
    for text in A_TEXTS {
        assert!(!contains(&dumped, text), "{text} is in the dump after the erasure");
    }
    assert!(!contains(&dumped, &key_a), "resident A's key is still in the database files");

    // A resident filing again after the erasure gets a new key; the old texts stay erased.
    let (again, position) = file_ticket(&server, "res-a", &A_TEXTS).await;
    assert!(events(&server, &again, position).await.to_string().contains(A_TEXTS[3]));
    assert_eq!(events(&server, &a, position).await[0]["payload"]["description"], ERASED);

    let (code, output) = forget(&config, "nobody");
    assert_eq!(code, Some(2), "{output}");
    let (code, output) = forget(&config, "ticket:not-a-uuid");
    assert_eq!(code, Some(2), "{output}");
}
