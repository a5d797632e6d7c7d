//! Overdue counters: open tickets past their deadlines, now or as of any past time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::slices::{group_key, Dimension, GroupKey, StatsFilter};
use crate::fold::TicketView;

/// Open and overdue tickets of one group at one time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueRow {
    pub key: GroupKey,
    /// Tickets registered and neither closed nor cancelled.
    pub open: u64,
    /// Open tickets past their response or resolution deadline, each counted once.
    pub overdue: u64,
    /// Tickets still waiting for acceptance past their response deadline.
    pub overdue_response: u64,
    /// Tickets past their resolution deadline while the executor owes the work.
    pub overdue_resolution: u64,
}

/// Counts open and overdue tickets at business time `as_of`, one row per group of `group_by`,
/// sorted by key. See [`overdue_counters_filtered`].
pub fn overdue_counters<'a>(
    views: impl IntoIterator<Item = &'a TicketView>,
    group_by: &[Dimension],
    as_of: DateTime<Utc>,
    tz: Tz,
) -> Vec<OverdueRow> {
    overdue_counters_filtered(views, group_by, &StatsFilter::default(), as_of, tz)
}

/// Counts open and overdue tickets that pass `filter` at business time `as_of`, one row per
/// group of `group_by`, sorted by key.
///
/// Each ticket is taken in the state it was in at `as_of` (see [`TicketView::state_at`]), so a
/// ticket registered later does not count. Status, deadlines, organization, contractor, category
/// and priority are those in force at `as_of`, in the groups and in the filter. Pass the current
/// time for live counters. The rules for "overdue" are those of
/// [`TicketState`](crate::TicketState).
///
/// With an empty `group_by` the result is exactly one row; otherwise only groups with open
/// tickets have rows.
pub fn overdue_counters_filtered<'a>(
    views: impl IntoIterator<Item = &'a TicketView>,
    group_by: &[Dimension],
    filter: &StatsFilter,
    as_of: DateTime<Utc>,
    tz: Tz,
) -> Vec<OverdueRow> {
    let mut groups: BTreeMap<GroupKey, OverdueRow> = BTreeMap::new();
    if group_by.is_empty() {
        groups.insert(GroupKey::new(), OverdueRow::default());
    }

    for view in views {
        let Some(state) = view.state_at(as_of) else {
            continue;
        };
        if !state.is_open() || !filter.matches(view, state) {
            continue;
        }

        let key = group_key(view, state, group_by, tz);
        let row = groups.entry(key).or_default();
        row.open += 1;
        let response = state.is_response_overdue_at(as_of);
        let resolution = state.is_resolution_overdue_at(as_of);
        row.overdue_response += u64::from(response);
        row.overdue_resolution += u64::from(resolution);
        row.overdue += u64::from(response || resolution);
    }

    groups
        .into_iter()
        .map(|(key, row)| OverdueRow { key, ..row })
        .collect()
}

#[cfg(test)]
mod tests {
    use opencity_domain::values::CloseReason;

    use super::*;
    use crate::fold::testing::*;
    use crate::fold::{fold_from_scratch, TicketView};
    use crate::stats::DEFAULT_TIME_ZONE;

    fn views(tickets: Vec<(u128, Vec<opencity_domain::TicketEvent>)>) -> Vec<TicketView> {
        fold_from_scratch(log(tickets)).into_values().collect()
    }

    fn total(views: &[TicketView], as_of: DateTime<Utc>) -> OverdueRow {
        let mut rows = overdue_counters(views, &[], as_of, DEFAULT_TIME_ZONE);
        assert_eq!(rows.len(), 1);
        rows.remove(0)
    }

    /// Ticket 1 waits for acceptance (response due 1 March 09:00, resolution 2 March 08:00);
    /// ticket 2 is accepted at once and closed on 2 March 12:00, late.
    fn two_tickets() -> Vec<TicketView> {
        views(vec![
            (1, vec![registered(1, at(1, 8)), routed("org-1", at(1, 8))]),
            (
                2,
                vec![
                    registered(2, at(1, 8)),
                    routed("org-2", at(1, 8)),
                    accepted(at(1, 8)),
                    reported(at(2, 12)),
                    closed(CloseReason::NoResidentResponse, at(2, 12), at(2, 12)),
                ],
            ),
        ])
    }

    #[test]
    fn nothing_open_before_registration() {
        let row = total(&two_tickets(), at(1, 7));

        assert_eq!(row, OverdueRow::default());
    }

    #[test]
    fn response_overdue_after_response_deadline() {
        let row = total(&two_tickets(), at(1, 10));

        assert_eq!(row.open, 2);
        assert_eq!(row.overdue, 1);
        assert_eq!(row.overdue_response, 1);
        assert_eq!(row.overdue_resolution, 0);
    }

    #[test]
    fn ticket_overdue_on_both_deadlines_counts_once() {
        let row = total(&two_tickets(), at(2, 10));

        assert_eq!(row.open, 2);
        assert_eq!(row.overdue_response, 1);
        assert_eq!(row.overdue_resolution, 2);
        assert_eq!(row.overdue, 2);
    }

    #[test]
    fn closed_ticket_leaves_counters() {
        let row = total(&two_tickets(), at(3, 0));

        assert_eq!(row.open, 1);
        assert_eq!(row.overdue, 1);
    }

    #[test]
    fn groups_use_attributes_in_force() {
        // Routed to org-1 first, re-routed to org-2 on 3 March.
        let views = views(vec![(
            1,
            vec![
                registered(1, at(1, 8)),
                routed("org-1", at(1, 8)),
                routed("org-2", at(3, 8)),
            ],
        )]);

        let before = overdue_counters(
            &views,
            &[Dimension::Organization],
            at(2, 10),
            DEFAULT_TIME_ZONE,
        );
        let after = overdue_counters(
            &views,
            &[Dimension::Organization],
            at(3, 10),
            DEFAULT_TIME_ZONE,
        );

        assert_eq!(before.len(), 1);
        assert_eq!(
            before[0].key,
            vec![(Dimension::Organization, Some("org-1".to_string()))]
        );
        assert_eq!(before[0].overdue, 1);
        assert_eq!(
            after[0].key,
            vec![(Dimension::Organization, Some("org-2".to_string()))]
        );
    }

    #[test]
    fn filter_uses_attributes_in_force() {
        let views = views(vec![(
            1,
            vec![
                registered(1, at(1, 8)),
                routed("org-1", at(1, 8)),
                routed("org-2", at(3, 8)),
            ],
        )]);
        let org_1 = StatsFilter {
            organization_id: Some("org-1".to_string()),
            ..StatsFilter::default()
        };

        let before = overdue_counters_filtered(&views, &[], &org_1, at(2, 10), DEFAULT_TIME_ZONE);
        let after = overdue_counters_filtered(&views, &[], &org_1, at(3, 10), DEFAULT_TIME_ZONE);

        assert_eq!(before[0].open, 1);
        assert_eq!(after[0].open, 0);
    }

    #[test]
    fn grouped_rows_only_for_open_tickets() {
        let rows = overdue_counters(
            &two_tickets(),
            &[Dimension::Organization],
            at(3, 0),
            DEFAULT_TIME_ZONE,
        );

        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].key,
            vec![(Dimension::Organization, Some("org-1".to_string()))]
        );
    }
}
