//! The hash chain and signed checkpoints on both backends: an intact log verifies, and each
//! kind of tampering by direct SQL is found with its stream and sequence.

mod common;

use opencity_domain::ticket::{TicketCommented, TICKET_STREAM_TYPE};
use opencity_domain::TicketEvent;
use opencity_store::integrity::{canonical_event_hash, EventHashInput, SigningKey};
use opencity_store::{
    verify_log, CommandMetadata, DbPool, Finding, FindingKind, LogCheckpoint, Store, StoredEvent,
};
use uuid::Uuid;

use common::{accept, at, comment, register, route, services};

/// Generates one test per case and backend, each on a fresh database.
macro_rules! integrity_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = crate::common::TestStore::open(opencity_store::BackendKind::Sqlite).await;
                    super::$case(&test.store).await;
                    test.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let test = crate::common::TestStore::open(opencity_store::BackendKind::Postgres).await;
                    super::$case(&test.store).await;
                    test.cleanup().await;
                }
            )*
        }
    };
}

integrity_suite!(
    hashes_are_chained,
    stored_hash_equals_rust_hash,
    intact_log_has_no_findings,
    changed_payload_is_found,
    changed_business_time_is_found,
    deleted_middle_event_is_found,
    deleted_last_event_is_found,
    swapped_events_are_found,
    forged_event_with_recomputed_chain_is_found,
    replaced_signature_is_found,
    later_checkpoints_record_changed_heads,
    bulk_appends_are_chained,
    write_paths_continue_each_others_chains,
    reopen_adds_hash_columns_to_old_log,
);

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// Two tickets of five events each; returns their stream ids.
async fn two_tickets(store: &Store) -> (String, String) {
    let services = services();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let ticket_id = Uuid::new_v4();
        store
            .execute(
                ticket_id,
                vec![
                    register(ticket_id, at(0)),
                    route(at(5)),
                    accept(at(10)),
                    comment("вода перекрыта", at(20)),
                    comment("бригада на месте", at(30)),
                ],
                &CommandMetadata {
                    actor: Some("dispatcher".to_string()),
                    ..CommandMetadata::default()
                },
                &services,
            )
            .await
            .expect("execute");
        ids.push(ticket_id.to_string());
    }
    (ids[0].clone(), ids[1].clone())
}

async fn whole_log(store: &Store) -> Vec<StoredEvent> {
    store
        .read_committed_log(LogCheckpoint::START, usize::MAX)
        .await
        .expect("read log")
}

async fn verify(store: &Store) -> Vec<Finding> {
    let checkpoints = store.list_checkpoints().await.expect("list checkpoints");
    verify_log(
        whole_log(store).await,
        &checkpoints,
        Some(&signing_key().verifying_key()),
    )
}

/// Runs SQL on the store's database, bypassing the store.
async fn tamper(store: &Store, sql: &str) {
    match store.pool() {
        DbPool::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
        DbPool::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
    }
    .expect("tampering statement");
}

fn has_finding(findings: &[Finding], stream_id: &str, sequence: i64, kind: FindingKind) -> bool {
    findings.iter().any(|finding| {
        finding.stream_type == TICKET_STREAM_TYPE
            && finding.stream_id == stream_id
            && finding.sequence == Some(sequence)
            && finding.kind == kind
    })
}

fn rust_hash(event: &StoredEvent) -> String {
    canonical_event_hash(&EventHashInput::of_stored(event, event.prev_hash.as_deref().unwrap_or("")))
}

async fn hashes_are_chained(store: &Store) {
    let (first, _) = two_tickets(store).await;
    let events = store
        .load_stream(TICKET_STREAM_TYPE, &first)
        .await
        .expect("load stream");
    assert_eq!(events.len(), 5);

    let mut previous = String::new();
    for event in &events {
        let hash = event.hash.clone().expect("hash is stored");
        assert_eq!(hash.len(), 64);
        assert!(hash
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(event.prev_hash.as_deref(), Some(previous.as_str()));
        previous = hash;
    }
}

async fn stored_hash_equals_rust_hash(store: &Store) {
    two_tickets(store).await;
    let events = whole_log(store).await;
    assert_eq!(events.len(), 10);
    for event in &events {
        assert_eq!(event.hash.as_deref(), Some(rust_hash(event).as_str()));
    }
}

async fn intact_log_has_no_findings(store: &Store) {
    assert_eq!(verify(store).await, Vec::new());
    let empty = store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    assert_eq!(empty.stream_count, 0);

    two_tickets(store).await;
    let checkpoint = store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    assert_eq!(checkpoint.id, 2);
    assert_eq!(checkpoint.stream_count, 2);
    assert_eq!(
        checkpoint.verify_signature(Some(&signing_key().verifying_key())),
        Ok(())
    );
    assert_eq!(
        store.list_checkpoints().await.expect("list"),
        vec![empty, checkpoint]
    );

    two_tickets(store).await;
    assert_eq!(verify(store).await, Vec::new());
}

async fn changed_payload_is_found(store: &Store) {
    let (first, _) = two_tickets(store).await;
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    tamper(
        store,
        &format!(
            "UPDATE events SET payload = replace(payload::text, 'Вахитовский', 'Советский')::json
              WHERE aggregate_id = '{first}' AND sequence = 1"
        )
        .replace("::text", sqlite_or_pg(store, "", "::text"))
        .replace("::json", sqlite_or_pg(store, "", "::json")),
    )
    .await;

    let findings = verify(store).await;
    assert!(
        has_finding(&findings, &first, 1, FindingKind::HashMismatch),
        "{findings:#?}"
    );
}

fn sqlite_or_pg<'a>(store: &Store, sqlite: &'a str, postgres: &'a str) -> &'a str {
    match store.pool() {
        DbPool::Sqlite(_) => sqlite,
        DbPool::Postgres(_) => postgres,
    }
}

async fn changed_business_time_is_found(store: &Store) {
    let (_, second) = two_tickets(store).await;
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    tamper(
        store,
        &format!(
            "UPDATE events SET occurred_at = '2020-01-01T00:00:00.000000Z'
              WHERE aggregate_id = '{second}' AND sequence = 4"
        ),
    )
    .await;

    let findings = verify(store).await;
    assert!(
        has_finding(&findings, &second, 4, FindingKind::HashMismatch),
        "{findings:#?}"
    );
}

async fn deleted_middle_event_is_found(store: &Store) {
    let (first, _) = two_tickets(store).await;
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    tamper(
        store,
        &format!("DELETE FROM events WHERE aggregate_id = '{first}' AND sequence = 3"),
    )
    .await;

    let findings = verify(store).await;
    assert!(
        has_finding(&findings, &first, 3, FindingKind::SequenceGap),
        "{findings:#?}"
    );
}

async fn deleted_last_event_is_found(store: &Store) {
    let (_, second) = two_tickets(store).await;
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    tamper(
        store,
        &format!("DELETE FROM events WHERE aggregate_id = '{second}' AND sequence = 5"),
    )
    .await;

    let findings = verify(store).await;
    assert!(
        has_finding(&findings, &second, 5, FindingKind::MissingHead),
        "{findings:#?}"
    );
}

async fn swapped_events_are_found(store: &Store) {
    let (first, _) = two_tickets(store).await;
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    tamper(
        store,
        &format!(
            "UPDATE events SET sequence = 100 WHERE aggregate_id = '{first}' AND sequence = 2;
             UPDATE events SET sequence = 2 WHERE aggregate_id = '{first}' AND sequence = 3;
             UPDATE events SET sequence = 3 WHERE aggregate_id = '{first}' AND sequence = 100;"
        ),
    )
    .await;

    let findings = verify(store).await;
    assert!(
        has_finding(&findings, &first, 2, FindingKind::HashMismatch),
        "{findings:#?}"
    );
    assert!(
        has_finding(&findings, &first, 3, FindingKind::HashMismatch),
        "{findings:#?}"
    );
}

/// Inserts a forged comment as event 3 of a stream after the checkpoint, renumbers the later
/// events and recomputes the whole chain, so every event hash is right again. The checkpoint
/// still finds it: the stream's head differs from the signed one.
async fn forged_event_with_recomputed_chain_is_found(store: &Store) {
    let (first, _) = two_tickets(store).await;
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");

    let original = store
        .load_stream(TICKET_STREAM_TYPE, &first)
        .await
        .expect("load stream");
    let template = &original[3];
    // The comment's text is sealed; the forger writes a readable one in its place.
    let mut forged: serde_json::Value = serde_json::from_str(&template.stored_payload).expect("stored payload");
    forged["TicketCommented"]["text"] = serde_json::json!("заявка закрыта");
    let forged_payload = forged.to_string();
    assert_ne!(forged_payload, template.stored_payload);
    tamper(
        store,
        &format!(
            "UPDATE events SET sequence = sequence + 1000 WHERE aggregate_id = '{first}' AND sequence >= 3;
             UPDATE events SET sequence = sequence - 999 WHERE aggregate_id = '{first}' AND sequence > 1000;
             INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, occurred_at, recorded_at, prev_hash, hash)
             VALUES ('ticket', '{first}', 3, '{}', '{}', '{}', '{}', '{}', '{}', '', '');",
            template.event_type,
            template.event_version,
            forged_payload,
            template.stored_metadata,
            opencity_store::integrity::format_timestamp(template.occurred_at),
            opencity_store::integrity::format_timestamp(template.recorded_at),
        ),
    )
    .await;

    // Recompute the chain as a forger would.
    let mut previous = String::new();
    for mut event in store
        .load_stream(TICKET_STREAM_TYPE, &first)
        .await
        .expect("load")
    {
        event.prev_hash = Some(previous.clone());
        let hash = rust_hash(&event);
        tamper(
            store,
            &format!(
                "UPDATE events SET prev_hash = '{previous}', hash = '{hash}'
                  WHERE aggregate_id = '{first}' AND sequence = {}",
                event.sequence
            ),
        )
        .await;
        previous = hash;
    }
    let chain_ok = verify_log(
        store
            .load_stream(TICKET_STREAM_TYPE, &first)
            .await
            .expect("load"),
        &[],
        None,
    );
    assert_eq!(
        chain_ok,
        Vec::new(),
        "the forged chain is consistent by itself"
    );

    let findings = verify(store).await;
    assert!(
        findings.iter().any(|finding| finding.stream_id == first
            && finding.sequence.is_some()
            && matches!(
                finding.kind,
                FindingKind::MissingHead | FindingKind::UnrecordedHead | FindingKind::SequenceGap
            )),
        "{findings:#?}"
    );
    assert!(
        has_finding(&findings, &first, 3, FindingKind::SequenceGap),
        "{findings:#?}"
    );
    assert!(
        has_finding(&findings, &first, 6, FindingKind::UnrecordedHead),
        "{findings:#?}"
    );
}

async fn replaced_signature_is_found(store: &Store) {
    two_tickets(store).await;
    let checkpoint = store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");

    let impostor = SigningKey::from_bytes(&[7; 32]);
    let forged = hex_signature(&impostor, &checkpoint.message());
    tamper(
        store,
        &format!("UPDATE log_checkpoints SET signature = '{forged}' WHERE id = 1"),
    )
    .await;

    let findings = verify(store).await;
    assert!(
        findings
            .iter()
            .any(|finding| finding.kind == FindingKind::BadSignature
                && finding.checkpoint_id == Some(1)),
        "{findings:#?}"
    );
    assert_eq!(findings.len(), 1, "{findings:#?}");
}

fn hex_signature(key: &SigningKey, message: &str) -> String {
    use ed25519_dalek::Signer;
    hex::encode(key.sign(message.as_bytes()).to_bytes())
}

async fn later_checkpoints_record_changed_heads(store: &Store) {
    let (first, second) = two_tickets(store).await;
    let one = store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    assert_eq!(one.changed_heads.len(), 2);

    let services = services();
    let first_id: Uuid = first.parse().expect("uuid");
    store
        .execute(
            first_id,
            vec![comment("ещё одно", at(40))],
            &CommandMetadata::default(),
            &services,
        )
        .await
        .expect("execute");
    let two = store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    assert_eq!(two.stream_count, 2);
    assert_eq!(two.changed_heads.len(), 1);
    assert_eq!(two.changed_heads[0].stream_id, first);
    assert_eq!(two.changed_heads[0].sequence, 6);
    assert_eq!(verify(store).await, Vec::new());

    // Deleting the sixth event contradicts only the second checkpoint.
    tamper(
        store,
        &format!("DELETE FROM events WHERE aggregate_id = '{first}' AND sequence = 6"),
    )
    .await;
    let findings = verify(store).await;
    assert!(
        has_finding(&findings, &first, 6, FindingKind::MissingHead),
        "{findings:#?}"
    );
    assert!(
        findings.iter().all(|finding| finding.stream_id != second),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .all(|finding| finding.checkpoint_id == Some(2)),
        "{findings:#?}"
    );
}

async fn bulk_appends_are_chained(store: &Store) {
    let services = services();
    let mut batch = Vec::new();
    for _ in 0..3 {
        let ticket_id = Uuid::new_v4();
        batch.push((
            ticket_id,
            vec![register(ticket_id, at(0)), route(at(5))],
            CommandMetadata::default(),
        ));
        batch.push((ticket_id, vec![accept(at(10))], CommandMetadata::default()));
    }
    for result in store.execute_many(batch, &services).await {
        result.expect("bulk item");
    }

    let events = whole_log(store).await;
    assert_eq!(events.len(), 9);
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    assert_eq!(verify(store).await, Vec::new());
}

/// Each write path continues the chain the others left: a command, a bulk item on a stream
/// with stored events, and an event copied with `append_events`. On PostgreSQL the copy goes
/// through postgres-es, and the insert trigger hashes it with the database clock.
async fn write_paths_continue_each_others_chains(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    let stream_id = ticket_id.to_string();
    let metadata = CommandMetadata::default();
    let bulk = |command| vec![(ticket_id, vec![command], CommandMetadata::default())];

    store
        .execute(ticket_id, vec![register(ticket_id, at(0))], &metadata, &services)
        .await
        .expect("execute");
    for result in store.execute_many(bulk(route(at(5))), &services).await {
        result.expect("bulk item");
    }
    let copied = TicketEvent::TicketCommented(TicketCommented {
        author: "auditor".to_string(),
        text: "перенесено из старой системы".to_string(),
        occurred_at: at(7),
    });
    store
        .append_events(ticket_id, 2, vec![copied], &metadata)
        .await
        .expect("append_events");
    store
        .execute(ticket_id, vec![accept(at(10))], &metadata, &services)
        .await
        .expect("execute after the copy");
    for result in store.execute_many(bulk(comment("бригада выехала", at(20))), &services).await {
        result.expect("bulk item after the copy");
    }

    let events = store
        .load_stream(TICKET_STREAM_TYPE, &stream_id)
        .await
        .expect("load stream");
    assert_eq!(events.len(), 5);
    let mut previous = String::new();
    for event in &events {
        assert_eq!(event.prev_hash.as_deref(), Some(previous.as_str()), "event {}", event.sequence);
        let hash = event.hash.clone().expect("every event is hashed");
        assert_eq!(hash, rust_hash(event), "event {}", event.sequence);
        previous = hash;
    }
    store
        .create_checkpoint(&signing_key())
        .await
        .expect("checkpoint");
    assert_eq!(verify(store).await, Vec::new());
}

/// A log written before the hash columns existed: reopening adds them, new events are hashed,
/// and the old events are reported as unhashed without a broken chain.
async fn reopen_adds_hash_columns_to_old_log(store: &Store) {
    let (first, _) = two_tickets(store).await;
    // The schema of that time had no hash trigger either; on PostgreSQL today's trigger
    // depends on the hash column.
    if let DbPool::Postgres(_) = store.pool() {
        tamper(store, "DROP TRIGGER events_before_insert ON events;").await;
    }
    tamper(
        store,
        "ALTER TABLE events DROP COLUMN prev_hash; ALTER TABLE events DROP COLUMN hash;",
    )
    .await;

    let reopened = Store::open(store.config()).await.expect("reopen");
    let first_id: Uuid = first.parse().expect("uuid");
    reopened
        .execute(
            first_id,
            vec![comment("после обновления", at(40))],
            &CommandMetadata::default(),
            &services(),
        )
        .await
        .expect("execute");

    let events = reopened
        .load_stream(TICKET_STREAM_TYPE, &first)
        .await
        .expect("load stream");
    assert_eq!(events.len(), 6);
    assert_eq!(events[4].hash, None);
    assert_eq!(events[5].prev_hash.as_deref(), Some(""));
    assert_eq!(
        events[5].hash.as_deref(),
        Some(rust_hash(&events[5]).as_str())
    );

    let findings = verify(&reopened).await;
    assert!(
        has_finding(&findings, &first, 1, FindingKind::MissingHash),
        "{findings:#?}"
    );
    assert!(
        has_finding(&findings, &first, 5, FindingKind::MissingHash),
        "{findings:#?}"
    );
    assert_eq!(findings.len(), 10, "{findings:#?}");
    match reopened.pool() {
        DbPool::Postgres(pool) => pool.close().await,
        DbPool::Sqlite(pool) => pool.close().await,
    }
}
