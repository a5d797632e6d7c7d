//! Residents' personal data on both backends: sealed in the log by both write paths, one key
//! per resident even when registrations race, and erased by forgetting the resident.

mod common;

use chrono::Utc;
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::TicketCommand;
use opencity_store::personal::{is_sealed, ticket_subject, Opened, ERASED};
use opencity_store::{BackendKind, CommandMetadata, DbPool, Store};
use uuid::Uuid;

use common::{at, comment, register, services, TestStore};

#[tokio::test]
async fn sqlite_personal_data_is_sealed_and_erased() {
    let test = TestStore::open(BackendKind::Sqlite).await;
    personal_data_is_sealed_and_erased(&test.store).await;
    test.cleanup().await;
}

#[tokio::test]
async fn postgres_personal_data_is_sealed_and_erased() {
    let test = TestStore::open(BackendKind::Postgres).await;
    personal_data_is_sealed_and_erased(&test.store).await;
    test.cleanup().await;
}

/// Returns a registration of `resident` with a name and a phone.
fn register_for(ticket_id: Uuid, resident: Option<&str>) -> TicketCommand {
    let mut command = register(ticket_id, at(0));
    if let TicketCommand::Register(registration) = &mut command {
        registration.requester.name = Some("Секретова Вера".to_string());
        registration.requester.phone = Some("+7 843 000-00-00".to_string());
        registration.requester.resident_id = resident.map(str::to_string);
    }
    command
}

async fn keys_of(store: &Store, subject: &str) -> i64 {
    const COUNT: &str = "SELECT COUNT(*) FROM resident_keys WHERE subject = $1";
    match store.pool() {
        DbPool::Postgres(pool) => sqlx::query_scalar(COUNT).bind(subject).fetch_one(pool).await,
        DbPool::Sqlite(pool) => sqlx::query_scalar(COUNT).bind(subject).fetch_one(pool).await,
    }
    .expect("key count")
}

async fn opened_stream(store: &Store, ticket_id: Uuid) -> (Vec<serde_json::Value>, Opened) {
    let stream = store.load_stream(TICKET_STREAM_TYPE, &ticket_id.to_string()).await.expect("stream");
    let mut payloads: Vec<serde_json::Value> = stream.into_iter().map(|event| event.payload.into_value()).collect();
    let opened = {
        let mut refs: Vec<&mut serde_json::Value> = payloads.iter_mut().collect();
        store.open_personal_data(&ticket_id.to_string(), &mut refs).await.expect("open")
    };
    (payloads, opened)
}

async fn personal_data_is_sealed_and_erased(store: &Store) {
    let services = services();
    let metadata = CommandMetadata::default();

    // Eight first registrations of one resident at once, through `execute`: one key.
    let tickets: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    let results = futures::future::join_all(tickets.iter().map(|&ticket_id| {
        let services = services.clone();
        let metadata = metadata.clone();
        async move {
            store
                .execute(ticket_id, vec![register_for(ticket_id, Some("res-7")), comment("звонила Вера", at(1))], &metadata, &services)
                .await
        }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(keys_of(store, "res-7").await, 1);

    // The bulk path seals too; a ticket without a resident id gets a key of its own.
    let anonymous = Uuid::new_v4();
    let bulk = store
        .execute_many(vec![(anonymous, vec![register_for(anonymous, None)], metadata.clone())], &services)
        .await;
    assert!(bulk.iter().all(Result::is_ok), "{bulk:?}");
    assert_eq!(keys_of(store, &ticket_subject(anonymous)).await, 1);

    for &ticket_id in tickets.iter().chain([&anonymous]) {
        let stream = store.load_stream(TICKET_STREAM_TYPE, &ticket_id.to_string()).await.expect("stream");
        let registered = &stream[0].payload["TicketRegistered"];
        for text in [&registered["requester"]["name"], &registered["requester"]["phone"], &registered["description"], &registered["premises"]] {
            assert!(is_sealed(text.as_str().expect("text")), "{registered}");
        }
        assert!(!stream[0].stored_payload.contains("Секретова"), "{}", stream[0].stored_payload);
        // The resident id and the facts the statistics need stay readable.
        assert!(!is_sealed(registered["category"].as_str().expect("category")));
    }

    // Later commands on stored streams seal under the same keys; on PostgreSQL the key is read
    // with the stream.
    for (ticket_id, text) in [(tickets[0], "перезвонила Вера"), (anonymous, "заявитель не назвался")] {
        store.execute(ticket_id, vec![comment(text, at(2))], &metadata, &services).await.expect("comment");
    }
    assert_eq!(keys_of(store, "res-7").await, 1);
    assert_eq!(keys_of(store, &ticket_subject(anonymous)).await, 1);
    for ticket_id in [tickets[0], anonymous] {
        let stream = store.load_stream(TICKET_STREAM_TYPE, &ticket_id.to_string()).await.expect("stream");
        let key_id = |text: &str| text.split(':').nth(3).expect("key id").to_string();
        let registered_name = stream[0].payload["TicketRegistered"]["requester"]["name"].as_str().expect("name");
        let comment_text = stream.last().expect("comment").payload["TicketCommented"]["text"].as_str().expect("text");
        assert_eq!(key_id(comment_text), key_id(registered_name), "ticket {ticket_id}");
    }

    let (payloads, opened) = opened_stream(store, tickets[0]).await;
    assert_eq!(payloads[0]["TicketRegistered"]["requester"]["name"], "Секретова Вера");
    assert_eq!(payloads[0]["TicketRegistered"]["requester"]["resident_id"], "res-7");
    assert_eq!(payloads[1]["TicketCommented"]["text"], "звонила Вера");
    assert_eq!(payloads[2]["TicketCommented"]["text"], "перезвонила Вера");
    assert_eq!(opened.erased, 0);

    let erasure = store.forget_resident("res-7", Utc::now()).await.expect("forget");
    assert_eq!(erasure.keys_erased, 1);
    for &ticket_id in &tickets {
        let (payloads, opened) = opened_stream(store, ticket_id).await;
        assert_eq!(payloads[0]["TicketRegistered"]["requester"]["name"], ERASED);
        assert_eq!(payloads[1]["TicketCommented"]["text"], ERASED);
        assert_eq!(opened.opened, 0);
    }
    let (payloads, _) = opened_stream(store, anonymous).await;
    assert_eq!(payloads[0]["TicketRegistered"]["requester"]["name"], "Секретова Вера");

    // Forgetting again erases nothing more and reports the first erasure.
    let again = store.forget_resident("res-7", Utc::now()).await.expect("forget again");
    assert_eq!(again.keys_erased, 0);
    assert_eq!(again.erased_at, erasure.erased_at);
    let unknown = store.forget_resident("nobody", Utc::now()).await.expect("forget unknown");
    assert_eq!(unknown.erased_at, None);

    // A command after the erasure does not reuse the erased key: it gets a new one.
    store
        .execute(tickets[0], vec![comment("новое обращение", at(3))], &metadata, &services)
        .await
        .expect("comment after the erasure");
    assert_eq!(keys_of(store, "res-7").await, 2);
    let (payloads, _) = opened_stream(store, tickets[0]).await;
    assert_eq!(payloads[2]["TicketCommented"]["text"], ERASED);
    assert_eq!(payloads[3]["TicketCommented"]["text"], "новое обращение");
}
