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
    read_model.catch_up().await.expect("projections catch up");
    let boston = ticket_positions(&store, 0).await;
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
    read_model.catch_up().await.expect("projections catch up");
    let all = ticket_positions(&store, 0).await;
    let la = all[boston.len()..].to_vec();
    assert!(la.len() > 3 * 4_096, "{} LA events", la.len());
    expected.send_replace(la.len());

    assert_eq!(drain(&mut idle, all.len()).await, all, "the idle follower");
    let prompt_positions = reader.await.expect("reader finishes");
    assert_eq!(prompt_positions, la, "the prompt follower after LA");

    // After catching up from the log, the idle follower is live again.
    import(&store, &services, ImportFormat::Open311, "open311_chicago_requests_with_notes_2014.json").await;
    read_model.catch_up().await.expect("projections catch up");
    let chicago = ticket_positions(&store, *all.last().unwrap()).await;
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

/// Returns the positions of the ticket events in the log after `after_position`. The imports
/// here run one after another, so positions after one import all belong to later ones.
async fn ticket_positions(store: &Store, after_position: i64) -> Vec<i64> {
    let mut positions = Vec::new();
    let mut cursor = LogCheckpoint::START;
    loop {
        let events = store.read_log(cursor, 5_000).await.expect("log reads");
        let Some(last) = events.last() else { break };
        cursor = last.checkpoint();
        positions.extend(
            events
                .iter()
                .filter(|event| event.stream_type == opencity_domain::ticket::TICKET_STREAM_TYPE)
                .map(|event| event.position)
                .filter(|position| *position > after_position),
        );
    }
    positions
}
