//! Read-your-writes: waiting until the projections have applied a global position that a client
//! got from a mutation.
//!
//! On SQLite positions commit in order, so the read model has passed position `p` once its
//! checkpoint position reaches `p`. On PostgreSQL positions commit out of order and the log is
//! read in `(tx, position)` order. So the wait looks up the checkpoint of the event at `p` and
//! waits until the read model's checkpoint reaches it, which also covers every event that
//! committed before it.

use std::time::Duration;

use opencity_store::{BackendKind, LogCheckpoint, Store, StoreError};
use tokio::time::Instant;

use crate::runner::ReadModel;

/// How long a read waits for the projections when the client names no limit.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// The maximum wait a client may request.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often the wait looks for an event that is not committed yet.
const LOOKUP_POLL: Duration = Duration::from_millis(20);

/// The reason a wait for a position failed.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// No event with the position or beyond it was committed before the time ran out.
    #[error("position {position} is beyond the log head {head}")]
    NotWritten { position: i64, head: i64 },
    /// The event is in the log, but the projections did not apply it in time.
    #[error("projections at position {projected} did not reach {position} within {waited:?}")]
    Timeout {
        position: i64,
        projected: i64,
        waited: Duration,
    },
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

/// Waits at most `timeout` until the read model has applied the event at global `position`
/// and every event committed before it. A position of 0 or less returns at once.
///
/// A position that no committed event has but that lies below the log head (a gap left by a
/// rolled-back transaction) counts as passed once the read model has applied the head.
pub async fn wait_for_position(
    read_model: &ReadModel,
    store: &Store,
    position: i64,
    timeout: Duration,
) -> Result<LogCheckpoint, WaitError> {
    let started = Instant::now();
    let deadline = started + timeout;
    if position <= 0 {
        return Ok(read_model.checkpoint());
    }
    let target = match store.backend() {
        BackendKind::Sqlite => LogCheckpoint { tx: 0, position },
        BackendKind::Postgres => {
            loop {
                if let Some(checkpoint) = store.checkpoint_of_position(position).await? {
                    break checkpoint;
                }
                let head = store.last_position().await?;
                if head >= position {
                    if let Some(checkpoint) = store.checkpoint_of_position(head).await? {
                        break checkpoint;
                    }
                    continue;
                }
                if Instant::now() + LOOKUP_POLL > deadline {
                    return Err(WaitError::NotWritten { position, head });
                }
                tokio::time::sleep(LOOKUP_POLL).await;
            }
        }
    };

    let mut checkpoints = read_model.watch_checkpoint();
    let reached = tokio::time::timeout_at(
        deadline,
        checkpoints.wait_for(|checkpoint| *checkpoint >= target),
    )
    .await
    // Copy the value out: the guard must not live across the awaits below.
    .map(|result| result.map(|checkpoint| *checkpoint));
    match reached {
        Ok(Ok(checkpoint)) => Ok(checkpoint),
        // The sender lives as long as the read model, which the caller holds.
        Ok(Err(_)) | Err(_) => {
            let projected = read_model.checkpoint().position;
            if store.backend() == BackendKind::Sqlite {
                let head = store.last_position().await?;
                if head < position {
                    return Err(WaitError::NotWritten { position, head });
                }
            }
            Err(WaitError::Timeout {
                position,
                projected,
                waited: started.elapsed(),
            })
        }
    }
}
