//! Folds of the log into ticket views, the same way the projection runner folds it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::TicketEvent;
use opencity_projections::{apply_event, TicketView};
use opencity_store::LogCheckpoint;
use uuid::Uuid;

use crate::source::{LogEvent, LogSource, SourceError};

/// Views folded from a part of the log.
#[derive(Debug, Default)]
pub struct Replay {
    pub views: BTreeMap<Uuid, TicketView>,
    /// Events folded into the views.
    pub events: u64,
    /// Events in the chosen part of the log that are not ticket events or do not decode. The
    /// runner skips them too, and `verify` reports them.
    pub skipped: u64,
    /// Place of the last folded event, `(0, 0)` when nothing was folded.
    pub last: LogCheckpoint,
    /// Latest business time among the folded events.
    pub latest_occurred_at: Option<DateTime<Utc>>,
}

impl Replay {
    /// Applies one stored event as the projection runner does: only ticket streams with a
    /// valid id and a decodable payload take part.
    pub fn apply(&mut self, event: &LogEvent) {
        let Some(ticket_event) = decode_ticket_event(event) else {
            self.skipped += 1;
            return;
        };
        let Ok(ticket_id) = Uuid::parse_str(&event.stream_id) else {
            self.skipped += 1;
            return;
        };
        apply_event(&mut self.views, ticket_id, event.position, &ticket_event);
        self.events += 1;
        self.last = event.checkpoint();
        let occurred_at = ticket_event.occurred_at();
        if self
            .latest_occurred_at
            .is_none_or(|latest| occurred_at > latest)
        {
            self.latest_occurred_at = Some(occurred_at);
        }
    }
}

/// Decodes the payload of a ticket stream's event, or returns `None`.
pub fn decode_ticket_event(event: &LogEvent) -> Option<TicketEvent> {
    if event.stream_type != TICKET_STREAM_TYPE {
        return None;
    }
    let payload = event.payload.as_ref().ok()?;
    serde_json::from_value(payload.clone()).ok()
}

/// Folds the log prefix up to and including `until`, in log order.
pub async fn replay_until(source: &LogSource, until: LogCheckpoint) -> Result<Replay, SourceError> {
    let mut replay = Replay::default();
    source
        .scan(|event| {
            if event.checkpoint() > until {
                return false;
            }
            replay.apply(&event);
            true
        })
        .await?;
    Ok(replay)
}

/// Folds, in log order, the events the database recorded at or before `time`.
pub async fn replay_recorded_until(
    source: &LogSource,
    time: DateTime<Utc>,
) -> Result<Replay, SourceError> {
    let mut replay = Replay::default();
    source
        .scan(|event| {
            if event.recorded_at <= time {
                replay.apply(&event);
            }
            true
        })
        .await?;
    Ok(replay)
}

/// Folds the whole log.
pub async fn replay_all(source: &LogSource) -> Result<Replay, SourceError> {
    let end = LogCheckpoint {
        tx: i64::MAX,
        position: i64::MAX,
    };
    replay_until(source, end).await
}
