//! Throwaway databases for tests of this and other crates.
//!
//! PostgreSQL tests create a database named `opencity_test_<uuid>` and drop it afterwards. The
//! server is given by the `OPENCITY_TEST_PG` variable, a URL without a database name, with the
//! default `postgres://postgres@127.0.0.1:5432`.

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;

use crate::config::StoreConfig;
use crate::error::StoreError;

/// Environment variable with the PostgreSQL server for tests.
pub const TEST_PG_VARIABLE: &str = "OPENCITY_TEST_PG";

const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432";

/// A PostgreSQL database that exists for one test. Call [`cleanup`](TempDatabase::cleanup) at
/// the end; if the test panics first, dropping the value drops the database.
#[derive(Debug)]
pub struct TempDatabase {
    pub name: String,
    /// Connection URL of the database.
    pub url: String,
    /// URL of the server's `postgres` database, used to create and drop this one.
    admin_url: String,
    dropped: bool,
}

impl TempDatabase {
    /// Returns the store configuration for this database.
    pub fn config(&self) -> StoreConfig {
        StoreConfig::Postgres {
            url: self.url.clone(),
        }
    }

    /// Drops the database, closing any connections still open to it.
    pub async fn cleanup(mut self) {
        if let Err(error) = drop_database(&self.admin_url, &self.name).await {
            tracing::warn!(database = %self.name, cause = %error, "failed to drop test database");
        }
        self.dropped = true;
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop cannot await, and the caller's runtime may be shutting down, so the database is
        // dropped from a thread with its own runtime.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                let _ = runtime.block_on(drop_database(&admin_url, &name));
            }
        });
        let _ = dropper.join();
    }
}

/// Creates an empty database for one test.
pub async fn try_temp_postgres() -> Result<TempDatabase, StoreError> {
    let base = std::env::var(TEST_PG_VARIABLE).unwrap_or_else(|_| DEFAULT_TEST_PG.to_string());
    let base = base.trim_end_matches('/');
    let name = format!("opencity_test_{}", Uuid::new_v4().simple());
    let admin_url = format!("{base}/postgres");

    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;

    Ok(TempDatabase {
        url: format!("{base}/{name}"),
        name,
        admin_url,
        dropped: false,
    })
}

/// Creates an empty database for one test.
///
/// # Panics
/// Panics when the PostgreSQL server of `OPENCITY_TEST_PG` cannot be reached.
pub async fn temp_postgres() -> TempDatabase {
    match try_temp_postgres().await {
        Ok(database) => database,
        Err(error) => panic!(
            "cannot create a test database on the server of {TEST_PG_VARIABLE} \
             (default {DEFAULT_TEST_PG}): {error}"
        ),
    }
}

/// Returns a fresh data directory and the SQLite configuration that uses it. The directory is
/// deleted when the `TempDir` is dropped.
///
/// # Panics
/// Panics when no temporary directory can be created.
pub fn temp_sqlite() -> (TempDir, StoreConfig) {
    let directory = match tempfile::tempdir() {
        Ok(directory) => directory,
        Err(error) => panic!("cannot create a temporary data directory: {error}"),
    };
    // A subdirectory that does not exist yet, so tests also cover its creation on open.
    let config = StoreConfig::Sqlite {
        data_dir: directory.path().join("data"),
    };
    (directory, config)
}

async fn drop_database(admin_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await
}
