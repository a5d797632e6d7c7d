//! SLA statistics: how many tickets came in, how fast and how well they were handled.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::percentile::percentile_of_sorted;
use super::slices::{group_key, Dimension, GroupKey, StatsFilter};
use crate::fold::TicketView;

/// SLA statistics of one group of tickets.
///
/// Cancelled tickets (duplicates, spam, withdrawn) count only in `received`, `cancelled` and
/// `flagged`: they never got a result, so every other figure leaves them out. A ticket is
/// resolved when it is closed. Shares are `None` when their denominator is zero.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlaStatsRow {
    pub key: GroupKey,
    /// Tickets registered, cancelled ones included.
    pub received: u64,
    /// Closed tickets.
    pub resolved: u64,
    /// Closed tickets resolved by their resolution deadline in force (see
    /// [`TicketView::resolution_on_time`]).
    pub resolved_on_time: u64,
    /// `resolved_on_time / resolved`.
    pub on_time_share: Option<f64>,
    /// Median seconds from registration to the first acceptance, over accepted tickets.
    pub accept_median_seconds: Option<f64>,
    /// 90th percentile of the same.
    pub accept_p90_seconds: Option<f64>,
    /// Median seconds from registration to resolution, over closed tickets with a trustworthy
    /// duration (see [`TicketView::resolve_seconds`]).
    pub resolve_median_seconds: Option<f64>,
    /// 90th percentile of the same.
    pub resolve_p90_seconds: Option<f64>,
    /// Tickets whose completion was reported at least once: those a resident could reject.
    pub reported_complete: u64,
    /// Tickets reopened at least once by a resident's rejection.
    pub reopened: u64,
    /// `reopened / reported_complete`.
    pub reopened_share: Option<f64>,
    /// Closed tickets whose last completion report the resident confirmed or rejected. A ticket
    /// closed without the resident's decision is not counted.
    pub resident_answers: u64,
    /// Closed tickets whose resident confirmed the work.
    pub confirmed: u64,
    /// `confirmed / resident_answers`.
    pub confirmed_share: Option<f64>,
    /// Mean of residents' ratings (1 to 5) over rated tickets.
    pub rating_mean: Option<f64>,
    pub rating_count: u64,
    pub cancelled: u64,
    /// Tickets with a data anomaly flag, cancelled ones included.
    pub flagged: u64,
}

#[derive(Default)]
struct SlaAccumulator {
    received: u64,
    resolved: u64,
    resolved_on_time: u64,
    accept_seconds: Vec<f64>,
    resolve_seconds: Vec<f64>,
    reported_complete: u64,
    reopened: u64,
    resident_answers: u64,
    confirmed: u64,
    rating_sum: u64,
    rating_count: u64,
    cancelled: u64,
    flagged: u64,
}

impl SlaAccumulator {
    fn add(&mut self, view: &TicketView) {
        self.received += 1;
        if !view.flagged.is_empty() {
            self.flagged += 1;
        }
        if view.is_cancelled() {
            self.cancelled += 1;
            return;
        }

        self.accept_seconds.extend(view.accept_seconds());
        if view.completion_reports > 0 {
            self.reported_complete += 1;
        }
        if view.reopen_count > 0 {
            self.reopened += 1;
        }
        if let Some(rating) = view.rating {
            self.rating_sum += u64::from(rating);
            self.rating_count += 1;
        }
        if view.is_resolved() {
            self.add_resolved(view);
        }
    }

    fn add_resolved(&mut self, view: &TicketView) {
        self.resolved += 1;
        if view.resolution_on_time() == Some(true) {
            self.resolved_on_time += 1;
        }
        self.resolve_seconds.extend(view.resolve_seconds());
        if let Some(confirmed) = view.confirmed {
            self.resident_answers += 1;
            if confirmed {
                self.confirmed += 1;
            }
        }
    }

    fn into_row(mut self, key: GroupKey) -> SlaStatsRow {
        self.accept_seconds.sort_by(f64::total_cmp);
        self.resolve_seconds.sort_by(f64::total_cmp);
        SlaStatsRow {
            key,
            received: self.received,
            resolved: self.resolved,
            resolved_on_time: self.resolved_on_time,
            on_time_share: share(self.resolved_on_time, self.resolved),
            accept_median_seconds: percentile_of_sorted(&self.accept_seconds, 0.5),
            accept_p90_seconds: percentile_of_sorted(&self.accept_seconds, 0.9),
            resolve_median_seconds: percentile_of_sorted(&self.resolve_seconds, 0.5),
            resolve_p90_seconds: percentile_of_sorted(&self.resolve_seconds, 0.9),
            reported_complete: self.reported_complete,
            reopened: self.reopened,
            reopened_share: share(self.reopened, self.reported_complete),
            resident_answers: self.resident_answers,
            confirmed: self.confirmed,
            confirmed_share: share(self.confirmed, self.resident_answers),
            rating_mean: share(self.rating_sum, self.rating_count),
            rating_count: self.rating_count,
            cancelled: self.cancelled,
            flagged: self.flagged,
        }
    }
}

pub(crate) fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Computes SLA statistics of the tickets that pass `filter`, one row per group of `group_by`,
/// sorted by key. Grouping and filtering use each ticket's current attributes, and period
/// dimensions use the registration time in `tz`.
///
/// With an empty `group_by` the result is exactly one row with an empty key, even when no
/// ticket passes the filter, as an SQL aggregate without `GROUP BY` returns. Otherwise only
/// groups with tickets have rows.
pub fn sla_stats<'a>(
    views: impl IntoIterator<Item = &'a TicketView>,
    group_by: &[Dimension],
    filter: &StatsFilter,
    tz: Tz,
) -> Vec<SlaStatsRow> {
    let mut groups: BTreeMap<GroupKey, SlaAccumulator> = BTreeMap::new();
    if group_by.is_empty() {
        groups.insert(GroupKey::new(), SlaAccumulator::default());
    }

    for view in views {
        let state = view.current_state();
        if !filter.matches(view, &state) {
            continue;
        }
        let key = group_key(view, &state, group_by, tz);
        groups.entry(key).or_default().add(view);
    }

    groups
        .into_iter()
        .map(|(key, accumulator)| accumulator.into_row(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use opencity_domain::values::{CloseReason, Priority};

    use super::*;
    use crate::fold::testing::*;
    use crate::fold::{fold_from_scratch, TicketView};
    use crate::stats::DEFAULT_TIME_ZONE;

    fn views(tickets: Vec<(u128, Vec<opencity_domain::TicketEvent>)>) -> Vec<TicketView> {
        fold_from_scratch(log(tickets)).into_values().collect()
    }

    fn assert_close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("a value");
        assert!((actual - expected).abs() < 1e-6, "{actual} != {expected}");
    }

    fn total(views: &[TicketView]) -> SlaStatsRow {
        let mut rows = sla_stats(views, &[], &StatsFilter::default(), DEFAULT_TIME_ZONE);
        assert_eq!(rows.len(), 1);
        rows.remove(0)
    }

    #[test]
    fn empty_input_gives_one_zero_row() {
        let row = total(&[]);

        assert_eq!(row.key, GroupKey::new());
        assert_eq!(row.received, 0);
        assert_eq!(row.on_time_share, None);
        assert_eq!(row.accept_median_seconds, None);
        assert_eq!(row.rating_mean, None);
    }

    #[test]
    fn empty_input_grouped_gives_no_rows() {
        let rows = sla_stats(
            &[],
            &[Dimension::Organization],
            &StatsFilter::default(),
            DEFAULT_TIME_ZONE,
        );

        assert!(rows.is_empty());
    }

    #[test]
    fn counts_received_resolved_and_on_time() {
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 4)),
            (2, resolved_ticket(2, 1, "org-1", "c-1", 1, 30)),
            (3, vec![registered(3, at(1, 9)), routed("org-1", at(1, 9))]),
        ]);

        let row = total(&views);

        assert_eq!(row.received, 3);
        assert_eq!(row.resolved, 2);
        assert_eq!(row.resolved_on_time, 1);
        assert_eq!(row.on_time_share, Some(0.5));
    }

    #[test]
    fn durations_use_median_and_p90() {
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (2, resolved_ticket(2, 1, "org-1", "c-1", 2, 20)),
            (3, resolved_ticket(3, 1, "org-1", "c-1", 3, 30)),
            (4, resolved_ticket(4, 1, "org-1", "c-1", 4, 40)),
        ]);

        let row = total(&views);

        assert_close(row.accept_median_seconds, 2.5 * 3600.0);
        assert_close(row.accept_p90_seconds, 3.7 * 3600.0);
        assert_close(row.resolve_median_seconds, 25.0 * 3600.0);
        assert_close(row.resolve_p90_seconds, 37.0 * 3600.0);
    }

    #[test]
    fn accept_time_counts_open_tickets() {
        let views = views(vec![(
            1,
            vec![
                registered(1, at(1, 8)),
                routed("org-1", at(1, 8)),
                accepted(at(1, 10)),
            ],
        )]);

        let row = total(&views);

        assert_eq!(row.accept_median_seconds, Some(7200.0));
        assert_eq!(row.resolve_median_seconds, None);
    }

    #[test]
    fn flagged_ticket_is_on_time_without_duration() {
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (
                2,
                vec![
                    registered(2, at(2, 8)),
                    closed_before_created(at(2, 8)),
                    closed(CloseReason::Administrative, at(1, 20), at(1, 20)),
                ],
            ),
        ]);

        let row = total(&views);

        assert_eq!(row.resolved, 2);
        assert_eq!(row.resolved_on_time, 2);
        assert_eq!(row.flagged, 1);
        assert_eq!(
            row.resolve_median_seconds,
            Some(36000.0),
            "only the trustworthy duration"
        );
    }

    #[test]
    fn cancelled_tickets_count_only_as_received() {
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (
                2,
                vec![
                    registered(2, at(1, 8)),
                    routed("org-1", at(1, 8)),
                    accepted(at(1, 9)),
                    cancelled(at(1, 10)),
                ],
            ),
        ]);

        let row = total(&views);

        assert_eq!(row.received, 2);
        assert_eq!(row.cancelled, 1);
        assert_eq!(row.resolved, 1);
        assert_eq!(row.accept_median_seconds, Some(3600.0));
    }

    #[test]
    fn reopened_share_of_reported_tickets() {
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (
                2,
                vec![
                    registered(2, at(1, 8)),
                    routed("org-1", at(1, 8)),
                    reported(at(1, 12)),
                    rejected(1, at(3, 12), at(1, 14)),
                ],
            ),
            (3, vec![registered(3, at(1, 8)), routed("org-1", at(1, 8))]),
        ]);

        let row = total(&views);

        assert_eq!(row.reported_complete, 2);
        assert_eq!(row.reopened, 1);
        assert_eq!(row.reopened_share, Some(0.5));
    }

    #[test]
    fn confirmed_share_of_answered_resolutions() {
        let rejected_then_closed = vec![
            registered(2, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            rejected(1, at(3, 12), at(1, 14)),
            closed(CloseReason::Administrative, at(2, 10), at(2, 10)),
        ];
        let unanswered = vec![
            registered(3, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            closed(CloseReason::NoResidentResponse, at(1, 12), at(4, 12)),
        ];
        let confirmed_but_open = vec![
            registered(4, at(1, 8)),
            routed("org-1", at(1, 8)),
            reported(at(1, 12)),
            confirmed(at(1, 13)),
        ];
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (2, rejected_then_closed),
            (3, unanswered),
            (4, confirmed_but_open),
        ]);

        let row = total(&views);

        assert_eq!(row.resolved, 3);
        assert_eq!(row.resident_answers, 2);
        assert_eq!(row.confirmed, 1);
        assert_eq!(row.confirmed_share, Some(0.5));
    }

    #[test]
    fn rating_mean_over_rated_tickets() {
        let mut first = resolved_ticket(1, 1, "org-1", "c-1", 1, 10);
        first.push(rated(5, at(2, 8)));
        let mut second = resolved_ticket(2, 1, "org-1", "c-1", 1, 10);
        second.push(rated(2, at(2, 8)));
        let views = views(vec![
            (1, first),
            (2, second),
            (3, resolved_ticket(3, 1, "org-1", "c-1", 1, 10)),
        ]);

        let row = total(&views);

        assert_eq!(row.rating_count, 2);
        assert_eq!(row.rating_mean, Some(3.5));
    }

    #[test]
    fn rows_grouped_and_sorted_by_key() {
        let views = views(vec![
            (1, resolved_ticket(1, 2, "org-2", "c-1", 1, 10)),
            (2, resolved_ticket(2, 1, "org-1", "c-1", 1, 10)),
            (3, resolved_ticket(3, 1, "org-2", "c-1", 1, 10)),
            (4, vec![registered(4, at(1, 9))]),
        ]);

        let rows = sla_stats(
            &views,
            &[Dimension::Organization, Dimension::Day],
            &StatsFilter::default(),
            DEFAULT_TIME_ZONE,
        );
        let keys: Vec<(Option<String>, Option<String>, u64)> = rows
            .iter()
            .map(|row| (row.key[0].1.clone(), row.key[1].1.clone(), row.received))
            .collect();

        assert_eq!(
            keys,
            vec![
                (None, Some("2024-03-01".to_string()), 1),
                (Some("org-1".to_string()), Some("2024-03-01".to_string()), 1),
                (Some("org-2".to_string()), Some("2024-03-01".to_string()), 1),
                (Some("org-2".to_string()), Some("2024-03-02".to_string()), 1),
            ]
        );
    }

    #[test]
    fn grouping_uses_current_attributes() {
        let events = vec![
            registered(1, at(1, 8)),
            routed("org-1", at(1, 8)),
            classified("lift", Priority::Routine, at(5, 8), at(1, 9)),
            routed("org-2", at(1, 10)),
        ];
        let views = views(vec![(1, events)]);

        let rows = sla_stats(
            &views,
            &[Dimension::Organization, Dimension::Category],
            &StatsFilter::default(),
            DEFAULT_TIME_ZONE,
        );

        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].key,
            vec![
                (Dimension::Organization, Some("org-2".to_string())),
                (Dimension::Category, Some("lift".to_string())),
            ]
        );
    }

    #[test]
    fn filter_selects_tickets() {
        let views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (2, resolved_ticket(2, 1, "org-2", "c-1", 1, 10)),
        ]);
        let filter = StatsFilter {
            organization_id: Some("org-2".to_string()),
            ..StatsFilter::default()
        };

        let rows = sla_stats(&views, &[], &filter, DEFAULT_TIME_ZONE);

        assert_eq!(rows[0].received, 1);
    }

    #[test]
    fn input_order_does_not_change_rows() {
        let mut views = views(vec![
            (1, resolved_ticket(1, 1, "org-1", "c-1", 1, 10)),
            (2, resolved_ticket(2, 2, "org-2", "c-1", 3, 20)),
            (3, resolved_ticket(3, 1, "org-1", "c-2", 2, 30)),
        ]);
        let group_by = [Dimension::Contractor, Dimension::Week];
        let forward = sla_stats(
            &views,
            &group_by,
            &StatsFilter::default(),
            DEFAULT_TIME_ZONE,
        );

        views.reverse();
        let backward = sla_stats(
            &views,
            &group_by,
            &StatsFilter::default(),
            DEFAULT_TIME_ZONE,
        );

        assert_eq!(forward, backward);
    }
}
