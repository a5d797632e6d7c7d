//! [`Store`]: the event store behind the api, over either backend.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use cqrs_es::persist::{PersistedEventStore, PersistenceError};
use opencity_domain::ticket::TICKET_STREAM_TYPE;
use opencity_domain::Ticket;
use postgres_es::PostgresEventRepository;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use crate::config::{BackendKind, DbPool, StoreConfig};
use crate::error::StoreError;
use crate::execute::LoadedStream;
use crate::group::{Group, Runner};
use crate::model::{LogCheckpoint, StoredEvent};
use crate::postgres::{self, AppendRequest};
use crate::sqlite::{self, SqliteDatabase, SqliteEventRepository, SqliteWriteTransaction};

/// The event store: appends ticket events with optimistic concurrency and reads them back per
/// stream or as one global log. Cloning is cheap; clones share the connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Arc<Backend>,
    pool: DbPool,
    config: Arc<StoreConfig>,
    /// Woken after every append of this process; other processes' appends arrive through
    /// [`listen_appends`](Store::listen_appends) on PostgreSQL.
    appended: Arc<Notify>,
}

/// The cqrs-es event store of each backend. On SQLite the repository is kept beside it, because
/// bulk appends write several streams through it in one transaction. On PostgreSQL bulk and
/// command appends use `INSERT` statements of their own.
// One value per store, behind an `Arc`, so the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Postgres {
        pool: PgPool,
        events: PersistedEventStore<PostgresEventRepository, Ticket>,
        /// Requests of [`postgres::announce_appends`] to wake the other servers, at most one waiting.
        announce: mpsc::Sender<()>,
        /// Stream loads of concurrent commands, run together ([`postgres::load_group`]).
        loads: Group<String, Result<LoadedStream, StoreError>>,
        /// Appends of concurrent commands, run together ([`postgres::append_group`]).
        appends: Group<AppendRequest, Result<Vec<LogCheckpoint>, PersistenceError>>,
    },
    Sqlite {
        database: SqliteDatabase,
        events: PersistedEventStore<SqliteEventRepository, Ticket>,
        repository: SqliteEventRepository,
    },
}

/// A write transaction on the store's database, for projections that commit their views and
/// checkpoint together. On SQLite it holds the write lock, so appends wait until it ends.
pub enum WriteTransaction {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(SqliteWriteTransaction),
}

impl WriteTransaction {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            WriteTransaction::Postgres(transaction) => transaction.commit().await?,
            WriteTransaction::Sqlite(transaction) => transaction.commit().await?,
        }
        Ok(())
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Creates the [`Group`] of one step of the commands on PostgreSQL, keyed by stream: `run` runs
/// one group of requests on `pool`.
fn command_group<R, O, F, Fut>(pool: &PgPool, key: fn(&R) -> &str, run: F) -> Group<R, O>
where
    R: Send + 'static,
    O: Send + 'static,
    F: Fn(PgPool, Vec<R>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Vec<O>> + Send + 'static,
{
    let pool = pool.clone();
    let run: Runner<R, O> = Arc::new(move |requests| Box::pin(run(pool.clone(), requests)));
    Group::new(postgres::MAX_RUNNING_GROUPS, postgres::MAX_COMMAND_GROUP, key, run)
}

impl Store {
    /// Connects to the configured database and creates the schema if it is missing. For SQLite
    /// the data directory and the database file are created on first open.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let store = match config {
            StoreConfig::Postgres { url } => {
                let pool = postgres::open(url).await?;
                let events = PersistedEventStore::new_event_store(PostgresEventRepository::new(
                    pool.clone(),
                ));
                let (announce, pending) = mpsc::channel(1);
                tokio::spawn(postgres::announce_appends(pool.clone(), pending));
                let loads = command_group(&pool, |request: &String| request.as_str(), postgres::load_group);
                let appends = command_group(
                    &pool,
                    |request: &AppendRequest| request.events.first().map_or("", |event| event.aggregate_id.as_str()),
                    postgres::append_group,
                );
                Store {
                    config: Arc::new(config.clone()),
                    appended: Arc::new(Notify::new()),
                    pool: DbPool::Postgres(pool.clone()),
                    backend: Arc::new(Backend::Postgres { pool, events, announce, loads, appends }),
                }
            }
            StoreConfig::Sqlite { data_dir } => {
                let database = SqliteDatabase::open(data_dir).await?;
                let repository = SqliteEventRepository::new(database.clone());
                let events = PersistedEventStore::new_event_store(repository.clone());
                Store {
                    config: Arc::new(config.clone()),
                    appended: Arc::new(Notify::new()),
                    pool: DbPool::Sqlite(database.pool.clone()),
                    backend: Arc::new(Backend::Sqlite {
                        database,
                        events,
                        repository,
                    }),
                }
            }
        };
        tracing::info!(backend = store.backend().as_str(), "event store opened");
        Ok(store)
    }

    /// Returns the signal this process's appends wake: create a `notified()` future before
    /// reading the log, then await it when the read found nothing new.
    pub fn local_appends(&self) -> Arc<Notify> {
        self.appended.clone()
    }

    /// Wakes the readers of this process after an append committed, and on PostgreSQL those of
    /// other servers through `NOTIFY`. A full request queue means a notification is already
    /// due, which covers this append too.
    pub(crate) fn notify_appended(&self) {
        self.appended.notify_waiters();
        if let Backend::Postgres { announce, .. } = self.backend.as_ref() {
            let _ = announce.try_send(());
        }
    }

    /// Listens for appends committed by any process on the same PostgreSQL database (each
    /// writer sends `NOTIFY` after its commits). `None` on SQLite, where one process owns the
    /// file and [`local_appends`](Store::local_appends) is enough.
    pub async fn listen_appends(&self) -> Result<Option<PgListener>, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen(postgres::APPEND_CHANNEL).await?;
                Ok(Some(listener))
            }
            Backend::Sqlite { .. } => Ok(None),
        }
    }

    /// Returns the kind of database that stores the log.
    pub fn backend(&self) -> BackendKind {
        match self.backend.as_ref() {
            Backend::Postgres { .. } => BackendKind::Postgres,
            Backend::Sqlite { .. } => BackendKind::Sqlite,
        }
    }

    /// Returns the configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Returns the connection pool, for read models kept in the same database.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Starts a write transaction on the store's database; see [`WriteTransaction`].
    pub async fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let transaction = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => WriteTransaction::Postgres(pool.begin().await?),
            Backend::Sqlite { database, .. } => {
                WriteTransaction::Sqlite(database.begin_write().await?)
            }
        };
        Ok(transaction)
    }

    /// Starts a write transaction for tables derived from the log, such as read models that
    /// store their checkpoint with their rows. On PostgreSQL its commit does not wait for the
    /// write-ahead log to reach the disk. A crash of the database may then lose the latest such
    /// commits, each one whole, and the reader folds the log again from the stored checkpoint.
    /// With `shared_lock`, the transaction also holds that advisory lock in shared mode. Both
    /// settings go with `BEGIN` in one round trip. On SQLite it is
    /// [`begin_write`](Store::begin_write).
    pub async fn begin_derived_write(&self, shared_lock: Option<i64>) -> Result<WriteTransaction, StoreError> {
        let transaction = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let lock = shared_lock
                    .map(|key| format!("; SELECT pg_advisory_xact_lock_shared({key})"))
                    .unwrap_or_default();
                WriteTransaction::Postgres(pool.begin_with(format!("BEGIN; SET LOCAL synchronous_commit = off{lock}")).await?)
            }
            Backend::Sqlite { database, .. } => WriteTransaction::Sqlite(database.begin_write().await?),
        };
        Ok(transaction)
    }

    /// Returns the events of one stream, ordered by sequence.
    pub async fn load_stream(
        &self,
        stream_type: &str,
        stream_id: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                postgres::load_stream(pool, stream_type, stream_id).await
            }
            Backend::Sqlite { database, .. } => {
                sqlite::load_stream(&database.pool, stream_type, stream_id).await
            }
        }
    }

    /// Returns true when the ticket's stream has at least one event.
    pub async fn stream_exists(&self, ticket_id: Uuid) -> Result<bool, StoreError> {
        let stream_id = ticket_id.to_string();
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                postgres::stream_exists(pool, TICKET_STREAM_TYPE, &stream_id).await
            }
            Backend::Sqlite { database, .. } => {
                sqlite::stream_exists(&database.pool, TICKET_STREAM_TYPE, &stream_id).await
            }
        }
    }

    /// Reads at most `limit` events of the global log strictly after `after`, in log order.
    ///
    /// The order is gap-safe: once a reader has passed a checkpoint, no event committed later
    /// sorts before it. On PostgreSQL that means the reader only sees transactions older than
    /// the oldest one still running anywhere in the database cluster, so a long-running
    /// transaction delays the log for every reader until it ends.
    pub async fn read_log(
        &self,
        after: LogCheckpoint,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => postgres::read_log(pool, after, limit).await,
            Backend::Sqlite { database, .. } => {
                sqlite::read_log(&database.pool, after, limit).await
            }
        }
    }

    /// Reads at most `limit` committed events strictly after `after`, in log order, without
    /// waiting for older transactions to end. For audits ([`verify_log`](crate::verify_log)):
    /// on PostgreSQL an event still being written may later appear before the events read,
    /// which cannot happen before a signed checkpoint. On SQLite it is [`read_log`](Self::read_log).
    pub async fn read_committed_log(
        &self,
        after: LogCheckpoint,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                postgres::read_committed_log(pool, after, limit).await
            }
            Backend::Sqlite { database, .. } => {
                sqlite::read_log(&database.pool, after, limit).await
            }
        }
    }

    /// Returns the highest committed global position, or 0 for an empty log. On PostgreSQL,
    /// events below it may still be uncommitted; use checkpoints to tell what a reader has seen.
    pub async fn last_position(&self) -> Result<i64, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => postgres::last_position(pool).await,
            Backend::Sqlite { database, .. } => sqlite::last_position(&database.pool).await,
        }
    }

    /// Returns the log checkpoint of the event at global `position`, or `None` when no
    /// committed event has that position (not written yet, still in flight, or a gap left by
    /// a rolled-back transaction). A reader whose checkpoint is at or past it has seen the event
    /// and, on PostgreSQL, every event that committed before it.
    pub async fn checkpoint_of_position(
        &self,
        position: i64,
    ) -> Result<Option<LogCheckpoint>, StoreError> {
        let row: Option<(i64, i64)> = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(
                    "SELECT tx_id::text::bigint, global_position FROM events
                      WHERE global_position = $1",
                )
                .bind(position)
                .fetch_optional(pool)
                .await?
            }
            Backend::Sqlite { database, .. } => {
                sqlx::query_as(
                    "SELECT 0, global_position FROM events WHERE global_position = ?",
                )
                .bind(position)
                .fetch_optional(&database.pool)
                .await?
            }
        };
        Ok(row.map(|(tx, position)| LogCheckpoint { tx, position }))
    }

    /// Returns the number of stored events of all streams.
    pub async fn count_events(&self) -> Result<i64, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => postgres::count_events(pool).await,
            Backend::Sqlite { database, .. } => sqlite::count_events(&database.pool).await,
        }
    }

    /// Returns the number of writers in this process waiting for the SQLite write lock; always
    /// 0 on PostgreSQL, where writers do not queue.
    pub fn waiting_writers(&self) -> usize {
        match self.backend.as_ref() {
            Backend::Postgres { .. } => 0,
            Backend::Sqlite { database, .. } => database.waiting_writers(),
        }
    }

    /// Returns the checkpoints of `(stream_id, sequence)` pairs of ticket streams.
    pub(crate) async fn checkpoints_at(
        &self,
        event_keys: &[(String, i64)],
    ) -> Result<HashMap<(String, i64), LogCheckpoint>, StoreError> {
        if event_keys.is_empty() {
            return Ok(HashMap::new());
        }
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                postgres::checkpoints_at(pool, TICKET_STREAM_TYPE, event_keys).await
            }
            Backend::Sqlite { database, .. } => {
                sqlite::checkpoints_at(&database.pool, TICKET_STREAM_TYPE, event_keys).await
            }
        }
    }
}
