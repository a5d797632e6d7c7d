//! Access rules: the operations each role may run and the tickets each token can read.
//!
//! | role | tickets in scope | may run |
//! |---|---|---|
//! | resident | the requester's resident id equals the subject | register (for themselves), confirm, reject, rate, comment, escalate, cancel |
//! | dispatcher | the building's district equals the subject | register, classify, route, confirm, reject, rate (for a resident on the phone), comment, escalate, cancel, close |
//! | organization | routed to the organization with the subject's id | classify, route, accept, assign, start, suspend, resume, report, comment, cancel, close |
//! | contractor | assigned to the contractor with the subject's id | start, suspend, resume, report, comment |
//! | analyst | all, without personal data | statistics and ticket reads only |
//! | auditor | all | reads only: tickets, histories, statistics |
//! | admin | all | everything |
//!
//! Statistics (`slaStats`, `overdueCounters`, `contractorRatings` and the counters
//! subscription) are aggregates without personal data, open to every role but residents and
//! contractors. A ticket outside the scope is reported as not found, so its existence leaks
//! nothing. A schema executed in-process without the HTTP layer has no principal and is not
//! restricted: only the server's own tools do that.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_graphql::Context;
use opencity_domain::access::Role;
use opencity_domain::ticket::TicketCommand;
use chrono::Utc;
use opencity_projections::TicketView;
use opencity_store::audit::PersonalDataRead;
use opencity_store::personal;
use opencity_store::Store;
use uuid::Uuid;

use crate::auth::Principal;
use crate::errors::ApiError;
use crate::graphql::types::EventRecord;

/// Code of an operation the token's role may not run.
pub const FORBIDDEN: &str = "FORBIDDEN";

/// Returns the principal of the request, `None` for an in-process schema.
pub fn principal<'a>(ctx: &'a Context<'_>) -> Option<&'a Principal> {
    ctx.data_opt::<Principal>()
}

/// Tells whether `role` may run `command` on a ticket in its scope.
pub fn may_run(role: Role, command: &TicketCommand) -> bool {
    use TicketCommand as C;
    match role {
        Role::Admin => true,
        Role::Analyst | Role::Auditor => false,
        Role::Resident => matches!(
            command,
            C::Register(_) | C::ConfirmCompletion(_) | C::RejectCompletion(_) | C::Rate(_) | C::Comment(_) | C::Escalate(_) | C::Cancel(_)
        ),
        Role::Dispatcher => matches!(
            command,
            C::Register(_)
                | C::Classify(_)
                | C::Route(_)
                | C::ConfirmCompletion(_)
                | C::RejectCompletion(_)
                | C::Rate(_)
                | C::Comment(_)
                | C::Escalate(_)
                | C::Cancel(_)
                | C::Close(_)
        ),
        Role::Organization => matches!(
            command,
            C::Classify(_)
                | C::Route(_)
                | C::Accept(_)
                | C::AssignContractor(_)
                | C::StartWork(_)
                | C::Suspend(_)
                | C::Resume(_)
                | C::ReportCompletion(_)
                | C::Comment(_)
                | C::Cancel(_)
                | C::Close(_)
        ),
        Role::Contractor => matches!(
            command,
            C::StartWork(_) | C::Suspend(_) | C::Resume(_) | C::ReportCompletion(_) | C::Comment(_)
        ),
    }
}

/// Tells whether the ticket is in the scope of `principal`.
pub fn ticket_in_scope(principal: &Principal, view: &TicketView) -> bool {
    let subject = Some(principal.subject.as_str());
    match principal.role {
        Role::Admin | Role::Auditor | Role::Analyst => true,
        Role::Resident => view.resident_id.as_deref() == subject,
        Role::Dispatcher => view.district.as_deref() == subject,
        Role::Organization => view.organization_id.as_deref() == subject,
        Role::Contractor => view.contractor_id.as_deref() == subject,
    }
}

/// Tells whether the ticket is visible to the request: always without a principal.
pub fn visible(ctx: &Context<'_>, view: &TicketView) -> bool {
    principal(ctx).is_none_or(|principal| ticket_in_scope(principal, view))
}

/// Tells whether the principal reads requesters' personal data; analysts do not.
pub fn sees_personal_data(principal: Option<&Principal>) -> bool {
    principal.is_none_or(|principal| principal.role != Role::Analyst)
}

/// Tells whether a payload contains personal data or free text that [`hide_personal_data`]
/// would replace, other than the marks of hidden, erased or unreadable texts. It runs for every
/// delivered event, so it scans without copying.
pub fn has_personal_data(payload: &serde_json::Value) -> bool {
    match payload {
        serde_json::Value::Object(fields) => fields.iter().any(|(key, value)| {
            if is_personal(key, value) {
                contains_readable_text(value)
            } else {
                has_personal_data(value)
            }
        }),
        serde_json::Value::Array(items) => items.iter().any(has_personal_data),
        _ => false,
    }
}

/// Tells whether a personal value contains a readable text. The requester's resident id is not
/// counted: it is the pseudonymous key of access scopes, not something to read.
fn contains_readable_text(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => ![HIDDEN, personal::ERASED, personal::UNREADABLE].contains(&text.as_str()),
        serde_json::Value::Object(fields) => {
            fields.iter().any(|(key, field)| key != "resident_id" && contains_readable_text(field))
        }
        serde_json::Value::Array(items) => items.iter().any(contains_readable_text),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => false,
    }
}

/// Makes event records of one ticket readable for the principal. Analysts get personal data
/// hidden, and everyone else gets the sealed texts opened or marked as erased. A read of
/// personal data by anyone but the resident is recorded under `field`, and a read that cannot
/// be recorded fails.
pub async fn disclose(
    store: &Store,
    principal: Option<&Principal>,
    ticket_id: Uuid,
    field: &str,
    records: &mut [EventRecord],
) -> Result<(), ApiError> {
    if !sees_personal_data(principal) {
        for record in records.iter_mut() {
            hide_personal_data(&mut record.payload.0);
        }
    }
    open_records(store, ticket_id, records).await?;
    record_reads_of(store, principal, ticket_id, field, records).await
}

/// Opens the sealed texts of records of one ticket with one key lookup, and marks the records
/// whose texts were erased.
async fn open_records(store: &Store, ticket_id: Uuid, records: &mut [EventRecord]) -> Result<(), ApiError> {
    let ring = {
        let payloads: Vec<&serde_json::Value> = records.iter().map(|record| &record.payload.0).collect();
        key_ring(store, &[ticket_id], &payloads).await?
    };
    let stream_id = ticket_id.to_string();
    for record in records.iter_mut() {
        let opened = personal::open_value(&ring, &stream_id, &mut record.payload.0);
        record.personal_data_erased = opened.erased > 0;
    }
    Ok(())
}

/// Reads the residents' keys that the sealed texts of `payloads`, events of `ticket_ids`, name.
pub(crate) async fn key_ring(
    store: &Store,
    ticket_ids: &[Uuid],
    payloads: &[&serde_json::Value],
) -> Result<personal::KeyRing, ApiError> {
    store.key_ring(payloads).await.map_err(|error| {
        tracing::error!(tickets = ?ticket_ids, error.cause_chain = ?error, "reading residents' keys failed");
        ApiError::internal()
    })
}

/// Records the principal's read under `field` when any of the opened records shows personal
/// data.
async fn record_reads_of(
    store: &Store,
    principal: Option<&Principal>,
    ticket_id: Uuid,
    field: &str,
    records: &[EventRecord],
) -> Result<(), ApiError> {
    if records.iter().any(|record| has_personal_data(&record.payload.0)) {
        record_read(store, principal, ticket_id, field).await?;
    }
    Ok(())
}

/// Records a read of a ticket's personal data. Reads by the resident, by in-process callers
/// without a principal and by analysts (who get the data hidden) are not recorded. A read that
/// cannot be recorded fails, so that no read goes unrecorded.
///
/// One token's reads of one ticket through one field are recorded once per
/// [`READ_RECORD_WINDOW`] in this process: a dashboard with a thousand subscriptions on one token
/// would otherwise write a thousand identical rows per event.
pub async fn record_read(store: &Store, principal: Option<&Principal>, ticket_id: Uuid, field: &str) -> Result<(), ApiError> {
    record_reads(store, principal, &[ticket_id], field).await
}

/// Records reads of several tickets' personal data like [`record_read`], in one write: a
/// subscriber that delivers a batch of events waits for the database once, not once per event.
pub async fn record_reads(store: &Store, principal: Option<&Principal>, ticket_ids: &[Uuid], field: &str) -> Result<(), ApiError> {
    let Some(principal) = principal else {
        return Ok(());
    };
    if matches!(principal.role, Role::Resident | Role::Analyst) {
        return Ok(());
    }
    let mut ticket_ids = ticket_ids.to_vec();
    ticket_ids.sort_unstable();
    ticket_ids.dedup();

    // Concurrent reads of one key wait for the first one's write, so none is delivered before
    // its read is recorded. The ids are sorted above, so slots are locked in ticket order and
    // two batches cannot deadlock.
    let mut due = Vec::new();
    for ticket_id in ticket_ids {
        let slot = recent_read_slot(principal.token_id, ticket_id, field);
        let last_recorded = slot.lock_owned().await;
        if last_recorded.is_some_and(|at: Instant| at.elapsed() < READ_RECORD_WINDOW) {
            continue;
        }
        due.push((ticket_id, last_recorded));
    }
    if due.is_empty() {
        return Ok(());
    }
    let read_at = Utc::now();
    let reads: Vec<PersonalDataRead> = due
        .iter()
        .map(|(ticket_id, _)| PersonalDataRead {
            read_at,
            token_id: principal.token_id,
            role: principal.role,
            subject: principal.subject.clone(),
            ticket_id: *ticket_id,
            field: field.to_string(),
        })
        .collect();
    store.record_personal_data_reads(&reads).await.map_err(|error| {
        tracing::error!(tickets = reads.len(), token = %principal.token_id, %error, "recording personal data reads failed");
        ApiError::internal()
    })?;
    let recorded = Instant::now();
    for (_, mut last_recorded) in due {
        *last_recorded = Some(recorded);
    }
    Ok(())
}

/// How long a recorded read covers the same token's later reads of the same ticket and field.
pub const READ_RECORD_WINDOW: Duration = Duration::from_secs(60);

/// Keys with their last recorded read above which the map is pruned of expired keys.
const RECENT_READS_PRUNE_AT: usize = 10_000;

type ReadKey = (Uuid, Uuid, String);
type ReadSlot = Arc<tokio::sync::Mutex<Option<Instant>>>;

/// Returns the slot of one token, ticket and field: the time its read was last recorded.
fn recent_read_slot(token_id: Uuid, ticket_id: Uuid, field: &str) -> ReadSlot {
    static RECENT_READS: LazyLock<Mutex<HashMap<ReadKey, ReadSlot>>> = LazyLock::new(Mutex::default);
    let mut recent = RECENT_READS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if recent.len() >= RECENT_READS_PRUNE_AT {
        // A slot that is locked has a read in flight and stays.
        recent.retain(|_, slot| match slot.try_lock() {
            Ok(last_recorded) => last_recorded.is_some_and(|at| at.elapsed() < READ_RECORD_WINDOW),
            Err(_) => true,
        });
    }
    recent.entry((token_id, ticket_id, field.to_string())).or_default().clone()
}

/// Rejects roles other than auditors and administrators.
pub fn require_audit(ctx: &Context<'_>, operation: &str) -> Result<(), ApiError> {
    match principal(ctx) {
        Some(principal) if !matches!(principal.role, Role::Auditor | Role::Admin) => Err(forbidden(principal, operation)),
        _ => Ok(()),
    }
}

/// Rejects roles that may not read statistics.
pub fn require_statistics(ctx: &Context<'_>, operation: &str) -> Result<(), ApiError> {
    match principal(ctx) {
        Some(principal) if matches!(principal.role, Role::Resident | Role::Contractor) => {
            Err(forbidden(principal, operation))
        }
        _ => Ok(()),
    }
}

/// Returns the error of an operation the principal's role may not run.
pub fn forbidden(principal: &Principal, operation: &str) -> ApiError {
    tracing::info!(token = %principal.token_id, role = principal.role.as_str(), operation, "operation forbidden");
    ApiError::new(
        FORBIDDEN,
        format!(
            "Роль «{}» не может выполнять «{operation}». Если это нужно по работе, попросите администратора \
             выпустить токен с подходящей ролью.",
            principal.role.russian()
        ),
    )
}

/// Payload keys whose values are a requester's personal data or free text that may contain it.
const PERSONAL_KEYS: [&str; 6] = ["requester", "description", "premises", "note", "text", "author"];

/// Tells whether the field `key` with `value` is personal data: one of [`PERSONAL_KEYS`], or a
/// `reason` written as free text rather than a code.
fn is_personal(key: &str, value: &serde_json::Value) -> bool {
    let free_text_reason = key == "reason"
        && value.as_str().is_some_and(|reason| !reason.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_'));
    PERSONAL_KEYS.contains(&key) || free_text_reason
}

/// The text that replaces personal data a principal may not read.
pub const HIDDEN: &str = "[скрыто]";

/// Replaces the personal data and free text of an event payload with [`HIDDEN`]. A `reason` is
/// hidden when it is free text; a reason code (`duplicate`, `no_access`) stays.
pub fn hide_personal_data(payload: &mut serde_json::Value) {
    match payload {
        serde_json::Value::Object(fields) => {
            for (key, value) in fields.iter_mut() {
                if is_personal(key, value) {
                    if !value.is_null() {
                        *value = serde_json::Value::String(HIDDEN.to_string());
                    }
                } else {
                    hide_personal_data(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(hide_personal_data),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn repeated_reads_are_recorded_once() {
        let (_dir, config) = opencity_store::testing::temp_sqlite();
        let store = Store::open(&config).await.expect("store opens");
        let principal = Principal { token_id: Uuid::new_v4(), role: Role::Dispatcher, subject: "Вахитовский".to_string() };
        let ticket_id = Uuid::new_v4();

        let reads = (0..50).map(|_| record_read(&store, Some(&principal), ticket_id, "Subscription.ticketEvents"));
        for result in futures::future::join_all(reads).await {
            result.expect("read recorded");
        }
        record_read(&store, Some(&principal), ticket_id, "Ticket.events").await.expect("read recorded");
        let resident = Principal { role: Role::Resident, ..principal.clone() };
        record_read(&store, Some(&resident), ticket_id, "Ticket.events").await.expect("own read");

        let recorded = store.personal_data_reads(Some(ticket_id), 100).await.expect("reads listed");
        let mut fields: Vec<&str> = recorded.iter().map(|read| read.field.as_str()).collect();
        fields.sort();
        assert_eq!(fields, ["Subscription.ticketEvents", "Ticket.events"]);
    }

    #[test]
    fn personal_data_is_hidden() {
        let mut payload = json!({
            "TicketRegistered": {
                "requester": { "name": "Иванова", "phone": "+7 900" },
                "description": "Течёт кран у Ивановой",
                "category": "water_leak",
                "building": { "id": "b1", "address": "ул. Пушкина, 1" },
                "reason": "duplicate",
            }
        });
        hide_personal_data(&mut payload);
        let body = &payload["TicketRegistered"];
        assert_eq!(body["requester"], HIDDEN);
        assert_eq!(body["description"], HIDDEN);
        assert_eq!(body["category"], "water_leak");
        assert_eq!(body["building"]["address"], "ул. Пушкина, 1");
        assert_eq!(body["reason"], "duplicate");

        assert!(!has_personal_data(&payload));

        let erased = json!({ "requester": { "name": personal::ERASED, "phone": null, "resident_id": "res-1" } });
        assert!(!has_personal_data(&erased));

        let mut rejected = json!({ "CompletionRejected": { "reason": "Кран так и течёт" } });
        assert!(has_personal_data(&rejected));
        hide_personal_data(&mut rejected);
        assert_eq!(rejected["CompletionRejected"]["reason"], HIDDEN);
    }
}
