//! Subscribers that fall behind lose no event. Live events reach subscribers through a channel
//! of 4,096 events. A follower that is not read while a whole LA 311 import is projected falls
//! about 35,000 events behind, so it must read the rest from the log. Every follower must return
//! exactly the ticket events of the log, in log order, each once, whether it was read while the
//! projections ran or only afterwards.

mod common;

use std::time::Duration;

use common::{import, services};
use opencity_fixtures::import::ImportFormat;
use opencity_projections::runner::{AppliedFollower, ReadModel};
use opencity_store::testing::{temp_postgres, temp_sqlite};
use opencity_store::{LogCheckpoint, Store, StoreConfig};

#[tokio::test]
async fn sqlite_followers_miss_no_event() {
    let (_dir, config) = temp_sqlite();
    followers_miss_no_event(config).await;
}

#[tokio::test]
async fn postgres_followers_miss_no_event() {
    let database = temp_postgres().await;
    followers_miss_no_event(database.config()).await;
    database.cleanup().await;
}

async fn followers_miss_no_event(config: StoreConfig) {
    let store = Store::open(&config).await.expect("store opens");
    let services = services();
    let read_model = ReadModel::open(store.clone()).await.expect("read model opens");
    let mut idle = read_model.follow();
    let mut prompt = read_model.follow();

    // A small import that fits in the channel, read at once: the live path.
    import(&store, &services, ImportFormat::Boston311, "boston311_100_qsv.csv").await;
    let boston = project_log(&read_model, &store).await;
    assert!(!boston.is_empty(), "the Boston import wrote no ticket events");
    assert!(boston.len() < 4_096, "{} Boston events do not fit in the channel", boston.len());
    assert_eq!(drain(&mut prompt, boston.len()).await, boston, "the prompt follower after Boston");

    // A follower read while the projections apply the LA import keeps up or catches up. The
    // idle one is read only afterwards, far behind the channel.
    let (expected, mut target) = tokio::sync::watch::channel(usize::MAX);
    let reader = tokio::spawn(async move {
        let mut positions = Vec::new();
        while positions.len() < *target.borrow_and_update() {
            tokio::select! {
                event = tokio::time::timeout(Duration::from_secs(30), prompt.next()) => {
                    let event = event.expect("the prompt follower stalled").expect("the read model is open");
                    positions.push(event.event.position);
                    // A slow client: the follower falls behind now and then.
                    if positions.len() % 5_000 == 0 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ = target.changed() => {}
            }
        }
        positions
    });
    import(&store, &services, ImportFormat::La311, "la311_2017_subset_hackforla.csv").await;
    let all = project_log(&read_model, &store).await;
    let la = all[boston.len()..].to_vec();
    assert!(la.len() > 3 * 4_096, "{} LA events", la.len());
    expected.send_replace(la.len());

    assert_eq!(drain(&mut idle, all.len()).await, all, "the idle follower");
    let prompt_positions = reader.await.expect("reader finishes");
    assert_eq!(prompt_positions, la, "the prompt follower after LA");

    // After catching up from the log, the idle follower is live again.
    import(&store, &services, ImportFormat::Open311, "open311_chicago_requests_with_notes_2014.json").await;
    let chicago = project_log(&read_model, &store).await[all.len()..].to_vec();
    assert!(!chicago.is_empty());
    assert_eq!(drain(&mut idle, chicago.len()).await, chicago, "the idle follower after Chicago");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), idle.next()).await.is_err(),
        "a follower returned an event the log does not hold twice"
    );
}

/// Reads `count` events from `follower`, failing if it stalls.
async fn drain(follower: &mut AppliedFollower, count: usize) -> Vec<i64> {
    let mut positions = Vec::with_capacity(count);
    while positions.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(30), follower.next())
            .await
            .unwrap_or_else(|_| panic!("the follower stalled after {} of {count} events", positions.len()))
            .expect("the read model is open");
        positions.push(event.event.position);
    }
    positions
}

/// Projects the log and returns the positions of its ticket events in log order.
///
/// The reader is gap-safe: while a transaction that began before an import's last ones is still
/// open anywhere on the server (a notification, another test's database), it hides the events
/// after it for a moment. So this reads until the reader returns every stored event, then
/// catches up until the read model has passed the end of that read.
///
/// The imports here run one after another, so each import's events follow those of the earlier
/// ones in log order. Positions alone do not tell them apart: the batches of one import commit
/// in another order than they took positions.
async fn project_log(read_model: &ReadModel, store: &Store) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // Every import here has committed, so a plain count includes all its events.
    let stored = usize::try_from(store.count_events().await.expect("events count")).expect("count fits");
    let (positions, end) = loop {
        let mut positions = Vec::new();
        let mut read = 0;
        let mut end = LogCheckpoint::START;
        loop {
            let events = store.read_log(end, 5_000).await.expect("log reads");
            let Some(last) = events.last() else { break };
            end = last.checkpoint();
            read += events.len();
            positions.extend(
                events
                    .iter()
                    .filter(|event| event.stream_type == opencity_domain::ticket::TICKET_STREAM_TYPE)
                    .map(|event| event.position),
            );
        }
        if read >= stored {
            break (positions, end);
        }
        assert!(tokio::time::Instant::now() < deadline, "the log reader returned {read} of {stored} events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        read_model.catch_up().await.expect("projections catch up");
        if read_model.checkpoint() >= end {
            return positions;
        }
        assert!(tokio::time::Instant::now() < deadline, "the projections did not reach {end:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
