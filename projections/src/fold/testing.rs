//! Builders of hand-written ticket events for the unit tests of folds and statistics.

use chrono::{DateTime, Duration, TimeZone, Utc};
use opencity_domain::ticket::*;
use opencity_domain::values::*;
use uuid::Uuid;

use super::{fold_from_scratch, TicketView};

/// Returns 2024-03-`day` `hour`:00 UTC.
pub fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, day, hour, 0, 0).unwrap()
}

pub fn hours(count: i64) -> Duration {
    Duration::hours(count)
}

pub fn ticket_id(number: u128) -> Uuid {
    Uuid::from_u128(number)
}

/// Returns the registration of ticket `number` at `time`: an emergency leak in building `b-1` of the
/// district "Центральный", response due in 1 hour and resolution in 24 hours.
pub fn registration(number: u128, time: DateTime<Utc>) -> TicketRegistered {
    TicketRegistered {
        ticket_id: ticket_id(number),
        external_id: Some(format!("ext-{number}")),
        channel: Channel::Web,
        requester: Requester::default(),
        building: BuildingRef {
            id: "b-1".to_string(),
            address: "ул. Ленина, 1".to_string(),
            district: Some("Центральный".to_string()),
            time_zone: "Europe/Moscow".to_string(),
            region: Some("RU-MOW".to_string()),
        },
        premises: Some("12".to_string()),
        category: "leak".to_string(),
        priority: Priority::Emergency,
        description: "течь в подвале".to_string(),
        deadlines: deadlines(Some(time + hours(1)), time + hours(24)),
        occurred_at: time,
    }
}

pub fn deadlines(response: Option<DateTime<Utc>>, resolution: DateTime<Utc>) -> Deadlines {
    Deadlines {
        response,
        resolution,
        basis: "ПП 290".to_string(),
    }
}

pub fn registered(number: u128, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketRegistered(registration(number, time))
}

pub fn classified(
    category: &str,
    priority: Priority,
    resolution: DateTime<Utc>,
    time: DateTime<Utc>,
) -> TicketEvent {
    TicketEvent::TicketClassified(TicketClassified {
        category: category.to_string(),
        priority,
        deadlines: deadlines(None, resolution),
        occurred_at: time,
    })
}

pub fn routed(organization: &str, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketRouted(TicketRouted {
        organization: OrganizationRef {
            id: organization.to_string(),
            name: format!("УК {organization}"),
            kind: OrganizationKind::ManagementCompany,
        },
        occurred_at: time,
    })
}

pub fn accepted(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketAccepted(TicketAccepted { occurred_at: time })
}

pub fn assigned(contractor: &str, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::ContractorAssigned(ContractorAssigned {
        contractor: ContractorRef {
            id: contractor.to_string(),
            name: format!("Подрядчик {contractor}"),
        },
        occurred_at: time,
    })
}

pub fn started(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::WorkStarted(WorkStarted { occurred_at: time })
}

pub fn suspended(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::WorkSuspended(WorkSuspended {
        reason: "нет доступа".to_string(),
        occurred_at: time,
    })
}

pub fn resumed(paused: Duration, moved: Deadlines, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::WorkResumed(WorkResumed {
        paused_seconds: paused.num_seconds(),
        deadlines: moved,
        occurred_at: time,
    })
}

pub fn reported(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::CompletionReported(CompletionReported {
        note: None,
        occurred_at: time,
    })
}

pub fn confirmed(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::CompletionConfirmed(CompletionConfirmed { occurred_at: time })
}

pub fn rejected(reopen_count: u32, resolution: DateTime<Utc>, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::CompletionRejected(CompletionRejected {
        reason: "течь не устранена".to_string(),
        reopen_count,
        deadlines: deadlines(None, resolution),
        occurred_at: time,
    })
}

pub fn rated(score: i64, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketRated(TicketRated {
        rating: Rating::parse(score).unwrap(),
        occurred_at: time,
    })
}

pub fn commented(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketCommented(TicketCommented {
        author: "диспетчер".to_string(),
        text: "звонок".to_string(),
        occurred_at: time,
    })
}

pub fn cancelled(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketCancelled(TicketCancelled {
        reason: CancelReason::Duplicate,
        duplicate_of: None,
        note: None,
        occurred_at: time,
    })
}

pub fn closed(reason: CloseReason, resolved_at: DateTime<Utc>, time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketClosed(TicketClosed {
        reason,
        resolved_at,
        occurred_at: time,
    })
}

pub fn deadline_passed(kind: DeadlineKind, deadline: DateTime<Utc>) -> TicketEvent {
    TicketEvent::DeadlinePassed(DeadlinePassed {
        kind,
        deadline,
        occurred_at: deadline,
    })
}

pub fn closed_before_created(time: DateTime<Utc>) -> TicketEvent {
    TicketEvent::DataAnomalyFlagged(DataAnomalyFlagged {
        kind: AnomalyKind::ClosedBeforeCreated,
        detail: "closing before registration".to_string(),
        occurred_at: time,
    })
}

/// Folds the events of one ticket, numbered from position 1.
pub fn fold_one(number: u128, events: Vec<TicketEvent>) -> TicketView {
    let mut views = fold_from_scratch(log(vec![(number, events)]));
    views
        .remove(&ticket_id(number))
        .expect("the events start with a registration")
}

/// Numbers the events of several tickets with consecutive positions from 1, ticket after ticket.
pub fn log(tickets: Vec<(u128, Vec<TicketEvent>)>) -> Vec<(Uuid, i64, TicketEvent)> {
    tickets
        .into_iter()
        .flat_map(|(number, events)| {
            events
                .into_iter()
                .map(move |event| (ticket_id(number), event))
        })
        .zip(1..)
        .map(|((id, event), position)| (id, position, event))
        .collect()
}

/// Returns the events of a closed ticket: registered on `day` at 08:00, routed to `organization`, accepted after
/// `accept_hours`, assigned to `contractor`, reported done after `resolve_hours` and closed.
pub fn resolved_ticket(
    number: u128,
    day: u32,
    organization: &str,
    contractor: &str,
    accept_hours: i64,
    resolve_hours: i64,
) -> Vec<TicketEvent> {
    let start = at(day, 8);
    let done = start + hours(resolve_hours);
    vec![
        registered(number, start),
        routed(organization, start),
        accepted(start + hours(accept_hours)),
        assigned(contractor, start + hours(accept_hours)),
        reported(done),
        confirmed(done),
        closed(CloseReason::Confirmed, done, done),
    ]
}
