//! The part of a ticket's state that changes over time and that "as of" questions need: status,
//! deadlines and the slice attributes a ticket can move between.

use chrono::{DateTime, Utc};
use opencity_domain::values::Priority;
use opencity_domain::TicketStatus;
use serde::{Deserialize, Serialize};

/// A ticket's lifecycle state, deadlines and changeable slice attributes at one moment.
///
/// District, building, channel and registration time never change, so they live only in
/// [`TicketView`](super::TicketView).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketState {
    pub status: TicketStatus,
    /// Whether the ticket had been accepted by an organization (it may be routed again later).
    pub accepted: bool,
    pub response_deadline: Option<DateTime<Utc>>,
    pub resolution_deadline: DateTime<Utc>,
    pub organization_id: Option<String>,
    pub contractor_id: Option<String>,
    pub category: String,
    pub priority: Priority,
}

impl TicketState {
    /// Returns true until the ticket is closed or cancelled.
    pub fn is_open(&self) -> bool {
        self.status.is_open()
    }

    /// Returns true when the ticket, still waiting for an organization to accept it (new or
    /// routed, never accepted), is past its response deadline at `at`.
    ///
    /// A ticket is past a deadline strictly after it: work done exactly at the deadline is on time.
    pub fn is_response_overdue_at(&self, at: DateTime<Utc>) -> bool {
        let awaiting_acceptance =
            !self.accepted && matches!(self.status, TicketStatus::New | TicketStatus::Routed);
        let deadline_passed = self.response_deadline.is_some_and(|deadline| deadline < at);
        awaiting_acceptance && deadline_passed
    }

    /// Returns true when the open ticket is past its resolution deadline at `at`.
    ///
    /// Suspended tickets (the SLA clock is paused), tickets whose completion is reported and
    /// tickets the resident confirmed wait on someone other than the executor, so they are not
    /// counted, as the domain's deadline watcher does not count them.
    pub fn is_resolution_overdue_at(&self, at: DateTime<Utc>) -> bool {
        let executor_owes_work = self.is_open()
            && !matches!(
                self.status,
                TicketStatus::Suspended
                    | TicketStatus::CompletionReported
                    | TicketStatus::Confirmed
            );
        executor_owes_work && self.resolution_deadline < at
    }

    /// Returns true when the ticket is past its response or its resolution deadline at `at`.
    pub fn is_overdue_at(&self, at: DateTime<Utc>) -> bool {
        self.is_response_overdue_at(at) || self.is_resolution_overdue_at(at)
    }
}

/// A state and the business time from which it holds, until the next change in the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub from: DateTime<Utc>,
    pub state: TicketState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, hour, 0, 0).unwrap()
    }

    fn state(status: TicketStatus) -> TicketState {
        TicketState {
            status,
            accepted: false,
            response_deadline: Some(time(2)),
            resolution_deadline: time(10),
            organization_id: None,
            contractor_id: None,
            category: "leak".to_string(),
            priority: Priority::Emergency,
        }
    }

    #[test]
    fn response_overdue_only_after_deadline() {
        let routed = state(TicketStatus::Routed);

        assert!(!routed.is_response_overdue_at(time(1)));
        assert!(
            !routed.is_response_overdue_at(time(2)),
            "exactly at the deadline is on time"
        );
        assert!(routed.is_response_overdue_at(time(3)));
    }

    #[test]
    fn response_overdue_ends_with_acceptance() {
        let mut rerouted = state(TicketStatus::Routed);
        rerouted.accepted = true;
        let accepted = state(TicketStatus::Accepted);

        assert!(!rerouted.is_response_overdue_at(time(3)));
        assert!(!accepted.is_response_overdue_at(time(3)));
    }

    #[test]
    fn response_overdue_needs_response_deadline() {
        let mut routine = state(TicketStatus::New);
        routine.response_deadline = None;

        assert!(!routine.is_response_overdue_at(time(9)));
    }

    #[test]
    fn resolution_overdue_while_executor_owes_work() {
        for status in [
            TicketStatus::New,
            TicketStatus::Routed,
            TicketStatus::Accepted,
            TicketStatus::Assigned,
            TicketStatus::InProgress,
            TicketStatus::Reopened,
        ] {
            let ticket = state(status);
            assert!(
                !ticket.is_resolution_overdue_at(time(10)),
                "{status} at the deadline"
            );
            assert!(
                ticket.is_resolution_overdue_at(time(11)),
                "{status} after the deadline"
            );
        }
    }

    #[test]
    fn resolution_overdue_not_while_waiting_on_others() {
        for status in [
            TicketStatus::Suspended,
            TicketStatus::CompletionReported,
            TicketStatus::Confirmed,
            TicketStatus::Closed,
            TicketStatus::Cancelled,
        ] {
            assert!(
                !state(status).is_resolution_overdue_at(time(11)),
                "{status}"
            );
        }
    }

    #[test]
    fn overdue_is_either_deadline() {
        let ticket = state(TicketStatus::New);

        assert!(!ticket.is_overdue_at(time(1)));
        assert!(ticket.is_overdue_at(time(3)));
        assert!(ticket.is_overdue_at(time(11)));
    }
}
