//! The projection runner: reads the global log after its checkpoint and folds each batch into
//! ticket views. It commits the changed views with the new checkpoint in one transaction of the
//! store's own database, so every event counts exactly once, also after a crash. Committed views
//! are mirrored in memory for queries and published to subscribers.
//!
//! Several servers may share one PostgreSQL database. Each folds the log into its own memory,
//! so queries and subscriptions on every server see every event, but only the holder of the
//! projection lease (a session advisory lock) writes the tables. When the holder dies, its
//! session ends, the lock is free, and another server takes it within [`LEASE_RETRY`].
//!
//! A commit never moves the stored checkpoint backwards: it locks the checkpoint row and skips
//! a batch the tables already contain. So a brief second writer is harmless, such as a server
//! whose lease was lost while a batch was in flight, or an importer catching up beside a server.
//!
//! `opencity projections rebuild` replaces the tables and bumps their generation. A runner
//! notices the new generation and reloads its memory from the new tables without moving its
//! checkpoint backwards and without publishing an event twice.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opencity_domain::TicketEvent;
use opencity_store::{
    BackendKind, DbPool, LogCheckpoint, Store, StoreError, StoredEvent, WriteTransaction,
};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch, Mutex, RwLock};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::fold::TicketView;
use crate::reference::{ReferenceEntity, ReferenceIndex};
use crate::stats::StatsIndex;

/// Name of the ticket-view projection in the checkpoint table.
pub const TICKET_VIEWS: &str = "ticket_views";

const BATCH_SIZE: usize = 1_000;
/// How often an idle runner looks at the log without a notification.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often a server without the lease tries to take it, and the holder checks its session.
pub const LEASE_RETRY: Duration = Duration::from_secs(1);
/// Maximum pause between attempts while the database is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The advisory lock key of the ticket-view projection lease.
pub const LEASE_KEY: i64 = 0x6f63_7476; // "octv"
/// The advisory lock key that a table swap takes exclusively and commits take shared.
pub(crate) const TABLES_KEY: i64 = 0x6f63_7473; // "octs"

/// An event that the projections have applied, as published to subscribers.
#[derive(Clone, Debug)]
pub struct AppliedEvent {
    pub event: Arc<StoredEvent>,
    pub ticket_id: Uuid,
    /// The payload with its personal data opened, and whether any of it was erased. The first
    /// subscriber that needs it fills it, so a thousand subscribers of one event cost one key
    /// lookup.
    pub opened_payload: Arc<tokio::sync::OnceCell<(serde_json::Value, bool)>>,
}

/// The applied events in log order, each once, from the moment [`ReadModel::follow`] was called.
///
/// Live events come through a broadcast channel of 4,096 events. A follower that falls further
/// behind (a slow WebSocket client, a delivery that waits for the database) learns from the
/// channel how many events it lost. It then reads the log from the last event it returned up to
/// the projections' checkpoint at that moment, and goes back to the channel, skipping what it has
/// already returned. The projections publish after moving the checkpoint, so every event past
/// that checkpoint is still to come through the channel.
pub struct AppliedFollower {
    read_model: Arc<ReadModel>,
    receiver: broadcast::Receiver<AppliedEvent>,
    /// The checkpoint of the last event returned, or of the start.
    delivered: LogCheckpoint,
    /// The progress of a catch-up from the log: how far it has been read and where to stop.
    replay: Option<Replay>,
    missed: VecDeque<AppliedEvent>,
}

#[derive(Clone, Copy, Debug)]
struct Replay {
    read: LogCheckpoint,
    until: LogCheckpoint,
}

impl AppliedFollower {
    /// Returns the next applied event, or `None` once the read model is gone. A failing log
    /// read is logged and retried, so the follower stalls rather than skips. Cancel-safe: a
    /// future dropped before it completes has returned nothing and changed nothing that counts.
    pub async fn next(&mut self) -> Option<AppliedEvent> {
        let mut failures = 0u32;
        loop {
            if let Some(event) = self.try_next() {
                return Some(event);
            }
            if let Some(replay) = self.replay {
                if replay.read >= replay.until {
                    self.replay = None;
                    continue;
                }
                match self.read_model.store.read_log(replay.read, BATCH_SIZE).await {
                    Ok(events) => {
                        failures = 0;
                        self.take_missed(replay, events);
                    }
                    Err(error) => {
                        failures += 1;
                        let pause = retry_pause(failures);
                        tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "reading the events a subscriber missed failed; retrying");
                        tokio::time::sleep(pause).await;
                    }
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(event) => {
                    if let Some(event) = self.deliver(event) {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(skipped)) => self.start_replay(skipped),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Returns the next applied event and up to `max - 1` more that are ready without waiting,
    /// or `None` once the read model is gone. Cancel-safe like [`next`](Self::next).
    pub async fn next_batch(&mut self, max: usize) -> Option<Vec<AppliedEvent>> {
        let mut batch = vec![self.next().await?];
        while batch.len() < max {
            let Some(event) = self.try_next() else { break };
            batch.push(event);
        }
        Some(batch)
    }

    /// Returns an event that is ready without waiting for the channel or reading the log.
    fn try_next(&mut self) -> Option<AppliedEvent> {
        while let Some(event) = self.missed.pop_front() {
            if let Some(event) = self.deliver(event) {
                return Some(event);
            }
        }
        if self.replay.is_some() {
            return None;
        }
        loop {
            match self.receiver.try_recv() {
                Ok(event) => {
                    if let Some(event) = self.deliver(event) {
                        return Some(event);
                    }
                }
                Err(TryRecvError::Lagged(skipped)) => {
                    self.start_replay(skipped);
                    return None;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
    }

    /// Returns `event` and marks it delivered, or `None` when it is not past the last one
    /// returned (the channel repeats what a catch-up from the log already returned).
    fn deliver(&mut self, event: AppliedEvent) -> Option<AppliedEvent> {
        if event.event.checkpoint() <= self.delivered {
            return None;
        }
        self.delivered = event.event.checkpoint();
        Some(event)
    }

    /// Starts reading the log after the channel dropped `skipped` events this follower had
    /// not received.
    fn start_replay(&mut self, skipped: u64) {
        let until = self.read_model.checkpoint();
        tracing::info!(
            skipped,
            from = self.delivered.position,
            until = until.position,
            "subscriber fell behind the channel; reading the missed events from the log"
        );
        self.replay = Some(Replay { read: self.delivered, until });
    }

    /// Queues the ticket events of one page of the log that are past what was returned and not
    /// past the end of the replay, and moves the replay on.
    fn take_missed(&mut self, replay: Replay, events: Vec<StoredEvent>) {
        let Some(last) = events.last() else {
            // The log has nothing more up to the checkpoint: nothing is missing.
            self.replay = None;
            return;
        };
        let read = last.checkpoint().min(replay.until);
        for event in events {
            let checkpoint = event.checkpoint();
            if checkpoint > replay.until {
                break;
            }
            if checkpoint <= self.delivered {
                continue;
            }
            if let Some(ticket_id) = ticket_stream_id(&event) {
                self.missed.push_back(AppliedEvent {
                    event: Arc::new(event),
                    ticket_id,
                    opened_payload: Arc::default(),
                });
            }
        }
        self.replay = Some(Replay { read, until: replay.until });
    }
}

/// Returns the pause before a follower's next attempt after `failures` failed log reads in a row.
fn retry_pause(failures: u32) -> Duration {
    (Duration::from_millis(100) * 2u32.saturating_pow(failures.min(6))).min(MAX_BACKOFF)
}

/// Errors of the projection runner.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored view of ticket {ticket_id} is not valid JSON: {source}")]
    CorruptView { ticket_id: String, source: serde_json::Error },
    #[error("event at position {position} cannot be read: {source}")]
    UnreadableEvent { position: i64, source: serde_json::Error },
    #[error("the task committing a batch of views failed: {0}")]
    CommitTask(String),
}

/// The ticket read model: durable tables plus their in-memory mirror.
pub struct ReadModel {
    store: Store,
    views: RwLock<BTreeMap<Uuid, TicketView>>,
    /// The compact form of `views` that SLA statistics and overdue counters read.
    stats: RwLock<StatsIndex>,
    by_external_id: RwLock<HashMap<String, Uuid>>,
    reference: RwLock<ReferenceIndex>,
    checkpoint: watch::Sender<LogCheckpoint>,
    applied: broadcast::Sender<AppliedEvent>,
    /// True while this process may write the tables (it holds the lease, or runs alone).
    leader: watch::Sender<bool>,
    /// Set when the lease was just taken: the tables may lag behind memory.
    flush_pending: AtomicBool,
    /// Generation of the tables the memory was loaded from.
    generation: AtomicI64,
    /// Serializes batches between the run loop, `catch_up` and reloads, and carries the batch
    /// read ahead and the commit in flight from one step to the next.
    stepping: Mutex<Stepping>,
}

/// The state one step leaves to the next: the batch read ahead and the commit in flight.
#[derive(Default)]
struct Stepping {
    prefetched: Option<Prefetched>,
    in_flight: Option<InFlight>,
}

/// A folded batch whose commit runs on a task of its own. It is published once the commit
/// has ended.
struct InFlight {
    commit: JoinHandle<Result<CommitOutcome, ProjectionError>>,
    batch: FoldedBatch,
    checkpoint: LogCheckpoint,
}

/// The result of [`ReadModel::settle`].
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    Nothing,
    Published,
    Reloaded,
}

/// Events read ahead: the log after `after`.
struct Prefetched {
    after: LogCheckpoint,
    events: Vec<StoredEvent>,
}

/// The result of a commit attempt.
enum CommitOutcome {
    Written,
    /// The stored checkpoint is already at or past the batch: nothing was written.
    AlreadyStored,
    /// The tables were replaced by a rebuild: nothing was written, memory must be reloaded.
    GenerationChanged,
}

/// A batch folded on top of the current memory, not yet published.
#[derive(Default)]
struct FoldedBatch {
    changed: BTreeMap<Uuid, TicketView>,
    changed_reference: Vec<ReferenceEntity>,
    decoded: Vec<(Uuid, StoredEvent)>,
}

impl ReadModel {
    /// Creates the read-model tables if needed and loads the committed views into memory. The
    /// read model starts as the writer of its tables; [`run`](Self::run) on PostgreSQL writes
    /// only while it holds the lease.
    pub async fn open(store: Store) -> Result<Arc<ReadModel>, ProjectionError> {
        create_tables(store.pool()).await?;
        let loaded = load_state(store.pool()).await?;
        let (applied, _) = broadcast::channel(4_096);
        let stats = StatsIndex::from_views(loaded.views.values());
        Ok(Arc::new(ReadModel {
            store,
            views: RwLock::new(loaded.views),
            stats: RwLock::new(stats),
            by_external_id: RwLock::new(loaded.by_external_id),
            reference: RwLock::new(loaded.reference),
            checkpoint: watch::channel(loaded.checkpoint).0,
            applied,
            leader: watch::channel(true).0,
            flush_pending: AtomicBool::new(false),
            generation: AtomicI64::new(loaded.generation),
            stepping: Mutex::new(Stepping::default()),
        }))
    }

    pub async fn views(&self) -> tokio::sync::RwLockReadGuard<'_, BTreeMap<Uuid, TicketView>> {
        self.views.read().await
    }

    /// Returns the statistics index, which changes together with the views.
    pub async fn stats(&self) -> tokio::sync::RwLockReadGuard<'_, StatsIndex> {
        self.stats.read().await
    }

    pub async fn view(&self, id: Uuid) -> Option<TicketView> {
        self.views.read().await.get(&id).cloned()
    }

    pub async fn id_for_external(&self, external_id: &str) -> Option<Uuid> {
        self.by_external_id.read().await.get(external_id).copied()
    }

    pub async fn reference(&self) -> tokio::sync::RwLockReadGuard<'_, ReferenceIndex> {
        self.reference.read().await
    }

    /// Returns the checkpoint of the last applied batch.
    pub fn checkpoint(&self) -> LogCheckpoint {
        *self.checkpoint.borrow()
    }

    /// Returns a receiver that changes whenever a batch is applied.
    pub fn watch_checkpoint(&self) -> watch::Receiver<LogCheckpoint> {
        self.checkpoint.subscribe()
    }

    /// Returns the events applied from now on. A follower loses none: when it falls behind the
    /// projections by more than the channel's capacity, it reads the events it missed from the log.
    pub fn follow(self: &Arc<Self>) -> AppliedFollower {
        // Subscribe first: an event published between the two calls is at or before the
        // checkpoint read below and is skipped, instead of being missed with no trace.
        let receiver = self.applied.subscribe();
        AppliedFollower {
            read_model: Arc::clone(self),
            receiver,
            delivered: self.checkpoint(),
            replay: None,
            missed: VecDeque::new(),
        }
    }

    /// Returns true while this process writes the read-model tables.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Returns a receiver that changes when this process takes or loses the lease.
    pub fn watch_leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// Returns the generation of the tables in memory; a rebuild increases it.
    pub fn generation(&self) -> i64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Applies every event committed so far; returns how many were applied.
    pub async fn catch_up(&self) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            let applied = self.step().await?;
            if applied == 0 {
                return Ok(total);
            }
            total += applied;
        }
    }

    /// Follows the log until `shutdown` fires, logging and retrying after errors. On PostgreSQL
    /// it writes the tables only while it holds the projection lease, and wakes on the
    /// notifications of every server's appends.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let shared = self.store.backend() == BackendKind::Postgres;
        if shared {
            self.leader.send_replace(false);
        }
        tracing::info!(checkpoint = ?self.checkpoint(), "projection runner started");
        let local_appends = self.store.local_appends();
        let mut lease = Lease::default();
        let mut listener: Option<PgListener> = None;
        let mut backoff = Duration::ZERO;
        let mut next_lease_check = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if shared && tokio::time::Instant::now() >= next_lease_check {
                next_lease_check = tokio::time::Instant::now() + LEASE_RETRY;
                let leader = lease.refresh(&self.store).await;
                if leader != self.is_leader() {
                    if leader {
                        tracing::info!("projection lease taken: this server writes the read models");
                        self.flush_pending.store(true, Ordering::SeqCst);
                    } else {
                        tracing::warn!("projection lease lost: another server writes the read models");
                    }
                    self.leader.send_replace(leader);
                }
                if listener.is_none() {
                    listener = self.store.listen_appends().await.unwrap_or_else(|error| {
                        tracing::debug!(%error, "listening for appends failed; polling");
                        None
                    });
                }
            }

            let woken = local_appends.notified();
            match self.step().await {
                Ok(0) => {
                    if !backoff.is_zero() {
                        tracing::info!("database reachable again; projections resumed");
                        backoff = Duration::ZERO;
                    }
                    let notification = async {
                        match listener.as_mut() {
                            Some(listener) => {
                                if listener.recv().await.is_err() {
                                    // Reconnects on the next call; wait a little first.
                                    tokio::time::sleep(LEASE_RETRY).await;
                                }
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        _ = woken => {}
                        _ = notification => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => {
                    if !backoff.is_zero() {
                        tracing::info!("database reachable again; projections resumed");
                        backoff = Duration::ZERO;
                    }
                }
                Err(error) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(250), MAX_BACKOFF);
                    tracing::error!(
                        error.cause_chain = ?error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "projection batch failed (database unreachable?); retrying"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        if self.is_leader() && shared {
            self.leader.send_replace(false);
        }
        drop(lease);
        tracing::info!("projection runner stopped");
    }

    /// Reads one batch after the checkpoint, commits it when this process writes the tables,
    /// then updates memory and subscribers.
    ///
    /// Behind the log, steps overlap. A full batch commits on a task of its own while the next
    /// step reads and folds the next batch on top of it, and that step publishes the first batch
    /// once its commit has ended. A step that finds the log's end publishes every batch before it
    /// returns, so when [`catch_up`](Self::catch_up) returns, memory contains the whole log.
    async fn step(&self) -> Result<usize, ProjectionError> {
        let mut stepping = self.stepping.lock().await;
        let stepping = &mut *stepping;
        // A rebuild may have swapped the tables while the log was idle. A commit in flight
        // finds out by itself.
        if stepping.in_flight.is_none() && load_generation(self.store.pool()).await? != self.generation() {
            self.reload().await?;
        }
        if self.is_leader() && self.flush_pending.load(Ordering::SeqCst) {
            if self.settle(stepping).await? == Settled::Reloaded {
                return Ok(0);
            }
            self.flush().await?;
            self.flush_pending.store(false, Ordering::SeqCst);
        }

        let after = stepping.in_flight.as_ref().map_or_else(|| self.checkpoint(), |in_flight| in_flight.checkpoint);
        // A batch read during the previous step is the log after that checkpoint: the read is
        // gap-safe, so a later read could only be longer, never different.
        let events = match stepping.prefetched.take() {
            Some(prefetched) if prefetched.after == after => prefetched.events,
            _ => match self.store.read_log(after, BATCH_SIZE).await {
                Ok(events) => events,
                Err(error) => return self.settle_and_fail(stepping, error.into()).await,
            },
        };
        let Some(last) = events.last() else {
            self.settle(stepping).await?;
            return Ok(0);
        };
        let new_checkpoint = last.checkpoint();
        let read = events.len();
        let behind = read == BATCH_SIZE;
        // Behind the log: the next batch is read and decoded on another task meanwhile.
        let read_ahead = behind.then(|| {
            let store = self.store.clone();
            tokio::spawn(async move { store.read_log(new_checkpoint, BATCH_SIZE).await })
        });
        let folded = {
            let views = self.views.read().await;
            let reference = self.reference.read().await;
            let in_flight = stepping.in_flight.as_ref().map(|in_flight| &in_flight.batch);
            fold_batch(&views, &reference, in_flight, events)
        };
        let batch = match folded {
            Ok(batch) => batch,
            Err(error) => return self.settle_and_fail(stepping, error).await,
        };

        let mut committing = None;
        if self.is_leader() {
            let rows = match TableRows::new(batch.changed.values(), &batch.changed_reference) {
                Ok(rows) => rows,
                Err(error) => return self.settle_and_fail(stepping, error).await,
            };
            // The batch was folded on top of the one in flight, so it commits only after it.
            let previous = self.finish_commit(stepping).await?;
            if let Some((_, CommitOutcome::GenerationChanged)) = previous {
                self.reload().await?;
                return Ok(0);
            }
            committing = Some(self.start_commit(rows, new_checkpoint));
            if let Some((earlier, _)) = previous {
                self.publish(earlier.batch, earlier.checkpoint, LogCheckpoint::START).await;
            }
        } else {
            // This process lost the lease with a commit in flight.
            self.settle(stepping).await?;
        }

        if let Some(read_ahead) = read_ahead {
            match read_ahead.await {
                Ok(Ok(next)) if !next.is_empty() => {
                    stepping.prefetched = Some(Prefetched { after: new_checkpoint, events: next });
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, after = new_checkpoint.position, "reading ahead failed, so the next step reads again");
                }
                Err(error) => {
                    tracing::debug!(%error, after = new_checkpoint.position, "the read-ahead task failed, so the next step reads again");
                }
            }
        }

        match committing {
            Some(commit) => {
                stepping.in_flight = Some(InFlight { commit, batch, checkpoint: new_checkpoint });
                if !behind || stepping.prefetched.is_none() {
                    self.settle(stepping).await?;
                }
            }
            None => self.publish(batch, new_checkpoint, LogCheckpoint::START).await,
        }
        Ok(read)
    }

    /// Starts committing `rows` with `checkpoint` on a task of its own.
    fn start_commit(&self, rows: TableRows, checkpoint: LogCheckpoint) -> JoinHandle<Result<CommitOutcome, ProjectionError>> {
        let store = self.store.clone();
        let generation = self.generation();
        tokio::spawn(async move { commit_rows(&store, &rows, checkpoint, generation).await })
    }

    /// Waits for the commit in flight, if any, and returns it with its outcome, unpublished.
    async fn finish_commit(&self, stepping: &mut Stepping) -> Result<Option<(InFlight, CommitOutcome)>, ProjectionError> {
        let Some(mut in_flight) = stepping.in_flight.take() else {
            return Ok(None);
        };
        let outcome = (&mut in_flight.commit).await.map_err(|error| ProjectionError::CommitTask(error.to_string()))??;
        Ok(Some((in_flight, outcome)))
    }

    /// Settles the commit in flight (see [`settle`](Self::settle)), then returns `error`, so that
    /// a failed step leaves no committed batch unpublished.
    async fn settle_and_fail(&self, stepping: &mut Stepping, error: ProjectionError) -> Result<usize, ProjectionError> {
        self.settle(stepping).await?;
        Err(error)
    }

    /// Waits for the commit in flight, if any, and publishes its batch, or reloads memory when
    /// the tables were replaced meanwhile.
    async fn settle(&self, stepping: &mut Stepping) -> Result<Settled, ProjectionError> {
        match self.finish_commit(stepping).await? {
            None => Ok(Settled::Nothing),
            Some((_, CommitOutcome::GenerationChanged)) => {
                self.reload().await?;
                Ok(Settled::Reloaded)
            }
            Some((in_flight, _)) => {
                self.publish(in_flight.batch, in_flight.checkpoint, LogCheckpoint::START).await;
                Ok(Settled::Published)
            }
        }
    }

    /// Puts a folded batch into memory, moves the checkpoint and sends every event after
    /// `published` to subscribers.
    async fn publish(&self, batch: FoldedBatch, checkpoint: LogCheckpoint, published: LogCheckpoint) {
        {
            let mut views = self.views.write().await;
            self.stats.write().await.update(batch.changed.values());
            let mut external = self.by_external_id.write().await;
            for (id, view) in batch.changed {
                if let Some(external_id) = &view.external_id {
                    external.insert(external_id.clone(), id);
                }
                views.insert(id, view);
            }
            let mut reference = self.reference.write().await;
            for entity in batch.changed_reference {
                reference.insert(entity);
            }
        }
        self.checkpoint.send_replace(checkpoint);
        for (ticket_id, event) in batch.decoded {
            if event.checkpoint() <= published {
                continue;
            }
            // A send error only means that no subscriber is connected.
            let _ = self.applied.send(AppliedEvent { event: Arc::new(event), ticket_id, opened_payload: Arc::default() });
        }
    }

    /// Writes what memory holds beyond the stored checkpoint: after taking the lease, the
    /// tables may lag behind the memory this server folded while another server wrote them.
    async fn flush(&self) -> Result<(), ProjectionError> {
        let stored = load_checkpoint(self.store.pool()).await?;
        let memory = self.checkpoint();
        if stored >= memory {
            return Ok(());
        }

        // The tickets of the events between the stored checkpoint and memory.
        let mut touched = HashSet::new();
        let mut after = stored;
        'read: loop {
            let events = self.store.read_log(after, BATCH_SIZE).await?;
            if events.is_empty() {
                break;
            }
            for event in &events {
                if event.checkpoint() > memory {
                    break 'read;
                }
                if let Some(ticket_id) = ticket_stream_id(event) {
                    touched.insert(ticket_id);
                }
                after = event.checkpoint();
            }
        }

        let changed: BTreeMap<Uuid, TicketView> = {
            let views = self.views.read().await;
            touched
                .into_iter()
                .filter_map(|id| views.get(&id).map(|view| (id, view.clone())))
                .collect()
        };
        let reference: Vec<ReferenceEntity> = self.reference.read().await.entities().collect();
        tracing::info!(from = ?stored, to = ?memory, views = changed.len(), "writing views folded before the lease was taken");
        if let CommitOutcome::GenerationChanged =
            commit_batch(&self.store, &changed, &reference, memory, self.generation()).await?
        {
            self.reload().await?;
        }
        Ok(())
    }

    /// Replaces memory with the stored tables after a rebuild. Events this process has already
    /// applied are folded into the loaded state again without being published twice, so the
    /// checkpoint never moves backwards. Events the tables contain beyond memory are published.
    async fn reload(&self) -> Result<(), ProjectionError> {
        let mut loaded = load_state(self.store.pool()).await?;
        let memory = self.checkpoint();

        // Events this process already applied: folded again, not published again.
        let mut position = loaded.checkpoint;
        while position < memory {
            let events: Vec<StoredEvent> = self
                .store
                .read_log(position, BATCH_SIZE)
                .await?
                .into_iter()
                .take_while(|event| event.checkpoint() <= memory)
                .collect();
            let Some(last) = events.last() else {
                break;
            };
            position = last.checkpoint();
            fold_into_maps(&mut loaded.views, &mut loaded.reference, &events)?;
        }

        // Events the rebuilt tables contain beyond memory were not published by this process yet.
        let mut republished = FoldedBatch::default();
        if loaded.checkpoint > memory {
            let mut after = memory;
            while after < loaded.checkpoint {
                let events = self.store.read_log(after, BATCH_SIZE).await?;
                let Some(last) = events.last() else { break };
                after = last.checkpoint();
                for event in events {
                    if event.checkpoint() > loaded.checkpoint {
                        break;
                    }
                    if let Some(ticket_id) = ticket_stream_id(&event) {
                        republished.decoded.push((ticket_id, event));
                    }
                }
            }
        }

        let checkpoint = position.max(loaded.checkpoint);
        let stats = StatsIndex::from_views(loaded.views.values());
        {
            let mut views = self.views.write().await;
            *self.stats.write().await = stats;
            let mut external = self.by_external_id.write().await;
            let mut reference = self.reference.write().await;
            *external = external_ids(&loaded.views);
            *views = loaded.views;
            *reference = loaded.reference;
        }
        self.generation.store(loaded.generation, Ordering::SeqCst);
        tracing::info!(generation = loaded.generation, ?checkpoint, "read models reloaded after a rebuild");
        self.publish(republished, checkpoint, memory).await;
        Ok(())
    }
}

/// The projection lease on PostgreSQL: a session advisory lock held on a connection of its own.
/// Dropping the connection, or the process dying, releases it. A server without the lease keeps
/// its connection between attempts.
#[derive(Default)]
struct Lease {
    connection: Option<PgConnection>,
    held: bool,
}

impl Lease {
    /// Checks a held lease or tries to take a free one; returns whether it is held now.
    async fn refresh(&mut self, store: &Store) -> bool {
        let opencity_store::StoreConfig::Postgres { url } = store.config() else {
            return true;
        };
        if self.connection.is_none() {
            match PgConnection::connect(url).await {
                Ok(connection) => self.connection = Some(connection),
                Err(error) => {
                    tracing::debug!(%error, "connecting for the projection lease failed");
                    self.held = false;
                    return false;
                }
            }
        }
        let Some(connection) = self.connection.as_mut() else {
            return false;
        };
        let result = if self.held {
            sqlx::query("SELECT 1").execute(&mut *connection).await.map(|_| true)
        } else {
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEASE_KEY)
                .fetch_one(&mut *connection)
                .await
        };
        match result {
            Ok(held) => self.held = held,
            Err(error) => {
                if self.held {
                    tracing::warn!(%error, "the session holding the projection lease is gone");
                } else {
                    tracing::debug!(%error, "taking the projection lease failed");
                }
                self.connection = None;
                self.held = false;
            }
        }
        self.held
    }
}

/// Folds `events` on top of `views` and `reference` without changing them, and keeps the ticket
/// events for the subscribers.
fn fold_batch(
    views: &BTreeMap<Uuid, TicketView>,
    reference: &ReferenceIndex,
    in_flight: Option<&FoldedBatch>,
    events: Vec<StoredEvent>,
) -> Result<FoldedBatch, ProjectionError> {
    let (changed, changed_reference) = fold_events(views, reference, in_flight, &events)?;
    let decoded = events
        .into_iter()
        .filter_map(|event| Some((ticket_stream_id(&event)?, event)))
        .collect();
    Ok(FoldedBatch { changed, changed_reference, decoded })
}

/// Returns the views and reference entities that `events` change on top of `views` and
/// `reference`, and of the batch `in_flight` when one is folded but not yet in memory.
fn fold_events(
    views: &BTreeMap<Uuid, TicketView>,
    reference: &ReferenceIndex,
    in_flight: Option<&FoldedBatch>,
    events: &[StoredEvent],
) -> Result<(BTreeMap<Uuid, TicketView>, Vec<ReferenceEntity>), ProjectionError> {
    let mut changed: BTreeMap<Uuid, TicketView> = BTreeMap::new();
    let mut changed_reference: BTreeMap<(&'static str, String), ReferenceEntity> = BTreeMap::new();
    for stored in events {
        let Some(ticket_id) = ticket_stream_id(stored) else {
            continue;
        };
        let event = stored.ticket_event().map_err(|source| ProjectionError::UnreadableEvent {
            position: stored.position,
            source,
        })?;

        if let Some(entity) = ReferenceEntity::from_event(&event) {
            let known = reference.contains(&entity)
                || in_flight.is_some_and(|batch| batch.changed_reference.contains(&entity));
            if !known {
                let (kind, id) = entity.key();
                changed_reference.insert((kind, id.to_string()), entity);
            }
        }

        if let Some(view) = changed.get_mut(&ticket_id) {
            view.apply(&event, stored.position);
        } else if let Some(view) =
            in_flight.and_then(|batch| batch.changed.get(&ticket_id)).or_else(|| views.get(&ticket_id))
        {
            let mut view = view.clone();
            view.apply(&event, stored.position);
            changed.insert(ticket_id, view);
        } else if let TicketEvent::TicketRegistered(registered) = &event {
            changed.insert(ticket_id, TicketView::new(registered, stored.position));
        } else {
            tracing::warn!(%ticket_id, position = stored.position, "event of an unregistered ticket skipped");
        }
    }
    Ok((changed, changed_reference.into_values().collect()))
}

/// Folds `events` into `views` and `reference` in place, for a rebuild from scratch.
pub(crate) fn fold_into_maps(
    views: &mut BTreeMap<Uuid, TicketView>,
    reference: &mut ReferenceIndex,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    let (changed, changed_reference) = fold_events(views, reference, None, events)?;
    views.extend(changed);
    for entity in changed_reference {
        reference.insert(entity);
    }
    Ok(())
}

fn external_ids(views: &BTreeMap<Uuid, TicketView>) -> HashMap<String, Uuid> {
    views
        .values()
        .filter_map(|view| view.external_id.clone().map(|external| (external, view.id)))
        .collect()
}

/// The stored state of the read model.
struct LoadedState {
    views: BTreeMap<Uuid, TicketView>,
    by_external_id: HashMap<String, Uuid>,
    reference: ReferenceIndex,
    checkpoint: LogCheckpoint,
    generation: i64,
}

async fn load_state(pool: &DbPool) -> Result<LoadedState, ProjectionError> {
    let generation = load_generation(pool).await?;
    let checkpoint = load_checkpoint(pool).await?;
    let views = load_views(pool).await?;
    let mut reference = ReferenceIndex::default();
    for entity in load_reference(pool).await? {
        reference.insert(entity);
    }
    Ok(LoadedState {
        by_external_id: external_ids(&views),
        views,
        reference,
        checkpoint,
        generation,
    })
}

fn ticket_stream_id(event: &StoredEvent) -> Option<Uuid> {
    if event.stream_type != opencity_domain::ticket::TICKET_STREAM_TYPE {
        return None;
    }
    Uuid::parse_str(&event.stream_id).ok()
}

async fn create_tables(pool: &DbPool) -> Result<(), sqlx::Error> {
    const STATEMENTS: [&str; 7] = [
        "CREATE TABLE IF NOT EXISTS projection_checkpoints (
            name TEXT PRIMARY KEY,
            tx BIGINT NOT NULL,
            position BIGINT NOT NULL
        )",
        "CREATE TABLE IF NOT EXISTS ticket_views (
            id TEXT PRIMARY KEY,
            external_id TEXT,
            last_position BIGINT NOT NULL,
            payload TEXT NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS ticket_views_external_id ON ticket_views (external_id)",
        "CREATE TABLE IF NOT EXISTS reference_entities (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            payload TEXT NOT NULL,
            PRIMARY KEY (kind, id)
        )",
        "CREATE TABLE IF NOT EXISTS read_model_generations (
            name TEXT PRIMARY KEY,
            generation BIGINT NOT NULL
        )",
        // The rows exist from the start, so that commits can lock them.
        "INSERT INTO projection_checkpoints (name, tx, position) VALUES ('ticket_views', 0, 0)
            ON CONFLICT (name) DO NOTHING",
        "INSERT INTO read_model_generations (name, generation) VALUES ('ticket_views', 1)
            ON CONFLICT (name) DO NOTHING",
    ];
    match pool {
        DbPool::Postgres(pool) => {
            // Servers starting at the same moment would race on CREATE TABLE IF NOT EXISTS.
            let mut transaction = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(TABLES_KEY).execute(&mut *transaction).await?;
            for statement in STATEMENTS {
                sqlx::query(statement).execute(&mut *transaction).await?;
            }
            compress_views_with_lz4(&mut transaction, "ticket_views").await?;
            transaction.commit().await?;
        }
        DbPool::Sqlite(pool) => {
            for statement in STATEMENTS {
                sqlx::query(statement).execute(pool).await?;
            }
        }
    }
    Ok(())
}

/// Makes PostgreSQL compress the views of `table` with lz4 instead of its default pglz, when
/// the server is built with lz4. A view with its timeline usually exceeds 2 kB, the size from
/// which PostgreSQL compresses a value, so every upsert compresses it again. With lz4 a
/// catch-up of the benchmark's log ran about 15 % faster. The change applies to values written
/// afterwards. It is made only when the column does not use lz4 yet, so a start costs one
/// catalogue read.
pub(crate) async fn compress_views_with_lz4(
    connection: &mut sqlx::PgConnection,
    table: &str,
) -> Result<(), sqlx::Error> {
    let needed: Option<bool> = sqlx::query_scalar(
        "SELECT a.attcompression <> 'l'
                AND (SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression')
           FROM pg_attribute a
          WHERE a.attrelid = to_regclass($1) AND a.attname = 'payload'",
    )
    .bind(table)
    .fetch_optional(&mut *connection)
    .await?;
    if needed == Some(true) {
        sqlx::query(&format!("ALTER TABLE {table} ALTER COLUMN payload SET COMPRESSION lz4"))
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

async fn load_checkpoint(pool: &DbPool) -> Result<LogCheckpoint, sqlx::Error> {
    const SELECT: &str = "SELECT tx, position FROM projection_checkpoints WHERE name = $1";
    let row: Option<(i64, i64)> = match pool {
        DbPool::Postgres(pool) => sqlx::query_as(SELECT).bind(TICKET_VIEWS).fetch_optional(pool).await?,
        DbPool::Sqlite(pool) => sqlx::query_as(SELECT).bind(TICKET_VIEWS).fetch_optional(pool).await?,
    };
    Ok(row.map(|(tx, position)| LogCheckpoint { tx, position }).unwrap_or_default())
}

pub(crate) async fn load_generation(pool: &DbPool) -> Result<i64, sqlx::Error> {
    const SELECT: &str = "SELECT generation FROM read_model_generations WHERE name = $1";
    let row: Option<i64> = match pool {
        DbPool::Postgres(pool) => sqlx::query_scalar(SELECT).bind(TICKET_VIEWS).fetch_optional(pool).await?,
        DbPool::Sqlite(pool) => sqlx::query_scalar(SELECT).bind(TICKET_VIEWS).fetch_optional(pool).await?,
    };
    Ok(row.unwrap_or(1))
}

async fn load_views(pool: &DbPool) -> Result<BTreeMap<Uuid, TicketView>, ProjectionError> {
    const SELECT: &str = "SELECT id, payload FROM ticket_views";
    let rows: Vec<(String, String)> = match pool {
        DbPool::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
        DbPool::Sqlite(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
    };
    let mut views = BTreeMap::new();
    for (id, payload) in rows {
        let view: TicketView = serde_json::from_str(&payload)
            .map_err(|source| ProjectionError::CorruptView { ticket_id: id.clone(), source })?;
        views.insert(view.id, view);
    }
    Ok(views)
}

async fn load_reference(pool: &DbPool) -> Result<Vec<ReferenceEntity>, ProjectionError> {
    const SELECT: &str = "SELECT id, payload FROM reference_entities ORDER BY kind, id";
    let rows: Vec<(String, String)> = match pool {
        DbPool::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
        DbPool::Sqlite(pool) => sqlx::query_as(SELECT).fetch_all(pool).await?,
    };
    rows.into_iter()
        .map(|(id, payload)| {
            serde_json::from_str(&payload).map_err(|source| ProjectionError::CorruptView { ticket_id: id, source })
        })
        .collect()
}

const UPSERT_CHECKPOINT: &str = "INSERT INTO projection_checkpoints (name, tx, position)
    VALUES ($1, $2, $3)
    ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, position = excluded.position";

/// Views and reference entities serialized for their tables, so that the JSON is built
/// before a write transaction takes its lock.
#[derive(Default)]
pub(crate) struct TableRows {
    views: Vec<(String, Option<String>, i64, String)>,
    reference: Vec<(&'static str, String, String)>,
}

impl TableRows {
    /// Serializes `views` and `reference` into table rows.
    pub(crate) fn new<'a>(
        views: impl IntoIterator<Item = &'a TicketView>,
        reference: &[ReferenceEntity],
    ) -> Result<TableRows, ProjectionError> {
        let mut rows = TableRows::default();
        for view in views {
            let payload = serde_json::to_string(view)
                .map_err(|source| ProjectionError::CorruptView { ticket_id: view.id.to_string(), source })?;
            rows.views.push((view.id.to_string(), view.external_id.clone(), view.last_position, payload));
        }
        // A multi-row upsert on PostgreSQL may not touch one row twice, so the last version of
        // each entity wins here.
        let mut latest: BTreeMap<(&'static str, String), String> = BTreeMap::new();
        for entity in reference {
            let (kind, id) = entity.key();
            let payload = serde_json::to_string(entity)
                .map_err(|source| ProjectionError::CorruptView { ticket_id: id.to_string(), source })?;
            latest.insert((kind, id.to_string()), payload);
        }
        rows.reference = latest.into_iter().map(|((kind, id), payload)| (kind, id, payload)).collect();
        Ok(rows)
    }

    /// Upserts the rows into `views_table` and `reference_table` inside `transaction`. On
    /// PostgreSQL each table takes one statement with one array per column, whose text is the
    /// same for any number of rows, so it is prepared once per connection. The arrays are
    /// unnested in the select list, because `unnest` in `FROM` copies every row into a tuple
    /// store before the insert reads it. On SQLite a
    /// multi-row upsert takes up to [`ROWS_PER_STATEMENT`] rows.
    pub(crate) async fn write(
        &self,
        transaction: &mut WriteTransaction,
        views_table: &str,
        reference_table: &str,
    ) -> Result<(), sqlx::Error> {
        const UPDATE_VIEW: &str = "ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id,
             last_position = excluded.last_position, payload = excluded.payload";
        const UPDATE_REFERENCE: &str = "ON CONFLICT (kind, id) DO UPDATE SET payload = excluded.payload";
        match transaction {
            WriteTransaction::Postgres(tx) => {
                if !self.views.is_empty() {
                    let (mut ids, mut external_ids, mut positions, mut payloads) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for (id, external_id, position, payload) in &self.views {
                        ids.push(id.as_str());
                        external_ids.push(external_id.as_deref());
                        positions.push(*position);
                        payloads.push(payload.as_str());
                    }
                    sqlx::query(&format!(
                        "INSERT INTO {views_table} (id, external_id, last_position, payload)
                         SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::text[])
                         {UPDATE_VIEW}"
                    ))
                    .bind(ids)
                    .bind(external_ids)
                    .bind(positions)
                    .bind(payloads)
                    .execute(&mut **tx)
                    .await?;
                }
                if !self.reference.is_empty() {
                    let kinds: Vec<&str> = self.reference.iter().map(|(kind, _, _)| *kind).collect();
                    let ids: Vec<&str> = self.reference.iter().map(|(_, id, _)| id.as_str()).collect();
                    let payloads: Vec<&str> = self.reference.iter().map(|(_, _, payload)| payload.as_str()).collect();
                    sqlx::query(&format!(
                        "INSERT INTO {reference_table} (kind, id, payload)
                         SELECT unnest($1::text[]), unnest($2::text[]), unnest($3::text[]) {UPDATE_REFERENCE}"
                    ))
                    .bind(kinds)
                    .bind(ids)
                    .bind(payloads)
                    .execute(&mut **tx)
                    .await?;
                }
            }
            WriteTransaction::Sqlite(write) => {
                for chunk in self.views.chunks(ROWS_PER_STATEMENT) {
                    let upsert = format!(
                        "INSERT INTO {views_table} (id, external_id, last_position, payload) VALUES {} {UPDATE_VIEW}",
                        numbered_rows(chunk.len(), 4)
                    );
                    let mut query = sqlx::query(&upsert);
                    for (id, external_id, last_position, payload) in chunk {
                        query = query.bind(id).bind(external_id).bind(last_position).bind(payload);
                    }
                    query.execute(&mut *write.transaction).await?;
                }
                for chunk in self.reference.chunks(ROWS_PER_STATEMENT) {
                    let upsert = format!(
                        "INSERT INTO {reference_table} (kind, id, payload) VALUES {} {UPDATE_REFERENCE}",
                        numbered_rows(chunk.len(), 3)
                    );
                    let mut query = sqlx::query(&upsert);
                    for (kind, id, payload) in chunk {
                        query = query.bind(kind).bind(id).bind(payload);
                    }
                    query.execute(&mut *write.transaction).await?;
                }
            }
        }
        Ok(())
    }
}

/// Rows of one multi-row upsert on SQLite. 500 rows of 4 values stay far below its limit of
/// 32,766 parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// Returns `rows` groups of `columns` numbered placeholders: `($1, $2), ($3, $4)`. Both
/// PostgreSQL and SQLite read `$N`.
fn numbered_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let placeholders: Vec<String> = (1..=columns).map(|column| format!("${}", row * columns + column)).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Serializes the changed views and writes them with the checkpoint through [`commit_rows`].
async fn commit_batch(
    store: &Store,
    changed: &BTreeMap<Uuid, TicketView>,
    changed_reference: &[ReferenceEntity],
    checkpoint: LogCheckpoint,
    generation: i64,
) -> Result<CommitOutcome, ProjectionError> {
    let rows = TableRows::new(changed.values(), changed_reference)?;
    commit_rows(store, &rows, checkpoint, generation).await
}

/// Writes serialized views and the checkpoint in one transaction, unless the stored
/// checkpoint is already at or past `checkpoint` or the tables are no longer of `generation`.
/// On SQLite the store's write transaction takes the write lock first, so it waits for command
/// appends instead of failing with SQLITE_BUSY. On PostgreSQL the checkpoint row is locked, so
/// two writers take turns, and a table swap (which takes [`TABLES_KEY`] exclusively) waits for
/// the commit or the commit for the swap.
async fn commit_rows(
    store: &Store,
    rows: &TableRows,
    checkpoint: LogCheckpoint,
    generation: i64,
) -> Result<CommitOutcome, ProjectionError> {
    // One row: the checkpoint, locked on PostgreSQL, and the generation of the tables. Both
    // rows are inserted when the tables are created.
    const SELECT_STATE: &str = "SELECT c.tx, c.position,
            (SELECT generation FROM read_model_generations WHERE name = $1) AS generation
       FROM projection_checkpoints c WHERE c.name = $1";
    macro_rules! stored_state {
        ($tx:expr, $select:expr) => {{
            let stored: Option<(i64, i64, Option<i64>)> =
                sqlx::query_as($select).bind(TICKET_VIEWS).fetch_optional(&mut *$tx).await?;
            match stored {
                Some((tx, position, generation)) => (generation.unwrap_or(1), LogCheckpoint { tx, position }),
                None => (1, LogCheckpoint::default()),
            }
        }};
    }
    // The lock is shared with other commits and taken before the generation is read.
    let mut transaction = store.begin_derived_write(Some(TABLES_KEY)).await?;
    let (stored_generation, stored_checkpoint) = match &mut transaction {
        WriteTransaction::Postgres(tx) => stored_state!(*tx, &format!("{SELECT_STATE} FOR UPDATE OF c")),
        WriteTransaction::Sqlite(write) => stored_state!(write.transaction, SELECT_STATE),
    };
    // Returning drops the transaction, which rolls it back.
    if stored_generation != generation {
        return Ok(CommitOutcome::GenerationChanged);
    }
    if stored_checkpoint >= checkpoint {
        return Ok(CommitOutcome::AlreadyStored);
    }

    rows.write(&mut transaction, "ticket_views", "reference_entities").await?;
    macro_rules! upsert_checkpoint {
        ($tx:expr) => {
            sqlx::query(UPSERT_CHECKPOINT)
                .bind(TICKET_VIEWS)
                .bind(checkpoint.tx)
                .bind(checkpoint.position)
                .execute(&mut *$tx)
                .await?;
        };
    }
    match &mut transaction {
        WriteTransaction::Postgres(tx) => {
            upsert_checkpoint!(*tx);
        }
        WriteTransaction::Sqlite(write) => {
            upsert_checkpoint!(write.transaction);
        }
    }
    transaction.commit().await?;
    Ok(CommitOutcome::Written)
}
