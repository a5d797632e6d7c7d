//! The projection runner: reads the global log after its checkpoint and folds each batch into
//! ticket views. It commits the changed views with the new checkpoint in one transaction of the
//! store's own database, so every event counts exactly once, also after a crash. Committed views
//! are mirrored in memory for queries and published to subscribers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use opencity_domain::TicketEvent;
use opencity_store::{DbPool, LogCheckpoint, Store, StoreError, StoredEvent, WriteTransaction};
use tokio::sync::{broadcast, watch, RwLock};
use uuid::Uuid;

use crate::fold::TicketView;
use crate::reference::{ReferenceEntity, ReferenceIndex};

/// Name of the ticket-view projection in the checkpoint table.
pub const TICKET_VIEWS: &str = "ticket_views";

const BATCH_SIZE: usize = 1_000;
const IDLE_POLL: Duration = Duration::from_millis(200);

/// An event that the projections have applied, as published to subscribers.
#[derive(Clone, Debug)]
pub struct AppliedEvent {
    pub event: Arc<StoredEvent>,
    pub ticket_id: Uuid,
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
}

/// The ticket read model: durable tables plus their in-memory mirror.
pub struct ReadModel {
    store: Store,
    views: RwLock<BTreeMap<Uuid, TicketView>>,
    by_external_id: RwLock<HashMap<String, Uuid>>,
    reference: RwLock<ReferenceIndex>,
    checkpoint: watch::Sender<LogCheckpoint>,
    applied: broadcast::Sender<AppliedEvent>,
}

impl ReadModel {
    /// Creates the read-model tables if needed and loads the committed views into memory.
    pub async fn open(store: Store) -> Result<Arc<ReadModel>, ProjectionError> {
        create_tables(store.pool()).await?;
        let checkpoint = load_checkpoint(store.pool()).await?;
        let views = load_views(store.pool()).await?;
        let mut reference = ReferenceIndex::default();
        for entity in load_reference(store.pool()).await? {
            reference.insert(entity);
        }
        let by_external_id = views
            .values()
            .filter_map(|view| view.external_id.clone().map(|external| (external, view.id)))
            .collect();
        let (applied, _) = broadcast::channel(4_096);
        Ok(Arc::new(ReadModel {
            store,
            views: RwLock::new(views),
            by_external_id: RwLock::new(by_external_id),
            reference: RwLock::new(reference),
            checkpoint: watch::channel(checkpoint).0,
            applied,
        }))
    }

    pub async fn views(&self) -> tokio::sync::RwLockReadGuard<'_, BTreeMap<Uuid, TicketView>> {
        self.views.read().await
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

    /// Returns the checkpoint of the last committed batch.
    pub fn checkpoint(&self) -> LogCheckpoint {
        *self.checkpoint.borrow()
    }

    /// Returns a receiver that changes whenever a batch is committed.
    pub fn watch_checkpoint(&self) -> watch::Receiver<LogCheckpoint> {
        self.checkpoint.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AppliedEvent> {
        self.applied.subscribe()
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

    /// Follows the log until `shutdown` fires, logging and retrying after errors.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(checkpoint = ?self.checkpoint(), "projection runner started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.step().await {
                Ok(0) => {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(error.cause_chain = ?error, "projection batch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        tracing::info!("projection runner stopped");
    }

    /// Reads one batch after the checkpoint, commits it, then updates memory and subscribers.
    async fn step(&self) -> Result<usize, ProjectionError> {
        let after = self.checkpoint();
        let events = self.store.read_log(after, BATCH_SIZE).await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let new_checkpoint = last.checkpoint();

        let mut changed: BTreeMap<Uuid, TicketView> = BTreeMap::new();
        let mut decoded = Vec::with_capacity(events.len());
        let mut changed_reference: BTreeMap<(&'static str, String), ReferenceEntity> = BTreeMap::new();
        {
            let views = self.views.read().await;
            let reference = self.reference.read().await;
            for stored in &events {
                let Some(ticket_id) = ticket_stream_id(stored) else {
                    continue;
                };
                let event = stored.ticket_event().map_err(|source| ProjectionError::UnreadableEvent {
                    position: stored.position,
                    source,
                })?;

                if let Some(entity) = ReferenceEntity::from_event(&event) {
                    if !reference.contains(&entity) {
                        let (kind, id) = entity.key();
                        changed_reference.insert((kind, id.to_string()), entity);
                    }
                }

                if let Some(view) = changed.get_mut(&ticket_id) {
                    view.apply(&event, stored.position);
                } else if let Some(view) = views.get(&ticket_id) {
                    let mut view = view.clone();
                    view.apply(&event, stored.position);
                    changed.insert(ticket_id, view);
                } else if let TicketEvent::TicketRegistered(registered) = &event {
                    changed.insert(ticket_id, TicketView::new(registered, stored.position));
                } else {
                    tracing::warn!(%ticket_id, position = stored.position, "event of an unregistered ticket skipped");
                }
                decoded.push((ticket_id, stored.clone()));
            }
        }
        let changed_reference: Vec<ReferenceEntity> = changed_reference.into_values().collect();

        commit_batch(&self.store, &changed, &changed_reference, new_checkpoint).await?;

        {
            let mut views = self.views.write().await;
            let mut external = self.by_external_id.write().await;
            for (id, view) in changed {
                if let Some(external_id) = &view.external_id {
                    external.insert(external_id.clone(), id);
                }
                views.insert(id, view);
            }
            let mut reference = self.reference.write().await;
            for entity in changed_reference {
                reference.insert(entity);
            }
        }
        self.checkpoint.send_replace(new_checkpoint);
        for (ticket_id, event) in decoded {
            // A send error only means that no subscriber is connected.
            let _ = self.applied.send(AppliedEvent { event: Arc::new(event), ticket_id });
        }
        Ok(events.len())
    }
}

fn ticket_stream_id(event: &StoredEvent) -> Option<Uuid> {
    if event.stream_type != opencity_domain::ticket::TICKET_STREAM_TYPE {
        return None;
    }
    Uuid::parse_str(&event.stream_id).ok()
}

async fn create_tables(pool: &DbPool) -> Result<(), sqlx::Error> {
    const STATEMENTS: [&str; 4] = [
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
    ];
    for statement in STATEMENTS {
        match pool {
            DbPool::Postgres(pool) => {
                sqlx::query(statement).execute(pool).await?;
            }
            DbPool::Sqlite(pool) => {
                sqlx::query(statement).execute(pool).await?;
            }
        }
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

const UPSERT_REFERENCE: &str = "INSERT INTO reference_entities (kind, id, payload) VALUES ($1, $2, $3)
    ON CONFLICT (kind, id) DO UPDATE SET payload = excluded.payload";

const UPSERT_VIEW: &str = "INSERT INTO ticket_views (id, external_id, last_position, payload)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (id) DO UPDATE SET external_id = excluded.external_id,
        last_position = excluded.last_position, payload = excluded.payload";

const UPSERT_CHECKPOINT: &str = "INSERT INTO projection_checkpoints (name, tx, position)
    VALUES ($1, $2, $3)
    ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, position = excluded.position";

/// Writes the changed views and the checkpoint in one transaction. On SQLite the store's write
/// transaction takes the write lock first, so it waits for command appends instead of failing
/// with SQLITE_BUSY.
async fn commit_batch(
    store: &Store,
    changed: &BTreeMap<Uuid, TicketView>,
    changed_reference: &[ReferenceEntity],
    checkpoint: LogCheckpoint,
) -> Result<(), ProjectionError> {
    let mut reference_rows = Vec::with_capacity(changed_reference.len());
    for entity in changed_reference {
        let (kind, id) = entity.key();
        let payload = serde_json::to_string(entity)
            .map_err(|source| ProjectionError::CorruptView { ticket_id: id.to_string(), source })?;
        reference_rows.push((kind, id.to_string(), payload));
    }
    let mut rows = Vec::with_capacity(changed.len());
    for (id, view) in changed {
        let payload = serde_json::to_string(view)
            .map_err(|source| ProjectionError::CorruptView { ticket_id: id.to_string(), source })?;
        rows.push((id.to_string(), view.external_id.clone(), view.last_position, payload));
    }

    macro_rules! write_all {
        ($tx:expr) => {{
            for (id, external_id, last_position, payload) in &rows {
                sqlx::query(UPSERT_VIEW)
                    .bind(id)
                    .bind(external_id)
                    .bind(last_position)
                    .bind(payload)
                    .execute(&mut *$tx)
                    .await?;
            }
            for (kind, id, payload) in &reference_rows {
                sqlx::query(UPSERT_REFERENCE).bind(kind).bind(id).bind(payload).execute(&mut *$tx).await?;
            }
            sqlx::query(UPSERT_CHECKPOINT)
                .bind(TICKET_VIEWS)
                .bind(checkpoint.tx)
                .bind(checkpoint.position)
                .execute(&mut *$tx)
                .await?;
        }};
    }
    let mut transaction = store.begin_write().await?;
    match &mut transaction {
        WriteTransaction::Postgres(tx) => write_all!(*tx),
        WriteTransaction::Sqlite(write) => write_all!(write.transaction),
    }
    transaction.commit().await?;
    Ok(())
}
