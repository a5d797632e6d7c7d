//! `opencity-replay verify` against a log tampered with by direct SQL, on SQLite and PostgreSQL.
//!
//! Each case imports a few dozen LA tickets into a fresh database, records a signed checkpoint,
//! then changes the database as someone with write access but without the signing key could,
//! using `opencity_store::testing::tamper`. The binary must exit with 1 and name the stream,
//! the sequence of the tampered event (or the checkpoint) and the finding's code. The untouched
//! log exits with 0.

mod common;

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use common::*;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_store::integrity::{
    generate_key_files, public_key_path, read_signing_key, SigningKey,
};
use opencity_store::testing::tamper;
use opencity_store::{DbPool, Store, StoreConfig};
use tempfile::TempDir;

/// Tickets imported for each case: enough for streams of four events, few enough to stay fast.
const TICKETS: usize = 40;

/// Events of the stream each case tampers with.
const STREAM_EVENTS: i64 = 4;

/// Generates one test per case and backend, each on a fresh database.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, config) = opencity_store::testing::temp_sqlite();
                    super::$case(&config).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let database = opencity_store::testing::temp_postgres().await;
                    super::$case(&database.config()).await;
                    database.cleanup().await;
                }
            )*
        }
    };
}

on_both_backends!(
    intact_log_exits_zero,
    changed_payload_is_named,
    changed_metadata_is_named,
    changed_business_time_is_named,
    deleted_middle_event_is_named,
    deleted_last_event_is_named,
    swapped_events_are_named,
    forged_event_with_recomputed_chain_is_named,
    replaced_signature_is_named,
);

/// A store with an imported, signed log and the operator's public key file.
struct SignedLog {
    store: Store,
    /// Keeps the key files until the test ends.
    _keys: TempDir,
    public_key: PathBuf,
    /// A stream of [`STREAM_EVENTS`] events that the cases tamper with.
    stream_id: String,
}

impl SignedLog {
    async fn open(config: &StoreConfig) -> SignedLog {
        let store = Store::open(config).await.expect("store opens");
        import_la(&store, TICKETS).await;

        let keys = tempfile::tempdir().expect("key dir");
        let key_file = keys.path().join("checkpoint.key");
        generate_key_files(&key_file).expect("key files");
        let key = read_signing_key(&key_file).expect("signing key");
        store.create_checkpoint(&key).await.expect("checkpoint");

        let stream_id = stream_with_events(&store, STREAM_EVENTS).await;
        SignedLog {
            store,
            public_key: public_key_path(&key_file),
            _keys: keys,
            stream_id,
        }
    }

    /// Runs `verify --public-key` and returns its exit code and standard output.
    fn verify(&self) -> (Option<i32>, String) {
        let public_key = self.public_key.display().to_string();
        let output = run_tool(
            self.store.config(),
            &["verify", "--public-key", &public_key],
        );
        assert!(stderr(&output).is_empty(), "{}", stderr(&output));
        (output.status.code(), stdout(&output))
    }

    /// Runs `verify`, asserts exit code 1 and returns the report.
    fn verify_tampered(&self) -> String {
        let (code, report) = self.verify();
        assert_eq!(code, Some(1), "{report}");
        report
    }
}

/// Returns the first stream, by id, whose last sequence is `events` and whose event 3 is a
/// completion report, the event the forger copies.
async fn stream_with_events(store: &Store, events: i64) -> String {
    let query = format!(
        "SELECT aggregate_id FROM events
          WHERE sequence = 3 AND event_type = 'CompletionReported'
            AND aggregate_id IN (SELECT aggregate_id FROM events GROUP BY aggregate_id
                                 HAVING max(sequence) = {events})
          ORDER BY aggregate_id LIMIT 1"
    );
    match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_scalar(&query).fetch_one(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_scalar(&query).fetch_one(pool).await,
    }
    .unwrap_or_else(|error| panic!("no stream of {events} events: {error}"))
}

/// Returns how the report names an event of a stream.
fn event_place(stream_id: &str, sequence: i64) -> String {
    format!("поток {TICKET_STREAM_TYPE}/{stream_id}, событие № {sequence},")
}

/// Asserts that one line of the report contains `place`, the finding code and `detail`.
fn assert_finding(report: &str, place: &str, code: &str, detail: &str) {
    let code = format!("[{code}]");
    assert!(
        report
            .lines()
            .any(|line| line.contains(place) && line.contains(&code) && line.contains(detail)),
        "no line names «{place}» with {code} and «{detail}»:\n{report}"
    );
}

async fn intact_log_exits_zero(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    let (code, report) = log.verify();
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("контрольных точек: 1"), "{report}");
    assert!(report.contains("журнал цел"), "{report}");

    // A key other than the operator's makes the same checkpoint fail.
    let other = tempfile::tempdir().expect("key dir");
    let other_file = other.path().join("other.key");
    generate_key_files(&other_file).expect("other key files");
    let other_key = public_key_path(&other_file).display().to_string();
    let output = run_tool(config, &["verify", "--public-key", &other_key]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert_finding(
        &stdout(&output),
        "контрольная точка № 1",
        "BAD_SIGNATURE",
        "",
    );

    // A private key given as the public one is a usage error.
    let private_key = other_file.display().to_string();
    let invalid = run_tool(config, &["verify", "--public-key", &private_key]);
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        stderr(&invalid).contains("PUBLIC_KEY_INVALID"),
        "{}",
        stderr(&invalid)
    );
}

async fn changed_payload_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    tamper::edit_payload(
        &log.store,
        TICKET_STREAM_TYPE,
        &log.stream_id,
        1,
        |payload| {
            let description = &mut payload["TicketRegistered"]["description"];
            *description = format!("{} (исправлено)", description.as_str().unwrap_or("")).into();
        },
    )
    .await;

    let report = log.verify_tampered();
    assert_finding(
        &report,
        &event_place(&log.stream_id, 1),
        "HASH_MISMATCH",
        "",
    );
}

async fn changed_metadata_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    let metadata = serde_json::json!({ "actor": "someone-else" });
    tamper::set_metadata(&log.store, TICKET_STREAM_TYPE, &log.stream_id, 2, &metadata).await;

    let report = log.verify_tampered();
    assert_finding(
        &report,
        &event_place(&log.stream_id, 2),
        "HASH_MISMATCH",
        "",
    );
}

async fn changed_business_time_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    let at = Utc.with_ymd_and_hms(2017, 1, 1, 0, 0, 0).unwrap();
    tamper::set_occurred_at(&log.store, TICKET_STREAM_TYPE, &log.stream_id, 3, at).await;

    let report = log.verify_tampered();
    let place = event_place(&log.stream_id, 3);
    assert_finding(&report, &place, "HASH_MISMATCH", "");
    assert_finding(&report, &place, "OCCURRED_AT_MISMATCH", "2017-01-01");
}

async fn deleted_middle_event_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    tamper::delete_event(&log.store, TICKET_STREAM_TYPE, &log.stream_id, 2).await;

    // The finding sits at the event after the gap and names the deleted number.
    let report = log.verify_tampered();
    assert_finding(
        &report,
        &event_place(&log.stream_id, 3),
        "SEQUENCE_GAP",
        "пропущен № 2",
    );
}

async fn deleted_last_event_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    let last = STREAM_EVENTS;
    tamper::delete_event(&log.store, TICKET_STREAM_TYPE, &log.stream_id, last).await;

    // The stream itself shows no gap, so only the head the checkpoint recorded reveals the loss.
    let report = log.verify_tampered();
    assert_finding(
        &report,
        &event_place(&log.stream_id, last),
        "MISSING_HEAD",
        "",
    );
    assert_finding(
        &report,
        &event_place(&log.stream_id, last),
        "MISSING_HEAD",
        "контрольная точка № 1",
    );
}

async fn swapped_events_are_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    tamper::swap_events(&log.store, TICKET_STREAM_TYPE, &log.stream_id, 2, 3).await;

    let report = log.verify_tampered();
    for sequence in [2, 3] {
        assert_finding(
            &report,
            &event_place(&log.stream_id, sequence),
            "HASH_MISMATCH",
            "",
        );
    }
}

/// Checks a forgery made after the checkpoint was signed. A copy of event 3, a completion
/// report, goes in as event 3 with another note, later events move up, and the whole chain is
/// recomputed, so every hash matches. The checkpoint recorded head 4, and the forgery sits late
/// in the log.
async fn forged_event_with_recomputed_chain_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    let forged = 3;
    tamper::forge_event(
        &log.store,
        TICKET_STREAM_TYPE,
        &log.stream_id,
        forged,
        |payload| {
            payload["CompletionReported"]["note"] = "работы приняты жителем".into();
        },
    )
    .await;

    let report = log.verify_tampered();
    assert!(
        !report.contains("[HASH_MISMATCH]") && !report.contains("[BROKEN_CHAIN]"),
        "the recomputed chain is consistent by itself:\n{report}"
    );
    assert_finding(
        &report,
        &event_place(&log.stream_id, forged),
        "SEQUENCE_OUT_OF_ORDER",
        "",
    );
    assert_finding(
        &report,
        &event_place(&log.stream_id, forged + 1),
        "SEQUENCE_GAP",
        &format!("пропущен № {forged}"),
    );
    assert_finding(
        &report,
        &event_place(&log.stream_id, STREAM_EVENTS + 1),
        "UNRECORDED_HEAD",
        "контрольная точка № 1",
    );
}

async fn replaced_signature_is_named(config: &StoreConfig) {
    let log = SignedLog::open(config).await;
    let impostor = SigningKey::from_bytes(&[7; 32]);
    tamper::replace_checkpoint_signature(&log.store, 1, &impostor).await;

    let report = log.verify_tampered();
    assert_finding(&report, "контрольная точка № 1", "BAD_SIGNATURE", "");
    assert!(
        !report.contains(&format!("поток {TICKET_STREAM_TYPE}/")),
        "only the checkpoint is reported:\n{report}"
    );
}
