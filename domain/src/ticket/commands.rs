//! Commands of the ticket aggregate. Every command carries `at`, the business time at which it
//! happened: now for live requests, the source's time for imported history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{
    BuildingRef, CancelReason, Channel, CloseReason, ContractorRef, OrganizationRef, Rating,
    Requester,
};

/// A command addressed to one ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TicketCommand {
    Register(RegisterTicket),
    Classify(ClassifyTicket),
    Route(RouteTicket),
    Accept(AcceptTicket),
    AssignContractor(AssignContractor),
    StartWork(StartWork),
    Suspend(SuspendWork),
    Resume(ResumeWork),
    ReportCompletion(ReportCompletion),
    ConfirmCompletion(ConfirmCompletion),
    RejectCompletion(RejectCompletion),
    Rate(RateTicket),
    Comment(CommentTicket),
    Escalate(EscalateTicket),
    Cancel(CancelTicket),
    Close(CloseTicket),
    RecordDeadlinePassed(RecordDeadlinePassed),
}

impl TicketCommand {
    /// Returns the business time of the command.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            TicketCommand::Register(c) => c.at,
            TicketCommand::Classify(c) => c.at,
            TicketCommand::Route(c) => c.at,
            TicketCommand::Accept(c) => c.at,
            TicketCommand::AssignContractor(c) => c.at,
            TicketCommand::StartWork(c) => c.at,
            TicketCommand::Suspend(c) => c.at,
            TicketCommand::Resume(c) => c.at,
            TicketCommand::ReportCompletion(c) => c.at,
            TicketCommand::ConfirmCompletion(c) => c.at,
            TicketCommand::RejectCompletion(c) => c.at,
            TicketCommand::Rate(c) => c.at,
            TicketCommand::Comment(c) => c.at,
            TicketCommand::Escalate(c) => c.at,
            TicketCommand::Cancel(c) => c.at,
            TicketCommand::Close(c) => c.at,
            TicketCommand::RecordDeadlinePassed(c) => c.at,
        }
    }

    /// Returns the command's name as used in error messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            TicketCommand::Register(_) => "register",
            TicketCommand::Classify(_) => "classify",
            TicketCommand::Route(_) => "route",
            TicketCommand::Accept(_) => "accept",
            TicketCommand::AssignContractor(_) => "assign_contractor",
            TicketCommand::StartWork(_) => "start_work",
            TicketCommand::Suspend(_) => "suspend",
            TicketCommand::Resume(_) => "resume",
            TicketCommand::ReportCompletion(_) => "report_completion",
            TicketCommand::ConfirmCompletion(_) => "confirm_completion",
            TicketCommand::RejectCompletion(_) => "reject_completion",
            TicketCommand::Rate(_) => "rate",
            TicketCommand::Comment(_) => "comment",
            TicketCommand::Escalate(_) => "escalate",
            TicketCommand::Cancel(_) => "cancel",
            TicketCommand::Close(_) => "close",
            TicketCommand::RecordDeadlinePassed(_) => "record_deadline_passed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisterTicket {
    pub ticket_id: Uuid,
    /// The id of the record in the source system (an imported 311 case, a portal request).
    pub external_id: Option<String>,
    pub channel: Channel,
    pub requester: Requester,
    pub building: BuildingRef,
    pub premises: Option<String>,
    /// A category code of the SLA catalogue.
    pub category: String,
    pub description: String,
    /// A resolution deadline set by the source (an imported file's own target date); when set it
    /// replaces the catalogue's resolution target.
    pub resolution_deadline_override: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifyTicket {
    pub category: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTicket {
    pub organization: OrganizationRef,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AcceptTicket {
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssignContractor {
    pub contractor: ContractorRef,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartWork {
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuspendWork {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResumeWork {
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportCompletion {
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfirmCompletion {
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectCompletion {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateTicket {
    pub rating: Rating,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommentTicket {
    pub author: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EscalateTicket {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CancelTicket {
    pub reason: CancelReason,
    pub duplicate_of: Option<Uuid>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloseTicket {
    pub reason: CloseReason,
    pub at: DateTime<Utc>,
}

/// Recorded by the deadline watcher when a deadline passes while the ticket is open.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordDeadlinePassed {
    pub at: DateTime<Utc>,
}
