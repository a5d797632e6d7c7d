//! The `Ticket` aggregate: decides which events a command produces and folds them into state.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::*;
use super::errors::TicketError;
use super::events::*;
use crate::sla::SlaCatalogue;
use crate::values::{BuildingRef, CloseReason, Deadlines, Priority};

/// Stream type of ticket event streams in the store.
pub const TICKET_STREAM_TYPE: &str = "ticket";

/// Services the aggregate needs to decide: the SLA catalogue that computes deadlines.
#[derive(Clone, Debug)]
pub struct TicketServices {
    pub sla: Arc<SlaCatalogue>,
}

/// Lifecycle status of a ticket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// No `TicketRegistered` event yet: the stream is empty.
    #[default]
    Unregistered,
    New,
    Routed,
    Accepted,
    Assigned,
    InProgress,
    Suspended,
    CompletionReported,
    Confirmed,
    Reopened,
    Closed,
    Cancelled,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 12] = [
        TicketStatus::Unregistered,
        TicketStatus::New,
        TicketStatus::Routed,
        TicketStatus::Accepted,
        TicketStatus::Assigned,
        TicketStatus::InProgress,
        TicketStatus::Suspended,
        TicketStatus::CompletionReported,
        TicketStatus::Confirmed,
        TicketStatus::Reopened,
        TicketStatus::Closed,
        TicketStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Unregistered => "unregistered",
            TicketStatus::New => "new",
            TicketStatus::Routed => "routed",
            TicketStatus::Accepted => "accepted",
            TicketStatus::Assigned => "assigned",
            TicketStatus::InProgress => "in_progress",
            TicketStatus::Suspended => "suspended",
            TicketStatus::CompletionReported => "completion_reported",
            TicketStatus::Confirmed => "confirmed",
            TicketStatus::Reopened => "reopened",
            TicketStatus::Closed => "closed",
            TicketStatus::Cancelled => "cancelled",
        }
    }

    /// Returns true until the ticket is closed or cancelled.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            TicketStatus::Unregistered | TicketStatus::Closed | TicketStatus::Cancelled
        )
    }
}

impl fmt::Display for TicketStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// State of one ticket, rebuilt from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: Option<Uuid>,
    pub status: TicketStatus,
    /// The status to return to when a suspension ends.
    pub status_before_suspension: Option<TicketStatus>,
    pub category: String,
    pub priority: Option<Priority>,
    pub building: Option<BuildingRef>,
    pub registered_at: Option<DateTime<Utc>>,
    pub deadlines: Option<Deadlines>,
    pub suspended_at: Option<DateTime<Utc>>,
    pub completion_reported_at: Option<DateTime<Utc>>,
    pub accepted: bool,
    pub rated: bool,
    pub reopen_count: u32,
    pub escalation_level: u32,
    pub anomaly_flagged: bool,
    /// Deadlines already recorded as passed, so each is recorded once.
    pub passed_deadlines: Vec<(DeadlineKind, DateTime<Utc>)>,
}

impl Aggregate for Ticket {
    const TYPE: &'static str = TICKET_STREAM_TYPE;
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Services = TicketServices;

    async fn handle(
        &mut self,
        command: TicketCommand,
        services: &TicketServices,
        sink: &EventSink<Self>,
    ) -> Result<(), TicketError> {
        for event in self.decide(command, services)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TicketEvent) {
        match event {
            TicketEvent::TicketRegistered(e) => {
                self.id = Some(e.ticket_id);
                self.status = TicketStatus::New;
                self.category = e.category;
                self.priority = Some(e.priority);
                self.building = Some(e.building);
                self.registered_at = Some(e.occurred_at);
                self.deadlines = Some(e.deadlines);
            }
            TicketEvent::TicketClassified(e) => {
                self.category = e.category;
                self.priority = Some(e.priority);
                self.deadlines = Some(e.deadlines);
            }
            TicketEvent::TicketRouted(_) => self.status = TicketStatus::Routed,
            TicketEvent::TicketAccepted(_) => {
                self.accepted = true;
                self.status = TicketStatus::Accepted;
            }
            TicketEvent::ContractorAssigned(_) => {
                if self.status != TicketStatus::InProgress {
                    self.status = TicketStatus::Assigned;
                }
            }
            TicketEvent::WorkStarted(_) => self.status = TicketStatus::InProgress,
            TicketEvent::WorkSuspended(e) => {
                self.status_before_suspension = Some(self.status);
                self.suspended_at = Some(e.occurred_at);
                self.status = TicketStatus::Suspended;
            }
            TicketEvent::WorkResumed(e) => {
                self.status = self.status_before_suspension.take().unwrap_or(TicketStatus::InProgress);
                self.suspended_at = None;
                self.deadlines = Some(e.deadlines);
            }
            TicketEvent::CompletionReported(e) => {
                self.completion_reported_at = Some(e.occurred_at);
                self.status = TicketStatus::CompletionReported;
            }
            TicketEvent::CompletionConfirmed(_) => self.status = TicketStatus::Confirmed,
            TicketEvent::CompletionRejected(e) => {
                self.completion_reported_at = None;
                self.reopen_count = e.reopen_count;
                self.deadlines = Some(e.deadlines);
                self.status = TicketStatus::Reopened;
            }
            TicketEvent::TicketRated(_) => self.rated = true,
            TicketEvent::TicketCommented(_) => {}
            TicketEvent::TicketEscalated(e) => self.escalation_level = e.level,
            TicketEvent::TicketCancelled(_) => self.status = TicketStatus::Cancelled,
            TicketEvent::TicketClosed(_) => self.status = TicketStatus::Closed,
            TicketEvent::DeadlinePassed(e) => self.passed_deadlines.push((e.kind, e.deadline)),
            TicketEvent::DataAnomalyFlagged(_) => self.anomaly_flagged = true,
        }
    }
}

impl Ticket {
    /// Decides the events a command produces, or the reason it is rejected. Pure: the state is
    /// not changed here.
    pub fn decide(
        &self,
        command: TicketCommand,
        services: &TicketServices,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        let name = command.name();
        if let TicketCommand::Register(register) = command {
            return self.register(register, services);
        }
        self.ensure_actionable(&command)?;

        use TicketStatus as S;
        let events = match command {
            TicketCommand::Register(_) => unreachable!("handled above"),
            TicketCommand::Classify(c) => {
                self.require(name, &[S::New, S::Routed, S::Accepted, S::Assigned, S::InProgress, S::Suspended, S::Reopened])?;
                let registered_at = self.registered_at.ok_or(TicketError::NotRegistered)?;
                let rule = services.sla.category(&c.category).ok_or_else(|| {
                    crate::sla::SlaError::UnknownCategory { category: c.category.clone() }
                })?;
                let deadlines = services.sla.deadlines(&c.category, registered_at, self.building()?)?;
                vec![TicketEvent::TicketClassified(TicketClassified {
                    priority: rule.priority,
                    category: c.category,
                    deadlines,
                    occurred_at: c.at,
                })]
            }
            TicketCommand::Route(c) => {
                self.require(name, &[S::New, S::Routed, S::Accepted, S::Assigned])?;
                vec![TicketEvent::TicketRouted(TicketRouted { organization: c.organization, occurred_at: c.at })]
            }
            TicketCommand::Accept(c) => {
                self.require(name, &[S::Routed])?;
                vec![TicketEvent::TicketAccepted(TicketAccepted { occurred_at: c.at })]
            }
            TicketCommand::AssignContractor(c) => {
                self.require(name, &[S::Accepted, S::Assigned, S::InProgress, S::Reopened])?;
                vec![TicketEvent::ContractorAssigned(ContractorAssigned { contractor: c.contractor, occurred_at: c.at })]
            }
            TicketCommand::StartWork(c) => {
                self.require(name, &[S::Accepted, S::Assigned, S::Reopened])?;
                vec![TicketEvent::WorkStarted(WorkStarted { occurred_at: c.at })]
            }
            TicketCommand::Suspend(c) => {
                self.require(name, &[S::Accepted, S::Assigned, S::InProgress, S::Reopened])?;
                non_empty("reason", &c.reason)?;
                vec![TicketEvent::WorkSuspended(WorkSuspended { reason: c.reason, occurred_at: c.at })]
            }
            TicketCommand::Resume(c) => {
                self.require(name, &[S::Suspended])?;
                let suspended_at = self.suspended_at.unwrap_or(c.at);
                let paused = (c.at - suspended_at).max(chrono::Duration::zero());
                let deadlines = self.current_deadlines()?.shifted_by(paused);
                vec![TicketEvent::WorkResumed(WorkResumed {
                    paused_seconds: paused.num_seconds(),
                    deadlines,
                    occurred_at: c.at,
                })]
            }
            TicketCommand::ReportCompletion(c) => {
                self.require(name, &[S::Routed, S::Accepted, S::Assigned, S::InProgress, S::Reopened])?;
                let mut events = self.anomaly_if_before_registration(c.at, "completion");
                events.push(TicketEvent::CompletionReported(CompletionReported { note: c.note, occurred_at: c.at }));
                events
            }
            TicketCommand::ConfirmCompletion(c) => {
                self.require(name, &[S::CompletionReported])?;
                vec![TicketEvent::CompletionConfirmed(CompletionConfirmed { occurred_at: c.at })]
            }
            TicketCommand::RejectCompletion(c) => {
                self.require(name, &[S::CompletionReported])?;
                non_empty("reason", &c.reason)?;
                let resolution =
                    services.sla.resolution_deadline_from(&self.category, c.at, self.building()?)?;
                let current = self.current_deadlines()?;
                vec![TicketEvent::CompletionRejected(CompletionRejected {
                    reason: c.reason,
                    reopen_count: self.reopen_count + 1,
                    deadlines: Deadlines { response: current.response, resolution, basis: current.basis.clone() },
                    occurred_at: c.at,
                })]
            }
            TicketCommand::Rate(c) => {
                if self.rated {
                    return Err(TicketError::AlreadyRated);
                }
                self.require(name, &[S::CompletionReported, S::Confirmed, S::Closed])?;
                vec![TicketEvent::TicketRated(TicketRated { rating: c.rating, occurred_at: c.at })]
            }
            TicketCommand::Comment(c) => {
                non_empty("text", &c.text)?;
                non_empty("author", &c.author)?;
                vec![TicketEvent::TicketCommented(TicketCommented { author: c.author, text: c.text, occurred_at: c.at })]
            }
            TicketCommand::Escalate(c) => {
                non_empty("reason", &c.reason)?;
                vec![TicketEvent::TicketEscalated(TicketEscalated {
                    reason: c.reason,
                    level: self.escalation_level + 1,
                    occurred_at: c.at,
                })]
            }
            TicketCommand::Cancel(c) => {
                self.require(name, &[S::New, S::Routed, S::Accepted, S::Assigned, S::InProgress, S::Suspended, S::Reopened])?;
                if c.duplicate_of.is_some() && c.duplicate_of == self.id {
                    return Err(TicketError::SelfDuplicate);
                }
                vec![TicketEvent::TicketCancelled(TicketCancelled {
                    reason: c.reason,
                    duplicate_of: c.duplicate_of,
                    note: c.note,
                    occurred_at: c.at,
                })]
            }
            TicketCommand::Close(c) => self.close(name, c)?,
            TicketCommand::RecordDeadlinePassed(c) => self.deadlines_passed(c.at)?,
        };
        Ok(events)
    }

    fn register(&self, c: RegisterTicket, services: &TicketServices) -> Result<Vec<TicketEvent>, TicketError> {
        if self.status != TicketStatus::Unregistered {
            return Err(TicketError::AlreadyRegistered);
        }
        non_empty("description", &c.description)?;
        non_empty("building.id", &c.building.id)?;
        let rule = services.sla.category(&c.category).ok_or_else(|| {
            crate::sla::SlaError::UnknownCategory { category: c.category.clone() }
        })?;
        let mut deadlines = services.sla.deadlines(&c.category, c.at, &c.building)?;
        if let Some(resolution) = c.resolution_deadline_override {
            deadlines.resolution = resolution;
            deadlines.basis = SOURCE_DEADLINE_BASIS.to_string();
        }
        Ok(vec![TicketEvent::TicketRegistered(TicketRegistered {
            ticket_id: c.ticket_id,
            external_id: c.external_id,
            channel: c.channel,
            requester: c.requester,
            building: c.building,
            premises: c.premises,
            category: c.category,
            priority: rule.priority,
            description: c.description,
            deadlines,
            occurred_at: c.at,
        })])
    }

    fn close(&self, name: &'static str, c: CloseTicket) -> Result<Vec<TicketEvent>, TicketError> {
        use TicketStatus as S;
        match c.reason {
            CloseReason::Confirmed => self.require(name, &[S::Confirmed])?,
            CloseReason::NoResidentResponse => self.require(name, &[S::CompletionReported])?,
            CloseReason::Administrative => {}
        }
        let resolved_at = self.completion_reported_at.unwrap_or(c.at);
        let mut events = if self.completion_reported_at.is_none() {
            self.anomaly_if_before_registration(c.at, "closing")
        } else {
            Vec::new()
        };
        events.push(TicketEvent::TicketClosed(TicketClosed { reason: c.reason, resolved_at, occurred_at: c.at }));
        Ok(events)
    }

    fn deadlines_passed(&self, at: DateTime<Utc>) -> Result<Vec<TicketEvent>, TicketError> {
        use TicketStatus as S;
        let deadlines = self.current_deadlines()?;
        let mut candidates = Vec::new();
        if !self.accepted && matches!(self.status, S::New | S::Routed) {
            if let Some(response) = deadlines.response {
                candidates.push((DeadlineKind::Response, response));
            }
        }
        if !matches!(self.status, S::CompletionReported | S::Confirmed | S::Suspended) {
            candidates.push((DeadlineKind::Resolution, deadlines.resolution));
        }
        let events: Vec<TicketEvent> = candidates
            .into_iter()
            .filter(|(kind, deadline)| *deadline <= at && !self.passed_deadlines.contains(&(*kind, *deadline)))
            .map(|(kind, deadline)| TicketEvent::DeadlinePassed(DeadlinePassed { kind, deadline, occurred_at: deadline }))
            .collect();
        if events.is_empty() {
            return Err(TicketError::NoDeadlinePassed { at });
        }
        Ok(events)
    }

    /// Flags a completion or closing time earlier than the registration (a data-quality fault
    /// of imported history), once per ticket.
    fn anomaly_if_before_registration(&self, at: DateTime<Utc>, what: &str) -> Vec<TicketEvent> {
        match self.registered_at {
            Some(registered_at) if at < registered_at && !self.anomaly_flagged => {
                vec![TicketEvent::DataAnomalyFlagged(DataAnomalyFlagged {
                    kind: AnomalyKind::ClosedBeforeCreated,
                    detail: format!("{what} time {at} is before registration {registered_at}"),
                    occurred_at: at.max(registered_at),
                })]
            }
            _ => Vec::new(),
        }
    }

    /// Rejects every command on an unregistered, closed or cancelled ticket (rating excepted:
    /// a resident may rate a closed ticket once).
    fn ensure_actionable(&self, command: &TicketCommand) -> Result<(), TicketError> {
        match self.status {
            TicketStatus::Unregistered => Err(TicketError::NotRegistered),
            TicketStatus::Closed if matches!(command, TicketCommand::Rate(_)) => Ok(()),
            TicketStatus::Closed => Err(TicketError::AlreadyClosed),
            TicketStatus::Cancelled => Err(TicketError::AlreadyCancelled),
            _ => Ok(()),
        }
    }

    fn require(&self, command: &'static str, allowed: &[TicketStatus]) -> Result<(), TicketError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(TicketError::InvalidTransition { command, status: self.status })
        }
    }

    fn building(&self) -> Result<&BuildingRef, TicketError> {
        self.building.as_ref().ok_or(TicketError::NotRegistered)
    }

    fn current_deadlines(&self) -> Result<&Deadlines, TicketError> {
        self.deadlines.as_ref().ok_or(TicketError::NotRegistered)
    }
}

/// The `basis` of deadlines taken from the source record rather than the catalogue.
pub const SOURCE_DEADLINE_BASIS: &str = "срок из источника данных";

fn non_empty(field: &'static str, value: &str) -> Result<(), TicketError> {
    if value.trim().is_empty() {
        Err(TicketError::EmptyField { field })
    } else {
        Ok(())
    }
}
