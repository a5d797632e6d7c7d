//! Errors of the store and of command execution, each with a stable code.

use cqrs_es::persist::PersistenceError;
use cqrs_es::AggregateError;
use opencity_domain::TicketError;

type BoxedError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure to reach, migrate, read or write the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached: a connection, TLS or pool timeout error.
    #[error("event store is unavailable: {0}")]
    Unavailable(#[source] BoxedError),
    /// The database rejected a statement.
    #[error("event store query failed: {0}")]
    Database(#[source] BoxedError),
    /// A stored event or its metadata does not decode.
    #[error("stored event is invalid: {0}")]
    InvalidEvent(#[source] BoxedError),
    /// The store configuration cannot be used, such as a data directory that cannot be created.
    #[error("invalid event store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Returns the stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "STORE_UNAVAILABLE",
            StoreError::Database(_) => "STORE_ERROR",
            StoreError::InvalidEvent(_) => "STORE_INVALID_EVENT",
            StoreError::Config(_) => "STORE_CONFIG",
        }
    }

    /// Returns an error of the same kind and text, for each request of a group that one
    /// failed statement served.
    pub(crate) fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Unavailable(source) => StoreError::Unavailable(source.to_string().into()),
            StoreError::Database(source) => StoreError::Database(source.to_string().into()),
            StoreError::InvalidEvent(source) => StoreError::InvalidEvent(source.to_string().into()),
            StoreError::Config(text) => StoreError::Config(text.clone()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(error)),
            sqlx::Error::Configuration(_) => StoreError::Config(error.to_string()),
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
                StoreError::InvalidEvent(Box::new(error))
            }
            _ => StoreError::Database(Box::new(error)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        StoreError::InvalidEvent(Box::new(error))
    }
}

/// Converts the store's own errors for the cqrs-es repository trait.
impl From<StoreError> for PersistenceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => PersistenceError::ConnectionError(source),
            StoreError::InvalidEvent(source) => PersistenceError::DeserializationError(source),
            other => PersistenceError::UnknownError(Box::new(other)),
        }
    }
}

/// A reason a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The ticket rejected the command, and nothing was appended.
    #[error(transparent)]
    Domain(#[from] TicketError),
    /// Other writers kept changing the stream, and every retry met a newer version.
    #[error("the ticket kept changing concurrently and all retries failed; retry the command")]
    Conflict,
    /// The store failed. The command may be retried with the same idempotency key.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    /// Returns the stable error code: the domain's code for a rejected command.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Domain(error) => error.code(),
            CommandError::Conflict => "CONFLICT",
            CommandError::Store(error) => error.code(),
        }
    }
}

/// Maps a cqrs-es error of the load or commit path. The retry loop intercepts a conflict before
/// this mapping, so `Conflict` here means a conflict that is not retried.
impl From<AggregateError<TicketError>> for CommandError {
    fn from(error: AggregateError<TicketError>) -> Self {
        match error {
            AggregateError::UserError(error) => CommandError::Domain(error),
            AggregateError::AggregateConflict => CommandError::Conflict,
            AggregateError::DatabaseConnectionError(source) => {
                CommandError::Store(StoreError::Unavailable(source))
            }
            AggregateError::DeserializationError(source) => {
                CommandError::Store(StoreError::InvalidEvent(source))
            }
            AggregateError::UnexpectedError(source) => {
                CommandError::Store(StoreError::Database(source))
            }
        }
    }
}
