//! Events of the ticket aggregate. Each event is immutable once stored; each carries
//! `occurred_at`, the business time, and the facts derived when it happened (deadlines).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{
    BuildingRef, CancelReason, Channel, CloseReason, ContractorRef, Deadlines, OrganizationRef,
    Priority, Rating, Requester,
};

/// Version of every ticket event's payload schema; bump it per event when its fields change.
pub const TICKET_EVENT_VERSION: &str = "1.0";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TicketEvent {
    TicketRegistered(TicketRegistered),
    TicketClassified(TicketClassified),
    TicketRouted(TicketRouted),
    TicketAccepted(TicketAccepted),
    ContractorAssigned(ContractorAssigned),
    WorkStarted(WorkStarted),
    WorkSuspended(WorkSuspended),
    WorkResumed(WorkResumed),
    CompletionReported(CompletionReported),
    CompletionConfirmed(CompletionConfirmed),
    CompletionRejected(CompletionRejected),
    TicketRated(TicketRated),
    TicketCommented(TicketCommented),
    TicketEscalated(TicketEscalated),
    TicketCancelled(TicketCancelled),
    TicketClosed(TicketClosed),
    DeadlinePassed(DeadlinePassed),
    DataAnomalyFlagged(DataAnomalyFlagged),
}

impl TicketEvent {
    /// Returns the business time of the event.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            TicketEvent::TicketRegistered(e) => e.occurred_at,
            TicketEvent::TicketClassified(e) => e.occurred_at,
            TicketEvent::TicketRouted(e) => e.occurred_at,
            TicketEvent::TicketAccepted(e) => e.occurred_at,
            TicketEvent::ContractorAssigned(e) => e.occurred_at,
            TicketEvent::WorkStarted(e) => e.occurred_at,
            TicketEvent::WorkSuspended(e) => e.occurred_at,
            TicketEvent::WorkResumed(e) => e.occurred_at,
            TicketEvent::CompletionReported(e) => e.occurred_at,
            TicketEvent::CompletionConfirmed(e) => e.occurred_at,
            TicketEvent::CompletionRejected(e) => e.occurred_at,
            TicketEvent::TicketRated(e) => e.occurred_at,
            TicketEvent::TicketCommented(e) => e.occurred_at,
            TicketEvent::TicketEscalated(e) => e.occurred_at,
            TicketEvent::TicketCancelled(e) => e.occurred_at,
            TicketEvent::TicketClosed(e) => e.occurred_at,
            TicketEvent::DeadlinePassed(e) => e.occurred_at,
            TicketEvent::DataAnomalyFlagged(e) => e.occurred_at,
        }
    }
}

impl TicketEvent {
    /// Returns the event's texts that are a requester's personal data or free text that may
    /// contain it: the requester's name, phone and e-mail, the premises, descriptions, notes,
    /// comments and reasons written by people. The store encrypts exactly these. The
    /// requester's resident id stays readable, because access scopes are decided by it.
    pub fn personal_texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            TicketEvent::TicketRegistered(e) => {
                let requester = &mut e.requester;
                [&mut requester.name, &mut requester.phone, &mut requester.email, &mut e.premises]
                    .into_iter()
                    .filter_map(Option::as_mut)
                    .chain(std::iter::once(&mut e.description))
                    .collect()
            }
            TicketEvent::WorkSuspended(e) => vec![&mut e.reason],
            TicketEvent::CompletionReported(e) => e.note.as_mut().into_iter().collect(),
            TicketEvent::CompletionRejected(e) => vec![&mut e.reason],
            TicketEvent::TicketCommented(e) => vec![&mut e.author, &mut e.text],
            TicketEvent::TicketEscalated(e) => vec![&mut e.reason],
            TicketEvent::TicketCancelled(e) => e.note.as_mut().into_iter().collect(),
            TicketEvent::TicketClassified(_)
            | TicketEvent::TicketRouted(_)
            | TicketEvent::TicketAccepted(_)
            | TicketEvent::ContractorAssigned(_)
            | TicketEvent::WorkStarted(_)
            | TicketEvent::WorkResumed(_)
            | TicketEvent::CompletionConfirmed(_)
            | TicketEvent::TicketRated(_)
            | TicketEvent::TicketClosed(_)
            | TicketEvent::DeadlinePassed(_)
            | TicketEvent::DataAnomalyFlagged(_) => Vec::new(),
        }
    }
}

impl DomainEvent for TicketEvent {
    fn event_type(&self) -> String {
        let name = match self {
            TicketEvent::TicketRegistered(_) => "TicketRegistered",
            TicketEvent::TicketClassified(_) => "TicketClassified",
            TicketEvent::TicketRouted(_) => "TicketRouted",
            TicketEvent::TicketAccepted(_) => "TicketAccepted",
            TicketEvent::ContractorAssigned(_) => "ContractorAssigned",
            TicketEvent::WorkStarted(_) => "WorkStarted",
            TicketEvent::WorkSuspended(_) => "WorkSuspended",
            TicketEvent::WorkResumed(_) => "WorkResumed",
            TicketEvent::CompletionReported(_) => "CompletionReported",
            TicketEvent::CompletionConfirmed(_) => "CompletionConfirmed",
            TicketEvent::CompletionRejected(_) => "CompletionRejected",
            TicketEvent::TicketRated(_) => "TicketRated",
            TicketEvent::TicketCommented(_) => "TicketCommented",
            TicketEvent::TicketEscalated(_) => "TicketEscalated",
            TicketEvent::TicketCancelled(_) => "TicketCancelled",
            TicketEvent::TicketClosed(_) => "TicketClosed",
            TicketEvent::DeadlinePassed(_) => "DeadlinePassed",
            TicketEvent::DataAnomalyFlagged(_) => "DataAnomalyFlagged",
        };
        name.to_string()
    }

    fn event_version(&self) -> String {
        TICKET_EVENT_VERSION.to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketRegistered {
    pub ticket_id: Uuid,
    pub external_id: Option<String>,
    pub channel: Channel,
    pub requester: Requester,
    pub building: BuildingRef,
    pub premises: Option<String>,
    pub category: String,
    pub priority: Priority,
    pub description: String,
    /// Deadlines computed from the SLA catalogue (or the source's own target) at registration.
    pub deadlines: Deadlines,
    pub occurred_at: DateTime<Utc>,
}

/// The category was corrected; deadlines are recomputed from the registration time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketClassified {
    pub category: String,
    pub priority: Priority,
    pub deadlines: Deadlines,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketRouted {
    pub organization: OrganizationRef,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketAccepted {
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContractorAssigned {
    pub contractor: ContractorRef,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkStarted {
    pub occurred_at: DateTime<Utc>,
}

/// The SLA clock pauses (no access to the premises, waiting for the resident).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkSuspended {
    pub reason: String,
    pub occurred_at: DateTime<Utc>,
}

/// The SLA clock runs again; `deadlines` are the old ones moved by the paused time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkResumed {
    pub paused_seconds: i64,
    pub deadlines: Deadlines,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionReported {
    pub note: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionConfirmed {
    pub occurred_at: DateTime<Utc>,
}

/// The resident rejected the work: the ticket reopens with a new resolution deadline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionRejected {
    pub reason: String,
    pub reopen_count: u32,
    pub deadlines: Deadlines,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketRated {
    pub rating: Rating,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketCommented {
    pub author: String,
    pub text: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketEscalated {
    pub reason: String,
    pub level: u32,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketCancelled {
    pub reason: CancelReason,
    pub duplicate_of: Option<Uuid>,
    pub note: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

/// The ticket is closed. `resolved_at` is when the work was done: the completion report, or the
/// closing time when no report was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketClosed {
    pub reason: CloseReason,
    pub resolved_at: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Response,
    Resolution,
}

/// A deadline passed while the ticket was open, recorded once per deadline value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadlinePassed {
    pub kind: DeadlineKind,
    pub deadline: DateTime<Utc>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// The source closed (or completed) the record before it was created; the duration is not
    /// counted in statistics.
    ClosedBeforeCreated,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::ClosedBeforeCreated => "closed_before_created",
        }
    }
}

/// A fact in the source data that statistics must not take at face value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataAnomalyFlagged {
    pub kind: AnomalyKind,
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
}
