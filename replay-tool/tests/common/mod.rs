//! Shared set-up: stores filled from the LA 311 extract (read in place, never copied), the live
//! read model, and runs of the `opencity-replay` binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use opencity_api::import::write_tickets;
use opencity_domain::TicketServices;
use opencity_fixtures::import::{parse_file, ImportFormat, ImportedTicket};
use opencity_projections::runner::ReadModel;
use opencity_store::{Store, StoreConfig};

/// Returns the path of a third-party data file; tests read it in place and never copy it.
pub fn shared_data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name)
}

pub fn services() -> TicketServices {
    let catalogue =
        opencity_fixtures::sla::default_catalogue().expect("default SLA catalogue loads");
    TicketServices {
        sla: Arc::new(catalogue),
    }
}

/// Parses the LA 311 extract and fits its categories to the default catalogue.
pub fn la_tickets(services: &TicketServices) -> Vec<ImportedTicket> {
    let bytes =
        std::fs::read(shared_data("la311_2017_subset_hackforla.csv")).expect("LA file is readable");
    let mut parsed = parse_file(ImportFormat::La311, &bytes).expect("LA file parses");
    parsed.fit_to_catalogue(&services.sla);
    parsed.tickets
}

/// Returns [`la_tickets`] with the default catalogue, parsed once per test binary, so that
/// cases importing a few dozen tickets do not each parse the whole extract.
pub fn cached_la_tickets() -> &'static [ImportedTicket] {
    static TICKETS: OnceLock<Vec<ImportedTicket>> = OnceLock::new();
    TICKETS.get_or_init(|| la_tickets(&services()))
}

/// Imports the first `count` LA tickets into `store` and brings the read model up to date.
pub async fn import_la(store: &Store, count: usize) -> Arc<ReadModel> {
    let services = services();
    let tickets = cached_la_tickets()[..count].to_vec();
    write_tickets(store, &services, tickets, "import")
        .await
        .expect("import writes");
    let read_model = ReadModel::open(store.clone())
        .await
        .expect("read model opens");
    read_model.catch_up().await.expect("projections catch up");
    read_model
}

/// Runs the tool against `config` with `args`.
pub fn run_tool(config: &StoreConfig, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_opencity-replay"));
    command
        .env_remove("OPENCITY_DATA_DIR")
        .env_remove("OPENCITY_DATABASE_URL");
    match config {
        StoreConfig::Sqlite { data_dir } => command.arg("--data-dir").arg(data_dir),
        StoreConfig::Postgres { url } => command.arg("--database-url").arg(url),
    };
    command.args(args).output().expect("the tool runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a statement on the store's database, to corrupt it on purpose.
pub async fn execute_sql(store: &Store, statement: &str) {
    match store.pool() {
        opencity_store::DbPool::Postgres(pool) => {
            sqlx::query(statement)
                .execute(pool)
                .await
                .expect("statement runs");
        }
        opencity_store::DbPool::Sqlite(pool) => {
            sqlx::query(statement)
                .execute(pool)
                .await
                .expect("statement runs");
        }
    }
}

/// Asserts that two JSON values are equal, with numbers compared to a relative 1e-12, because
/// serde_json's default parser may round a float's last digit.
pub fn assert_json_close(left: &serde_json::Value, right: &serde_json::Value, context: &str) {
    use serde_json::Value;
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let scale = a.abs().max(b.abs()).max(1.0);
            assert!((a - b).abs() <= 1e-12 * scale, "{context}: {a} != {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(
                a.len(),
                b.len(),
                "{context}: lengths differ: {left} vs {right}"
            );
            for (index, (a, b)) in a.iter().zip(b).enumerate() {
                assert_json_close(a, b, &format!("{context}[{index}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let missing = Value::Null;
                assert_json_close(
                    a.get(key).unwrap_or(&missing),
                    b.get(key).unwrap_or(&missing),
                    &format!("{context}.{key}"),
                );
            }
        }
        _ => assert_eq!(left, right, "{context}"),
    }
}
