//! The store conformance suite: every case runs once on SQLite and once on PostgreSQL, each on
//! a fresh database.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use opencity_domain::ticket::{TicketCommented, TICKET_STREAM_TYPE};
use opencity_domain::{TicketError, TicketEvent};
use opencity_store::{
    BulkItem, CommandError, CommandMetadata, LogCheckpoint, Store, StoredEvent, WriteTransaction,
};
use uuid::Uuid;

use common::{accept, at, comment, register, route, services};

/// Generates one test per case and backend.
macro_rules! conformance_suite {
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

conformance_suite!(
    execute_appends_and_loads,
    execute_applies_commands_in_order,
    append_events_reports_sequence_conflict,
    idempotency_key_replays_outcome,
    read_log_from_start_and_checkpoint,
    times_are_stored,
    metadata_is_stored,
    domain_error_appends_nothing,
    execute_retries_after_conflict,
    execute_many_matches_execute,
    execute_many_spans_transactions,
    reopen_keeps_events,
);

/// Upper bound for waiting on another task or on the log; reaching it fails the test.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

fn metadata(actor: &str) -> CommandMetadata {
    CommandMetadata {
        actor: Some(actor.to_string()),
        ..CommandMetadata::default()
    }
}

fn keyed(actor: &str, key: &str) -> CommandMetadata {
    CommandMetadata {
        idempotency_key: Some(key.to_string()),
        ..metadata(actor)
    }
}

async fn ticket_events(store: &Store, ticket_id: Uuid) -> Vec<StoredEvent> {
    store
        .load_stream(TICKET_STREAM_TYPE, &ticket_id.to_string())
        .await
        .expect("load stream")
}

/// Reads the log after `after` until it returns `expected` events. On PostgreSQL the newest
/// events stay invisible while an older transaction anywhere on the server is still open, such
/// as one of a test running in parallel.
async fn read_log_exactly(
    store: &Store,
    after: LogCheckpoint,
    limit: usize,
    expected: usize,
) -> Vec<StoredEvent> {
    let started = Instant::now();
    loop {
        let events = store.read_log(after, limit).await.expect("read log");
        if events.len() >= expected || started.elapsed() > WAIT_LIMIT {
            assert_eq!(events.len(), expected, "events read after {after:?}");
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn execute_appends_and_loads(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    assert!(!store.stream_exists(ticket_id).await.unwrap());

    let outcome = store
        .execute(
            ticket_id,
            vec![register(ticket_id, at(0)), route(at(5))],
            &metadata("dispatcher"),
            &services,
        )
        .await
        .unwrap();

    assert_eq!(outcome.ticket_id, ticket_id);
    assert_eq!(outcome.appended, 2);
    assert!(!outcome.replayed);
    assert!(store.stream_exists(ticket_id).await.unwrap());
    assert_eq!(store.count_events().await.unwrap(), 2);
    assert_eq!(store.last_position().await.unwrap(), outcome.last_position);

    let events = ticket_events(store, ticket_id).await;
    let sequences: Vec<i64> = events.iter().map(|event| event.sequence).collect();
    assert_eq!(sequences, vec![1, 2]);
    let types: Vec<&str> = events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    assert_eq!(types, vec!["TicketRegistered", "TicketRouted"]);
    assert!(events.iter().all(|event| event.stream_type == "ticket"));
    assert!(events
        .iter()
        .all(|event| event.stream_id == ticket_id.to_string()));
    assert!(events.iter().all(|event| event.event_version == "1.0"));
    assert_eq!(events[1].position, outcome.last_position);
    assert_eq!(events[1].checkpoint(), outcome.last_checkpoint);
    assert!(matches!(
        events[0].ticket_event().unwrap(),
        TicketEvent::TicketRegistered(_)
    ));

    assert!(ticket_events(store, Uuid::new_v4()).await.is_empty());
}

async fn execute_applies_commands_in_order(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();

    // `accept` is valid only after `route`, which is valid only after `register`.
    let commands = vec![
        register(ticket_id, at(0)),
        route(at(1)),
        accept(at(2)),
        comment("принята", at(3)),
    ];
    let outcome = store
        .execute(ticket_id, commands, &metadata("dispatcher"), &services)
        .await
        .unwrap();

    assert_eq!(outcome.appended, 4);
    let events = ticket_events(store, ticket_id).await;
    let types: Vec<&str> = events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        vec![
            "TicketRegistered",
            "TicketRouted",
            "TicketAccepted",
            "TicketCommented"
        ]
    );
}

async fn append_events_reports_sequence_conflict(store: &Store) {
    let ticket_id = Uuid::new_v4();
    let commented = |text: &str, minute| {
        TicketEvent::TicketCommented(TicketCommented {
            author: "auditor".to_string(),
            text: text.to_string(),
            occurred_at: at(minute),
        })
    };

    let first = store
        .append_events(
            ticket_id,
            0,
            vec![commented("one", 0), commented("two", 1)],
            &metadata("a"),
        )
        .await
        .unwrap();
    assert_eq!(first.appended, 2);

    // Both events would follow sequence 1, which is taken: the first of them collides.
    let stale = store
        .append_events(
            ticket_id,
            1,
            vec![commented("three", 2), commented("four", 3)],
            &metadata("b"),
        )
        .await;
    assert!(
        matches!(stale, Err(CommandError::Conflict)),
        "got {stale:?}"
    );
    assert_eq!(stale.unwrap_err().code(), "CONFLICT");

    // The colliding append left nothing behind, also not its events after the collision.
    let events = ticket_events(store, ticket_id).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|event| event.metadata["actor"] == "a"));

    let next = store
        .append_events(ticket_id, 2, vec![commented("three", 2)], &metadata("c"))
        .await
        .unwrap();
    assert_eq!(ticket_events(store, ticket_id).await.len(), 3);
    assert_eq!(store.last_position().await.unwrap(), next.last_position);
}

async fn idempotency_key_replays_outcome(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    let commands = vec![register(ticket_id, at(0)), route(at(1))];

    let first = store
        .execute(
            ticket_id,
            commands.clone(),
            &keyed("portal", "request-1"),
            &services,
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.appended, 2);

    // A re-sent request: the same key appends nothing and returns the first outcome.
    let again = store
        .execute(
            ticket_id,
            commands.clone(),
            &keyed("portal", "request-1"),
            &services,
        )
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.appended, 2);
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(again.last_checkpoint, first.last_checkpoint);
    assert_eq!(store.count_events().await.unwrap(), 2);

    // Later events do not change the replayed outcome, and the key wins over the commands.
    store
        .execute(
            ticket_id,
            vec![comment("позвонили", at(2))],
            &metadata("dispatcher"),
            &services,
        )
        .await
        .unwrap();
    let later = store
        .execute(
            ticket_id,
            vec![comment("другое", at(3))],
            &keyed("portal", "request-1"),
            &services,
        )
        .await
        .unwrap();
    assert!(later.replayed);
    assert_eq!(later.last_position, first.last_position);
    assert_eq!(store.count_events().await.unwrap(), 3);

    // Keys are scoped to a stream.
    let other_id = Uuid::new_v4();
    let other = store
        .execute(
            other_id,
            vec![register(other_id, at(0))],
            &keyed("portal", "request-1"),
            &services,
        )
        .await
        .unwrap();
    assert!(!other.replayed);
    assert_eq!(store.count_events().await.unwrap(), 4);
}

async fn read_log_from_start_and_checkpoint(store: &Store) {
    let services = services();
    let mut ticket_ids = Vec::new();
    for minute in 0..3 {
        let ticket_id = Uuid::new_v4();
        let commands = vec![
            register(ticket_id, at(minute)),
            comment("принята", at(minute + 1)),
        ];
        store
            .execute(ticket_id, commands, &metadata("dispatcher"), &services)
            .await
            .unwrap();
        ticket_ids.push(ticket_id);
    }

    let all = read_log_exactly(store, LogCheckpoint::START, 100, 6).await;
    for pair in all.windows(2) {
        assert!(
            pair[0].checkpoint() < pair[1].checkpoint(),
            "log order: {:?}",
            pair
        );
    }
    let streams: Vec<String> = all.iter().map(|event| event.stream_id.clone()).collect();
    let expected: Vec<String> = ticket_ids
        .iter()
        .flat_map(|id| [id.to_string(), id.to_string()])
        .collect();
    assert_eq!(streams, expected);
    assert_eq!(store.last_position().await.unwrap(), all[5].position);

    let head = read_log_exactly(store, LogCheckpoint::START, 2, 2).await;
    assert_eq!(head, all[..2]);
    let rest = read_log_exactly(store, head[1].checkpoint(), 100, 4).await;
    assert_eq!(rest, all[2..]);
    let middle = read_log_exactly(store, all[2].checkpoint(), 1, 1).await;
    assert_eq!(middle, all[3..4]);
    assert!(store
        .read_log(all[5].checkpoint(), 100)
        .await
        .unwrap()
        .is_empty());
}

async fn times_are_stored(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    let before = Utc::now();
    let commands = vec![register(ticket_id, at(0)), comment("через час", at(60))];
    store
        .execute(ticket_id, commands, &metadata("dispatcher"), &services)
        .await
        .unwrap();
    let after = Utc::now();

    let events = ticket_events(store, ticket_id).await;
    assert_eq!(events[0].occurred_at, at(0));
    assert_eq!(events[1].occurred_at, at(60));
    for event in &events {
        assert_eq!(
            event.ticket_event().unwrap().occurred_at(),
            event.occurred_at
        );
        // The database clock, which SQLite keeps in milliseconds.
        let slack = chrono::Duration::seconds(1);
        assert!(
            event.recorded_at >= before - slack,
            "{} recorded before {before}",
            event.recorded_at
        );
        assert!(
            event.recorded_at <= after + slack,
            "{} recorded after {after}",
            event.recorded_at
        );
    }
}

async fn metadata_is_stored(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    let metadata = CommandMetadata {
        actor: Some("operator-17".to_string()),
        role: Some("dispatcher".to_string()),
        on_behalf_of: Some("resident-42".to_string()),
        channel: Some("call_center".to_string()),
        correlation_id: Some(Uuid::new_v4()),
        causation_id: Some(Uuid::new_v4()),
        idempotency_key: Some("call-2024-03-04-0017".to_string()),
    };
    store
        .execute(
            ticket_id,
            vec![register(ticket_id, at(0)), route(at(1))],
            &metadata,
            &services,
        )
        .await
        .unwrap();

    let events = ticket_events(store, ticket_id).await;
    for event in &events {
        assert_eq!(event.command_metadata().unwrap(), metadata);
        assert_eq!(event.metadata["role"], "dispatcher");
    }

    // Absent fields are not stored at all.
    let bare_id = Uuid::new_v4();
    store
        .execute(
            bare_id,
            vec![register(bare_id, at(0))],
            &CommandMetadata::default(),
            &services,
        )
        .await
        .unwrap();
    let bare = ticket_events(store, bare_id).await;
    assert_eq!(bare[0].metadata, serde_json::json!({}));
    assert_eq!(
        bare[0].command_metadata().unwrap(),
        CommandMetadata::default()
    );
}

async fn domain_error_appends_nothing(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();

    let unregistered = store
        .execute(
            ticket_id,
            vec![route(at(0))],
            &metadata("dispatcher"),
            &services,
        )
        .await;
    assert!(
        matches!(
            unregistered,
            Err(CommandError::Domain(TicketError::NotRegistered))
        ),
        "{unregistered:?}"
    );
    assert_eq!(unregistered.unwrap_err().code(), "TICKET_NOT_FOUND");
    assert!(!store.stream_exists(ticket_id).await.unwrap());

    // The second command fails, so the first one's event is not appended either.
    let half_valid = store
        .execute(
            ticket_id,
            vec![register(ticket_id, at(0)), accept(at(1))],
            &metadata("dispatcher"),
            &services,
        )
        .await;
    assert!(
        matches!(
            half_valid,
            Err(CommandError::Domain(TicketError::InvalidTransition { .. }))
        ),
        "{half_valid:?}"
    );
    assert_eq!(store.count_events().await.unwrap(), 0);

    store
        .execute(
            ticket_id,
            vec![register(ticket_id, at(0))],
            &metadata("dispatcher"),
            &services,
        )
        .await
        .unwrap();
    let rejected = store
        .execute(
            ticket_id,
            vec![comment("ок", at(1)), accept(at(2))],
            &keyed("dispatcher", "k"),
            &services,
        )
        .await;
    assert!(rejected.is_err());
    assert_eq!(store.count_events().await.unwrap(), 1);

    // A rejected command leaves no key behind: the same key may carry a valid command later.
    let valid = store
        .execute(
            ticket_id,
            vec![comment("ок", at(1))],
            &keyed("dispatcher", "k"),
            &services,
        )
        .await
        .unwrap();
    assert!(!valid.replayed);
    assert_eq!(store.count_events().await.unwrap(), 2);
}

/// Holds sequence `sequence` of the ticket in an open transaction, as a concurrent writer
/// that has inserted but not yet committed.
async fn hold_append(store: &Store, ticket_id: Uuid, sequence: i64) -> WriteTransaction {
    let event = TicketEvent::TicketCommented(TicketCommented {
        author: "concurrent".to_string(),
        text: "от другого писателя".to_string(),
        occurred_at: at(1),
    });
    let payload = serde_json::to_value(&event).unwrap();
    let metadata = serde_json::json!({"actor": "concurrent"});

    let mut write = store.begin_write().await.unwrap();
    match &mut write {
        WriteTransaction::Postgres(transaction) => {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ('ticket', $1, $2, 'TicketCommented', '1.0', $3, $4)",
            )
            .bind(ticket_id.to_string())
            .bind(sequence)
            .bind(&payload)
            .bind(&metadata)
            .execute(&mut **transaction)
            .await
            .unwrap();
        }
        WriteTransaction::Sqlite(write) => {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, occurred_at)
                 VALUES ('ticket', ?, ?, 'TicketCommented', '1.0', ?, ?, ?)",
            )
            .bind(ticket_id.to_string())
            .bind(sequence)
            .bind(payload.to_string())
            .bind(metadata.to_string())
            .bind(at(1).to_rfc3339())
            .execute(&mut *write.transaction)
            .await
            .unwrap();
        }
    }
    write
}

/// Waits until some writer of this store is blocked behind `hold_append`'s transaction.
async fn wait_for_blocked_writer(store: &Store) {
    let started = Instant::now();
    loop {
        let blocked = match store.pool() {
            opencity_store::DbPool::Postgres(pool) => {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(pool)
                .await
                .unwrap();
                waiting > 0
            }
            opencity_store::DbPool::Sqlite(_) => store.waiting_writers() > 0,
        };
        if blocked {
            return;
        }
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "no writer blocked on the held append"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn execute_retries_after_conflict(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    store
        .execute(
            ticket_id,
            vec![register(ticket_id, at(0))],
            &metadata("dispatcher"),
            &services,
        )
        .await
        .unwrap();

    // The command loads the stream at sequence 1 and tries to append sequence 2, which a
    // concurrent writer has inserted but not committed. When that writer commits, the command
    // must reload the stream and retry.
    let concurrent_append = hold_append(store, ticket_id, 2).await;
    let command = tokio::spawn({
        let store = store.clone();
        let services = services.clone();
        async move {
            store
                .execute(
                    ticket_id,
                    vec![comment("после", at(2))],
                    &metadata("retrying"),
                    &services,
                )
                .await
        }
    });
    wait_for_blocked_writer(store).await;
    concurrent_append.commit().await.unwrap();

    let outcome = command.await.unwrap().unwrap();
    assert_eq!(outcome.appended, 1);
    let events = ticket_events(store, ticket_id).await;
    let actors: Vec<&str> = events
        .iter()
        .map(|event| event.metadata["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, vec!["dispatcher", "concurrent", "retrying"]);
    assert_eq!(events[2].position, outcome.last_position);
}

async fn execute_many_matches_execute(store: &Store) {
    let services = services();
    let (first, second, unknown) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let batch: Vec<BulkItem> = vec![
        (
            first,
            vec![register(first, at(0))],
            keyed("import", "row-1"),
        ),
        (second, vec![register(second, at(0))], metadata("import")),
        (first, vec![route(at(1))], metadata("import")),
        (unknown, vec![accept(at(1))], metadata("import")),
        (
            first,
            vec![register(first, at(0))],
            keyed("import", "row-1"),
        ),
        (
            second,
            vec![route(at(1)), accept(at(2))],
            keyed("import", "row-2"),
        ),
        (second, vec![accept(at(3))], metadata("import")),
    ];

    let results = store.execute_many(batch.clone(), &services).await;
    assert_eq!(results.len(), batch.len());
    let outcome = |index: usize| {
        results[index]
            .as_ref()
            .unwrap_or_else(|error| panic!("item {index}: {error}"))
    };

    assert_eq!((outcome(0).appended, outcome(0).replayed), (1, false));
    assert_eq!((outcome(1).appended, outcome(1).replayed), (1, false));
    assert_eq!((outcome(2).appended, outcome(2).replayed), (1, false));
    assert!(matches!(
        results[3],
        Err(CommandError::Domain(TicketError::NotRegistered))
    ));
    assert_eq!((outcome(4).appended, outcome(4).replayed), (1, true));
    assert_eq!(outcome(4).last_position, outcome(0).last_position);
    assert_eq!((outcome(5).appended, outcome(5).replayed), (2, false));
    assert!(matches!(
        results[6],
        Err(CommandError::Domain(TicketError::InvalidTransition { .. }))
    ));
    assert_eq!(store.count_events().await.unwrap(), 5);

    // Each outcome points at the stream's event it reports.
    let first_events = ticket_events(store, first).await;
    let second_events = ticket_events(store, second).await;
    assert_eq!(outcome(0).last_checkpoint, first_events[0].checkpoint());
    assert_eq!(outcome(2).last_checkpoint, first_events[1].checkpoint());
    assert_eq!(outcome(1).last_checkpoint, second_events[0].checkpoint());
    assert_eq!(outcome(5).last_checkpoint, second_events[2].checkpoint());
    assert!(!store.stream_exists(unknown).await.unwrap());

    // Importing the keyed rows again appends nothing.
    let again = store
        .execute_many(vec![batch[0].clone(), batch[5].clone()], &services)
        .await;
    assert!(again.iter().all(|result| result
        .as_ref()
        .map(|outcome| outcome.replayed)
        .unwrap_or(false)));
    assert_eq!(
        again[1].as_ref().unwrap().last_position,
        outcome(5).last_position
    );
    assert_eq!(store.count_events().await.unwrap(), 5);

    // A batch of registrations only is decided as new streams without reading them. A stored
    // stream among them fails that append, and the batch is decided on the loaded streams:
    // the repeated key replays, a new registration of a stored ticket is rejected, and the
    // new ticket beside them is stored once.
    let third = Uuid::new_v4();
    let registrations = store
        .execute_many(
            vec![
                (third, vec![register(third, at(0))], keyed("import", "row-3")),
                batch[0].clone(),
                (second, vec![register(second, at(0))], keyed("import", "row-4")),
            ],
            &services,
        )
        .await;
    let third_outcome = registrations[0].as_ref().expect("the new ticket is registered");
    assert_eq!(third_outcome.appended, 1);
    assert!(!third_outcome.replayed);
    let replayed = registrations[1].as_ref().expect("the repeated key replays");
    assert!(replayed.replayed);
    assert_eq!(replayed.last_position, outcome(0).last_position);
    assert!(matches!(registrations[2], Err(CommandError::Domain(_))));
    assert_eq!(store.count_events().await.unwrap(), 6);
    assert_eq!(ticket_events(store, third).await.len(), 1);
}

async fn execute_many_spans_transactions(store: &Store) {
    let services = services();
    // More tickets than one bulk transaction takes, each with two command lists.
    let ticket_ids: Vec<Uuid> = (0..250).map(|_| Uuid::new_v4()).collect();
    let mut batch: Vec<BulkItem> = Vec::new();
    for (index, ticket_id) in ticket_ids.iter().enumerate() {
        batch.push((
            *ticket_id,
            vec![register(*ticket_id, at(0))],
            keyed("import", &format!("row-{index}")),
        ));
    }
    for ticket_id in &ticket_ids {
        batch.push((
            *ticket_id,
            vec![comment("импорт", at(1))],
            metadata("import"),
        ));
    }

    let results = store.execute_many(batch, &services).await;
    assert_eq!(results.len(), 500);
    for (index, result) in results.iter().enumerate() {
        let outcome = result
            .as_ref()
            .unwrap_or_else(|error| panic!("item {index}: {error}"));
        assert_eq!(outcome.ticket_id, ticket_ids[index % 250]);
        assert_eq!(outcome.appended, 1);
    }
    assert_eq!(store.count_events().await.unwrap(), 500);
    for ticket_id in ticket_ids.iter().take(5) {
        let events = ticket_events(store, *ticket_id).await;
        let types: Vec<&str> = events
            .iter()
            .map(|event| event.event_type.as_str())
            .collect();
        assert_eq!(types, vec!["TicketRegistered", "TicketCommented"]);
    }
}

async fn reopen_keeps_events(store: &Store) {
    let services = services();
    let ticket_id = Uuid::new_v4();
    store
        .execute(
            ticket_id,
            vec![register(ticket_id, at(0))],
            &metadata("dispatcher"),
            &services,
        )
        .await
        .unwrap();

    // Opening again runs the schema statements again on the existing tables.
    let reopened = Store::open(store.config()).await.unwrap();
    assert_eq!(reopened.count_events().await.unwrap(), 1);
    let outcome = reopened
        .execute(
            ticket_id,
            vec![route(at(1))],
            &metadata("dispatcher"),
            &services,
        )
        .await
        .unwrap();
    assert_eq!(outcome.appended, 1);
    assert_eq!(ticket_events(store, ticket_id).await.len(), 2);
}

/// On PostgreSQL another server's listener learns of every append, through both write paths,
/// and the events are committed when the notification arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_wake_other_servers() {
    let test = common::TestStore::open(opencity_store::BackendKind::Postgres).await;
    let other = Store::open(&test.config).await.unwrap();
    let mut listener = other.listen_appends().await.unwrap().expect("PostgreSQL has a listener");
    let services = services();

    let single = Uuid::new_v4();
    test.store.execute(single, vec![register(single, at(0))], &metadata("dispatcher"), &services).await.unwrap();
    let notification = tokio::time::timeout(WAIT_LIMIT, listener.recv()).await.expect("a notification arrives").unwrap();
    assert_eq!(notification.channel(), "opencity_events_appended");
    assert_eq!(other.count_events().await.unwrap(), 1);

    let bulk = Uuid::new_v4();
    let items: Vec<BulkItem> = vec![(bulk, vec![register(bulk, at(0))], metadata("import"))];
    assert!(test.store.execute_many(items, &services).await.into_iter().all(|result| result.is_ok()));
    tokio::time::timeout(WAIT_LIMIT, listener.recv()).await.expect("a notification arrives").unwrap();
    assert_eq!(other.count_events().await.unwrap(), 2);

    drop(listener);
    drop(other);
    test.cleanup().await;
}
