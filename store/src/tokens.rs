//! API tokens: opaque bearer secrets that grant a role and a subject.
//!
//! The secret is shown once, when the token is created, and only its SHA-256 hash is stored,
//! so a copy of the database does not let anyone call the API. Tokens are revoked by id and
//! may expire. The `api_tokens` table is created with the rest of the schema on both backends.
//! Its timestamps are RFC 3339 text in UTC, as in the SQLite schema.

use chrono::{DateTime, Utc};
use opencity_domain::access::Role;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::StoreError;
use crate::sqlite::{format_timestamp, parse_timestamp};
use crate::store::{Backend, Store};

/// The token table, the same on both backends.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS api_tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    label       TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
"#;

/// Prefix of every secret, so that a leaked token is recognizable in logs and scanners.
pub const SECRET_PREFIX: &str = "oc_";

/// Random bytes of a secret, written as hex after the prefix.
const SECRET_BYTES: usize = 32;

/// Maximum length of a token's subject and label.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// A stored token, without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: Uuid,
    pub role: Role,
    /// Whom the token acts for: a resident, organization or contractor id, a dispatcher's
    /// district, or a person's name for analysts, auditors and administrators.
    pub subject: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token just created: the record and the secret, which is not stored.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub secret: String,
}

/// The reason a presented secret does not authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRejection {
    /// Not a secret of this format, or no token has it.
    Unknown,
    Revoked,
    Expired,
}

/// A token that cannot be created as requested.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("субъект токена пуст или длиннее {MAX_SUBJECT_CHARS} символов: укажите идентификатор жителя, организации, подрядчика, район или имя")]
    InvalidSubject,
    #[error("срок действия токена уже истёк: укажите момент в будущем")]
    ExpiresInPast,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Returns the stored hash of a secret: lowercase hex SHA-256 of its UTF-8 bytes.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Tells whether `secret` has the shape of a secret this module issues.
pub fn is_well_formed(secret: &str) -> bool {
    secret
        .strip_prefix(SECRET_PREFIX)
        .is_some_and(|rest| rest.len() == SECRET_BYTES * 2 && rest.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}

const COLUMNS: &str = "id, role, subject, label, created_at, expires_at, revoked_at";

/// A row of [`COLUMNS`] as both backends decode it.
type TokenRow = (String, String, String, Option<String>, String, Option<String>, Option<String>);

fn record_from_row(row: TokenRow) -> Result<TokenRecord, StoreError> {
    let (id, role, subject, label, created_at, expires_at, revoked_at) = row;
    let invalid = |what: String| StoreError::InvalidEvent(what.into());
    Ok(TokenRecord {
        id: Uuid::parse_str(&id).map_err(|error| invalid(format!("invalid token id `{id}`: {error}")))?,
        role: role.parse().map_err(|error| invalid(format!("invalid stored token role: {error}")))?,
        subject,
        label,
        created_at: parse_timestamp(&created_at)?,
        expires_at: expires_at.as_deref().map(parse_timestamp).transpose()?,
        revoked_at: revoked_at.as_deref().map(parse_timestamp).transpose()?,
    })
}

/// Replaces each `?` of a query with `$1`, `$2`, ... for PostgreSQL.
pub(crate) fn numbered(query: &str) -> String {
    let mut numbered = String::with_capacity(query.len() + 8);
    let mut index = 0;
    for character in query.chars() {
        if character == '?' {
            index += 1;
            numbered.push_str(&format!("${index}"));
        } else {
            numbered.push(character);
        }
    }
    numbered
}

impl Store {
    /// Creates a token for `role` and `subject` and returns it with its secret, which is
    /// shown to the caller once and not stored.
    pub async fn create_token(
        &self,
        role: Role,
        subject: &str,
        label: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, TokenError> {
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(TokenError::InvalidSubject);
        }

        let label = label.map(str::trim).filter(|label| !label.is_empty());
        if label.is_some_and(|label| label.chars().count() > MAX_SUBJECT_CHARS) {
            return Err(TokenError::InvalidSubject);
        }

        let now = Utc::now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(TokenError::ExpiresInPast);
        }
        let record = TokenRecord {
            id: Uuid::new_v4(),
            role,
            subject: subject.to_string(),
            label: label.map(str::to_string),
            created_at: now,
            expires_at,
            revoked_at: None,
        };

        let secret = new_secret();
        let insert = "INSERT INTO api_tokens (id, secret_hash, role, subject, label, created_at, expires_at)
                      VALUES (?, ?, ?, ?, ?, ?, ?)";
        let values = (
            record.id.to_string(),
            secret_hash(&secret),
            role.as_str(),
            record.subject.clone(),
            record.label.clone(),
            format_timestamp(now),
            expires_at.map(format_timestamp),
        );
        // The same values in the same order on both backends.
        macro_rules! bind_values {
            ($query:expr) => {
                $query
                    .bind(values.0)
                    .bind(values.1)
                    .bind(values.2)
                    .bind(values.3)
                    .bind(values.4)
                    .bind(values.5)
                    .bind(values.6)
            };
        }
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                bind_values!(sqlx::query(&numbered(insert))).execute(pool).await.map_err(StoreError::from)?;
            }
            Backend::Sqlite { database, .. } => {
                let mut write = database.begin_write().await.map_err(StoreError::from)?;
                bind_values!(sqlx::query(insert))
                    .execute(&mut *write.transaction)
                    .await
                    .map_err(StoreError::from)?;
                write.commit().await.map_err(StoreError::from)?;
            }
        }
        Ok(IssuedToken { record, secret })
    }

    /// Looks up the token of a presented secret and checks that it is in force at `now`.
    pub async fn authenticate_token(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<TokenRecord, TokenRejection>, StoreError> {
        if !is_well_formed(secret) {
            return Ok(Err(TokenRejection::Unknown));
        }
        let query = format!("SELECT {COLUMNS} FROM api_tokens WHERE secret_hash = ?");
        let hash = secret_hash(secret);
        let record = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let row: Option<TokenRow> =
                    sqlx::query_as(&numbered(&query)).bind(hash).fetch_optional(pool).await?;
                row.map(record_from_row).transpose()?
            }
            Backend::Sqlite { database, .. } => {
                let row: Option<TokenRow> =
                    sqlx::query_as(&query).bind(hash).fetch_optional(&database.pool).await?;
                row.map(record_from_row).transpose()?
            }
        };
        let Some(record) = record else {
            return Ok(Err(TokenRejection::Unknown));
        };
        if record.revoked_at.is_some() {
            return Ok(Err(TokenRejection::Revoked));
        }
        if record.expires_at.is_some_and(|at| at <= now) {
            return Ok(Err(TokenRejection::Expired));
        }
        Ok(Ok(record))
    }

    /// Returns every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id");
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let rows: Vec<TokenRow> = sqlx::query_as(&query).fetch_all(pool).await?;
                rows.into_iter().map(record_from_row).collect()
            }
            Backend::Sqlite { database, .. } => {
                let rows: Vec<TokenRow> = sqlx::query_as(&query).fetch_all(&database.pool).await?;
                rows.into_iter().map(record_from_row).collect()
            }
        }
    }

    /// Revokes a token at `now`. Returns false when no token in force has this id.
    pub async fn revoke_token(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let update = "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL";
        let revoked = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                sqlx::query(&numbered(update))
                    .bind(format_timestamp(now))
                    .bind(id.to_string())
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
            Backend::Sqlite { database, .. } => {
                let mut write = database.begin_write().await?;
                let affected = sqlx::query(update)
                    .bind(format_timestamp(now))
                    .bind(id.to_string())
                    .execute(&mut *write.transaction)
                    .await?
                    .rows_affected();
                write.commit().await?;
                affected
            }
        };
        Ok(revoked == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_well_formed_and_distinct() {
        let first = new_secret();
        let second = new_secret();
        assert!(is_well_formed(&first), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn malformed_secrets_are_rejected() {
        for secret in ["", "oc_", "oc_xyz", "Bearer oc_00", &format!("xx_{}", "0".repeat(64))] {
            assert!(!is_well_formed(secret), "{secret}");
        }
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
