//! Given/when/then tests of the ticket rules, one or more per rule.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::sla::catalogue::{Jurisdiction, SlaCatalogueParts, WinterSeason};
use crate::sla::{CategoryRule, ProductionCalendar, SlaCatalogue, Target};
use crate::values::*;

type TicketTest = TestFramework<Ticket>;

fn catalogue() -> SlaCatalogue {
    let rule = |code: &str, priority, response, resolution| CategoryRule {
        code: code.to_string(),
        name: code.to_string(),
        priority,
        response,
        resolution,
        winter_resolution: None,
        basis: "test".to_string(),
        note: None,
        effective_from: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).expect("date"),
        effective_to: None,
    };
    SlaCatalogue::new(SlaCatalogueParts {
        jurisdiction: Jurisdiction { code: "RU".to_string(), name: "тест".to_string() },
        fallback_category: "other".to_string(),
        winter: WinterSeason::new(10, 1, 4, 30).expect("season"),
        rules: vec![
            rule("pipe_burst", Priority::Emergency, Some(Target::minutes(30).expect("t")), Target::days(3).expect("t")),
            rule("roof_leak", Priority::Routine, None, Target::days(1).expect("t")),
            rule("other", Priority::Routine, None, Target::working_days(10).expect("t")),
        ],
        calendar: ProductionCalendar::new(2025, 2027).expect("calendar"),
    })
    .expect("catalogue")
}

fn services() -> TicketServices {
    TicketServices { sla: Arc::new(catalogue()) }
}

fn at(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 9, 0, 0).single().expect("instant") + Duration::hours(hours)
}

fn ticket_id() -> Uuid {
    Uuid::from_u128(7)
}

fn building() -> BuildingRef {
    BuildingRef {
        id: "b1".to_string(),
        address: "Казань, ул. Баумана, 1".to_string(),
        district: Some("Вахитовский".to_string()),
        time_zone: "Europe/Moscow".to_string(),
        region: Some("RU-TA".to_string()),
    }
}

fn organization() -> OrganizationRef {
    OrganizationRef { id: "uk1".to_string(), name: "УК 1".to_string(), kind: OrganizationKind::ManagementCompany }
}

fn register_command(category: &str) -> TicketCommand {
    TicketCommand::Register(RegisterTicket {
        ticket_id: ticket_id(),
        external_id: None,
        channel: Channel::CallCenter,
        requester: Requester::default(),
        building: building(),
        premises: Some("5".to_string()),
        category: category.to_string(),
        description: "течь".to_string(),
        resolution_deadline_override: None,
        at: at(0),
    })
}

fn registered(category: &str, priority: Priority, deadlines: Deadlines) -> TicketEvent {
    TicketEvent::TicketRegistered(TicketRegistered {
        ticket_id: ticket_id(),
        external_id: None,
        channel: Channel::CallCenter,
        requester: Requester::default(),
        building: building(),
        premises: Some("5".to_string()),
        category: category.to_string(),
        priority,
        description: "течь".to_string(),
        deadlines,
        occurred_at: at(0),
    })
}

fn roof_deadlines() -> Deadlines {
    Deadlines { response: None, resolution: at(24), basis: "test".to_string() }
}

fn roof_registered() -> TicketEvent {
    registered("roof_leak", Priority::Routine, roof_deadlines())
}

fn routed() -> TicketEvent {
    TicketEvent::TicketRouted(TicketRouted { organization: organization(), occurred_at: at(1) })
}

fn accepted() -> TicketEvent {
    TicketEvent::TicketAccepted(TicketAccepted { occurred_at: at(2) })
}

fn completion_reported(hours: i64) -> TicketEvent {
    TicketEvent::CompletionReported(CompletionReported { note: None, occurred_at: at(hours) })
}

fn given_completed() -> Vec<TicketEvent> {
    vec![roof_registered(), routed(), accepted(), completion_reported(5)]
}

#[test]
fn register_computes_deadlines_from_catalogue() {
    TicketTest::with(services())
        .given_no_previous_events()
        .when(register_command("roof_leak"))
        .then_expect_events(vec![roof_registered()]);
}

#[test]
fn register_emergency_has_response_deadline() {
    let deadlines = Deadlines { response: Some(at(0) + Duration::minutes(30)), resolution: at(72), basis: "test".to_string() };
    TicketTest::with(services())
        .given_no_previous_events()
        .when(register_command("pipe_burst"))
        .then_expect_events(vec![registered("pipe_burst", Priority::Emergency, deadlines)]);
}

#[test]
fn register_with_source_deadline_overrides_catalogue() {
    let TicketCommand::Register(mut command) = register_command("roof_leak") else { unreachable!() };
    command.resolution_deadline_override = Some(at(100));
    let deadlines = Deadlines { response: None, resolution: at(100), basis: SOURCE_DEADLINE_BASIS.to_string() };
    TicketTest::with(services())
        .given_no_previous_events()
        .when(TicketCommand::Register(command))
        .then_expect_events(vec![registered("roof_leak", Priority::Routine, deadlines)]);
}

#[test]
fn register_unknown_category_is_rejected() {
    TicketTest::with(services())
        .given_no_previous_events()
        .when(register_command("flying_saucer"))
        .then_expect_error(TicketError::Sla(crate::sla::SlaError::UnknownCategory { category: "flying_saucer".to_string() }));
}

#[test]
fn register_twice_is_rejected() {
    TicketTest::with(services())
        .given(vec![roof_registered()])
        .when(register_command("roof_leak"))
        .then_expect_error(TicketError::AlreadyRegistered);
}

#[test]
fn register_empty_description_is_rejected() {
    let TicketCommand::Register(mut command) = register_command("roof_leak") else { unreachable!() };
    command.description = "  ".to_string();
    TicketTest::with(services())
        .given_no_previous_events()
        .when(TicketCommand::Register(command))
        .then_expect_error(TicketError::EmptyField { field: "description" });
}

#[test]
fn command_on_unregistered_ticket_is_rejected() {
    TicketTest::with(services())
        .given_no_previous_events()
        .when(TicketCommand::Accept(AcceptTicket { at: at(1) }))
        .then_expect_error(TicketError::NotRegistered);
}

#[test]
fn classify_recomputes_deadlines_from_registration() {
    let deadlines = Deadlines { response: Some(at(0) + Duration::minutes(30)), resolution: at(72), basis: "test".to_string() };
    TicketTest::with(services())
        .given(vec![roof_registered()])
        .when(TicketCommand::Classify(ClassifyTicket { category: "pipe_burst".to_string(), at: at(1) }))
        .then_expect_events(vec![TicketEvent::TicketClassified(TicketClassified {
            category: "pipe_burst".to_string(),
            priority: Priority::Emergency,
            deadlines,
            occurred_at: at(1),
        })]);
}

#[test]
fn route_new_ticket() {
    TicketTest::with(services())
        .given(vec![roof_registered()])
        .when(TicketCommand::Route(RouteTicket { organization: organization(), at: at(1) }))
        .then_expect_events(vec![routed()]);
}

#[test]
fn accept_before_routing_is_rejected() {
    TicketTest::with(services())
        .given(vec![roof_registered()])
        .when(TicketCommand::Accept(AcceptTicket { at: at(1) }))
        .then_expect_error(TicketError::InvalidTransition { command: "accept", status: TicketStatus::New });
}

#[test]
fn accept_routed_ticket() {
    TicketTest::with(services())
        .given(vec![roof_registered(), routed()])
        .when(TicketCommand::Accept(AcceptTicket { at: at(2) }))
        .then_expect_events(vec![accepted()]);
}

#[test]
fn assign_contractor_after_acceptance() {
    let contractor = ContractorRef { id: "c1".to_string(), name: "Подрядчик".to_string() };
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), accepted()])
        .when(TicketCommand::AssignContractor(AssignContractor { contractor: contractor.clone(), at: at(3) }))
        .then_expect_events(vec![TicketEvent::ContractorAssigned(ContractorAssigned { contractor, occurred_at: at(3) })]);
}

#[test]
fn start_work_before_acceptance_is_rejected() {
    TicketTest::with(services())
        .given(vec![roof_registered(), routed()])
        .when(TicketCommand::StartWork(StartWork { at: at(3) }))
        .then_expect_error(TicketError::InvalidTransition { command: "start_work", status: TicketStatus::Routed });
}

#[test]
fn resume_moves_deadlines_by_paused_time() {
    let suspended = TicketEvent::WorkSuspended(WorkSuspended { reason: "нет доступа".to_string(), occurred_at: at(3) });
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), accepted(), suspended])
        .when(TicketCommand::Resume(ResumeWork { at: at(8) }))
        .then_expect_events(vec![TicketEvent::WorkResumed(WorkResumed {
            paused_seconds: 5 * 3600,
            deadlines: Deadlines { response: None, resolution: at(29), basis: "test".to_string() },
            occurred_at: at(8),
        })]);
}

#[test]
fn resume_without_suspension_is_rejected() {
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), accepted()])
        .when(TicketCommand::Resume(ResumeWork { at: at(8) }))
        .then_expect_error(TicketError::InvalidTransition { command: "resume", status: TicketStatus::Accepted });
}

#[test]
fn suspend_twice_is_rejected() {
    let suspended = TicketEvent::WorkSuspended(WorkSuspended { reason: "нет доступа".to_string(), occurred_at: at(3) });
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), accepted(), suspended])
        .when(TicketCommand::Suspend(SuspendWork { reason: "снова".to_string(), at: at(4) }))
        .then_expect_error(TicketError::InvalidTransition { command: "suspend", status: TicketStatus::Suspended });
}

#[test]
fn report_completion_after_acceptance() {
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), accepted()])
        .when(TicketCommand::ReportCompletion(ReportCompletion { note: None, at: at(5) }))
        .then_expect_events(vec![completion_reported(5)]);
}

#[test]
fn confirm_before_completion_is_rejected() {
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), accepted()])
        .when(TicketCommand::ConfirmCompletion(ConfirmCompletion { at: at(6) }))
        .then_expect_error(TicketError::InvalidTransition { command: "confirm_completion", status: TicketStatus::Accepted });
}

#[test]
fn confirm_after_completion() {
    TicketTest::with(services())
        .given(given_completed())
        .when(TicketCommand::ConfirmCompletion(ConfirmCompletion { at: at(6) }))
        .then_expect_events(vec![TicketEvent::CompletionConfirmed(CompletionConfirmed { occurred_at: at(6) })]);
}

#[test]
fn reject_reopens_with_new_deadline() {
    TicketTest::with(services())
        .given(given_completed())
        .when(TicketCommand::RejectCompletion(RejectCompletion { reason: "течёт".to_string(), at: at(6) }))
        .then_expect_events(vec![TicketEvent::CompletionRejected(CompletionRejected {
            reason: "течёт".to_string(),
            reopen_count: 1,
            deadlines: Deadlines { response: None, resolution: at(30), basis: "test".to_string() },
            occurred_at: at(6),
        })]);
}

#[test]
fn rate_outside_range_cannot_be_built() {
    assert!(Rating::parse(0).is_none());
    assert!(Rating::parse(6).is_none());
    assert_eq!(Rating::parse(5).map(Rating::value), Some(5));
}

#[test]
fn rate_before_completion_is_rejected() {
    let rating = Rating::parse(5).expect("valid");
    TicketTest::with(services())
        .given(vec![roof_registered(), routed()])
        .when(TicketCommand::Rate(RateTicket { rating, at: at(3) }))
        .then_expect_error(TicketError::InvalidTransition { command: "rate", status: TicketStatus::Routed });
}

#[test]
fn rate_twice_is_rejected() {
    let rating = Rating::parse(4).expect("valid");
    let mut given = given_completed();
    given.push(TicketEvent::TicketRated(TicketRated { rating, occurred_at: at(6) }));
    TicketTest::with(services())
        .given(given)
        .when(TicketCommand::Rate(RateTicket { rating, at: at(7) }))
        .then_expect_error(TicketError::AlreadyRated);
}

#[test]
fn rate_closed_ticket_is_allowed() {
    let rating = Rating::parse(3).expect("valid");
    let mut given = given_completed();
    given.push(TicketEvent::TicketClosed(TicketClosed { reason: CloseReason::NoResidentResponse, resolved_at: at(5), occurred_at: at(80) }));
    TicketTest::with(services())
        .given(given)
        .when(TicketCommand::Rate(RateTicket { rating, at: at(81) }))
        .then_expect_events(vec![TicketEvent::TicketRated(TicketRated { rating, occurred_at: at(81) })]);
}

#[test]
fn comment_requires_text() {
    TicketTest::with(services())
        .given(vec![roof_registered()])
        .when(TicketCommand::Comment(CommentTicket { author: "диспетчер".to_string(), text: "".to_string(), at: at(1) }))
        .then_expect_error(TicketError::EmptyField { field: "text" });
}

#[test]
fn escalate_raises_level() {
    TicketTest::with(services())
        .given(vec![
            roof_registered(),
            TicketEvent::TicketEscalated(TicketEscalated { reason: "долго".to_string(), level: 1, occurred_at: at(1) }),
        ])
        .when(TicketCommand::Escalate(EscalateTicket { reason: "очень долго".to_string(), at: at(2) }))
        .then_expect_events(vec![TicketEvent::TicketEscalated(TicketEscalated {
            reason: "очень долго".to_string(),
            level: 2,
            occurred_at: at(2),
        })]);
}

#[test]
fn cancel_as_duplicate_of_itself_is_rejected() {
    TicketTest::with(services())
        .given(vec![roof_registered()])
        .when(TicketCommand::Cancel(CancelTicket { reason: CancelReason::Duplicate, duplicate_of: Some(ticket_id()), note: None, at: at(1) }))
        .then_expect_error(TicketError::SelfDuplicate);
}

#[test]
fn cancel_after_completion_is_rejected() {
    TicketTest::with(services())
        .given(given_completed())
        .when(TicketCommand::Cancel(CancelTicket { reason: CancelReason::Spam, duplicate_of: None, note: None, at: at(6) }))
        .then_expect_error(TicketError::InvalidTransition { command: "cancel", status: TicketStatus::CompletionReported });
}

#[test]
fn cancelled_ticket_rejects_commands() {
    TicketTest::with(services())
        .given(vec![
            roof_registered(),
            TicketEvent::TicketCancelled(TicketCancelled { reason: CancelReason::Spam, duplicate_of: None, note: None, occurred_at: at(1) }),
        ])
        .when(TicketCommand::Route(RouteTicket { organization: organization(), at: at(2) }))
        .then_expect_error(TicketError::AlreadyCancelled);
}

#[test]
fn close_confirmed_ticket_uses_report_time() {
    let mut given = given_completed();
    given.push(TicketEvent::CompletionConfirmed(CompletionConfirmed { occurred_at: at(6) }));
    TicketTest::with(services())
        .given(given)
        .when(TicketCommand::Close(CloseTicket { reason: CloseReason::Confirmed, at: at(7) }))
        .then_expect_events(vec![TicketEvent::TicketClosed(TicketClosed {
            reason: CloseReason::Confirmed,
            resolved_at: at(5),
            occurred_at: at(7),
        })]);
}

#[test]
fn close_as_confirmed_without_confirmation_is_rejected() {
    TicketTest::with(services())
        .given(given_completed())
        .when(TicketCommand::Close(CloseTicket { reason: CloseReason::Confirmed, at: at(7) }))
        .then_expect_error(TicketError::InvalidTransition { command: "close", status: TicketStatus::CompletionReported });
}

#[test]
fn closed_ticket_rejects_commands() {
    let mut given = given_completed();
    given.push(TicketEvent::TicketClosed(TicketClosed { reason: CloseReason::NoResidentResponse, resolved_at: at(5), occurred_at: at(80) }));
    TicketTest::with(services())
        .given(given)
        .when(TicketCommand::Comment(CommentTicket { author: "житель".to_string(), text: "ещё".to_string(), at: at(81) }))
        .then_expect_error(TicketError::AlreadyClosed);
}

#[test]
fn close_before_registration_is_flagged() {
    let closing = at(0) - Duration::hours(10);
    let given = vec![roof_registered(), routed()];
    let mut state = Ticket::default();
    for event in given.clone() {
        cqrs_es::Aggregate::apply(&mut state, event);
    }
    let events = state
        .decide(TicketCommand::Close(CloseTicket { reason: CloseReason::Administrative, at: closing }), &services())
        .expect("closing is accepted");
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[0], TicketEvent::DataAnomalyFlagged(flag) if flag.kind == AnomalyKind::ClosedBeforeCreated));
    assert!(matches!(&events[1], TicketEvent::TicketClosed(closed) if closed.resolved_at == closing));
}

#[test]
fn deadline_passed_recorded_once() {
    let passed = TicketEvent::DeadlinePassed(DeadlinePassed { kind: DeadlineKind::Resolution, deadline: at(24), occurred_at: at(24) });
    TicketTest::with(services())
        .given(vec![roof_registered(), routed()])
        .when(TicketCommand::RecordDeadlinePassed(RecordDeadlinePassed { at: at(30) }))
        .then_expect_events(vec![passed.clone()]);
    TicketTest::with(services())
        .given(vec![roof_registered(), routed(), passed])
        .when(TicketCommand::RecordDeadlinePassed(RecordDeadlinePassed { at: at(31) }))
        .then_expect_error(TicketError::NoDeadlinePassed { at: at(31) });
}

#[test]
fn event_payload_round_trips_as_json() {
    let event = roof_registered();
    let json = serde_json::to_value(&event).expect("serializes");
    assert!(json.get("TicketRegistered").is_some());
    let back: TicketEvent = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, event);
}
