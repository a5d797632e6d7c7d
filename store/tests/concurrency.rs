//! Concurrent writers and a log reader: 16 writers append 50,000 events through
//! `Store::execute` while one reader follows `Store::read_log`. The reader must see every event
//! exactly once, in an order where each stream's sequences increase by one.
//!
//! A second case sends single-event commands from many writers to a few shared tickets. On
//! PostgreSQL their loads and appends then run in groups (`group.rs`) and collide inside a group
//! and between groups. Each command must be stored once or fail as a conflict, and must report
//! the checkpoint of its own event.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opencity_store::{verify_log, BackendKind, CommandError, CommandMetadata, LogCheckpoint, Store, StoredEvent};
use uuid::Uuid;

use common::{at, comment, register, services, TestStore};

const WRITERS: usize = 16;
const TOTAL_EVENTS: usize = 50_000;
/// Every command list appends this many events: a registration and four comments, or five
/// comments.
const EVENTS_PER_COMMAND: usize = 5;
const COMMANDS_PER_STREAM: usize = 5;
/// Streams a writer keeps in turn, so its appends interleave between streams.
const STREAMS_IN_TURN: usize = 5;
const READ_BATCH: usize = 1_000;

/// How long the reader may take to reach the last event once all writers have finished.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);
/// Pause of the reader when it has caught up with the writers, so that it does not take the
/// CPU from them. It does not affect which events the reader reads.
const IDLE_POLL: Duration = Duration::from_millis(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reader_sees_every_event_once() {
    let test = TestStore::open(BackendKind::Postgres).await;
    writers_and_reader(&test.store).await;
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reader_sees_every_event_once() {
    let test = TestStore::open(BackendKind::Sqlite).await;
    writers_and_reader(&test.store).await;
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_grouped_commands_are_stored_once() {
    let test = TestStore::open(BackendKind::Postgres).await;
    shared_tickets(&test.store).await;
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_grouped_commands_are_stored_once() {
    let test = TestStore::open(BackendKind::Sqlite).await;
    shared_tickets(&test.store).await;
    test.cleanup().await;
}

/// Tickets the writers of [`shared_tickets`] share: fewer than the writers, so that a group often
/// contains a second command for a ticket, which must wait for the next group.
const SHARED_TICKETS: usize = 6;
const SHARED_WRITERS: usize = 24;
const COMMANDS_PER_WRITER: usize = 40;

/// Sends one-comment commands from [`SHARED_WRITERS`] writers to [`SHARED_TICKETS`] tickets, each
/// with a correlation id of its own, and checks every outcome against the stored streams.
async fn shared_tickets(store: &Store) {
    let services = services();
    let tickets: Vec<Uuid> = (0..SHARED_TICKETS).map(|_| Uuid::new_v4()).collect();
    for ticket_id in &tickets {
        store
            .execute(*ticket_id, vec![register(*ticket_id, at(0))], &CommandMetadata::default(), &services)
            .await
            .expect("register a shared ticket");
    }

    let writers: Vec<_> = (0..SHARED_WRITERS)
        .map(|writer| {
            let (store, services, tickets) = (store.clone(), services.clone(), tickets.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut conflicts = 0;
                for index in 0..COMMANDS_PER_WRITER {
                    let ticket_id = tickets[(writer + index) % tickets.len()];
                    let metadata = CommandMetadata { correlation_id: Some(Uuid::new_v4()), ..CommandMetadata::default() };
                    let command = comment("ход работ", at(1 + index as i64));
                    match store.execute(ticket_id, vec![command], &metadata, &services).await {
                        Ok(outcome) => outcomes.push((metadata.correlation_id, outcome)),
                        Err(CommandError::Conflict) => conflicts += 1,
                        Err(error) => panic!("writer {writer}, ticket {ticket_id}: {error}"),
                    }
                }
                (outcomes, conflicts)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut conflicts = 0;
    for writer in writers {
        let (writer_outcomes, writer_conflicts) = writer.await.expect("writer task");
        outcomes.extend(writer_outcomes);
        conflicts += writer_conflicts;
    }
    assert_eq!(outcomes.len() + conflicts, SHARED_WRITERS * COMMANDS_PER_WRITER);

    let mut stored = HashMap::new();
    for ticket_id in &tickets {
        for event in store.load_stream("ticket", &ticket_id.to_string()).await.expect("load a shared ticket") {
            stored.insert(event.position, event);
        }
    }
    assert_eq!(stored.len(), SHARED_TICKETS + outcomes.len(), "every successful command is stored once, and no other");
    for (correlation_id, outcome) in &outcomes {
        assert_eq!(outcome.appended, 1);
        let event = stored.get(&outcome.last_position).expect("the reported event is stored");
        assert_eq!(event.stream_id, outcome.ticket_id.to_string());
        assert_eq!(event.checkpoint(), outcome.last_checkpoint);
        let metadata = event.command_metadata().expect("stored metadata");
        assert_eq!(metadata.correlation_id, *correlation_id, "the outcome reports the command's own event");
    }
    let mut events: Vec<_> = stored.into_values().collect();
    events.sort_by_key(StoredEvent::checkpoint);
    let findings = verify_log(events, &[], None);
    assert!(findings.is_empty(), "{findings:?}");
}

async fn writers_and_reader(store: &Store) {
    let started = Instant::now();
    let writers_done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(follow_log(store.clone(), Arc::clone(&writers_done)));

    let events_per_writer = TOTAL_EVENTS / WRITERS;
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| tokio::spawn(write(store.clone(), writer, events_per_writer)))
        .collect();
    let mut streams = 0;
    for writer in writers {
        streams += writer.await.expect("writer task");
    }
    writers_done.store(true, Ordering::SeqCst);
    let written_in = started.elapsed();

    let report = reader.await.expect("reader task");
    assert_eq!(report.events, TOTAL_EVENTS);
    assert_eq!(report.last_sequences.len(), streams);
    let expected_length = (EVENTS_PER_COMMAND * COMMANDS_PER_STREAM) as i64;
    assert!(report
        .last_sequences
        .values()
        .all(|last| *last == expected_length));
    assert_eq!(store.count_events().await.unwrap(), TOTAL_EVENTS as i64);
    assert!(store
        .read_log(report.checkpoint, READ_BATCH)
        .await
        .unwrap()
        .is_empty());
    println!(
        "{:?}: {TOTAL_EVENTS} events by {WRITERS} writers in {written_in:?}; reader done after {:?}, {} reads",
        store.backend(),
        started.elapsed(),
        report.reads
    );
}

/// Appends `events` events to streams of its own and returns the number of streams.
async fn write(store: Store, writer: usize, events: usize) -> usize {
    let services = services();
    let metadata = CommandMetadata {
        actor: Some(format!("writer-{writer}")),
        ..CommandMetadata::default()
    };
    let streams = events / (EVENTS_PER_COMMAND * COMMANDS_PER_STREAM);
    assert_eq!(
        streams % STREAMS_IN_TURN,
        0,
        "streams must split into turns"
    );

    for _ in 0..streams / STREAMS_IN_TURN {
        let ticket_ids: Vec<Uuid> = (0..STREAMS_IN_TURN).map(|_| Uuid::new_v4()).collect();
        for round in 0..COMMANDS_PER_STREAM {
            for ticket_id in &ticket_ids {
                let minute = (round * EVENTS_PER_COMMAND) as i64;
                let mut commands = Vec::with_capacity(EVENTS_PER_COMMAND);
                if round == 0 {
                    commands.push(register(*ticket_id, at(minute)));
                }
                while commands.len() < EVENTS_PER_COMMAND {
                    commands.push(comment("ход работ", at(minute + commands.len() as i64)));
                }
                let outcome = store
                    .execute(*ticket_id, commands, &metadata, &services)
                    .await
                    .unwrap_or_else(|error| panic!("writer {writer}, ticket {ticket_id}: {error}"));
                assert_eq!(outcome.appended, EVENTS_PER_COMMAND);
            }
        }
    }
    streams
}

struct ReaderReport {
    events: usize,
    reads: usize,
    checkpoint: LogCheckpoint,
    last_sequences: HashMap<String, i64>,
}

/// Reads the log until it has seen all events, checking each one as it arrives.
async fn follow_log(store: Store, writers_done: Arc<AtomicBool>) -> ReaderReport {
    let mut checkpoint = LogCheckpoint::START;
    let mut positions = HashSet::new();
    let mut last_sequences: HashMap<String, i64> = HashMap::new();
    let mut reads = 0;
    let mut caught_up_since: Option<Instant> = None;

    while positions.len() < TOTAL_EVENTS {
        let batch = store
            .read_log(checkpoint, READ_BATCH)
            .await
            .expect("read log");
        reads += 1;
        if batch.is_empty() {
            if writers_done.load(Ordering::SeqCst) {
                let since = *caught_up_since.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < CATCH_UP_LIMIT,
                    "reader stopped at {} of {TOTAL_EVENTS} events after the writers finished",
                    positions.len()
                );
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }

        for event in batch {
            assert!(
                event.checkpoint() > checkpoint,
                "{:?} read after {checkpoint:?}",
                event.checkpoint()
            );
            assert!(
                positions.insert(event.position),
                "position {} read twice",
                event.position
            );
            let last = last_sequences.entry(event.stream_id.clone()).or_insert(0);
            assert_eq!(
                event.sequence,
                *last + 1,
                "stream {} out of order",
                event.stream_id
            );
            *last = event.sequence;
            checkpoint = event.checkpoint();
        }
    }
    ReaderReport {
        events: positions.len(),
        reads,
        checkpoint,
        last_sequences,
    }
}
