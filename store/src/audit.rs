//! The record of reads of residents' personal data by anyone other than the resident: who read,
//! which ticket, through which field, and when. The table is the same on both backends.

use chrono::{DateTime, Utc};
use opencity_domain::access::Role;
use uuid::Uuid;

use crate::error::StoreError;
use crate::sqlite::{format_timestamp, parse_timestamp};
use crate::store::{Backend, Store};
use crate::tokens::numbered;

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS personal_data_reads (
    read_at   TEXT NOT NULL,
    token_id  TEXT NOT NULL,
    role      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    field     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS personal_data_reads_ticket ON personal_data_reads (ticket_id, read_at);
"#;

/// The maximum of reads returned by one call of [`Store::personal_data_reads`].
pub const MAX_READS_PER_PAGE: usize = 1_000;

/// One read of a ticket's personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalDataRead {
    pub read_at: DateTime<Utc>,
    pub token_id: Uuid,
    pub role: Role,
    pub subject: String,
    pub ticket_id: Uuid,
    /// The GraphQL field that returned the data, such as `Ticket.events`.
    pub field: String,
}

type ReadRow = (String, String, String, String, String, String);

fn read_from_row(row: ReadRow) -> Result<PersonalDataRead, StoreError> {
    let (read_at, token_id, role, subject, ticket_id, field) = row;
    let invalid = |what: String| StoreError::InvalidEvent(what.into());
    Ok(PersonalDataRead {
        read_at: parse_timestamp(&read_at)?,
        token_id: Uuid::parse_str(&token_id).map_err(|error| invalid(format!("invalid token id `{token_id}`: {error}")))?,
        role: role.parse().map_err(|error| invalid(format!("invalid stored role: {error}")))?,
        subject,
        ticket_id: Uuid::parse_str(&ticket_id).map_err(|error| invalid(format!("invalid ticket id `{ticket_id}`: {error}")))?,
        field,
    })
}

impl Store {
    /// Records reads of personal data in one transaction: all of them or none.
    pub async fn record_personal_data_reads(&self, reads: &[PersonalDataRead]) -> Result<(), StoreError> {
        if reads.is_empty() {
            return Ok(());
        }
        let rows: Vec<[String; 6]> = reads
            .iter()
            .map(|read| {
                [
                    format_timestamp(read.read_at),
                    read.token_id.to_string(),
                    read.role.as_str().to_string(),
                    read.subject.clone(),
                    read.ticket_id.to_string(),
                    read.field.clone(),
                ]
            })
            .collect();
        // At 6 parameters a row, 500 rows stay far below the parameter limit of either backend.
        const ROWS_PER_STATEMENT: usize = 500;
        let statements: Vec<(String, &[[String; 6]])> = rows
            .chunks(ROWS_PER_STATEMENT)
            .map(|chunk| {
                let values = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let insert = format!(
                    "INSERT INTO personal_data_reads (read_at, token_id, role, subject, ticket_id, field) VALUES {values}"
                );
                (insert, chunk)
            })
            .collect();
        fn bind_rows<'q, DB: sqlx::Database>(
            mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
            rows: &'q [[String; 6]],
        ) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
        where
            String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        {
            for row in rows {
                for value in row {
                    query = query.bind(value);
                }
            }
            query
        }
        match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                let mut transaction = pool.begin().await?;
                for (insert, chunk) in &statements {
                    let insert = numbered(insert);
                    bind_rows(sqlx::query(&insert), chunk).execute(&mut *transaction).await?;
                }
                transaction.commit().await?;
            }
            Backend::Sqlite { database, .. } => {
                let mut write = database.begin_write().await?;
                for (insert, chunk) in &statements {
                    bind_rows(sqlx::query(insert), chunk).execute(&mut *write.transaction).await?;
                }
                write.commit().await?;
            }
        }
        Ok(())
    }

    /// Returns the latest reads, newest first: of one ticket, or of all when `ticket_id` is
    /// `None`. At most `limit` (capped at [`MAX_READS_PER_PAGE`]).
    pub async fn personal_data_reads(&self, ticket_id: Option<Uuid>, limit: usize) -> Result<Vec<PersonalDataRead>, StoreError> {
        let limit = limit.clamp(1, MAX_READS_PER_PAGE) as i64;
        let ticket = ticket_id.map(|id| id.to_string());
        let rows: Vec<ReadRow> = match self.backend.as_ref() {
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(
                    "SELECT read_at, token_id, role, subject, ticket_id, field FROM personal_data_reads
                      WHERE $1::text IS NULL OR ticket_id = $1 ORDER BY read_at DESC LIMIT $2",
                )
                .bind(ticket)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Backend::Sqlite { database, .. } => {
                sqlx::query_as(
                    "SELECT read_at, token_id, role, subject, ticket_id, field FROM personal_data_reads
                      WHERE ?1 IS NULL OR ticket_id = ?1 ORDER BY read_at DESC LIMIT ?2",
                )
                .bind(ticket)
                .bind(limit)
                .fetch_all(&database.pool)
                .await?
            }
        };
        rows.into_iter().map(read_from_row).collect()
    }
}
