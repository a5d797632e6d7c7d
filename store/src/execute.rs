//! Command execution: load a ticket, decide in memory, append with optimistic concurrency.
//!
//! A command list is decided against the stream as loaded and appended at the next sequence.
//! If another writer appended first, the append fails on the `(stream, sequence)` key, and the
//! command is decided again on the reloaded stream, up to [`MAX_ATTEMPTS`] times.
//!
//! Idempotency rides on the same key: a command whose idempotency key is already in the stream
//! appends nothing, and two concurrent commands with one key cannot both append, because the
//! loser reloads and then finds the key.

use std::collections::HashMap;

use cqrs_es::persist::{
    EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore, PersistenceError,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use opencity_domain::{Ticket, TicketCommand, TicketError, TicketEvent, TicketServices};
use sqlx::PgPool;
use uuid::Uuid;

use crate::chain::EventText;
use crate::error::{CommandError, StoreError};
use crate::group::Group;
use crate::model::{CommandMetadata, CommandOutcome, LogCheckpoint, IDEMPOTENCY_KEY};
use crate::personal::{self, ResidentKey};
use crate::postgres::{self, AppendRequest};
use crate::store::{Backend, Store};

/// Attempts of one command before it fails with [`CommandError::Conflict`].
pub const MAX_ATTEMPTS: u32 = 5;

/// A ticket stream as loaded, plus the events decided in memory but not yet appended.
pub(crate) struct StreamState {
    stream_id: String,
    ticket: Ticket,
    /// Stored events followed by the decided ones.
    history: Vec<EventEnvelope<Ticket>>,
    stored: usize,
}

/// A ticket stream as loaded for deciding on PostgreSQL.
#[derive(Default)]
pub(crate) struct LoadedStream {
    /// The events in sequence order, decoded.
    pub(crate) events: Vec<EventEnvelope<Ticket>>,
    /// The hash of the last event: empty for a new stream, or for a last event stored before
    /// hashes existed.
    pub(crate) head_hash: String,
    /// The key in force of the subject that the registration names, with that subject. A
    /// command's load reads it with the stream, so that sealing needs no second query. The
    /// caller checks the subject against [`personal::key_subject`].
    pub(crate) key: Option<(String, ResidentKey)>,
}

/// The result of deciding one command list, before its events are stored.
pub(crate) struct Decision {
    /// The sequence whose checkpoint the outcome reports. It is the last event the command list
    /// appends, or appended earlier when replayed. If the list appends nothing, it is the
    /// stream's last event, and `None` for an empty stream.
    pub(crate) reported_sequence: Option<usize>,
    pub(crate) appended: usize,
    pub(crate) replayed: bool,
}

impl StreamState {
    pub(crate) fn new(ticket_id: Uuid, stored: Vec<EventEnvelope<Ticket>>) -> Self {
        let mut ticket = Ticket::default();
        for envelope in &stored {
            ticket.apply(envelope.payload.clone());
        }
        StreamState {
            stream_id: ticket_id.to_string(),
            ticket,
            stored: stored.len(),
            history: stored,
        }
    }

    fn last_sequence(&self) -> usize {
        self.history.last().map_or(0, |envelope| envelope.sequence)
    }

    pub(crate) fn pending(&self) -> &[EventEnvelope<Ticket>] {
        &self.history[self.stored..]
    }

    /// Returns the decided events, consuming the state.
    pub(crate) fn into_pending(mut self) -> Vec<EventEnvelope<Ticket>> {
        self.history.split_off(self.stored)
    }

    /// Returns the events of the stream as loaded, without the decided ones.
    pub(crate) fn stored_events(&self) -> impl Iterator<Item = &TicketEvent> {
        self.history[..self.stored].iter().map(|envelope| &envelope.payload)
    }

    /// Decides a command list in order, each command seeing the events of the ones before.
    /// On a domain error the state is left as it was.
    pub(crate) fn decide(
        &mut self,
        commands: Vec<TicketCommand>,
        metadata: &CommandMetadata,
        services: &TicketServices,
    ) -> Result<Decision, TicketError> {
        if let Some(decision) = self.replay(metadata) {
            return Ok(decision);
        }

        let mut ticket = self.ticket.clone();
        let mut events: Vec<TicketEvent> = Vec::new();
        for command in commands {
            for event in ticket.decide(command, services)? {
                ticket.apply(event.clone());
                events.push(event);
            }
        }

        self.ticket = ticket;
        let appended = events.len();
        let metadata = metadata.to_map();
        let first_sequence = self.last_sequence() + 1;
        for (sequence, payload) in (first_sequence..).zip(events) {
            self.history.push(EventEnvelope {
                aggregate_id: self.stream_id.clone(),
                sequence,
                payload,
                metadata: metadata.clone(),
            });
        }
        let reported_sequence = self.history.last().map(|envelope| envelope.sequence);
        Ok(Decision {
            reported_sequence,
            appended,
            replayed: false,
        })
    }

    /// Finds the events an earlier command with the same idempotency key appended.
    fn replay(&self, metadata: &CommandMetadata) -> Option<Decision> {
        let key = metadata.idempotency_key.as_deref()?;
        let earlier: Vec<usize> = self
            .history
            .iter()
            .filter(|envelope| {
                envelope.metadata.get(IDEMPOTENCY_KEY).map(String::as_str) == Some(key)
            })
            .map(|envelope| envelope.sequence)
            .collect();
        let last = *earlier.last()?;
        Some(Decision {
            reported_sequence: Some(last),
            appended: earlier.len(),
            replayed: true,
        })
    }
}

impl Store {
    /// Executes `commands` on one ticket as a unit: loads the stream, decides every command in
    /// order in memory, seals the personal texts of the new events with the resident's key
    /// (see [`personal`]), and appends them in one transaction with `metadata`.
    ///
    /// A domain error on any command appends nothing. A concurrent append to the same stream
    /// makes the command run again on the reloaded stream, at most [`MAX_ATTEMPTS`] times in
    /// all. When `metadata.idempotency_key` is already on an event of the stream, nothing is
    /// appended and the earlier outcome is returned with `replayed: true`.
    ///
    /// Currently, a keyed command that appended no events leaves no trace of its key, so
    /// sending it again decides it again.
    #[tracing::instrument(skip_all, fields(%ticket_id, commands = commands.len()))]
    pub async fn execute(
        &self,
        ticket_id: Uuid,
        commands: Vec<TicketCommand>,
        metadata: &CommandMetadata,
        services: &TicketServices,
    ) -> Result<CommandOutcome, CommandError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let appended = match self.backend.as_ref() {
                Backend::Postgres { pool, loads, appends, .. } => {
                    let groups = CommandGroups { pool, loads, appends };
                    self.try_postgres(&groups, ticket_id, &commands, metadata, services).await?
                }
                Backend::Sqlite { events, .. } => {
                    self.try_repository(events, ticket_id, &commands, metadata, services).await?
                }
            };
            match appended {
                Some(outcome) => return Ok(outcome),
                None => retry_pause(attempt).await,
            }
        }

        tracing::warn!(%ticket_id, attempts = MAX_ATTEMPTS, "command failed: stream kept changing");
        Err(CommandError::Conflict)
    }

    /// Runs one attempt of [`execute`](Store::execute) on PostgreSQL. It loads the stream with the
    /// hash of its last event and appends the chained events in one statement. When the database
    /// is busy, both steps run together with those of concurrent commands (see [`crate::group`]).
    /// A command of several events is appended alone, as [`postgres::append_group`] explains.
    /// Returns `None` when another writer appended first.
    async fn try_postgres(
        &self,
        groups: &CommandGroups<'_>,
        ticket_id: Uuid,
        commands: &[TicketCommand],
        metadata: &CommandMetadata,
        services: &TicketServices,
    ) -> Result<Option<CommandOutcome>, CommandError> {
        let stream_id = ticket_id.to_string();
        let loaded = groups.loads.submit(stream_id.clone()).await.map_err(|_| group_lost("loading the ticket"))??;
        let mut state = StreamState::new(ticket_id, loaded.events);
        let decision = state.decide(commands.to_vec(), metadata, services)?;
        if decision.replayed || decision.appended == 0 {
            return Ok(Some(self.outcome(ticket_id, &decision).await?));
        }
        let sealed = self.sealed_pending(ticket_id, &state, loaded.key.as_ref()).await?;
        let texts: Vec<EventText> = state
            .pending()
            .iter()
            .zip(sealed)
            .map(|(envelope, payload)| EventText::from_envelope(&EventEnvelope::<Ticket> { payload, ..envelope.clone() }))
            .collect::<Result<_, _>>()
            .map_err(AggregateError::<TicketError>::from)?;
        let appended = if texts.len() == 1 {
            let request = AppendRequest { events: texts, head_hash: loaded.head_hash };
            groups.appends.submit(request).await.map_err(|_| group_lost("appending to the ticket"))?
        } else {
            postgres::append_stream(groups.pool, texts, &loaded.head_hash).await
        };
        match appended {
            Ok(checkpoints) => {
                self.notify_appended();
                let mut checkpoint_at = HashMap::new();
                if let (Some(sequence), Some(checkpoint)) = (decision.reported_sequence, checkpoints.last()) {
                    checkpoint_at.insert((stream_id, i64::try_from(sequence).unwrap_or(i64::MAX)), *checkpoint);
                }
                Ok(Some(outcome_from(ticket_id, &decision, &checkpoint_at)?))
            }
            Err(PersistenceError::OptimisticLockError) => Ok(None),
            Err(error) => Err(AggregateError::<TicketError>::from(error).into()),
        }
    }

    /// Runs one attempt of [`execute`](Store::execute) through a cqrs-es repository (SQLite). It
    /// loads the stream and commits the decided events. Returns `None` when another writer
    /// appended first.
    async fn try_repository<R: PersistedEventRepository>(
        &self,
        events: &PersistedEventStore<R, Ticket>,
        ticket_id: Uuid,
        commands: &[TicketCommand],
        metadata: &CommandMetadata,
        services: &TicketServices,
    ) -> Result<Option<CommandOutcome>, CommandError> {
        let stream_id = ticket_id.to_string();
        let mut state = StreamState::new(ticket_id, events.load_events(&stream_id).await?);
        let before = state.ticket.clone();
        let current_sequence = state.last_sequence();
        let decision = state.decide(commands.to_vec(), metadata, services)?;
        if !decision.replayed && decision.appended > 0 {
            let sealed = self.sealed_pending(ticket_id, &state, None).await?;
            let context = EventStoreAggregateContext {
                aggregate_id: stream_id,
                aggregate: before,
                current_sequence,
                current_snapshot: None,
            };
            match events.commit(sealed, context, metadata.to_map()).await {
                Ok(_) => self.notify_appended(),
                Err(AggregateError::AggregateConflict) => return Ok(None),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Some(self.outcome(ticket_id, &decision).await?))
    }

    /// Returns the decided events of `state` with their personal texts sealed under the key of
    /// the ticket's resident: `known_key` when it is that key, read from the database otherwise.
    async fn sealed_pending(
        &self,
        ticket_id: Uuid,
        state: &StreamState,
        known_key: Option<&(String, ResidentKey)>,
    ) -> Result<Vec<TicketEvent>, StoreError> {
        let mut new_events: Vec<TicketEvent> =
            state.pending().iter().map(|envelope| envelope.payload.clone()).collect();
        let subject = personal::key_subject(ticket_id, state.stored_events().chain(&new_events));
        self.seal_new_events(ticket_id, subject, known_key, &mut new_events).await?;
        Ok(new_events)
    }

    /// Appends `events` to a ticket stream whose last sequence is `expected_sequence`, without
    /// deciding them: for tools that copy a log. Fails with [`CommandError::Conflict`] if the
    /// stream has moved on, and is not retried.
    pub async fn append_events(
        &self,
        ticket_id: Uuid,
        expected_sequence: usize,
        events: Vec<TicketEvent>,
        metadata: &CommandMetadata,
    ) -> Result<CommandOutcome, CommandError> {
        let context = EventStoreAggregateContext {
            aggregate_id: ticket_id.to_string(),
            aggregate: Ticket::default(),
            current_sequence: expected_sequence,
            current_snapshot: None,
        };
        let appended = events.len();
        let committed = match self.backend.as_ref() {
            Backend::Postgres { events: store, .. } => {
                store.commit(events, context, metadata.to_map()).await
            }
            Backend::Sqlite { events: store, .. } => {
                store.commit(events, context, metadata.to_map()).await
            }
        };
        let committed = committed?;
        self.notify_appended();
        let last_sequence = committed
            .last()
            .map_or(expected_sequence, |envelope| envelope.sequence);
        let reported_sequence = (last_sequence > 0).then_some(last_sequence);
        let decision = Decision {
            reported_sequence,
            appended,
            replayed: false,
        };
        Ok(self.outcome(ticket_id, &decision).await?)
    }

    async fn outcome(
        &self,
        ticket_id: Uuid,
        decision: &Decision,
    ) -> Result<CommandOutcome, StoreError> {
        let event_keys: Vec<(String, i64)> = decision
            .reported_sequence
            .and_then(|sequence| i64::try_from(sequence).ok())
            .map(|sequence| (ticket_id.to_string(), sequence))
            .into_iter()
            .collect();
        let checkpoints = self.checkpoints_at(&event_keys).await?;
        outcome_from(ticket_id, decision, &checkpoints)
    }
}

/// The PostgreSQL pool and the groups that a command's load and append join.
struct CommandGroups<'a> {
    pool: &'a PgPool,
    loads: &'a Group<String, Result<LoadedStream, StoreError>>,
    appends: &'a Group<AppendRequest, Result<Vec<LogCheckpoint>, PersistenceError>>,
}

/// Returns the error of a command whose group ended without a result for it (its task
/// panicked). An append may then have been stored, so the command is resent safely only with
/// its idempotency key.
fn group_lost(step: &str) -> StoreError {
    StoreError::Database(format!("{step} failed: the group it ran in ended without a result").into())
}

/// Waits before attempt `attempt + 1` of a command whose stream changed concurrently. A random
/// pause spreads the retries of writers that collided, so that a burst on one ticket is not
/// decided one winner per round.
async fn retry_pause(attempt: u32) {
    tracing::debug!(attempt, "stream changed concurrently; retrying");
    let jitter = Uuid::new_v4().as_u128() % (5 * u128::from(attempt));
    tokio::time::sleep(std::time::Duration::from_millis(jitter as u64)).await;
}

pub(crate) fn outcome_from(
    ticket_id: Uuid,
    decision: &Decision,
    checkpoints: &HashMap<(String, i64), LogCheckpoint>,
) -> Result<CommandOutcome, StoreError> {
    let last_checkpoint = match decision.reported_sequence {
        None => LogCheckpoint::START,
        Some(sequence) => {
            let key = (
                ticket_id.to_string(),
                i64::try_from(sequence).unwrap_or(i64::MAX),
            );
            *checkpoints.get(&key).ok_or_else(|| {
                StoreError::Database(
                    format!("event {sequence} of ticket {ticket_id} is missing after append")
                        .into(),
                )
            })?
        }
    };
    Ok(CommandOutcome {
        ticket_id,
        last_position: last_checkpoint.position,
        last_checkpoint,
        appended: decision.appended,
        replayed: decision.replayed,
    })
}
