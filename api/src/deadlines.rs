//! The deadline watcher: records a `DeadlinePassed` event when a ticket's response or
//! resolution deadline passes while no command touches the ticket, so that subscriptions and
//! dashboards see the change as an event.
//!
//! Only the server that holds the projection lease runs it. Each deadline is recorded once even
//! if two servers ran it at the same moment: the aggregate keeps the deadlines it recorded and
//! rejects a second record, and the append of the slower server fails on the stream sequence.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use opencity_domain::ticket::{DeadlineKind, RecordDeadlinePassed};
use opencity_domain::{TicketCommand, TicketError, TicketServices, TicketStatus};
use opencity_projections::runner::ReadModel;
use opencity_projections::TicketView;
use opencity_store::{CommandError, CommandMetadata, Store};
use tokio::sync::watch;
use uuid::Uuid;

/// Tickets the watcher handles in one round at most, so that a backlog after downtime does not
/// hold the store for long.
const ROUND_LIMIT: usize = 500;

/// The actor written into the metadata of the events the watcher records.
pub const WATCHER_ACTOR: &str = "deadline-watcher";

/// Returns the deadlines of `view` that have passed by `now` and are not recorded yet. The rules
/// are the aggregate's: the response deadline counts until the ticket is accepted, and the
/// resolution deadline while the work is not reported, confirmed, suspended or finished.
pub fn due_deadlines(view: &TicketView, now: DateTime<Utc>) -> Vec<(DeadlineKind, DateTime<Utc>)> {
    use TicketStatus as S;
    let mut due = Vec::new();
    if view.accepted_at.is_none() && matches!(view.status, S::New | S::Routed) {
        if let Some(response) = view.response_deadline {
            due.push((DeadlineKind::Response, response));
        }
    }
    if !matches!(
        view.status,
        S::CompletionReported | S::Confirmed | S::Suspended | S::Closed | S::Cancelled | S::Unregistered
    ) {
        due.push((DeadlineKind::Resolution, view.resolution_deadline));
    }
    due.retain(|(kind, deadline)| *deadline <= now && !view.passed_deadlines.contains(&(*kind, *deadline)));
    due
}

/// Checks the deadlines every `interval` while this server holds the projection lease, until
/// `shutdown` fires. An interval of zero turns the watcher off.
pub async fn watch_deadlines(
    store: Store,
    services: TicketServices,
    read_model: Arc<ReadModel>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if interval.is_zero() {
        tracing::info!("deadline watcher is off");
        return;
    }
    tracing::info!(interval_ms = interval.as_millis() as u64, "deadline watcher started");
    // Tickets the aggregate found nothing to record for, by the position of their view then:
    // skipped until the view changes.
    let mut settled: HashMap<Uuid, i64> = HashMap::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if !read_model.is_leader() {
            continue;
        }
        let now = Utc::now();
        let due: Vec<(Uuid, i64)> = {
            let views = read_model.views().await;
            views
                .values()
                .filter(|view| settled.get(&view.id) != Some(&view.last_position))
                .filter(|view| !due_deadlines(view, now).is_empty())
                .map(|view| (view.id, view.last_position))
                .take(ROUND_LIMIT)
                .collect()
        };
        let mut recorded = 0usize;
        for (ticket_id, position) in due {
            let metadata = CommandMetadata {
                actor: Some(WATCHER_ACTOR.to_string()),
                role: Some("system".to_string()),
                channel: Some("system".to_string()),
                ..CommandMetadata::default()
            };
            let command = TicketCommand::RecordDeadlinePassed(RecordDeadlinePassed { at: now });
            match store.execute(ticket_id, vec![command], &metadata, &services).await {
                Ok(outcome) => {
                    recorded += outcome.appended;
                    settled.remove(&ticket_id);
                }
                Err(CommandError::Domain(TicketError::NoDeadlinePassed { .. })) => {
                    settled.insert(ticket_id, position);
                }
                Err(CommandError::Domain(error)) => {
                    tracing::debug!(%ticket_id, code = error.code(), "no deadline to record");
                    settled.insert(ticket_id, position);
                }
                Err(error) => {
                    tracing::warn!(%ticket_id, %error, "recording a passed deadline failed; retrying next round");
                }
            }
        }
        if recorded > 0 {
            tracing::info!(events = recorded, "passed deadlines recorded");
        }
    }
    tracing::info!("deadline watcher stopped");
}
