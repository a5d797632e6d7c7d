//! Tests of the stats index: its parts, and property tests that every query equals the
//! reference functions over the same views, for random folds that include out-of-order times,
//! events in impossible orders and times outside the compact stamp range.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use opencity_domain::ticket::{TicketEvent, TicketRegistered};
use opencity_domain::values::{BuildingRef, Channel, CloseReason, Priority, Requester};
use proptest::prelude::*;
use uuid::Uuid;

use super::periods::{period_number, period_number_label, week_monday};
use super::row::{duration_from_key, duration_key, NO_DURATION};
use super::select::order_statistics;
use super::StatsIndex;
use crate::fold::testing::*;
use crate::fold::{fold_into, TicketView};
use crate::stats::slices::period_label;
use crate::stats::{overdue_counters_filtered, sla_stats, Dimension, StatsFilter, DEFAULT_TIME_ZONE};

#[test]
fn duration_key_orders_like_total_cmp() {
    let mut values = vec![0.0, -0.0, 1.5, -1.5, 3600.0, 1e300, -1e300, f64::INFINITY, f64::NEG_INFINITY, 0.001];
    values.sort_by(f64::total_cmp);
    let keys: Vec<i64> = values.iter().map(|value| duration_key(Some(*value))).collect();

    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
    for value in values {
        assert_eq!(duration_from_key(duration_key(Some(value))).to_bits(), value.to_bits());
    }
    assert_eq!(duration_key(None), NO_DURATION);
}

#[test]
fn order_statistics_equal_sorting() {
    // Spread, clustered and constant inputs above the size that is simply sorted.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let spread: Vec<i64> = (0..50_000).map(|_| duration_key(Some((next() % 10_000_000) as f64 / 1000.0))).collect();
    let clustered: Vec<i64> = (0..20_000).map(|_| duration_key(Some(3600.0 + (next() % 7) as f64))).collect();
    let constant = vec![duration_key(Some(60.0)); 9_000];
    let signed: Vec<i64> = (0..10_000).map(|step| duration_key(Some((f64::from(step) - 5_000.0) * 1.5))).collect();
    let wide: Vec<i64> = (0..30_000).map(|step| duration_key(Some(1e-3 * 1.002f64.powi(step)))).collect();

    for keys in [spread, clustered, constant, signed, wide] {
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        let last = keys.len() - 1;
        let ranks = [0, 1, last / 2, last / 2 + 1, last * 9 / 10, last];
        let mut ranks = ranks.to_vec();
        ranks.dedup();

        let mut scratch = keys.clone();
        let selected = order_statistics(&mut scratch, &ranks);

        let expected: Vec<i64> = ranks.iter().map(|rank| sorted[*rank]).collect();
        assert_eq!(selected, expected);
    }
}

#[test]
fn week_monday_starts_iso_week() {
    let first = NaiveDate::from_ymd_opt(2020, 12, 20).unwrap();
    for offset in 0..800 {
        let date = first + Duration::days(offset);
        let monday = NaiveDate::from_num_days_from_ce_opt(week_monday(date.num_days_from_ce()) as i32).unwrap();

        assert_eq!(monday.weekday(), Weekday::Mon, "{date}");
        assert_eq!(monday.iso_week(), date.iso_week(), "{date}");
    }
}

#[test]
fn period_labels_equal_reference() {
    let zones: [Tz; 3] = [DEFAULT_TIME_ZONE, chrono_tz::UTC, chrono_tz::Pacific::Chatham];
    let start = Utc.with_ymd_and_hms(2020, 12, 25, 0, 0, 0).unwrap();
    for hours in (0..24 * 400).step_by(7) {
        let at = start + Duration::hours(hours);
        for tz in zones {
            let day = super::periods::local_day(at, tz);
            for period in [Dimension::Day, Dimension::Week, Dimension::Month] {
                let label = period_number_label(period_number(day, period), period);
                assert_eq!(label, period_label(at, period, tz), "{at} in {tz}");
            }
        }
    }
}

#[test]
fn enum_indexes_round_trip() {
    for priority in Priority::ALL {
        assert_eq!(Priority::ALL[priority as usize], priority);
    }
    for channel in Channel::ALL {
        assert_eq!(Channel::ALL[channel as usize], channel);
    }
}

#[test]
fn cached_answer_forgotten_on_update() {
    let first = fold_one(1, resolved_ticket(1, 1, "org-1", "c-1", 1, 4));
    let mut index = StatsIndex::from_views([&first]);
    let before = index.sla_stats(&[], &StatsFilter::default(), DEFAULT_TIME_ZONE);

    let second = fold_one(2, resolved_ticket(2, 1, "org-1", "c-1", 1, 4));
    index.update([&second]);
    let after = index.sla_stats(&[], &StatsFilter::default(), DEFAULT_TIME_ZONE);

    assert_eq!(before[0].received, 1);
    assert_eq!(after[0].received, 2);
}

#[test]
fn far_future_deadline_counts_by_reference_rules() {
    let far = Utc.with_ymd_and_hms(2400, 1, 1, 0, 0, 0).unwrap();
    let ticket = fold_one(
        1,
        vec![registered(1, at(1, 8)), routed("org-1", at(1, 8)), classified("lift", Priority::Routine, far, at(1, 9))],
    );
    let index = StatsIndex::from_views([&ticket]);
    let group_by = [Dimension::Organization, Dimension::Month];

    for as_of in [at(1, 8), at(2, 8), far, far + Duration::seconds(1), DateTime::<Utc>::MAX_UTC] {
        let expected = overdue_counters_filtered([&ticket], &group_by, &StatsFilter::default(), as_of, DEFAULT_TIME_ZONE);
        let actual = index.overdue_counters(&group_by, &StatsFilter::default(), as_of, DEFAULT_TIME_ZONE);
        assert_eq!(actual, expected, "as of {as_of}");
    }
    assert_eq!(index.exotic.len(), 1);
}

// Random folds.

const ORGANIZATIONS: [&str; 3] = ["org-1", "org-2", "org-3"];
const CONTRACTORS: [&str; 3] = ["c-1", "c-2", "c-3"];
const CATEGORIES: [&str; 4] = ["leak", "lift", "roof", "heating"];
const ZONES: [Tz; 4] = [
    DEFAULT_TIME_ZONE,
    chrono_tz::UTC,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Lord_Howe,
];

/// One generated event: its kind, a number that picks its parameters, and how far the ticket's
/// clock moves before it (sometimes backwards).
#[derive(Clone, Debug)]
struct EventSpec {
    kind: u8,
    choice: usize,
    advance_minutes: i64,
}

#[derive(Clone, Debug)]
struct TicketSpec {
    registered_minutes: i64,
    /// 0: an ordinary time; 1: registered in 1650, 2: a deadline in 2300 (outside the stamp range).
    era: u8,
    choice: usize,
    events: Vec<EventSpec>,
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    let advance = prop_oneof![6 => 0i64..=600, 2 => 600i64..=4320, 1 => -600i64..0, 1 => Just(0i64)];
    (0u8..16, 0usize..1000, advance).prop_map(|(kind, choice, advance_minutes)| EventSpec { kind, choice, advance_minutes })
}

fn ticket_spec() -> impl Strategy<Value = TicketSpec> {
    let era = prop_oneof![18 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)];
    (0i64..60 * 24 * 70, era, 0usize..1000, prop::collection::vec(event_spec(), 0..12)).prop_map(
        |(registered_minutes, era, choice, events)| TicketSpec { registered_minutes, era, choice, events },
    )
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 29, 21, 30, 0).unwrap()
}

fn registration_of(number: u128, spec: &TicketSpec, time: DateTime<Utc>) -> TicketEvent {
    let choice = spec.choice;
    let mut registration: TicketRegistered = registration(number, time);
    let building = choice % 3;
    registration.building = BuildingRef {
        id: format!("b-{building}"),
        address: format!("адрес {building}"),
        district: (building != 2).then(|| format!("район {building}")),
        time_zone: "Europe/Moscow".to_string(),
        region: None,
    };
    registration.requester = Requester::default();
    registration.channel = Channel::ALL[choice % Channel::ALL.len()];
    registration.category = CATEGORIES[choice % CATEGORIES.len()].to_string();
    registration.priority = Priority::ALL[(choice / 7) % Priority::ALL.len()];
    let response = (choice % 4 != 0).then(|| time + hours((choice % 5) as i64 + 1));
    let resolution = match spec.era {
        2 => Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap(),
        _ => time + hours((choice % 96) as i64),
    };
    registration.deadlines = deadlines(response, resolution);
    TicketEvent::TicketRegistered(registration)
}

fn event_of(spec: &EventSpec, registered_at: DateTime<Utc>, time: DateTime<Utc>) -> TicketEvent {
    let choice = spec.choice;
    let later = time + hours((choice % 72) as i64);
    match spec.kind {
        0 => classified(CATEGORIES[choice % 4], Priority::ALL[choice % 3], later, time),
        1 => routed(ORGANIZATIONS[choice % 3], time),
        2 => accepted(time),
        3 => assigned(CONTRACTORS[choice % 3], time),
        4 => started(time),
        5 => suspended(time),
        6 => resumed(hours((choice % 5) as i64), deadlines((choice % 2 == 0).then_some(later), later), time),
        7 => reported(time),
        8 => confirmed(time),
        9 => rejected((choice % 3) as u32 + 1, later, time),
        10 => rated((choice % 5) as i64 + 1, time),
        11 => commented(time),
        12 => cancelled(time),
        13 => {
            // Sometimes resolved before the registration, as faulty imports are.
            let resolved_at = if choice % 6 == 0 { registered_at - hours(3) } else { time };
            let reason = [CloseReason::Confirmed, CloseReason::NoResidentResponse, CloseReason::Administrative][choice % 3];
            closed(reason, resolved_at, time)
        }
        14 => deadline_passed(opencity_domain::ticket::DeadlineKind::Resolution, time),
        _ => closed_before_created(time),
    }
}

/// Builds the log of the tickets: each ticket's events with consecutive positions, tickets
/// interleaved round-robin so that batches cut across them.
fn build_log(specs: &[TicketSpec]) -> Vec<(Uuid, i64, TicketEvent)> {
    let mut streams: Vec<Vec<TicketEvent>> = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let number = index as u128 + 1;
        let registered_at = match spec.era {
            1 => Utc.with_ymd_and_hms(1650, 6, 1, 12, 0, 0).unwrap(),
            _ => base() + Duration::minutes(spec.registered_minutes),
        };
        let mut clock = registered_at;
        let mut events = vec![registration_of(number, spec, registered_at)];
        for event in &spec.events {
            clock += Duration::minutes(event.advance_minutes);
            events.push(event_of(event, registered_at, clock));
        }
        streams.push(events);
    }

    let mut log = Vec::new();
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        for (index, stream) in streams.iter().enumerate() {
            if let Some(event) = stream.get(step) {
                log.push((ticket_id(index as u128 + 1), log.len() as i64 + 1, event.clone()));
            }
        }
    }
    log
}

/// Folds the log batch by batch, feeding the index the views each batch changed, as the
/// projection runner does.
fn fold_with_index(log: &[(Uuid, i64, TicketEvent)], batch: usize) -> (BTreeMap<Uuid, TicketView>, StatsIndex) {
    let mut views = BTreeMap::new();
    let mut index = StatsIndex::default();
    for chunk in log.chunks(batch.max(1)) {
        fold_into(&mut views, chunk.iter().cloned());
        let changed: Vec<&TicketView> = chunk.iter().filter_map(|(id, _, _)| views.get(id)).collect();
        index.update(changed);
    }
    (views, index)
}

fn groupings() -> Vec<Vec<Dimension>> {
    let mut groupings: Vec<Vec<Dimension>> = vec![vec![]];
    groupings.extend(Dimension::ALL.iter().map(|dimension| vec![*dimension]));
    groupings.push(vec![Dimension::Category, Dimension::Month]);
    groupings.push(vec![Dimension::Week, Dimension::Organization, Dimension::Contractor]);
    groupings.push(vec![Dimension::Organization, Dimension::Organization]);
    groupings.push(Dimension::ALL.to_vec());
    groupings
}

fn filters(times: &[DateTime<Utc>]) -> Vec<StatsFilter> {
    let middle = times.get(times.len() / 2).copied().unwrap_or_else(base);
    vec![
        StatsFilter::default(),
        StatsFilter { organization_id: Some("org-2".to_string()), ..StatsFilter::default() },
        StatsFilter { organization_id: Some("org-unknown".to_string()), ..StatsFilter::default() },
        StatsFilter { contractor_id: Some("c-1".to_string()), category: Some("leak".to_string()), ..StatsFilter::default() },
        StatsFilter { priority: Some(Priority::Routine), district: Some("район 1".to_string()), ..StatsFilter::default() },
        StatsFilter { building_id: Some("b-0".to_string()), channel: Some(Channel::Web), ..StatsFilter::default() },
        StatsFilter { registered_from: Some(middle), ..StatsFilter::default() },
        StatsFilter { registered_to: Some(middle), ..StatsFilter::default() },
        StatsFilter {
            registered_from: Some(DateTime::<Utc>::MIN_UTC),
            registered_to: Some(Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap()),
            ..StatsFilter::default()
        },
    ]
}

/// Returns the instants worth asking "as of": event times and every deadline the views had,
/// a nanosecond either side, and the ends of time.
fn probe_times(log: &[(Uuid, i64, TicketEvent)], views: &BTreeMap<Uuid, TicketView>) -> Vec<DateTime<Utc>> {
    let mut instants: Vec<DateTime<Utc>> = log.iter().map(|(_, _, event)| event.occurred_at()).collect();
    for view in views.values() {
        for change in &view.timeline {
            instants.push(change.from);
            instants.extend(change.state.response_deadline);
            instants.push(change.state.resolution_deadline);
        }
    }
    let mut times = vec![DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC];
    for instant in instants {
        let nanosecond = Duration::nanoseconds(1);
        times.extend([instant - nanosecond, instant, instant + nanosecond]);
    }
    times.sort();
    times.dedup();
    times
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn index_equals_reference(
        specs in prop::collection::vec(ticket_spec(), 0..24),
        batch in 1usize..40,
    ) {
        let log = build_log(&specs);
        let (views, incremental) = fold_with_index(&log, batch);
        let rebuilt = StatsIndex::from_views(views.values());
        let times = probe_times(&log, &views);

        for (zone_index, tz) in ZONES.into_iter().enumerate() {
            for (filter_index, filter) in filters(&times).iter().enumerate() {
                for group_by in groupings() {
                    // Every grouping in one zone, every zone for a few filters.
                    if zone_index > 0 && filter_index > 2 {
                        continue;
                    }
                    let expected = sla_stats(views.values(), &group_by, filter, tz);
                    prop_assert_eq!(&incremental.sla_stats(&group_by, filter, tz), &expected, "{:?} {:?} {}", group_by, filter, tz);
                    prop_assert_eq!(&rebuilt.sla_stats(&group_by, filter, tz), &expected);
                    // The second result comes from the cache.
                    prop_assert_eq!(&incremental.sla_stats(&group_by, filter, tz), &expected);
                }
            }
        }

        let overdue_groupings = [
            vec![],
            vec![Dimension::Organization],
            vec![Dimension::Contractor, Dimension::Category, Dimension::Priority],
            vec![Dimension::District, Dimension::Building, Dimension::Channel, Dimension::Day],
        ];
        let overdue_filters = filters(&times);
        for (step, as_of) in times.iter().enumerate() {
            let tz = ZONES[step % ZONES.len()];
            let group_by = &overdue_groupings[step % overdue_groupings.len()];
            let filter = &overdue_filters[step % overdue_filters.len()];
            for filter in [&StatsFilter::default(), filter] {
                let expected = overdue_counters_filtered(views.values(), group_by, filter, *as_of, tz);
                prop_assert_eq!(&incremental.overdue_counters(group_by, filter, *as_of, tz), &expected, "{:?} {:?} at {}", group_by, filter, as_of);
                prop_assert_eq!(&rebuilt.overdue_counters(group_by, filter, *as_of, tz), &expected);
            }
        }
    }
}
