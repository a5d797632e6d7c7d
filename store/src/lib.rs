//! The event store of «Открытый город»: ticket events in PostgreSQL (through postgres-es) or in
//! an embedded SQLite file, one global log in a gap-safe order, and command execution with
//! optimistic concurrency and idempotency keys.
//!
//! cqrs-es has no global order and dispatches its queries outside the append transaction, so
//! read models do not use its query dispatch. They read [`Store::read_log`] from a checkpoint
//! and commit their views with the new checkpoint in the store's database.
//!
//! # Layout
//! - [`Store`] (`store.rs`): opening, stream and log reads. `execute.rs` adds command
//!   execution ([`Store::execute`]), and `bulk.rs` the bulk path for imports
//!   ([`Store::execute_many`]).
//! - [`StoreConfig`], [`DbPool`] (`config.rs`): which database, and its pool.
//! - [`integrity`]: the hash chain of every stream, signed checkpoints and log verification.
//! - [`model`]: stored events, log checkpoints, command metadata and outcomes.
//! - [`StoreError`], [`CommandError`] (`error.rs`): failures with stable codes.
//! - `chain.rs`: events made ready for the log, with their hashes, for both backends.
//! - `postgres.rs`: the PostgreSQL schema, appends, stream and log reads.
//! - [`sqlite`]: the SQLite schema, log reads and [`SqliteEventRepository`], our cqrs-es
//!   repository for SQLite.
//! - [`audit`]: the record of who read residents' personal data.
//! - [`personal`]: residents' personal data, encrypted with a key per resident, and its erasure.
//! - [`testing`]: temporary databases for tests.
//! - [`tokens`]: API tokens, stored as hashes of their secrets.

mod bulk;
mod chain;
mod config;
mod error;
mod execute;
mod group;
pub mod integrity;
pub mod model;
mod postgres;
pub mod sqlite;
mod store;
pub mod audit;
pub mod personal;
pub mod testing;
pub mod tokens;

#[cfg(test)]
mod tests;

pub use bulk::BulkItem;
pub use config::{BackendKind, DbPool, StoreConfig, SQLITE_FILE_NAME};
pub use error::{CommandError, StoreError};
pub use execute::MAX_ATTEMPTS;
pub use integrity::{verify_log, Checkpoint, Finding, FindingKind};
pub use model::{CommandMetadata, CommandOutcome, LazyJson, LogCheckpoint, StoredEvent};
pub use sqlite::{SqliteEventRepository, SqliteWriteTransaction};
pub use store::{Store, WriteTransaction};
