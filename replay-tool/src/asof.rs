//! `as-of`: SLA statistics and overdue counters as the projections would have returned them at
//! a past moment.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use opencity_projections::{
    overdue_counters, sla_stats, Dimension, OverdueRow, SlaStatsRow, StatsFilter,
};
use opencity_store::LogCheckpoint;
use serde::Serialize;

use crate::replay::{replay_recorded_until, replay_until, Replay};
use crate::source::{LogSource, SourceError};

/// The moment the statistics are computed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// The log prefix up to and including the event at this global position, in log order.
    Position(i64),
    /// The events the database had recorded by this time.
    Time(DateTime<Utc>),
}

/// Statistics at one moment.
#[derive(Debug, Serialize)]
pub struct AsOfReport {
    /// Global position of the last folded event, 0 when none.
    pub position: i64,
    /// Ticket events folded.
    pub events: u64,
    pub tickets: usize,
    /// Business time at which overdue counters are evaluated.
    pub evaluated_at: Option<DateTime<Utc>>,
    pub sla_stats: Vec<SlaStatsRow>,
    pub overdue_counters: Vec<OverdueRow>,
}

/// Failures of `as-of` other than database errors.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    #[error(
        "в журнале нет события с позицией {0}; позиции событий показывают команды export и history"
    )]
    UnknownPosition(i64),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Folds the log up to `moment` and computes the statistics.
///
/// Overdue counters are evaluated at `at` when given. Otherwise a time moment is evaluated at
/// that time, and a position at the latest business time among the folded events, because the
/// position alone does not say when the live query ran.
pub async fn as_of(
    source: &LogSource,
    moment: Moment,
    at: Option<DateTime<Utc>>,
    group_by: &[Dimension],
    time_zone: Tz,
) -> Result<AsOfReport, AsOfError> {
    let replay = match moment {
        Moment::Position(0) => replay_until(source, LogCheckpoint::START).await?,
        Moment::Position(position) => {
            let until = source
                .checkpoint_of(position)
                .await?
                .ok_or(AsOfError::UnknownPosition(position))?;
            replay_until(source, until).await?
        }
        Moment::Time(time) => replay_recorded_until(source, time).await?,
    };
    let evaluated_at = at.or(match moment {
        Moment::Time(time) => Some(time),
        Moment::Position(_) => replay.latest_occurred_at,
    });
    Ok(report(&replay, group_by, evaluated_at, time_zone))
}

fn report(
    replay: &Replay,
    group_by: &[Dimension],
    evaluated_at: Option<DateTime<Utc>>,
    time_zone: Tz,
) -> AsOfReport {
    let sla_stats = sla_stats(
        replay.views.values(),
        group_by,
        &StatsFilter::default(),
        time_zone,
    );
    let overdue_counters = match evaluated_at {
        Some(at) => overdue_counters(replay.views.values(), group_by, at, time_zone),
        None => Vec::new(),
    };
    AsOfReport {
        position: replay.last.position,
        events: replay.events,
        tickets: replay.views.len(),
        evaluated_at,
        sla_stats,
        overdue_counters,
    }
}
