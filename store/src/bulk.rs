//! Bulk execution for imports: many command lists, with the events of many streams appended in
//! one transaction.

use std::collections::HashMap;

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, SerializedEvent};
use cqrs_es::{AggregateError, EventEnvelope, EventStore};
use futures::StreamExt;
use opencity_domain::{Ticket, TicketCommand, TicketError, TicketServices};
use uuid::Uuid;

use crate::chain::EventText;
use crate::error::{CommandError, StoreError};
use crate::execute::{outcome_from, Decision, LoadedStream, StreamState};
use crate::model::{CommandMetadata, CommandOutcome, LogCheckpoint};
use crate::personal::{self, needs_sealing};
use crate::store::{Backend, Store};

/// Streams whose events a bulk execution appends in one transaction.
const BULK_STREAMS_PER_TRANSACTION: usize = 100;

/// Streams loaded or executed at the same time by a bulk execution.
const BULK_PARALLELISM: usize = 8;

/// One command list of a bulk execution: the ticket, its commands and their metadata.
pub type BulkItem = (Uuid, Vec<TicketCommand>, CommandMetadata);

impl Store {
    /// Executes many command lists, faster than one [`execute`](Store::execute) each: the
    /// events of up to 100 streams are appended in one transaction. Lists for the same ticket
    /// run in their order in the batch, with the semantics of `execute` each: a domain error
    /// rejects only its own list, and idempotency keys are honoured, also between lists of
    /// the batch. Personal texts are sealed as `execute` seals them, with the keys of a chunk
    /// fetched together. Returns one result per item, in the batch's order.
    ///
    /// A chunk of tickets that each start with their registration, as an import of new
    /// records, is decided without reading its streams. If one of them exists, its append
    /// fails with nothing stored, and the chunk is decided again on the loaded streams.
    ///
    /// If a shared transaction fails (a concurrent writer, a deadlock, a lost connection), its
    /// items are executed again one by one, so every item ends with its own result.
    pub async fn execute_many(
        &self,
        batch: Vec<BulkItem>,
        services: &TicketServices,
    ) -> Vec<Result<CommandOutcome, CommandError>> {
        let groups = group_by_ticket(batch);

        // Every chunk returns one result per item, tagged with the item's index in the batch.
        let mut results = Vec::new();
        for chunk in groups.chunks(BULK_STREAMS_PER_TRANSACTION) {
            // An existing stream fails the append of new streams on its first sequence.
            let new_streams = chunk.iter().all(TicketGroup::starts_with_registration);
            let streams = if new_streams { Streams::New } else { Streams::Load };
            let attempt = match self.execute_chunk(chunk, services, streams).await {
                Err(error) if new_streams => {
                    tracing::debug!(cause = %error, streams = chunk.len(), "bulk append as new streams failed; loading them");
                    self.execute_chunk(chunk, services, Streams::Load).await
                }
                attempt => attempt,
            };
            match attempt {
                Ok(chunk_results) => results.extend(chunk_results),
                Err(error) => {
                    tracing::info!(cause = %error, streams = chunk.len(), "bulk append failed; executing one by one");
                    results.extend(self.execute_one_by_one(chunk, services).await);
                }
            }
        }

        results.sort_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, result)| result).collect()
    }

    /// Decides every item of `chunk` and appends all their events in one transaction. Any
    /// store failure fails the whole chunk, with nothing appended. With [`Streams::New`] the
    /// streams are taken to be empty without a read, and an existing one fails the append.
    async fn execute_chunk(
        &self,
        chunk: &[TicketGroup],
        services: &TicketServices,
        mode: Streams,
    ) -> Result<Vec<(usize, Result<CommandOutcome, CommandError>)>, BulkError> {
        let mut streams = match mode {
            Streams::New => HashMap::new(),
            Streams::Load => self.load_streams(chunk).await?,
        };

        let mut decided: Vec<(usize, Uuid, Result<Decision, TicketError>)> = Vec::new();
        // The decided events of each stream that has any, with the stream's key subject.
        let mut pending: Vec<(Uuid, String, Vec<EventEnvelope<Ticket>>)> = Vec::new();
        // The hash of the last stored event of each stream that has one, to chain the new events.
        let mut heads: HashMap<String, String> = HashMap::new();
        for group in chunk {
            let loaded = streams.remove(&group.ticket_id).unwrap_or_default();
            if !loaded.head_hash.is_empty() {
                heads.insert(group.ticket_id.to_string(), loaded.head_hash);
            }
            let mut state = StreamState::new(group.ticket_id, loaded.events);
            for (index, commands, metadata) in &group.items {
                let decision = state.decide(commands.clone(), metadata, services);
                decided.push((*index, group.ticket_id, decision));
            }
            if !state.pending().is_empty() {
                let subject = personal::key_subject(
                    group.ticket_id,
                    state.stored_events().chain(state.pending().iter().map(|envelope| &envelope.payload)),
                );
                pending.push((group.ticket_id, subject, state.into_pending()));
            }
        }
        // Only its append proves that a stream taken to be new is new. If a ticket appends
        // nothing or a command is rejected, a stored stream could give another result (an
        // earlier import's idempotency key, say), so the chunk is loaded instead.
        if matches!(mode, Streams::New) {
            let rejected = decided.iter().any(|(_, _, decision)| decision.is_err());
            if rejected || pending.len() < chunk.len() {
                return Err(BulkError::UnconfirmedNew);
            }
        }

        let mut checkpoints = self.seal_and_append(pending, &heads).await?;

        // Items replayed from events stored earlier (a repeated idempotency key) report the
        // checkpoints of those events.
        let earlier: Vec<(String, i64)> = decided
            .iter()
            .filter_map(|(_, ticket_id, decision)| {
                let sequence = decision.as_ref().ok()?.reported_sequence?;
                Some((ticket_id.to_string(), i64::try_from(sequence).ok()?))
            })
            .filter(|key| !checkpoints.contains_key(key))
            .collect();
        checkpoints.extend(self.checkpoints_at(&earlier).await?);

        let mut results = Vec::with_capacity(decided.len());
        for (index, ticket_id, decision) in decided {
            let result = match decision {
                Ok(decision) => {
                    outcome_from(ticket_id, &decision, &checkpoints).map_err(CommandError::Store)
                }
                Err(error) => Err(CommandError::Domain(error)),
            };
            results.push((index, result));
        }
        Ok(results)
    }

    /// Executes each item of `chunk` with [`execute`](Store::execute): the items of one ticket in
    /// order, tickets in parallel.
    async fn execute_one_by_one(
        &self,
        chunk: &[TicketGroup],
        services: &TicketServices,
    ) -> Vec<(usize, Result<CommandOutcome, CommandError>)> {
        // The futures are built before they are streamed, because rustc cannot prove a stream
        // that maps borrowed items in a closure `Send`, and the import spawns this future.
        let runs: Vec<_> = chunk
            .iter()
            .map(|group| async move {
                let mut results = Vec::with_capacity(group.items.len());
                for (index, commands, metadata) in &group.items {
                    let result = self
                        .execute(group.ticket_id, commands.clone(), metadata, services)
                        .await;
                    results.push((*index, result));
                }
                results
            })
            .collect();
        let per_group: Vec<Vec<(usize, Result<CommandOutcome, CommandError>)>> =
            futures::stream::iter(runs).buffer_unordered(BULK_PARALLELISM).collect().await;
        per_group.into_iter().flatten().collect()
    }

    /// Loads the streams of a chunk: in one query on PostgreSQL, a few at a time through the
    /// repository on SQLite. Streams without events are missing from the map. The head hashes
    /// stay empty on SQLite, where the repository reads them inside its write transaction.
    async fn load_streams(&self, chunk: &[TicketGroup]) -> Result<HashMap<Uuid, LoadedStream>, BulkError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let ids: Vec<String> = chunk.iter().map(|group| group.ticket_id.to_string()).collect();
                let mut streams = crate::postgres::load_ticket_streams(pool, &ids).await?;
                Ok(chunk
                    .iter()
                    .filter_map(|group| Some((group.ticket_id, streams.remove(&group.ticket_id.to_string())?)))
                    .collect())
            }
            Backend::Sqlite { events, .. } => {
                // Built before streaming, as in `execute_one_by_one`.
                let loads: Vec<_> = chunk
                    .iter()
                    .map(|group| async move {
                        let events = events.load_events(&group.ticket_id.to_string()).await?;
                        Ok((group.ticket_id, LoadedStream { events, ..LoadedStream::default() }))
                    })
                    .collect();
                let loaded: Vec<Result<(Uuid, LoadedStream), BulkError>> =
                    futures::stream::iter(loads).buffered(BULK_PARALLELISM).collect().await;
                loaded.into_iter().collect()
            }
        }
    }

    /// Seals the texts of `pending` (ticket, key subject, decided events) with one key lookup
    /// for all their subjects and appends the events atomically: in one statement on
    /// PostgreSQL, through the repository in one transaction on SQLite. Returns the checkpoints
    /// of the appended events where the backend reports them (PostgreSQL), by (stream id,
    /// sequence).
    async fn seal_and_append(
        &self,
        mut pending: Vec<(Uuid, String, Vec<EventEnvelope<Ticket>>)>,
        heads: &HashMap<String, String>,
    ) -> Result<HashMap<(String, i64), LogCheckpoint>, BulkError> {
        let subjects: Vec<String> = pending
            .iter_mut()
            .filter_map(|(_, subject, envelopes)| {
                needs_sealing(envelopes.iter_mut().map(|envelope| &mut envelope.payload)).then_some(&*subject)
            })
            .cloned()
            .collect();
        let keys = self.keys_in_force(&subjects).await?;
        for (ticket_id, subject, envelopes) in &mut pending {
            if let Some(key) = keys.get(subject) {
                let stream_id = ticket_id.to_string();
                for envelope in envelopes.iter_mut() {
                    personal::seal_events(key, &stream_id, std::slice::from_mut(&mut envelope.payload));
                }
            }
        }
        // Only streams with decided events are pending.
        if pending.is_empty() {
            return Ok(HashMap::new());
        }
        let envelopes = pending.iter().flat_map(|(_, _, envelopes)| envelopes);

        // PostgreSQL takes the events as text written straight from the events. The cqrs-es
        // repository on SQLite takes them as `serde_json::Value`s.
        let checkpoints = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let texts = envelopes.map(EventText::from_envelope).collect::<Result<Vec<_>, _>>()?;
                crate::postgres::append_many(pool, texts, heads).await?
            }
            Backend::Sqlite { repository, .. } => {
                let serialized = envelopes.map(SerializedEvent::try_from).collect::<Result<Vec<_>, _>>()?;
                repository.persist::<Ticket>(&serialized, None).await?;
                HashMap::new()
            }
        };
        self.notify_appended();
        Ok(checkpoints)
    }
}

/// The items of a bulk execution addressed to one ticket, with their indexes in the batch.
struct TicketGroup {
    ticket_id: Uuid,
    items: Vec<(usize, Vec<TicketCommand>, CommandMetadata)>,
}

impl TicketGroup {
    /// Returns true when the ticket's first command registers it, so that its stream is
    /// expected to be new.
    fn starts_with_registration(&self) -> bool {
        let first = self.items.first().and_then(|(_, commands, _)| commands.first());
        matches!(first, Some(TicketCommand::Register(_)))
    }
}

/// The source of a bulk chunk's stream states.
#[derive(Clone, Copy, Debug)]
enum Streams {
    /// Reads them.
    Load,
    /// Takes them to be empty: every ticket of the chunk starts with its registration.
    New,
}

/// Groups a batch by ticket, keeping the order of first appearance and the order within each
/// ticket.
fn group_by_ticket(batch: Vec<BulkItem>) -> Vec<TicketGroup> {
    let mut groups: Vec<TicketGroup> = Vec::new();
    let mut group_of: HashMap<Uuid, usize> = HashMap::new();
    for (index, (ticket_id, commands, metadata)) in batch.into_iter().enumerate() {
        let group = *group_of.entry(ticket_id).or_insert_with(|| {
            groups.push(TicketGroup {
                ticket_id,
                items: Vec::new(),
            });
            groups.len() - 1
        });
        groups[group].items.push((index, commands, metadata));
    }
    groups
}

/// The failure that abandons a bulk transaction. Its items are then executed one by one.
#[derive(Debug, thiserror::Error)]
enum BulkError {
    #[error(transparent)]
    Aggregate(#[from] AggregateError<TicketError>),
    #[error(transparent)]
    Persistence(#[from] PersistenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chunk decided as new streams has a ticket that appends nothing or a rejected command.
    #[error("a ticket taken to be new appended nothing or had a command rejected")]
    UnconfirmedNew,
}
