//! The statistics index on demo-city logs, which the domain itself writes: for random seeds,
//! sizes, batch cuts and times, every query of the index equals the reference functions over
//! the same views. The unit tests of the index cover hand-made folds with impossible orders and
//! out-of-range times.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::Aggregate;
use opencity_domain::{Ticket, TicketEvent, TicketServices};
use opencity_projections::*;
use proptest::prelude::*;
use uuid::Uuid;

fn services() -> TicketServices {
    let catalogue = opencity_fixtures::sla::default_catalogue().expect("the built-in SLA catalogue loads");
    TicketServices { sla: Arc::new(catalogue) }
}

/// Decides the demo city's commands ticket by ticket and numbers the events in that order.
fn demo_log(seed: u64, tickets: usize, now: DateTime<Utc>) -> Vec<(Uuid, i64, TicketEvent)> {
    let services = services();
    let city = opencity_fixtures::demo::demo_city(seed, tickets, now);
    let mut log = Vec::new();
    for ticket in city.tickets {
        let mut aggregate = Ticket::default();
        for command in ticket.commands {
            let events = aggregate.decide(command, &services).expect("demo commands are valid");
            for event in events {
                aggregate.apply(event.clone());
                log.push((ticket.ticket_id, log.len() as i64 + 1, event));
            }
        }
    }
    log
}

fn groupings() -> Vec<Vec<Dimension>> {
    vec![
        vec![],
        vec![Dimension::Organization],
        vec![Dimension::Category, Dimension::Month],
        vec![Dimension::Contractor, Dimension::Week],
        vec![Dimension::District, Dimension::Priority, Dimension::Channel, Dimension::Day],
        vec![Dimension::Building],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn index_equals_reference_on_demo_city(
        seed in any::<u64>(),
        tickets in 1usize..400,
        batch in 1usize..3000,
        probes in prop::collection::vec(0i64..100 * 24 * 60, 1..6),
    ) {
        let now = Utc.with_ymd_and_hms(2025, 11, 20, 12, 0, 0).unwrap();
        let log = demo_log(seed, tickets, now);

        // Batch by batch, as the projection runner feeds the index.
        let mut views: BTreeMap<Uuid, TicketView> = BTreeMap::new();
        let mut index = StatsIndex::default();
        for chunk in log.chunks(batch) {
            fold_into(&mut views, chunk.iter().cloned());
            index.update(chunk.iter().filter_map(|(id, _, _)| views.get(id)));
        }

        let organization = views.values().find_map(|view| view.organization_id.clone());
        let filters = [
            StatsFilter::default(),
            StatsFilter { organization_id: organization, ..StatsFilter::default() },
            StatsFilter { registered_from: Some(now - Duration::days(30)), ..StatsFilter::default() },
        ];
        for filter in &filters {
            for group_by in groupings() {
                for tz in [DEFAULT_TIME_ZONE, chrono_tz::Asia::Vladivostok] {
                    prop_assert_eq!(
                        index.sla_stats(&group_by, filter, tz),
                        sla_stats(views.values(), &group_by, filter, tz)
                    );
                }
                for minutes in &probes {
                    let as_of = now - Duration::days(95) + Duration::minutes(*minutes);
                    prop_assert_eq!(
                        index.overdue_counters(&group_by, filter, as_of, DEFAULT_TIME_ZONE),
                        overdue_counters_filtered(views.values(), &group_by, filter, as_of, DEFAULT_TIME_ZONE)
                    );
                }
            }
        }
    }
}
