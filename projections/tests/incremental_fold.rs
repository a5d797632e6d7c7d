//! Property tests of the ticket folds on logs the domain itself writes: random commands for a
//! few tickets go through `Ticket::decide`, so only valid events reach the log.
//!
//! Checked for every generated log:
//! - views built batch by batch (any split, each batch stored as JSON and delivered twice)
//!   equal the views of one fold from scratch, and so do the statistics computed from them;
//! - each view agrees with the domain aggregate on status, deadlines and counters;
//! - the state of a view at any time T equals the current state of the view folded from the
//!   longest prefix of its stream whose events occurred at or before T;
//! - the overdue counters as of T equal those of these prefix views.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::Aggregate;
use opencity_domain::ticket::*;
use opencity_domain::values::*;
use opencity_domain::{Ticket, TicketServices};
use opencity_projections::*;
use proptest::prelude::*;
use uuid::Uuid;

const TICKETS: usize = 5;
const CATEGORIES: [&str; 6] = [
    "emergency_cold_water",
    "sewer_blockage",
    "roof_leak",
    "lift_fault",
    "written_appeal",
    "other",
];
const ORGANIZATIONS: [&str; 3] = ["org-1", "org-2", "org-3"];
const CONTRACTORS: [&str; 3] = ["c-1", "c-2", "c-3"];

/// One generated command: which ticket, which kind, a number that picks its parameters, how
/// far the business clock moves before it (sometimes backwards), and how far before the clock
/// the command is dated. Imported history has such dates, and the domain flags a completion or
/// closing dated before the registration.
#[derive(Clone, Debug)]
struct Step {
    ticket: usize,
    kind: u8,
    choice: usize,
    advance_minutes: i64,
    backdate_minutes: i64,
}

/// Picks a command kind, weighted toward the lifecycle so tickets get past routing before they
/// are closed. The numbers are those that `command` matches on.
fn kind() -> impl Strategy<Value = u8> {
    prop_oneof![
        1 => Just(0u8),
        3 => Just(1),
        5 => Just(2),
        4 => Just(3),
        4 => Just(4),
        3 => Just(5),
        4 => Just(6),
        2 => Just(7),
        2 => Just(9),
        2 => Just(10),
        2 => Just(11),
        1 => Just(12),
        1 => Just(13),
        1 => Just(14),
        1 => Just(15),
        2 => Just(16),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![8 => 0i64..=600, 2 => 600i64..=4320, 1 => -240i64..0];
    let backdate = prop_oneof![7 => Just(0i64), 1 => 1i64..=14400];
    (0..TICKETS, kind(), 0usize..1000, advance, backdate).prop_map(
        |(ticket, kind, choice, advance_minutes, backdate_minutes)| Step {
            ticket,
            kind,
            choice,
            advance_minutes,
            backdate_minutes,
        },
    )
}

fn ticket_id(index: usize) -> Uuid {
    Uuid::from_u128(0x1000 + index as u128)
}

fn building(choice: usize) -> BuildingRef {
    let (id, district, time_zone, region) = match choice % 3 {
        0 => ("b-1", Some("Центральный"), "Europe/Moscow", Some("RU-MOW")),
        1 => ("b-2", None, "Europe/Moscow", Some("RU-MOW")),
        _ => ("b-3", Some("Ленинский"), "Asia/Barnaul", Some("RU-AL")),
    };
    BuildingRef {
        id: id.to_string(),
        address: format!("адрес {id}"),
        district: district.map(str::to_string),
        time_zone: time_zone.to_string(),
        region: region.map(str::to_string),
    }
}

/// Builds the command of `step` for a ticket in `status`, or a registration for an unregistered
/// ticket.
fn command(step: &Step, index: usize, status: TicketStatus, at: DateTime<Utc>) -> TicketCommand {
    let choice = step.choice;
    if status == TicketStatus::Unregistered {
        return TicketCommand::Register(RegisterTicket {
            ticket_id: ticket_id(index),
            external_id: choice.is_multiple_of(2).then(|| format!("ext-{index}")),
            channel: Channel::ALL[choice % Channel::ALL.len()],
            requester: Requester::default(),
            building: building(choice / 7),
            premises: None,
            category: CATEGORIES[choice % CATEGORIES.len()].to_string(),
            description: "заявка".to_string(),
            resolution_deadline_override: choice
                .is_multiple_of(5)
                .then(|| at + Duration::hours((choice % 72) as i64)),
            at,
        });
    }
    match step.kind {
        0 => TicketCommand::Classify(ClassifyTicket {
            category: CATEGORIES[choice % CATEGORIES.len()].to_string(),
            at,
        }),
        1 => TicketCommand::Route(RouteTicket {
            organization: OrganizationRef {
                id: ORGANIZATIONS[choice % 3].to_string(),
                name: format!("УК {}", choice % 3),
                kind: OrganizationKind::ManagementCompany,
            },
            at,
        }),
        2 => TicketCommand::Accept(AcceptTicket { at }),
        3 => TicketCommand::AssignContractor(AssignContractor {
            contractor: ContractorRef {
                id: CONTRACTORS[choice % 3].to_string(),
                name: format!("Подрядчик {}", choice % 7),
            },
            at,
        }),
        4 => TicketCommand::StartWork(StartWork { at }),
        5 => TicketCommand::Suspend(SuspendWork {
            reason: "нет доступа".to_string(),
            at,
        }),
        6 => TicketCommand::Resume(ResumeWork { at }),
        7 | 8 => TicketCommand::ReportCompletion(ReportCompletion { note: None, at }),
        9 => TicketCommand::ConfirmCompletion(ConfirmCompletion { at }),
        10 => TicketCommand::RejectCompletion(RejectCompletion {
            reason: "не устранено".to_string(),
            at,
        }),
        11 => TicketCommand::Rate(RateTicket {
            rating: Rating::parse((choice % 5) as i64 + 1).expect("1 to 5"),
            at,
        }),
        12 => TicketCommand::Comment(CommentTicket {
            author: "диспетчер".to_string(),
            text: "звонок".to_string(),
            at,
        }),
        13 => TicketCommand::Escalate(EscalateTicket {
            reason: "жалоба".to_string(),
            at,
        }),
        14 if choice.is_multiple_of(4) => TicketCommand::Cancel(CancelTicket {
            reason: CancelReason::Duplicate,
            duplicate_of: Some(ticket_id((index + 1) % TICKETS)),
            note: None,
            at,
        }),
        14 | 15 => {
            let reason = [
                CloseReason::Confirmed,
                CloseReason::NoResidentResponse,
                CloseReason::Administrative,
            ][choice % 3];
            TicketCommand::Close(CloseTicket { reason, at })
        }
        _ => TicketCommand::RecordDeadlinePassed(RecordDeadlinePassed { at }),
    }
}

/// Runs the steps through the domain and returns the log with global positions from 1, and the
/// aggregates at the end.
fn generate_log(
    steps: &[Step],
    services: &TicketServices,
) -> (Vec<(Uuid, i64, TicketEvent)>, Vec<Ticket>) {
    let mut tickets = vec![Ticket::default(); TICKETS];
    let mut log = Vec::new();
    let mut clock = Utc.with_ymd_and_hms(2025, 2, 3, 6, 0, 0).unwrap();

    for step in steps {
        clock += Duration::minutes(step.advance_minutes);
        let ticket = &mut tickets[step.ticket];
        let at = clock - Duration::minutes(step.backdate_minutes);
        let command = command(step, step.ticket, ticket.status, at);
        let Ok(events) = ticket.decide(command, services) else {
            continue;
        };
        for event in events {
            ticket.apply(event.clone());
            log.push((ticket_id(step.ticket), log.len() as i64 + 1, event));
        }
    }
    (log, tickets)
}

/// Folds the log in batches cut at `cuts`, storing the views as JSON between batches (as the
/// runner does) and delivering every batch twice.
fn fold_in_batches(log: &[(Uuid, i64, TicketEvent)], cuts: &[usize]) -> BTreeMap<Uuid, TicketView> {
    let mut bounds: Vec<usize> = cuts.iter().map(|cut| cut % (log.len() + 1)).collect();
    bounds.push(0);
    bounds.push(log.len());
    bounds.sort_unstable();

    let mut stored = serde_json::to_string(&BTreeMap::<Uuid, TicketView>::new()).unwrap();
    for window in bounds.windows(2) {
        let batch = &log[window[0]..window[1]];
        let mut views: BTreeMap<Uuid, TicketView> = serde_json::from_str(&stored).unwrap();
        fold_into(&mut views, batch.iter().cloned());
        fold_into(&mut views, batch.iter().cloned());
        stored = serde_json::to_string(&views).unwrap();
    }
    serde_json::from_str(&stored).unwrap()
}

/// Folds, for each ticket, the longest prefix of its stream whose events occurred at or before
/// `at`.
fn fold_prefixes_until(
    log: &[(Uuid, i64, TicketEvent)],
    at: DateTime<Utc>,
) -> BTreeMap<Uuid, TicketView> {
    let mut stopped: Vec<Uuid> = Vec::new();
    let mut prefix = Vec::new();
    for (ticket_id, position, event) in log {
        if stopped.contains(ticket_id) {
            continue;
        }
        if event.occurred_at() > at {
            stopped.push(*ticket_id);
            continue;
        }
        prefix.push((*ticket_id, *position, event.clone()));
    }
    fold_from_scratch(prefix)
}

fn groupings() -> Vec<Vec<Dimension>> {
    vec![
        vec![],
        vec![Dimension::Organization],
        vec![Dimension::Contractor, Dimension::Category],
        vec![
            Dimension::Priority,
            Dimension::District,
            Dimension::Building,
        ],
        vec![Dimension::Channel, Dimension::Day],
        vec![Dimension::Week, Dimension::Month, Dimension::Organization],
    ]
}

/// Returns the instants worth asking "as of": every event time, a minute either side of it,
/// and every deadline the views ever had, a second either side.
fn probe_times(
    log: &[(Uuid, i64, TicketEvent)],
    views: &BTreeMap<Uuid, TicketView>,
) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    for (_, _, event) in log {
        let at = event.occurred_at();
        times.extend([at - Duration::minutes(1), at, at + Duration::minutes(1)]);
    }
    for view in views.values() {
        for change in &view.timeline {
            let deadlines = change
                .state
                .response_deadline
                .into_iter()
                .chain([change.state.resolution_deadline]);
            for deadline in deadlines {
                times.extend([
                    deadline - Duration::seconds(1),
                    deadline,
                    deadline + Duration::seconds(1),
                ]);
            }
        }
    }
    times.sort();
    times.dedup();
    times
}

fn services() -> TicketServices {
    let catalogue =
        opencity_fixtures::sla::default_catalogue().expect("the built-in SLA catalogue loads");
    TicketServices {
        sla: Arc::new(catalogue),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn incremental_fold_equals_scratch(
        steps in prop::collection::vec(step(), 1..200),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let (log, _) = generate_log(&steps, &services());

        let scratch = fold_from_scratch(log.clone());
        let incremental = fold_in_batches(&log, &cuts);
        prop_assert_eq!(&incremental, &scratch);

        let tz = DEFAULT_TIME_ZONE;
        let filter = StatsFilter::default();
        for group_by in groupings() {
            prop_assert_eq!(
                sla_stats(incremental.values(), &group_by, &filter, tz),
                sla_stats(scratch.values(), &group_by, &filter, tz)
            );
        }
        let end = log.last().map(|(_, _, event)| event.occurred_at()).unwrap_or_else(|| Utc.with_ymd_and_hms(2025, 2, 3, 6, 0, 0).unwrap());
        for as_of in [end - Duration::days(1), end, end + Duration::days(30)] {
            prop_assert_eq!(
                overdue_counters(incremental.values(), &[Dimension::Organization], as_of, tz),
                overdue_counters(scratch.values(), &[Dimension::Organization], as_of, tz)
            );
        }
        prop_assert_eq!(contractor_ratings(incremental.values()), contractor_ratings(scratch.values()));
    }

    #[test]
    fn view_agrees_with_aggregate(steps in prop::collection::vec(step(), 1..200)) {
        let (log, tickets) = generate_log(&steps, &services());
        let views = fold_from_scratch(log);

        for (index, ticket) in tickets.iter().enumerate() {
            let Some(view) = views.get(&ticket_id(index)) else {
                prop_assert_eq!(ticket.status, TicketStatus::Unregistered);
                continue;
            };
            prop_assert_eq!(view.status, ticket.status);
            prop_assert_eq!(&view.category, &ticket.category);
            prop_assert_eq!(Some(view.priority), ticket.priority);
            prop_assert_eq!(view.reopen_count, ticket.reopen_count);
            prop_assert_eq!(view.escalation_level, ticket.escalation_level);
            prop_assert_eq!(view.rating.is_some(), ticket.rated);
            prop_assert_eq!(view.accepted_at.is_some(), ticket.accepted);
            prop_assert_eq!(!view.flagged.is_empty(), ticket.anomaly_flagged);
            let deadlines = ticket.deadlines.as_ref().expect("a registered ticket has deadlines");
            prop_assert_eq!(view.resolution_deadline, deadlines.resolution);
            prop_assert_eq!(view.response_deadline, deadlines.response);
            prop_assert_eq!(view.resolution_on_time().is_some(), ticket.status == TicketStatus::Closed);
            prop_assert!(view.resolve_seconds().is_none_or(|seconds| seconds >= 0.0));
            prop_assert!(view.accept_seconds().is_none_or(|seconds| seconds >= 0.0));
        }
    }

    #[test]
    fn state_as_of_equals_prefix_fold(steps in prop::collection::vec(step(), 1..80)) {
        let (log, _) = generate_log(&steps, &services());
        let views = fold_from_scratch(log.clone());
        let tz = DEFAULT_TIME_ZONE;

        for at in probe_times(&log, &views) {
            let prefixes = fold_prefixes_until(&log, at);
            for (id, view) in &views {
                let expected = prefixes.get(id).map(TicketView::current_state);
                prop_assert_eq!(view.state_at(at).cloned(), expected, "ticket {} at {}", id, at);
                let prefix_overdue = prefixes.get(id).is_some_and(|prefix| prefix.current_state().is_overdue_at(at));
                prop_assert_eq!(view.is_overdue_at(at), prefix_overdue, "ticket {} at {}", id, at);
            }
            for group_by in [vec![], vec![Dimension::Organization, Dimension::Contractor], vec![Dimension::Category, Dimension::Priority]] {
                prop_assert_eq!(
                    overdue_counters(views.values(), &group_by, at, tz),
                    overdue_counters(prefixes.values(), &group_by, at, tz)
                );
            }
        }

        for view in views.values() {
            prop_assert_eq!(view.state_at(view.last_event_at), Some(&view.current_state()));
        }
    }
}

/// Guards the properties above against passing on trivial logs: over a fixed set of generated
/// logs, the domain must have written every kind of ticket event.
#[test]
fn generated_logs_cover_every_event_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let services = services();
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..64 {
        let steps = prop::collection::vec(step(), 1..200)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let (log, _) = generate_log(&steps, &services);
        for (_, _, event) in &log {
            *seen
                .entry(cqrs_es::DomainEvent::event_type(event))
                .or_default() += 1;
        }
    }

    let expected = [
        "TicketRegistered",
        "TicketClassified",
        "TicketRouted",
        "TicketAccepted",
        "ContractorAssigned",
        "WorkStarted",
        "WorkSuspended",
        "WorkResumed",
        "CompletionReported",
        "CompletionConfirmed",
        "CompletionRejected",
        "TicketRated",
        "TicketCommented",
        "TicketEscalated",
        "TicketCancelled",
        "TicketClosed",
        "DeadlinePassed",
        "DataAnomalyFlagged",
    ];
    for event_type in expected {
        assert!(seen.contains_key(event_type), "no {event_type} in {seen:?}");
    }
}
