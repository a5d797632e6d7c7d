//! One test per fold rule, on hand-written event lists.

use std::collections::BTreeMap;

use opencity_domain::ticket::DeadlineKind;
use opencity_domain::values::{CancelReason, Channel, CloseReason, Priority};
use opencity_domain::TicketStatus;

use super::testing::*;
use super::*;

#[test]
fn registration_creates_view() {
    let view = fold_one(1, vec![registered(1, at(1, 8))]);

    assert_eq!(view.id, ticket_id(1));
    assert_eq!(view.external_id.as_deref(), Some("ext-1"));
    assert_eq!(view.status, TicketStatus::New);
    assert_eq!(view.category, "leak");
    assert_eq!(view.priority, Priority::Emergency);
    assert_eq!(view.channel, Channel::Web);
    assert_eq!(view.building_id, "b-1");
    assert_eq!(view.district.as_deref(), Some("Центральный"));
    assert_eq!(view.registered_at, at(1, 8));
    assert_eq!(view.response_deadline, Some(at(1, 9)));
    assert_eq!(view.resolution_deadline, at(2, 8));
    assert_eq!(view.last_position, 1);
    assert_eq!(view.event_count, 1);
    assert_eq!(view.timeline.len(), 1);
    assert_eq!(view.resolution_on_time(), None);
}

#[test]
fn classification_replaces_category_and_deadlines() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            classified("lift", Priority::Routine, at(5, 18), at(1, 10)),
        ],
    );

    assert_eq!(view.category, "lift");
    assert_eq!(view.priority, Priority::Routine);
    assert_eq!(view.response_deadline, None);
    assert_eq!(view.resolution_deadline, at(5, 18));
}

#[test]
fn routing_sets_organization() {
    let view = fold_one(1, vec![registered(1, at(1, 8)), routed("org-1", at(1, 8))]);

    assert_eq!(view.status, TicketStatus::Routed);
    assert_eq!(view.organization_id.as_deref(), Some("org-1"));
    assert_eq!(view.organization_name.as_deref(), Some("УК org-1"));
}

#[test]
fn acceptance_keeps_first_time() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 9)),
            routed("org-2", at(1, 10)),
            accepted(at(1, 11)),
        ],
    );

    assert_eq!(view.status, TicketStatus::Accepted);
    assert_eq!(view.organization_id.as_deref(), Some("org-2"));
    assert_eq!(view.accepted_at, Some(at(1, 9)));
    assert_eq!(view.accept_seconds(), Some(3600.0));
}

#[test]
fn assignment_keeps_work_in_progress() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 9)),
            assigned("c-1", at(1, 9)),
            started(at(1, 10)),
            assigned("c-2", at(1, 11)),
        ],
    );

    assert_eq!(view.status, TicketStatus::InProgress);
    assert_eq!(view.contractor_id.as_deref(), Some("c-2"));
    assert_eq!(view.contractor_name.as_deref(), Some("Подрядчик c-2"));
}

#[test]
fn assignment_before_work_sets_assigned() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 9)),
            assigned("c-1", at(1, 9)),
        ],
    );

    assert_eq!(view.status, TicketStatus::Assigned);
}

#[test]
fn resumption_restores_status_and_moves_deadlines() {
    let moved = deadlines(Some(at(1, 9)), at(2, 8) + hours(5));
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 9)),
            suspended(at(1, 10)),
            resumed(hours(5), moved, at(1, 15)),
        ],
    );

    assert_eq!(view.status, TicketStatus::Accepted);
    assert_eq!(view.status_before_suspension, None);
    assert_eq!(view.suspended_seconds, 5 * 3600);
    assert_eq!(view.resolution_deadline, at(2, 13));
}

#[test]
fn suspension_remembers_status() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 9)),
            started(at(1, 9)),
            suspended(at(1, 10)),
        ],
    );

    assert_eq!(view.status, TicketStatus::Suspended);
    assert_eq!(
        view.status_before_suspension,
        Some(TicketStatus::InProgress)
    );
}

#[test]
fn confirmation_records_resident_answer() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            confirmed(at(1, 13)),
        ],
    );

    assert_eq!(view.status, TicketStatus::Confirmed);
    assert_eq!(view.confirmed, Some(true));
    assert_eq!(view.completion_reported_at, Some(at(1, 12)));
    assert_eq!(view.completion_reports, 1);
    assert_eq!(
        view.resolved_at, None,
        "a confirmed ticket is resolved when it is closed"
    );
}

#[test]
fn rejection_reopens_with_new_deadline() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            rejected(1, at(3, 12), at(1, 14)),
        ],
    );

    assert_eq!(view.status, TicketStatus::Reopened);
    assert_eq!(view.reopen_count, 1);
    assert_eq!(view.confirmed, Some(false));
    assert_eq!(view.completion_reported_at, None);
    assert_eq!(view.resolution_deadline, at(3, 12));
    assert_eq!(view.resolution_on_time(), None);
}

#[test]
fn new_report_clears_rejection() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            rejected(1, at(3, 12), at(1, 14)),
            reported(at(2, 10)),
        ],
    );

    assert_eq!(view.confirmed, None);
    assert_eq!(view.completion_reports, 2);
    assert_eq!(view.completion_reported_at, Some(at(2, 10)));
    assert_eq!(view.reopen_count, 1);
}

#[test]
fn rating_recorded() {
    let mut events = resolved_ticket(1, 1, "org-1", "c-1", 1, 4);
    events.push(rated(4, at(2, 8)));
    let view = fold_one(1, events);

    assert_eq!(view.rating, Some(4));
    assert_eq!(view.status, TicketStatus::Closed);
}

#[test]
fn cancellation_has_no_resolution() {
    let view = fold_one(1, vec![registered(1, at(1, 8)), cancelled(at(1, 9))]);

    assert_eq!(view.status, TicketStatus::Cancelled);
    assert!(view.is_cancelled());
    assert_eq!(view.cancelled_at, Some(at(1, 9)));
    assert_eq!(view.cancel_reason, Some(CancelReason::Duplicate));
    assert_eq!(view.resolved_at, None);
    assert_eq!(view.resolution_on_time(), None);
    assert_eq!(view.resolve_seconds(), None);
    assert!(!view.is_overdue_at(at(9, 0)));
}

#[test]
fn closing_sets_resolution() {
    let view = fold_one(1, resolved_ticket(1, 1, "org-1", "c-1", 1, 4));

    assert_eq!(view.status, TicketStatus::Closed);
    assert_eq!(view.resolved_at, Some(at(1, 12)));
    assert_eq!(view.closed_at, Some(at(1, 12)));
    assert_eq!(view.close_reason, Some(CloseReason::Confirmed));
    assert_eq!(view.resolution_on_time(), Some(true));
    assert_eq!(view.resolve_seconds(), Some(4.0 * 3600.0));
}

#[test]
fn resolution_on_time_compares_with_deadline() {
    let exactly = fold_one(1, resolved_ticket(1, 1, "org-1", "c-1", 1, 24));
    let late = fold_one(2, resolved_ticket(2, 1, "org-1", "c-1", 1, 25));

    assert_eq!(
        exactly.resolution_on_time(),
        Some(true),
        "resolved at the deadline"
    );
    assert_eq!(late.resolution_on_time(), Some(false));
}

#[test]
fn resolution_on_time_uses_deadline_after_reopening() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            rejected(1, at(3, 12), at(1, 14)),
            reported(at(3, 10)),
            closed(CloseReason::NoResidentResponse, at(3, 10), at(5, 10)),
        ],
    );

    assert_eq!(view.resolution_on_time(), Some(true));
    assert_eq!(view.confirmed, None);
    assert_eq!(view.resolve_seconds(), Some(50.0 * 3600.0));
}

#[test]
fn closed_before_created_is_on_time_without_duration() {
    // The domain flags the anomaly at the registration time, then closes with the source's
    // earlier closing time as `resolved_at`.
    let view = fold_one(
        1,
        vec![
            registered(1, at(2, 8)),
            closed_before_created(at(2, 8)),
            closed(CloseReason::Administrative, at(1, 20), at(1, 20)),
        ],
    );

    assert_eq!(view.flagged, vec!["closed_before_created".to_string()]);
    assert_eq!(view.resolved_at, Some(at(1, 20)));
    assert_eq!(view.resolution_on_time(), Some(true));
    assert_eq!(view.resolve_seconds(), None);
    assert_eq!(
        view.last_event_at,
        at(2, 8),
        "the earlier closing time does not move the clock back"
    );
}

#[test]
fn flagged_ticket_has_no_duration() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(2, 8)),
            closed_before_created(at(2, 8)),
            reported(at(1, 20)),
            rejected(1, at(4, 8), at(2, 9)),
            reported(at(2, 12)),
            closed(CloseReason::NoResidentResponse, at(2, 12), at(3, 12)),
        ],
    );

    assert_eq!(view.resolution_on_time(), Some(true));
    assert_eq!(view.resolve_seconds(), None);
}

#[test]
fn anomaly_flagged_once() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(2, 8)),
            closed_before_created(at(2, 8)),
            closed_before_created(at(2, 9)),
        ],
    );

    assert_eq!(view.flagged, vec!["closed_before_created".to_string()]);
}

#[test]
fn acceptance_before_registration_has_no_duration() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(2, 8)),
            routed("org-1", at(2, 8)),
            accepted(at(2, 7)),
        ],
    );

    assert_eq!(view.accepted_at, Some(at(2, 7)));
    assert_eq!(view.accept_seconds(), None);
}

#[test]
fn bookkeeping_events_change_no_state() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            commented(at(1, 12)),
            deadline_passed(DeadlineKind::Response, at(1, 9)),
        ],
    );

    assert_eq!(view.status, TicketStatus::New);
    assert_eq!(view.event_count, 3);
    assert_eq!(view.last_position, 3);
    assert_eq!(view.last_event_at, at(1, 12));
    assert_eq!(view.timeline.len(), 1);
}

#[test]
fn applied_position_is_ignored() {
    let mut view = fold_one(1, vec![registered(1, at(1, 8)), routed("org-1", at(1, 8))]);
    let before = view.clone();

    view.apply(&routed("org-2", at(1, 9)), 2);
    view.apply(&routed("org-2", at(1, 9)), 1);

    assert_eq!(view, before);
}

#[test]
fn second_registration_changes_nothing_but_position() {
    let mut view = fold_one(1, vec![registered(1, at(1, 8))]);
    let mut other = registration(1, at(3, 8));
    other.category = "lift".to_string();

    view.apply(&opencity_domain::TicketEvent::TicketRegistered(other), 2);

    assert_eq!(view.category, "leak");
    assert_eq!(view.registered_at, at(1, 8));
    assert_eq!(view.last_position, 2);
}

#[test]
fn events_without_registration_are_ignored() {
    let mut events = log(vec![(1, vec![registered(1, at(1, 8))])]);
    events.push((ticket_id(2), 2, routed("org-1", at(1, 9))));
    events.push((ticket_id(2), 3, registered(2, at(1, 10))));

    let views = fold_from_scratch(events);

    assert_eq!(views.len(), 2);
    assert_eq!(views[&ticket_id(2)].organization_id, None);
    assert_eq!(views[&ticket_id(2)].event_count, 1);
}

#[test]
fn state_at_follows_timeline() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 10)),
            accepted(at(1, 12)),
            cancelled(at(1, 14)),
        ],
    );

    assert_eq!(view.state_at(at(1, 7)), None);
    assert_eq!(
        view.state_at(at(1, 8)).map(|state| state.status),
        Some(TicketStatus::New)
    );
    assert_eq!(
        view.state_at(at(1, 11)).map(|state| state.status),
        Some(TicketStatus::Routed)
    );
    assert_eq!(
        view.state_at(at(1, 11))
            .and_then(|state| state.organization_id.clone()),
        Some("org-1".to_string())
    );
    assert_eq!(
        view.state_at(at(1, 12)).map(|state| state.accepted),
        Some(true)
    );
    assert_eq!(
        view.state_at(at(1, 14)).map(|state| state.status),
        Some(TicketStatus::Cancelled)
    );
    assert_eq!(view.state_at(at(9, 0)), Some(&view.current_state()));
}

#[test]
fn overdue_as_of_uses_state_in_force() {
    // Response due at 09:00, resolution at 08:00 the next day; accepted at 10:00, closed late.
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 10)),
            reported(at(2, 12)),
            closed(CloseReason::NoResidentResponse, at(2, 12), at(3, 12)),
        ],
    );

    assert!(!view.is_overdue_at(at(1, 7)), "not registered yet");
    assert!(
        !view.is_overdue_at(at(1, 9)),
        "exactly at the response deadline"
    );
    assert!(
        view.is_overdue_at(at(1, 9) + hours(1) / 2),
        "waiting for acceptance"
    );
    assert!(!view.is_overdue_at(at(1, 10)), "accepted");
    assert!(view.is_overdue_at(at(2, 9)), "past the resolution deadline");
    assert!(!view.is_overdue_at(at(2, 13)), "completion reported");
    assert!(!view.is_overdue_at(at(4, 0)), "closed");
    assert_eq!(view.resolution_on_time(), Some(false));
}

#[test]
fn overdue_as_of_pauses_while_suspended() {
    let moved = deadlines(Some(at(1, 9)), at(2, 8) + hours(30));
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 8)),
            suspended(at(1, 20)),
            resumed(hours(30), moved, at(3, 2)),
        ],
    );

    assert!(
        !view.is_overdue_at(at(2, 9)),
        "suspended past the original deadline"
    );
    assert!(
        !view.is_overdue_at(at(3, 13)),
        "the moved deadline is 14:00"
    );
    assert!(view.is_overdue_at(at(3, 15)));
}

#[test]
fn late_dated_event_takes_effect_at_latest_time() {
    // The deadline watcher records the passed response deadline at 09:00 after the routing at
    // 10:00; the acceptance dated 09:30 comes after both in the stream.
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 10)),
            deadline_passed(DeadlineKind::Response, at(1, 9)),
            accepted(at(1, 9) + hours(1) / 2),
        ],
    );

    assert_eq!(
        view.accepted_at,
        Some(at(1, 9) + hours(1) / 2),
        "the view keeps the event's own time"
    );
    assert_eq!(
        view.timeline.last().map(|change| change.from),
        Some(at(1, 10))
    );
    assert_eq!(
        view.state_at(at(1, 9)).map(|state| state.accepted),
        Some(false)
    );
    assert!(
        !view.is_overdue_at(at(1, 10)),
        "the acceptance is in force from 10:00"
    );
}

#[test]
fn changes_at_one_instant_leave_one_entry() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            accepted(at(1, 8)),
            assigned("c-1", at(1, 9)),
        ],
    );

    assert_eq!(view.timeline.len(), 2);
    assert_eq!(view.timeline[0].from, at(1, 8));
    assert_eq!(view.timeline[0].state.status, TicketStatus::Accepted);
    assert_eq!(view.timeline[1].state.status, TicketStatus::Assigned);
}

#[test]
fn change_undone_at_same_instant_leaves_no_entry() {
    let view = fold_one(
        1,
        vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 9)),
            routed("org-2", at(1, 10)),
            routed("org-1", at(1, 10)),
        ],
    );

    assert_eq!(view.timeline.len(), 2);
    assert_eq!(view.timeline[1].from, at(1, 9));
}

#[test]
fn view_round_trips_through_json() {
    let mut events = resolved_ticket(1, 1, "org-1", "c-1", 1, 4);
    events.push(rated(5, at(2, 8)));
    let view = fold_one(1, events);

    let json = serde_json::to_string(&view).unwrap();
    let restored: TicketView = serde_json::from_str(&json).unwrap();

    assert_eq!(restored, view);
}

#[test]
fn batches_equal_fold_from_scratch() {
    let events = log(vec![
        (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 4)),
        (
            2,
            vec![
                registered(2, at(1, 9)),
                routed("org-2", at(1, 9)),
                cancelled(at(1, 10)),
            ],
        ),
    ]);
    let expected = fold_from_scratch(events.clone());

    for split in 0..=events.len() {
        let mut views = BTreeMap::new();
        fold_into(&mut views, events[..split].iter().cloned());
        fold_into(&mut views, events[split..].iter().cloned());
        assert_eq!(views, expected, "split after {split} events");
    }
}
