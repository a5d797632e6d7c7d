//! [`TicketView`]: the read model of one ticket and the rules that fold its events into it.

use chrono::{DateTime, Utc};
use opencity_domain::ticket::{AnomalyKind, DeadlineKind, TicketEvent, TicketRegistered};
use opencity_domain::values::{CancelReason, Channel, CloseReason, Deadlines, Priority};
use opencity_domain::TicketStatus;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::state::{StateChange, TicketState};

/// One ticket's read model, folded from its events. The runner stores it as JSON.
///
/// Times are business times (`occurred_at`). Events of one stream may carry times out of order,
/// because the deadline watcher dates a `DeadlinePassed` at the deadline itself and imported
/// history has faulty dates. So the timeline is ordered by `last_event_at`, the latest business
/// time seen so far, and an event takes effect at the later of its own time and the times of the
/// events before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketView {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub status: TicketStatus,
    pub category: String,
    pub priority: Priority,
    pub channel: Channel,
    /// The requester's resident id, which scopes a resident's token to their own tickets.
    /// Views stored before it existed read as `None` until `opencity projections rebuild`.
    #[serde(default)]
    pub resident_id: Option<String>,
    pub building_id: String,
    pub address: String,
    pub district: Option<String>,
    /// IANA time zone of the building.
    pub time_zone: String,
    pub organization_id: Option<String>,
    pub organization_name: Option<String>,
    pub contractor_id: Option<String>,
    pub contractor_name: Option<String>,
    pub registered_at: DateTime<Utc>,
    /// The first acceptance: the organization's reaction time is measured to it.
    pub accepted_at: Option<DateTime<Utc>>,
    pub response_deadline: Option<DateTime<Utc>>,
    /// The resolution deadline in force: moved by suspensions, reset by a rejection.
    pub resolution_deadline: DateTime<Utc>,
    pub deadline_basis: String,
    /// The completion report in force, cleared when the resident rejects the work.
    pub completion_reported_at: Option<DateTime<Utc>>,
    /// How many times completion was reported.
    pub completion_reports: u32,
    /// The time the work was done, set only when the ticket is closed.
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<CloseReason>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<CancelReason>,
    pub reopen_count: u32,
    /// The resident's decision on the completion report in force: `Some(true)` confirmed,
    /// `Some(false)` rejected (kept until a new report), `None` no decision yet.
    pub confirmed: Option<bool>,
    /// The resident's score, 1 to 5.
    pub rating: Option<u8>,
    pub escalation_level: u32,
    /// The total time the SLA clock stood still.
    pub suspended_seconds: i64,
    /// The status a suspension returns to when work resumes.
    pub status_before_suspension: Option<TicketStatus>,
    /// Data anomaly kinds flagged on the ticket, sorted, each once (`closed_before_created`).
    pub flagged: Vec<String>,
    /// Deadlines the deadline watcher recorded as passed, so that it does not record them again.
    #[serde(default)]
    pub passed_deadlines: Vec<(DeadlineKind, DateTime<Utc>)>,
    /// The latest business time among the events applied so far.
    pub last_event_at: DateTime<Utc>,
    /// The global log position of the last applied event.
    pub last_position: i64,
    pub event_count: u64,
    /// Every change of [`TicketState`], ordered by `from`, for "as of" questions. The stored
    /// form keeps only each change's differences (see `stored_timeline`).
    #[serde(with = "super::state::stored_timeline")]
    pub timeline: Vec<StateChange>,
}

impl TicketView {
    /// Creates the view of a ticket from its registration, the event at global `position`.
    pub fn new(event: &TicketRegistered, position: i64) -> TicketView {
        let mut view = TicketView {
            id: event.ticket_id,
            external_id: event.external_id.clone(),
            status: TicketStatus::New,
            category: event.category.clone(),
            priority: event.priority,
            channel: event.channel,
            resident_id: event.requester.resident_id.clone(),
            building_id: event.building.id.clone(),
            address: event.building.address.clone(),
            district: event.building.district.clone(),
            time_zone: event.building.time_zone.clone(),
            organization_id: None,
            organization_name: None,
            contractor_id: None,
            contractor_name: None,
            registered_at: event.occurred_at,
            accepted_at: None,
            response_deadline: event.deadlines.response,
            resolution_deadline: event.deadlines.resolution,
            deadline_basis: event.deadlines.basis.clone(),
            completion_reported_at: None,
            completion_reports: 0,
            resolved_at: None,
            closed_at: None,
            close_reason: None,
            cancelled_at: None,
            cancel_reason: None,
            reopen_count: 0,
            confirmed: None,
            rating: None,
            escalation_level: 0,
            suspended_seconds: 0,
            status_before_suspension: None,
            flagged: Vec::new(),
            passed_deadlines: Vec::new(),
            last_event_at: event.occurred_at,
            last_position: position,
            event_count: 1,
            timeline: Vec::new(),
        };
        view.record_state();
        view
    }

    /// Applies the event at global `position`.
    ///
    /// An event at or before `last_position` was applied already and is ignored, so delivering
    /// a batch twice changes nothing. A second `TicketRegistered` only advances the position.
    pub fn apply(&mut self, event: &TicketEvent, position: i64) {
        if position <= self.last_position {
            return;
        }
        self.last_position = position;
        self.event_count += 1;
        self.last_event_at = self.last_event_at.max(event.occurred_at());

        self.apply_facts(event);
        self.record_state();
    }

    fn apply_facts(&mut self, event: &TicketEvent) {
        match event {
            TicketEvent::TicketRegistered(_) => {}
            TicketEvent::TicketClassified(e) => {
                self.category = e.category.clone();
                self.priority = e.priority;
                self.set_deadlines(&e.deadlines);
            }
            TicketEvent::TicketRouted(e) => {
                self.organization_id = Some(e.organization.id.clone());
                self.organization_name = Some(e.organization.name.clone());
                self.status = TicketStatus::Routed;
            }
            TicketEvent::TicketAccepted(e) => {
                self.accepted_at.get_or_insert(e.occurred_at);
                self.status = TicketStatus::Accepted;
            }
            TicketEvent::ContractorAssigned(e) => {
                self.contractor_id = Some(e.contractor.id.clone());
                self.contractor_name = Some(e.contractor.name.clone());
                if self.status != TicketStatus::InProgress {
                    self.status = TicketStatus::Assigned;
                }
            }
            TicketEvent::WorkStarted(_) => self.status = TicketStatus::InProgress,
            TicketEvent::WorkSuspended(_) => {
                self.status_before_suspension = Some(self.status);
                self.status = TicketStatus::Suspended;
            }
            TicketEvent::WorkResumed(e) => {
                self.status = self
                    .status_before_suspension
                    .take()
                    .unwrap_or(TicketStatus::InProgress);
                self.suspended_seconds += e.paused_seconds;
                self.set_deadlines(&e.deadlines);
            }
            TicketEvent::CompletionReported(e) => {
                self.completion_reported_at = Some(e.occurred_at);
                self.completion_reports += 1;
                self.confirmed = None;
                self.status = TicketStatus::CompletionReported;
            }
            TicketEvent::CompletionConfirmed(_) => {
                self.confirmed = Some(true);
                self.status = TicketStatus::Confirmed;
            }
            TicketEvent::CompletionRejected(e) => {
                self.completion_reported_at = None;
                self.confirmed = Some(false);
                self.reopen_count = e.reopen_count;
                self.set_deadlines(&e.deadlines);
                self.status = TicketStatus::Reopened;
            }
            TicketEvent::TicketRated(e) => self.rating = Some(e.rating.value()),
            TicketEvent::TicketCommented(_) => {}
            TicketEvent::TicketEscalated(e) => self.escalation_level = e.level,
            TicketEvent::TicketCancelled(e) => {
                self.cancelled_at = Some(e.occurred_at);
                self.cancel_reason = Some(e.reason);
                self.status = TicketStatus::Cancelled;
            }
            TicketEvent::TicketClosed(e) => {
                self.closed_at = Some(e.occurred_at);
                self.close_reason = Some(e.reason);
                self.resolved_at = Some(e.resolved_at);
                self.status = TicketStatus::Closed;
            }
            // Overdue state comes from the deadlines. The record only marks the deadline as
            // handled for the deadline watcher.
            TicketEvent::DeadlinePassed(e) => self.passed_deadlines.push((e.kind, e.deadline)),
            TicketEvent::DataAnomalyFlagged(e) => {
                let kind = e.kind.as_str().to_string();
                if let Err(index) = self.flagged.binary_search(&kind) {
                    self.flagged.insert(index, kind);
                }
            }
        }
    }

    fn set_deadlines(&mut self, deadlines: &Deadlines) {
        self.response_deadline = deadlines.response;
        self.resolution_deadline = deadlines.resolution;
        self.deadline_basis = deadlines.basis.clone();
    }

    /// Appends the current state to the timeline at `last_event_at` when it differs from the
    /// state in force. Several changes at one instant leave one entry: the last state.
    fn record_state(&mut self) {
        let state = self.current_state();
        if self
            .timeline
            .last()
            .is_some_and(|last| last.from == self.last_event_at)
        {
            self.timeline.pop();
        }
        if self.timeline.last().map(|last| &last.state) != Some(&state) {
            self.timeline.push(StateChange {
                from: self.last_event_at,
                state,
            });
        }
    }

    /// Returns the state after every event applied so far.
    pub fn current_state(&self) -> TicketState {
        TicketState {
            status: self.status,
            accepted: self.accepted_at.is_some(),
            response_deadline: self.response_deadline,
            resolution_deadline: self.resolution_deadline,
            organization_id: self.organization_id.clone(),
            contractor_id: self.contractor_id.clone(),
            category: self.category.clone(),
            priority: self.priority,
        }
    }

    /// Returns the state in force at business time `at`, or `None` before the registration.
    ///
    /// It is the state after the longest prefix of the ticket's stream whose events all
    /// occurred at or before `at`. When the stream's times never go back, that is the state
    /// after every event that occurred at or before `at`.
    pub fn state_at(&self, at: DateTime<Utc>) -> Option<&TicketState> {
        let changes_in_force = self.timeline.partition_point(|change| change.from <= at);
        let index = changes_in_force.checked_sub(1)?;
        Some(&self.timeline[index].state)
    }

    /// Returns true when the ticket is past its response or resolution deadline at `at`, using
    /// the state and the deadlines in force at that time (see [`TicketState::is_overdue_at`]).
    pub fn is_overdue_at(&self, at: DateTime<Utc>) -> bool {
        self.state_at(at)
            .is_some_and(|state| state.is_overdue_at(at))
    }

    /// Returns whether the ticket was resolved by its resolution deadline in force.
    ///
    /// `None` while the ticket is open and for a cancelled ticket: only a closed ticket is
    /// resolved. A ticket closed before it was registered (faulty source data, flagged as
    /// `closed_before_created`) counts as on time.
    pub fn resolution_on_time(&self) -> Option<bool> {
        if self.status != TicketStatus::Closed {
            return None;
        }
        let resolved_at = self.resolved_at?;
        if resolved_at < self.registered_at {
            return Some(true);
        }
        Some(resolved_at <= self.resolution_deadline)
    }

    /// Returns the seconds from registration to the first acceptance, or `None` when there was
    /// none or the acceptance is dated before the registration.
    pub fn accept_seconds(&self) -> Option<f64> {
        seconds_between(self.registered_at, self.accepted_at?)
    }

    /// Returns the seconds from registration to resolution of a closed ticket.
    ///
    /// `None` while open, and for a ticket flagged `closed_before_created` or resolved before its
    /// registration, so statistics never see a negative or untrustworthy duration.
    pub fn resolve_seconds(&self) -> Option<f64> {
        if self.status != TicketStatus::Closed || self.is_flagged(AnomalyKind::ClosedBeforeCreated)
        {
            return None;
        }
        seconds_between(self.registered_at, self.resolved_at?)
    }

    /// Returns true when the anomaly `kind` was flagged on the ticket.
    pub fn is_flagged(&self, kind: AnomalyKind) -> bool {
        self.flagged.iter().any(|flagged| flagged == kind.as_str())
    }

    pub fn is_cancelled(&self) -> bool {
        self.status == TicketStatus::Cancelled
    }

    pub fn is_resolved(&self) -> bool {
        self.status == TicketStatus::Closed
    }
}

fn seconds_between(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<f64> {
    let duration = end - start;
    (duration >= chrono::Duration::zero()).then(|| duration.num_milliseconds() as f64 / 1000.0)
}
