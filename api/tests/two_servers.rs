//! Two `opencity serve` processes on one PostgreSQL database: one projection writer at a time,
//! takeover when the writer is killed, subscriptions that see writes made through either
//! server, and passed deadlines recorded once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Duration as Age, Utc};
use common::{assert_tables_match_fold, next_json, register_input, wait_for, ServerProcess, REGISTER};
use opencity_domain::ticket::{RegisterTicket, TicketCommand};
use opencity_domain::values::{BuildingRef, Channel, Requester};
use opencity_domain::TicketServices;
use opencity_projections::runner::ReadModel;
use opencity_store::testing::temp_postgres;
use opencity_store::{CommandMetadata, LogCheckpoint, Store};
use serde_json::Value;
use uuid::Uuid;

const SUBSCRIPTION: &str =
    r#"subscription { ticketEvents(filter: { eventTypes: ["TicketRegistered"] }) { eventType ticketId position } }"#;

/// Registers tickets dated `days` ago, so that their deadlines have passed.
async fn register_old_tickets(store: &Store, count: usize, days: i64) -> Vec<Uuid> {
    let services = TicketServices {
        sla: std::sync::Arc::new(opencity_fixtures::sla::default_catalogue().expect("catalogue")),
    };
    let mut ids = Vec::new();
    for index in 0..count {
        let ticket_id = Uuid::new_v4();
        let command = TicketCommand::Register(RegisterTicket {
            ticket_id,
            external_id: None,
            channel: Channel::CallCenter,
            requester: Requester { name: Some("Сидоров Пётр".into()), phone: None, email: None, resident_id: None },
            building: BuildingRef {
                id: "kzn-old".into(),
                address: "Казань, ул. Кремлёвская, 1".into(),
                district: Some("Вахитовский".into()),
                time_zone: "Europe/Moscow".into(),
                region: Some("RU-TA".into()),
            },
            premises: Some(format!("{}", index + 1)),
            category: "emergency_heating".into(),
            description: "Нет отопления".into(),
            resolution_deadline_override: None,
            at: Utc::now() - Age::days(days),
        });
        store
            .execute(ticket_id, vec![command], &CommandMetadata::default(), &services)
            .await
            .expect("registered");
        ids.push(ticket_id);
    }
    ids
}

/// Returns `(ticket, kind, deadline) -> count` of the recorded `DeadlinePassed` events.
async fn passed_deadlines(store: &Store) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    let mut after = LogCheckpoint::START;
    loop {
        let events = store.read_committed_log(after, 1_000).await.expect("read log");
        let Some(last) = events.last() else { break };
        after = last.checkpoint();
        for event in events.iter().filter(|event| event.event_type == "DeadlinePassed") {
            let body = &event.payload["DeadlinePassed"];
            let key = format!("{}/{}", body["kind"], body["deadline"]);
            *counts.entry((event.stream_id.clone(), key)).or_default() += 1;
        }
    }
    counts
}

/// Registers through `writer` until `socket` delivers one of the registrations, and returns
/// the ids registered. A subscription delivers what its server folds after it subscribed, so
/// a registration of `earlier` still being folded may arrive first; it is skipped.
async fn delivered_across(
    writer: &ServerProcess,
    socket: &mut common::Socket,
    label: &str,
    earlier: &[String],
) -> Vec<String> {
    let mut ours = Vec::new();
    for attempt in 0..20 {
        let answer = writer.graphql(REGISTER, register_input(&format!("{label} {attempt}"))).await;
        let id = answer["data"]["registerTicket"]["ticketId"].as_str().expect("ticket id").to_string();
        ours.push(id);
        while let Some(message) = next_json(socket, Duration::from_secs(3)).await {
            assert_eq!(message["type"], "next", "{message}");
            let ticket = message["payload"]["data"]["ticketEvents"]["ticketId"].as_str().expect("ticket id");
            if ours.iter().any(|id| id == ticket) {
                return ours;
            }
            assert!(earlier.iter().any(|id| id == ticket), "{label}: {ticket} is neither ours nor earlier");
        }
    }
    panic!("{label}: no event delivered across servers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_projections() {
    tokio::time::timeout(Duration::from_secs(300), scenario())
        .await
        .expect("the two-server scenario ends within 5 minutes");
}

async fn scenario() {
    let database = temp_postgres().await;
    let store = Store::open(&database.config()).await.expect("store");
    let old = register_old_tickets(&store, 5, 10).await;

    let logs = tempfile::tempdir().expect("log dir");
    let store_args = ["--database-url", database.url.as_str()];
    let extra = ["--deadline-check-interval", "1"];
    let mut first = ServerProcess::start("first", &store_args, &extra, logs.path());
    let mut second = ServerProcess::start("second", &store_args, &extra, logs.path());
    first.wait_ready(Duration::from_secs(60)).await;
    second.wait_ready(Duration::from_secs(60)).await;

    // Exactly one writes the projections.
    wait_for("one server takes the lease", Duration::from_secs(15), || async {
        first.is_leader().await != second.is_leader().await
    })
    .await;
    for _ in 0..5 {
        let leaders = [first.is_leader().await, second.is_leader().await];
        assert_eq!(leaders.iter().filter(|leader| **leader).count(), 1, "{leaders:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Each passed deadline of the old tickets is recorded once, though both servers run a
    // watcher every second.
    wait_for("passed deadlines recorded", Duration::from_secs(30), || async {
        let recorded = passed_deadlines(&store).await;
        old.iter().all(|id| recorded.keys().any(|(stream, _)| stream == &id.to_string()))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let recorded = passed_deadlines(&store).await;
    assert!(recorded.values().all(|count| *count == 1), "a deadline recorded twice: {recorded:?}");
    for id in &old {
        let kinds = recorded.keys().filter(|(stream, _)| stream == &id.to_string()).count();
        assert_eq!(kinds, 2, "response and resolution deadline of {id}: {recorded:?}");
    }

    // Subscriptions on either server see the registrations made through the other.
    let (leader, follower) = if first.is_leader().await { (&first, &second) } else { (&second, &first) };
    let mut on_follower = follower.subscribe(SUBSCRIPTION).await;
    let registered = delivered_across(leader, &mut on_follower, "leader to follower", &[]).await;
    let mut on_leader = leader.subscribe(SUBSCRIPTION).await;
    delivered_across(follower, &mut on_leader, "follower to leader", &registered).await;
    drop(on_follower);
    drop(on_leader);

    // Kill the writer: the other takes over within seconds and keeps the tables current.
    let first_was_leader = first.is_leader().await;
    let (survivor, killed_log) = if first_was_leader {
        first.kill();
        (&second, first.log_text())
    } else {
        second.kill();
        (&first, second.log_text())
    };
    assert!(killed_log.contains("projection lease taken"), "{killed_log}");
    wait_for("the survivor takes the lease", Duration::from_secs(15), || async { survivor.is_leader().await }).await;

    let answer = survivor.graphql(REGISTER, register_input("после смены ведущего")).await;
    let position = answer["data"]["registerTicket"]["position"].as_i64().expect("position");
    let target = store.checkpoint_of_position(position).await.expect("lookup").expect("event stored");
    wait_for("the survivor writes the tables", Duration::from_secs(15), || async {
        let reopened = ReadModel::open(store.clone()).await.expect("read model");
        reopened.checkpoint() >= target
    })
    .await;

    // The stored tables equal a fold of the whole log from scratch.
    assert_tables_match_fold(&store).await;
    let survivor_log = survivor.log_text();
    assert!(survivor_log.contains("projection lease taken"), "{survivor_log}");

    let answer: Value = survivor
        .graphql(
            "query($p: Int) { overdueCounters(afterPosition: $p) { open overdue } }",
            serde_json::json!({ "p": position }),
        )
        .await;
    assert!(answer["errors"].is_null(), "{answer}");
    let overdue: i64 = answer["data"]["overdueCounters"][0]["overdue"].as_i64().expect("overdue");
    assert!(overdue >= old.len() as i64, "{answer}");

    drop(first);
    drop(second);
    database.cleanup().await;
}
