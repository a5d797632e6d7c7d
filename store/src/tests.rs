//! Tests of the cqrs-es repositories of both backends, below `Store::execute`.

use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore, PersistenceError,
    SerializedEvent,
};
use cqrs_es::{AggregateError, EventStore};
use opencity_domain::ticket::TicketCommented;
use opencity_domain::{Ticket, TicketEvent};

use crate::store::Backend;
use crate::testing::{temp_postgres, temp_sqlite};
use crate::{Store, StoreConfig};

fn commented(text: &str) -> TicketEvent {
    TicketEvent::TicketCommented(TicketCommented {
        author: "auditor".to_string(),
        text: text.to_string(),
        occurred_at: chrono::DateTime::UNIX_EPOCH,
    })
}

fn context(stream_id: &str, current_sequence: usize) -> EventStoreAggregateContext<Ticket> {
    EventStoreAggregateContext {
        aggregate_id: stream_id.to_string(),
        aggregate: Ticket::default(),
        current_sequence,
        current_snapshot: None,
    }
}

/// Commits twice at the same sequence through the cqrs-es event store.
async fn second_commit_conflicts<R: PersistedEventRepository>(
    events: &PersistedEventStore<R, Ticket>,
) {
    let committed = events
        .commit(
            vec![commented("first")],
            context("stream-1", 0),
            Default::default(),
        )
        .await;
    assert!(committed.is_ok(), "{committed:?}");

    let stale = events
        .commit(
            vec![commented("second")],
            context("stream-1", 0),
            Default::default(),
        )
        .await;
    assert!(
        matches!(stale, Err(AggregateError::AggregateConflict)),
        "{stale:?}"
    );

    let loaded = events.load_events("stream-1").await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].payload, commented("first"));
}

/// Persists an event whose payload has no business time.
async fn missing_occurred_at_is_rejected<R: PersistedEventRepository>(repository: &R) {
    let event = SerializedEvent::new(
        "stream-2".to_string(),
        1,
        "ticket".to_string(),
        "TicketCommented".to_string(),
        "1.0".to_string(),
        serde_json::json!({"TicketCommented": {"author": "a", "text": "t"}}),
        serde_json::json!({}),
    );
    let result = repository.persist::<Ticket>(&[event], None).await;
    assert!(result.is_err());
    assert!(!matches!(
        result,
        Err(PersistenceError::OptimisticLockError)
    ));
    assert!(repository
        .get_events::<Ticket>("stream-2")
        .await
        .unwrap()
        .is_empty());
}

async fn check_repositories(config: &StoreConfig) {
    let store = Store::open(config).await.unwrap();
    match store.backend.as_ref() {
        Backend::Postgres { events, pool, .. } => {
            second_commit_conflicts(events).await;
            let repository = postgres_es::PostgresEventRepository::new(pool.clone());
            missing_occurred_at_is_rejected(&repository).await;
        }
        Backend::Sqlite {
            events, repository, ..
        } => {
            second_commit_conflicts(events).await;
            missing_occurred_at_is_rejected(repository).await;
        }
    }
}

#[tokio::test]
async fn sqlite_repository_conflicts_and_checks() {
    let (_directory, config) = temp_sqlite();
    check_repositories(&config).await;
}

#[tokio::test]
async fn postgres_repository_conflicts_and_checks() {
    let database = temp_postgres().await;
    check_repositories(&database.config()).await;
    database.cleanup().await;
}

#[tokio::test]
async fn sqlite_file_created_under_data_dir() {
    let (directory, config) = temp_sqlite();
    let StoreConfig::Sqlite { data_dir } = &config else {
        unreachable!("temp_sqlite returns a SQLite configuration")
    };
    assert!(!data_dir.exists());

    Store::open(&config).await.unwrap();
    assert!(StoreConfig::sqlite_file(data_dir).is_file());
    drop(directory);
}

#[tokio::test]
async fn sqlite_timestamps_have_one_format() {
    let (_directory, config) = temp_sqlite();
    let store = Store::open(&config).await.unwrap();
    let Backend::Sqlite {
        events, database, ..
    } = store.backend.as_ref()
    else {
        unreachable!("temp_sqlite returns a SQLite configuration")
    };
    events
        .commit(
            vec![commented("first")],
            context("stream-3", 0),
            Default::default(),
        )
        .await
        .unwrap();

    let (occurred_at, recorded_at): (String, String) =
        sqlx::query_as("SELECT occurred_at, recorded_at FROM events")
            .fetch_one(&database.pool)
            .await
            .unwrap();
    // Same length and suffix, so text order is time order across both columns.
    assert_eq!(occurred_at, "1970-01-01T00:00:00.000000Z");
    assert_eq!(recorded_at.len(), occurred_at.len(), "{recorded_at}");
    assert!(recorded_at.ends_with('Z'), "{recorded_at}");
    assert_eq!(
        crate::integrity::format_timestamp(crate::sqlite::parse_timestamp(&recorded_at).unwrap()),
        recorded_at
    );
}
