//! Configuration of the event store's database, and the connection pool other crates share.

use std::path::{Path, PathBuf};

/// File name of the SQLite database inside the data directory.
pub const SQLITE_FILE_NAME: &str = "opencity.sqlite";

/// The database that stores the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded default: `<data_dir>/opencity.sqlite`, created with the directory on first
    /// open.
    Sqlite { data_dir: PathBuf },
    /// A PostgreSQL database (version 14 or later) given by a connection URL.
    Postgres { url: String },
}

impl StoreConfig {
    /// Returns the SQLite database file for a data directory.
    pub fn sqlite_file(data_dir: &Path) -> PathBuf {
        data_dir.join(SQLITE_FILE_NAME)
    }

    /// Returns the kind of database this configuration opens.
    pub fn backend(&self) -> BackendKind {
        match self {
            StoreConfig::Sqlite { .. } => BackendKind::Sqlite,
            StoreConfig::Postgres { .. } => BackendKind::Postgres,
        }
    }
}

/// The kind of database behind a [`Store`](crate::Store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    /// Returns the lowercase name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        }
    }
}

/// The store's connection pool. Projections write their views and checkpoints into the same
/// database, so a view update and its checkpoint commit in one transaction.
///
/// On SQLite, write through [`Store::begin_write`](crate::Store::begin_write) rather than
/// `pool.begin()`: a deferred transaction that reads before it writes fails with `SQLITE_BUSY`
/// when an append commits in between.
#[derive(Clone, Debug)]
pub enum DbPool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}
