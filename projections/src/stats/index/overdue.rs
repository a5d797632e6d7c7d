//! Overdue counters over the rows of the index, equal to
//! [`crate::stats::overdue_counters_filtered`] over the same views at any time.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::grouping::{key_of_view, Grouper, RowFilter};
use super::columns::Columns;
use super::row::{flag, query_stamp, StateAttributes, Stamp};
use super::StatsIndex;
use crate::stats::overdue::OverdueRow;
use crate::stats::slices::{Dimension, StatsFilter};

/// Counts open and overdue tickets at `as_of` with the semantics of
/// [`crate::stats::overdue_counters_filtered`].
///
/// A row whose tail started at or before `as_of` is in its tail state, read from the columns.
/// Only rows that changed after `as_of` look up their history. When every tail started by
/// `as_of`, as for live counters, only the rows with open tails are visited.
pub(super) fn compute(
    index: &StatsIndex,
    group_by: &[Dimension],
    filter: &StatsFilter,
    as_of: DateTime<Utc>,
    tz: Tz,
) -> Vec<OverdueRow> {
    let at = query_stamp(as_of);
    let days = index.day_column_for(group_by, tz);
    let mut grouper = Grouper::new(group_by, &index.names, days.as_deref());
    let mut groups: Vec<OverdueRow> = Vec::new();
    if group_by.is_empty() {
        grouper.group_of_key(&[]);
        groups.push(OverdueRow::default());
    }

    if let Some(row_filter) = RowFilter::compile(filter, &index.names) {
        let columns = &index.columns;
        let mut add = |row: usize, attributes: StateAttributes, response_due: Stamp, resolution_due: Stamp| {
            if !row_filter.matches(columns, row, &attributes) {
                return;
            }
            let group = grouper.group_of_row(columns, row, &attributes);
            if group == groups.len() {
                groups.push(OverdueRow::default());
            }
            count(&mut groups[group], response_due < at, resolution_due < at);
        };

        if at >= columns.latest_tail_from {
            // Every row is in its tail state: only the open ones count.
            for row in columns.open_tail_rows() {
                add(row, tail_attributes(columns, row), columns.response_due[row], columns.resolution_due[row]);
            }
        } else {
            for row in 0..columns.len() {
                if at >= columns.tail_from[row] {
                    if columns.flags[row] & flag::TAIL_OPEN != 0 {
                        add(row, tail_attributes(columns, row), columns.response_due[row], columns.resolution_due[row]);
                    }
                    continue;
                }
                let history = index.history.get(row);
                let in_force = history.partition_point(|state| state.from <= at);
                if let Some(state) = in_force.checked_sub(1).map(|index| &history[index]) {
                    if state.open {
                        add(row, state.attributes, state.response_due, state.resolution_due);
                    }
                }
            }
        }

        for view in index.exotic.values() {
            let Some(state) = view.state_at(as_of) else {
                continue;
            };
            if !state.is_open() || !filter.matches(view, state) {
                continue;
            }
            let key = key_of_view(view, state, group_by, &index.names, tz);
            let group = grouper.group_of_key(&key);
            if group == groups.len() {
                groups.push(OverdueRow::default());
            }
            let response = state.is_response_overdue_at(as_of);
            let resolution = state.is_resolution_overdue_at(as_of);
            count(&mut groups[group], response, resolution);
        }
    }

    let mut rows: Vec<OverdueRow> = groups
        .into_iter()
        .enumerate()
        .map(|(group, row)| OverdueRow { key: grouper.group_key(group, &index.names), ..row })
        .collect();
    rows.sort_by(|left, right| left.key.cmp(&right.key));
    rows
}

fn tail_attributes(columns: &Columns, row: usize) -> StateAttributes {
    StateAttributes {
        organization: columns.organization[row],
        contractor: columns.contractor[row],
        category: columns.category[row],
        priority: columns.priority[row],
    }
}

fn count(row: &mut OverdueRow, response: bool, resolution: bool) {
    row.open += 1;
    row.overdue_response += u64::from(response);
    row.overdue_resolution += u64::from(resolution);
    row.overdue += u64::from(response || resolution);
}
