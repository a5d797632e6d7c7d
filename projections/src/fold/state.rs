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

/// The stored form of a view's timeline. The first change contains every field of its state,
/// and each later change only `from` and the fields that differ from the change before it. A
/// field that changed to nothing is written as `null`, and a field left out did not change.
/// Most events change one or two fields, so this form is a fraction of whole states, which
/// matters because every commit of a view writes its timeline again.
///
/// Views stored before this form contain the whole state of each change under `state`. They
/// are read as well, and written in this form the next time they change.
pub(crate) mod stored_timeline {
    use chrono::{DateTime, Utc};
    use opencity_domain::values::Priority;
    use opencity_domain::TicketStatus;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{StateChange, TicketState};

    #[derive(Serialize)]
    struct StoredChange<'a> {
        from: &'a DateTime<Utc>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'a TicketStatus>,
        #[serde(skip_serializing_if = "Option::is_none")]
        accepted: Option<&'a bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        response_deadline: Option<&'a Option<DateTime<Utc>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resolution_deadline: Option<&'a DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        organization_id: Option<&'a Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        contractor_id: Option<&'a Option<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        category: Option<&'a String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        priority: Option<&'a Priority>,
    }

    /// A stored change in either form. For the fields that may be `null`, the outer `None`
    /// means "left out" and `Some(None)` means "changed to nothing".
    #[derive(Deserialize)]
    struct ReadChange {
        from: DateTime<Utc>,
        #[serde(default)]
        state: Option<TicketState>,
        #[serde(default)]
        status: Option<TicketStatus>,
        #[serde(default)]
        accepted: Option<bool>,
        #[serde(default, deserialize_with = "present")]
        response_deadline: Option<Option<DateTime<Utc>>>,
        #[serde(default)]
        resolution_deadline: Option<DateTime<Utc>>,
        #[serde(default, deserialize_with = "present")]
        organization_id: Option<Option<String>>,
        #[serde(default, deserialize_with = "present")]
        contractor_id: Option<Option<String>>,
        #[serde(default)]
        category: Option<String>,
        #[serde(default)]
        priority: Option<Priority>,
    }

    /// Reads a field that is present, `null` included.
    fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }

    /// Returns `value` unless it equals the field of the change before.
    fn changed<'a, T: PartialEq>(value: &'a T, before: Option<&T>) -> Option<&'a T> {
        (before != Some(value)).then_some(value)
    }

    pub fn serialize<S: Serializer>(timeline: &[StateChange], serializer: S) -> Result<S::Ok, S::Error> {
        let before = std::iter::once(None).chain(timeline.iter().map(|change| Some(&change.state)));
        serializer.collect_seq(timeline.iter().zip(before).map(|(change, before)| {
            let state = &change.state;
            StoredChange {
                from: &change.from,
                status: changed(&state.status, before.map(|before| &before.status)),
                accepted: changed(&state.accepted, before.map(|before| &before.accepted)),
                response_deadline: changed(&state.response_deadline, before.map(|before| &before.response_deadline)),
                resolution_deadline: changed(&state.resolution_deadline, before.map(|before| &before.resolution_deadline)),
                organization_id: changed(&state.organization_id, before.map(|before| &before.organization_id)),
                contractor_id: changed(&state.contractor_id, before.map(|before| &before.contractor_id)),
                category: changed(&state.category, before.map(|before| &before.category)),
                priority: changed(&state.priority, before.map(|before| &before.priority)),
            }
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<StateChange>, D::Error> {
        let stored = Vec::<ReadChange>::deserialize(deserializer)?;
        let mut timeline: Vec<StateChange> = Vec::with_capacity(stored.len());
        for (index, change) in stored.into_iter().enumerate() {
            let state = match change.state {
                Some(state) => state,
                None => {
                    let before = timeline.last().map(|change| &change.state);
                    macro_rules! field {
                        ($name:ident) => {
                            match (change.$name, before) {
                                (Some(value), _) => value,
                                (None, Some(before)) => before.$name.clone(),
                                (None, None) => {
                                    return Err(D::Error::custom(format!(
                                        "timeline change {index} is missing the field `{}`, and no change precedes it",
                                        stringify!($name)
                                    )))
                                }
                            }
                        };
                    }
                    TicketState {
                        status: field!(status),
                        accepted: field!(accepted),
                        response_deadline: field!(response_deadline),
                        resolution_deadline: field!(resolution_deadline),
                        organization_id: field!(organization_id),
                        contractor_id: field!(contractor_id),
                        category: field!(category),
                        priority: field!(priority),
                    }
                }
            };
            timeline.push(StateChange { from: change.from, state });
        }
        Ok(timeline)
    }
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

    /// A timeline as a field of a stored view.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stored {
        #[serde(with = "super::stored_timeline")]
        timeline: Vec<StateChange>,
    }

    fn change(hour: u32, state: TicketState) -> StateChange {
        StateChange { from: time(hour), state }
    }

    #[test]
    fn stored_timeline_round_trip() {
        let first = state(TicketStatus::New);
        let routed = TicketState {
            status: TicketStatus::Routed,
            organization_id: Some("org-1".to_string()),
            ..first.clone()
        };
        // Every field changes once, the nullable ones back to nothing.
        let everything = TicketState {
            status: TicketStatus::Accepted,
            accepted: true,
            response_deadline: None,
            resolution_deadline: time(12),
            organization_id: None,
            contractor_id: Some("c-1".to_string()),
            category: "heating".to_string(),
            priority: Priority::Routine,
        };
        let timeline = Stored { timeline: vec![change(1, first), change(2, routed), change(3, everything)] };

        let json = serde_json::to_value(&timeline).unwrap();

        assert_eq!(
            json["timeline"][1],
            serde_json::json!({"from": "2024-03-01T02:00:00Z", "status": "routed", "organization_id": "org-1"})
        );
        assert_eq!(json["timeline"][0].as_object().unwrap().len(), 9, "the first change holds every field");
        assert_eq!(json["timeline"][2]["organization_id"], serde_json::Value::Null);
        assert_eq!(json["timeline"][2].as_object().unwrap().len(), 9, "every field changed");
        assert_eq!(serde_json::from_value::<Stored>(json).unwrap(), timeline);
    }

    #[test]
    fn stored_timeline_reads_whole_states() {
        let routed = TicketState {
            status: TicketStatus::Routed,
            organization_id: Some("org-1".to_string()),
            ..state(TicketStatus::New)
        };
        let earlier = serde_json::json!({"timeline": [
            {"from": "2024-03-01T01:00:00Z", "state": serde_json::to_value(state(TicketStatus::New)).unwrap()},
            {"from": "2024-03-01T02:00:00Z", "state": serde_json::to_value(&routed).unwrap()},
            {"from": "2024-03-01T03:00:00Z", "status": "accepted", "accepted": true},
        ]});

        let read: Stored = serde_json::from_value(earlier).unwrap();

        let accepted = TicketState { status: TicketStatus::Accepted, accepted: true, ..routed.clone() };
        assert_eq!(read.timeline, vec![change(1, state(TicketStatus::New)), change(2, routed), change(3, accepted)]);
    }

    #[test]
    fn stored_timeline_incomplete_first_change() {
        let stored = serde_json::json!({"timeline": [{"from": "2024-03-01T01:00:00Z", "status": "new"}]});

        let error = serde_json::from_value::<Stored>(stored).unwrap_err().to_string();

        assert!(error.contains("timeline change 0 is missing the field `accepted`"), "{error}");
    }
}
