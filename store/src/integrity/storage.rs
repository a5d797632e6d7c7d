//! Creating and listing signed checkpoints on both backends, and key files.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{SubsecRound, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use sqlx::{PgPool, Row};

use super::{checkpoint_message, heads_digest, sign_message, Checkpoint, StreamHead};
use crate::error::StoreError;
use crate::model::LogCheckpoint;
use crate::sqlite::{self, SqliteDatabase};
use crate::store::{Backend, Store};

/// Heads inserted per statement on SQLite, below its limit of bound parameters.
const HEADS_CHUNK: usize = 150;

/// A checkpoint before it is signed: the heads the database contains at one place in the log.
struct Snapshot {
    id: i64,
    place: LogCheckpoint,
    heads: Vec<StreamHead>,
    changed_heads: Vec<StreamHead>,
}

impl Store {
    /// Records a checkpoint signed with `key` over the heads of all streams at the end of the
    /// log, and returns it. Appends wait while it runs: on PostgreSQL it locks the `events`
    /// table against inserts (after the open appends commit), on SQLite it takes the write
    /// lock. The time grows with the number of events, since it reads every stream's head.
    pub async fn create_checkpoint(&self, key: &SigningKey) -> Result<Checkpoint, StoreError> {
        let checkpoint = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => create_postgres(pool, key).await?,
            Backend::Sqlite { database, .. } => create_sqlite(database, key).await?,
        };
        tracing::info!(
            id = checkpoint.id,
            position = checkpoint.position,
            streams = checkpoint.stream_count,
            "log checkpoint recorded"
        );
        Ok(checkpoint)
    }

    /// Returns all checkpoints, oldest first, with the heads each recorded.
    pub async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => list_postgres(pool).await,
            Backend::Sqlite { database, .. } => list_sqlite(&database.pool).await,
        }
    }
}

/// Signs a snapshot into a checkpoint.
fn sign(snapshot: Snapshot, key: &SigningKey) -> Checkpoint {
    let created_at = Utc::now().trunc_subsecs(6);
    let stream_count = i64::try_from(snapshot.heads.len()).unwrap_or(i64::MAX);
    let digest = heads_digest(&snapshot.heads);
    let message = checkpoint_message(
        snapshot.place.position,
        snapshot.place.tx,
        stream_count,
        &digest,
        created_at,
    );
    Checkpoint {
        id: snapshot.id,
        position: snapshot.place.position,
        tx: snapshot.place.tx,
        created_at,
        stream_count,
        heads_digest: digest,
        signature: sign_message(key, &message),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        changed_heads: snapshot.changed_heads,
    }
}

fn head_from_row<R: Row>(row: &R) -> Result<StreamHead, sqlx::Error>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    Ok(StreamHead {
        stream_type: row.try_get("stream_type")?,
        stream_id: row.try_get("stream_id")?,
        sequence: row.try_get("sequence")?,
        hash: row.try_get("hash")?,
    })
}

async fn create_postgres(pool: &PgPool, key: &SigningKey) -> Result<Checkpoint, StoreError> {
    // EXCLUSIVE mode waits for every open transaction that inserted events and keeps new
    // inserts out until the checkpoint commits, while reads go on. So every event is final
    // and the newest event in log order is the end of the log; it also serializes checkpoint
    // writers.
    let mut transaction = pool.begin().await?;
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *transaction)
        .await?;

    let previous =
        sqlx::query("SELECT id, tx, position FROM log_checkpoints ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *transaction)
            .await?;
    let (previous_id, previous_place) = match previous {
        Some(row) => (
            row.try_get::<i64, _>("id")?,
            LogCheckpoint {
                tx: row.try_get("tx")?,
                position: row.try_get("position")?,
            },
        ),
        None => (0, LogCheckpoint::START),
    };

    let last = sqlx::query(
        "SELECT tx_id::text::bigint AS tx, global_position FROM events
          ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(&mut *transaction)
    .await?;
    let place = match last {
        Some(row) => LogCheckpoint {
            tx: row.try_get("tx")?,
            position: row.try_get("global_position")?,
        },
        None => LogCheckpoint::START,
    }
    .max(previous_place);

    let heads_query = |after: bool| {
        format!(
            "SELECT DISTINCT ON (aggregate_type, aggregate_id)
                    aggregate_type AS stream_type, aggregate_id AS stream_id, sequence,
                    COALESCE(hash, '') AS hash
               FROM events
              WHERE (tx_id, global_position) <= (($1::bigint)::text::xid8, $2)
                {}
              ORDER BY aggregate_type, aggregate_id, sequence DESC",
            if after {
                "AND (tx_id, global_position) > (($3::bigint)::text::xid8, $4)"
            } else {
                ""
            }
        )
    };
    let heads = sqlx::query(&heads_query(false))
        .bind(place.tx)
        .bind(place.position)
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(head_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let changed_heads = sqlx::query(&heads_query(true))
        .bind(place.tx)
        .bind(place.position)
        .bind(previous_place.tx)
        .bind(previous_place.position)
        .fetch_all(&mut *transaction)
        .await?
        .iter()
        .map(head_from_row)
        .collect::<Result<Vec<_>, _>>()?;

    let checkpoint = sign(
        Snapshot {
            id: previous_id + 1,
            place,
            heads,
            changed_heads,
        },
        key,
    );

    sqlx::query(
        "INSERT INTO log_checkpoints (id, position, tx, created_at, stream_count, heads_digest,
                                      message, signature, public_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(checkpoint.id)
    .bind(checkpoint.position)
    .bind(checkpoint.tx)
    .bind(checkpoint.created_at)
    .bind(checkpoint.stream_count)
    .bind(&checkpoint.heads_digest)
    .bind(checkpoint.message())
    .bind(&checkpoint.signature)
    .bind(&checkpoint.public_key)
    .execute(&mut *transaction)
    .await?;

    let column = |pick: fn(&StreamHead) -> String| -> Vec<String> {
        checkpoint.changed_heads.iter().map(pick).collect()
    };
    let sequences: Vec<i64> = checkpoint
        .changed_heads
        .iter()
        .map(|head| head.sequence)
        .collect();
    sqlx::query(
        "INSERT INTO log_checkpoint_heads (checkpoint_id, stream_type, stream_id, sequence, hash)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[])",
    )
    .bind(checkpoint.id)
    .bind(column(|head| head.stream_type.clone()))
    .bind(column(|head| head.stream_id.clone()))
    .bind(sequences)
    .bind(column(|head| head.hash.clone()))
    .execute(&mut *transaction)
    .await?;

    transaction.commit().await?;
    Ok(checkpoint)
}

async fn create_sqlite(
    database: &SqliteDatabase,
    key: &SigningKey,
) -> Result<Checkpoint, StoreError> {
    // The write lock keeps appends out, so the last position is the end of the log.
    let mut write = database.begin_write().await?;

    let previous: Option<(i64, i64)> =
        sqlx::query_as("SELECT id, position FROM log_checkpoints ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *write.transaction)
            .await?;
    let (previous_id, previous_position) = previous.unwrap_or((0, 0));
    let position: i64 = sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events")
        .fetch_one(&mut *write.transaction)
        .await?;

    // SQLite returns the row of max(sequence) for the bare column `hash`.
    let heads_query = "SELECT aggregate_type AS stream_type, aggregate_id AS stream_id,
                              max(sequence) AS sequence, COALESCE(hash, '') AS hash
                         FROM events
                        WHERE global_position <= ? AND global_position > ?
                        GROUP BY aggregate_type, aggregate_id";
    let heads = sqlx::query(heads_query)
        .bind(position)
        .bind(0_i64)
        .fetch_all(&mut *write.transaction)
        .await?
        .iter()
        .map(head_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let changed_heads = sqlx::query(heads_query)
        .bind(position)
        .bind(previous_position)
        .fetch_all(&mut *write.transaction)
        .await?
        .iter()
        .map(head_from_row)
        .collect::<Result<Vec<_>, _>>()?;

    let checkpoint = sign(
        Snapshot {
            id: previous_id + 1,
            place: LogCheckpoint { tx: 0, position },
            heads,
            changed_heads,
        },
        key,
    );

    sqlx::query(
        "INSERT INTO log_checkpoints (id, position, tx, created_at, stream_count, heads_digest,
                                      message, signature, public_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(checkpoint.id)
    .bind(checkpoint.position)
    .bind(checkpoint.tx)
    .bind(sqlite::format_timestamp(checkpoint.created_at))
    .bind(checkpoint.stream_count)
    .bind(&checkpoint.heads_digest)
    .bind(checkpoint.message())
    .bind(&checkpoint.signature)
    .bind(&checkpoint.public_key)
    .execute(&mut *write.transaction)
    .await?;
    for chunk in checkpoint.changed_heads.chunks(HEADS_CHUNK) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let query = format!(
            "INSERT INTO log_checkpoint_heads (checkpoint_id, stream_type, stream_id, sequence, hash)
             VALUES {rows}"
        );
        let mut statement = sqlx::query(&query);
        for head in chunk {
            statement = statement
                .bind(checkpoint.id)
                .bind(&head.stream_type)
                .bind(&head.stream_id)
                .bind(head.sequence)
                .bind(&head.hash);
        }
        statement.execute(&mut *write.transaction).await?;
    }

    write.commit().await?;
    Ok(checkpoint)
}

async fn list_postgres(pool: &PgPool) -> Result<Vec<Checkpoint>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, position, tx, created_at, stream_count, heads_digest, signature, public_key
           FROM log_checkpoints ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut checkpoints = Vec::with_capacity(rows.len());
    for row in rows {
        checkpoints.push(Checkpoint {
            id: row.try_get("id")?,
            position: row.try_get("position")?,
            tx: row.try_get("tx")?,
            created_at: row.try_get("created_at")?,
            stream_count: row.try_get("stream_count")?,
            heads_digest: row.try_get("heads_digest")?,
            signature: row.try_get("signature")?,
            public_key: row.try_get("public_key")?,
            changed_heads: Vec::new(),
        });
    }
    let heads = sqlx::query(
        "SELECT checkpoint_id, stream_type, stream_id, sequence, hash FROM log_checkpoint_heads
          ORDER BY checkpoint_id, stream_type, stream_id",
    )
    .fetch_all(pool)
    .await?;
    let mut by_checkpoint: BTreeMap<i64, Vec<StreamHead>> = BTreeMap::new();
    for row in &heads {
        by_checkpoint
            .entry(row.try_get("checkpoint_id")?)
            .or_default()
            .push(head_from_row(row)?);
    }
    Ok(attach_heads(checkpoints, by_checkpoint))
}

async fn list_sqlite(pool: &sqlx::SqlitePool) -> Result<Vec<Checkpoint>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, position, tx, created_at, stream_count, heads_digest, signature, public_key
           FROM log_checkpoints ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    let mut checkpoints = Vec::with_capacity(rows.len());
    for row in rows {
        let created_at: String = row.try_get("created_at")?;
        checkpoints.push(Checkpoint {
            id: row.try_get("id")?,
            position: row.try_get("position")?,
            tx: row.try_get("tx")?,
            created_at: sqlite::parse_timestamp(&created_at)?,
            stream_count: row.try_get("stream_count")?,
            heads_digest: row.try_get("heads_digest")?,
            signature: row.try_get("signature")?,
            public_key: row.try_get("public_key")?,
            changed_heads: Vec::new(),
        });
    }
    let heads = sqlx::query(
        "SELECT checkpoint_id, stream_type, stream_id, sequence, hash FROM log_checkpoint_heads
          ORDER BY checkpoint_id, stream_type, stream_id",
    )
    .fetch_all(pool)
    .await?;
    let mut by_checkpoint: BTreeMap<i64, Vec<StreamHead>> = BTreeMap::new();
    for row in &heads {
        by_checkpoint
            .entry(row.try_get("checkpoint_id")?)
            .or_default()
            .push(head_from_row(row)?);
    }
    Ok(attach_heads(checkpoints, by_checkpoint))
}

fn attach_heads(
    mut checkpoints: Vec<Checkpoint>,
    mut heads: BTreeMap<i64, Vec<StreamHead>>,
) -> Vec<Checkpoint> {
    for checkpoint in &mut checkpoints {
        checkpoint.changed_heads = heads.remove(&checkpoint.id).unwrap_or_default();
    }
    checkpoints
}

/// A failure to read or write a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("cannot write key file {path}: {cause}")]
    Write { path: String, cause: String },
    #[error("key file {path} already exists; choose another path or remove it")]
    Exists { path: String },
    #[error("key file {path} is not an Ed25519 private key in PKCS#8 PEM: {cause}")]
    Invalid { path: String, cause: String },
}

impl KeyFileError {
    /// Returns the stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            KeyFileError::Read { .. } => "KEY_FILE_UNREADABLE",
            KeyFileError::Write { .. } => "KEY_FILE_UNWRITABLE",
            KeyFileError::Exists { .. } => "KEY_FILE_EXISTS",
            KeyFileError::Invalid { .. } => "KEY_FILE_INVALID",
        }
    }
}

/// Reads an Ed25519 signing key from a PKCS#8 PEM file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| KeyFileError::Read {
        path: display.clone(),
        cause: error.to_string(),
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|error| KeyFileError::Invalid {
        path: display,
        cause: error.to_string(),
    })
}

/// Generates a key pair: the private key as PKCS#8 PEM in `path`, readable by the owner
/// only, and the public key as hex in `<path>.pub`. Refuses to overwrite either file.
/// Returns the public key's hex.
pub fn generate_key_files(path: &Path) -> Result<String, KeyFileError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|error| KeyFileError::Write {
            path: path.display().to_string(),
            cause: error.to_string(),
        })?;
    let public_key = hex::encode(key.verifying_key().to_bytes());
    let public_path = public_key_path(path);

    // Checked first, so an existing public key file does not leave a new private key behind.
    if public_path.exists() {
        return Err(KeyFileError::Exists {
            path: public_path.display().to_string(),
        });
    }
    write_new_file(path, pem.as_bytes(), 0o600)?;
    write_new_file(&public_path, format!("{public_key}\n").as_bytes(), 0o644)?;
    Ok(public_key)
}

/// Returns where [`generate_key_files`] puts the public key of `path`.
pub fn public_key_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyFileError> {
    use std::io::Write;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let error = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists {
            path: path.display().to_string(),
        },
        _ => KeyFileError::Write {
            path: path.display().to_string(),
            cause: error.to_string(),
        },
    };
    let mut file = options.open(path).map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_files_read_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("checkpoint.pem");

        let public_key = generate_key_files(&path).unwrap();
        let key = read_signing_key(&path).unwrap();
        assert_eq!(hex::encode(key.verifying_key().to_bytes()), public_key);

        let public_file = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(public_file, format!("{public_key}\n"));
        assert_eq!(
            super::super::parse_public_key(&public_file).unwrap(),
            key.verifying_key()
        );

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn generate_keeps_existing_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("checkpoint.pem");
        std::fs::write(&path, "old").unwrap();

        let error = generate_key_files(&path).unwrap_err();
        assert_eq!(error.code(), "KEY_FILE_EXISTS");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    }

    #[test]
    fn read_rejects_non_key_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("checkpoint.pem");
        std::fs::write(&path, "not a key").unwrap();

        let error = read_signing_key(&path).unwrap_err();
        assert_eq!(error.code(), "KEY_FILE_INVALID");
        let missing = read_signing_key(&directory.path().join("missing.pem")).unwrap_err();
        assert_eq!(missing.code(), "KEY_FILE_UNREADABLE");
    }
}
