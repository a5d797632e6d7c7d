use opencity_domain::values::CloseReason;
use opencity_domain::TicketEvent;

use super::*;
use crate::fold::fold_from_scratch;
use crate::fold::testing::*;

/// The outcome of one resolved ticket.
#[derive(Clone, Copy)]
struct Outcome {
    on_time: bool,
    reopened: bool,
    /// The resident's last answer; `Some(false)` needs `reopened`, as a rejection reopens.
    answer: Option<bool>,
    rating: Option<i64>,
}

/// Builds a ticket of `contractor` registered on 1 March 08:00 (resolution due in 24 hours,
/// 48 hours after a rejection) and closed with `outcome`.
fn resolved_by(number: u128, contractor: &str, outcome: Outcome) -> Vec<TicketEvent> {
    let start = at(1, 8);
    let done = if outcome.on_time {
        start + hours(10)
    } else {
        start + hours(60)
    };
    let mut events = vec![
        registered(number, start),
        routed("org-1", start),
        accepted(start),
        assigned(contractor, start),
    ];
    if outcome.reopened {
        events.push(reported(start + hours(2)));
        events.push(rejected(1, start + hours(48), start + hours(3)));
    }
    match outcome.answer {
        Some(true) => {
            events.push(reported(done));
            events.push(confirmed(done));
            events.push(closed(CloseReason::Confirmed, done, done));
        }
        Some(false) => events.push(closed(CloseReason::Administrative, done, done)),
        None => {
            events.push(reported(done));
            events.push(closed(
                CloseReason::NoResidentResponse,
                done,
                done + hours(72),
            ));
        }
    }
    if let Some(score) = outcome.rating {
        events.push(rated(score, done + hours(80)));
    }
    events
}

fn rate_tickets(
    tickets: Vec<(u128, Vec<TicketEvent>)>,
    params: &RatingParams,
) -> Vec<ContractorRating> {
    let views = fold_from_scratch(log(tickets));
    contractor_ratings_with(views.values(), params)
}

fn find<'a>(ratings: &'a [ContractorRating], contractor_id: &str) -> &'a ContractorRating {
    ratings
        .iter()
        .find(|rating| rating.contractor_id == contractor_id)
        .expect("a rated contractor")
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 0.00005,
        "{actual} != {expected}"
    );
}

/// The three contractors of the worked example in `docs/ratings.md`.
fn worked_example() -> Vec<(u128, Vec<TicketEvent>)> {
    let mut tickets = Vec::new();
    let mut number = 0;
    let mut add = |contractor: &str, outcome: Outcome| {
        number += 1;
        tickets.push((number, resolved_by(number, contractor, outcome)));
    };

    // А: 40 resolved, 34 on time, 4 reopened, answers 27 yes and 3 no, ratings 10 × 5 and 10 × 4.
    for i in 0..40 {
        let answer = match i {
            0..3 => Some(false),
            3..30 => Some(true),
            _ => None,
        };
        let rating = match i {
            0..10 => Some(5),
            10..20 => Some(4),
            _ => None,
        };
        add(
            "a",
            Outcome {
                on_time: i >= 6,
                reopened: i < 4,
                answer,
                rating,
            },
        );
    }
    // Б: 3 resolved, all on time, never reopened, 2 confirmations, one rating 5.
    for i in 0..3 {
        let answer = (i < 2).then_some(true);
        let rating = (i == 0).then_some(5);
        add(
            "b",
            Outcome {
                on_time: true,
                reopened: false,
                answer,
                rating,
            },
        );
    }
    // В: 20 resolved, 8 on time, 8 reopened and then rejected, 6 confirmations, ratings mean 2.2.
    let low_ratings = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4];
    for i in 0..20 {
        let answer = match i {
            0..8 => Some(false),
            8..14 => Some(true),
            _ => None,
        };
        let rating = (i >= 10).then(|| low_ratings[i - 10]);
        add(
            "c",
            Outcome {
                on_time: i < 8,
                reopened: i < 8,
                answer,
                rating,
            },
        );
    }
    tickets
}

#[test]
fn worked_example_from_docs() {
    let ratings = rate_tickets(worked_example(), &RatingParams::default());

    let order: Vec<&str> = ratings
        .iter()
        .map(|rating| rating.contractor_id.as_str())
        .collect();
    assert_eq!(order, ["a", "b", "c"]);

    let a = find(&ratings, "a");
    assert_eq!(
        (a.tickets, a.resolved, a.resident_answers, a.rating_count),
        (40, 40, 30, 20)
    );
    assert_eq!(a.on_time_share, Some(0.85));
    assert_eq!(a.first_time_fix_share, Some(0.9));
    assert_eq!(a.confirmation_share, Some(0.9));
    assert_eq!(a.mean_rating, Some(4.5));
    assert_close(a.smoothed.on_time, 0.8229);
    assert_close(a.smoothed.first_time_fix, 0.8819);
    assert_close(a.smoothed.confirmation, 0.8652);
    assert_close(a.smoothed.rating, 0.8145);
    assert!((a.score - 84.44).abs() < 0.005, "{}", a.score);
    assert!(!a.unreliable);

    let b = find(&ratings, "b");
    assert_eq!(b.on_time_share, Some(1.0));
    assert_close(b.smoothed.on_time, 0.7802);
    assert!((b.score - 79.09).abs() < 0.005, "{}", b.score);
    assert!(!b.unreliable);

    let c = find(&ratings, "c");
    assert_eq!(c.on_time_share, Some(0.4));
    assert_eq!(c.first_time_fix_share, Some(0.6));
    assert_eq!(c.mean_rating, Some(2.2));
    assert_close(c.smoothed.on_time, 0.5048);
    assert_close(c.smoothed.first_time_fix, 0.6698);
    assert_close(c.smoothed.confirmation, 0.5670);
    assert_close(c.smoothed.rating, 0.4968);
    assert!((c.score - 55.69).abs() < 0.005, "{}", c.score);
    assert!(c.unreliable);
    assert_eq!(
        c.reasons,
        ["low_score", "late_resolution", "frequent_reopening"]
    );
}

#[test]
fn zero_prior_weight_gives_raw_shares() {
    let params = RatingParams {
        prior_weight: 0.0,
        ..RatingParams::default()
    };
    let ratings = rate_tickets(worked_example(), &params);

    let c = find(&ratings, "c");
    assert_close(c.smoothed.on_time, 0.4);
    assert_close(c.smoothed.first_time_fix, 0.6);
    assert_close(c.smoothed.rating, 0.3);
}

#[test]
fn contractor_without_resolutions_gets_neutral_score() {
    let open = vec![
        registered(1, at(1, 8)),
        routed("org-1", at(1, 8)),
        accepted(at(1, 8)),
        assigned("c-1", at(1, 9)),
    ];

    let ratings = rate_tickets(vec![(1, open)], &RatingParams::default());

    assert_eq!(ratings.len(), 1);
    assert_eq!(ratings[0].tickets, 1);
    assert_eq!(ratings[0].resolved, 0);
    assert_eq!(ratings[0].on_time_share, None);
    assert_eq!(
        ratings[0].smoothed,
        RatingComponents {
            on_time: 0.5,
            first_time_fix: 0.5,
            confirmation: 0.5,
            rating: 0.5
        }
    );
    assert_close(ratings[0].score, 50.0);
    assert!(!ratings[0].unreliable, "no resolved tickets");
}

#[test]
fn unreliable_flag_needs_minimum_volume() {
    let late = Outcome {
        on_time: false,
        reopened: false,
        answer: Some(true),
        rating: Some(5),
    };
    let nine: Vec<_> = (1..=9)
        .map(|number| (number, resolved_by(number, "c-1", late)))
        .collect();
    let ten: Vec<_> = (1..=10)
        .map(|number| (number, resolved_by(number, "c-1", late)))
        .collect();

    let below = rate_tickets(nine, &RatingParams::default());
    let enough = rate_tickets(ten, &RatingParams::default());

    assert!(!below[0].unreliable);
    assert!(below[0].reasons.is_empty());
    assert!(enough[0].unreliable);
    assert_eq!(enough[0].reasons, ["late_resolution"]);
}

#[test]
fn cancelled_and_unassigned_tickets_excluded() {
    let good = Outcome {
        on_time: true,
        reopened: false,
        answer: Some(true),
        rating: Some(5),
    };
    let cancelled_ticket = vec![
        registered(2, at(1, 8)),
        routed("org-1", at(1, 8)),
        accepted(at(1, 8)),
        assigned("c-1", at(1, 9)),
        cancelled(at(1, 10)),
    ];
    let unassigned = vec![registered(3, at(1, 8)), routed("org-1", at(1, 8))];

    let ratings = rate_tickets(
        vec![
            (1, resolved_by(1, "c-1", good)),
            (2, cancelled_ticket),
            (3, unassigned),
        ],
        &RatingParams::default(),
    );

    assert_eq!(ratings.len(), 1);
    assert_eq!(ratings[0].tickets, 1);
}

#[test]
fn name_from_latest_assignment() {
    let good = Outcome {
        on_time: true,
        reopened: false,
        answer: None,
        rating: None,
    };
    let mut renamed = resolved_by(2, "c-1", good);
    if let Some(TicketEvent::ContractorAssigned(assignment)) = renamed.get_mut(3) {
        assignment.contractor.name = "ООО «Новое имя»".to_string();
    }

    let ratings = rate_tickets(
        vec![(1, resolved_by(1, "c-1", good)), (2, renamed)],
        &RatingParams::default(),
    );

    assert_eq!(ratings[0].name, "ООО «Новое имя»");
}

#[test]
fn ties_sorted_by_contractor_id() {
    let good = Outcome {
        on_time: true,
        reopened: false,
        answer: None,
        rating: None,
    };

    let ratings = rate_tickets(
        vec![
            (1, resolved_by(1, "z", good)),
            (2, resolved_by(2, "a", good)),
            (3, resolved_by(3, "m", good)),
        ],
        &RatingParams::default(),
    );

    let order: Vec<&str> = ratings
        .iter()
        .map(|rating| rating.contractor_id.as_str())
        .collect();
    assert_eq!(order, ["a", "m", "z"]);
}

#[test]
fn score_without_positive_weights_is_zero() {
    let params = RatingParams {
        on_time_weight: 0.0,
        first_time_fix_weight: 0.0,
        confirmation_weight: -1.0,
        rating_weight: 0.0,
        ..RatingParams::default()
    };
    let good = Outcome {
        on_time: true,
        reopened: false,
        answer: Some(true),
        rating: Some(5),
    };

    let ratings = rate_tickets(vec![(1, resolved_by(1, "c-1", good))], &params);

    assert_eq!(ratings[0].score, 0.0);
}
