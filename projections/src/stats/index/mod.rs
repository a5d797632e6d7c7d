//! [`StatsIndex`]: a compact, incrementally maintained form of the ticket views that SLA
//! statistics and overdue counters scan instead of the views themselves.
//!
//! Each ticket is one row of integer columns: interned ids of its names, its registration time,
//! the facts SLA statistics count, and its compact timeline for overdue counters as of any
//! time. The results equal those of [`crate::stats::sla_stats`] and
//! [`crate::stats::overdue_counters_filtered`] over the same views, to the last bit of every
//! median and share. The property tests in `tests.rs` compare the two.
//!
//! # Layout
//! - `row`: the compact facts of one ticket, derived from a view through its own methods.
//! - `columns`, `history`, `names`: the row columns, the timeline arena and the interners.
//! - `periods`: local registration days per time zone and period labels.
//! - `grouping`: compiled filters and the group-number assignment.
//! - `select`: exact quantiles by histogram selection.
//! - `sla`, `overdue`: the two queries. `cache`: results kept between changes.

mod cache;
mod columns;
mod grouping;
mod history;
mod names;
mod overdue;
mod periods;
mod row;
mod select;
mod sla;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use self::cache::{Question, ResultCache};
use self::columns::Columns;
use self::history::History;
use self::names::Names;
use self::periods::{DayColumn, PeriodCache};
use self::row::{flag, Row};
use crate::fold::TicketView;
use crate::stats::overdue::OverdueRow;
use crate::stats::sla::SlaStatsRow;
use crate::stats::slices::{Dimension, StatsFilter, DEFAULT_TIME_ZONE};

/// The statistics index of a set of ticket views.
///
/// Feed it every view that changes ([`StatsIndex::update`]); it keeps one row per ticket id.
/// A ticket with a business time outside the years 1677 to 2262, which the compact stamps
/// cannot hold, is kept as a whole view and counted by the reference rules.
#[derive(Debug)]
pub struct StatsIndex {
    rows: HashMap<Uuid, usize>,
    columns: Columns,
    history: History,
    names: Names,
    /// Whole views of the tickets whose rows are placeholders, by row.
    exotic: BTreeMap<usize, TicketView>,
    periods: Mutex<PeriodCache>,
    cache: Mutex<ResultCache>,
}

impl Default for StatsIndex {
    fn default() -> StatsIndex {
        StatsIndex {
            rows: HashMap::new(),
            columns: Columns::default(),
            history: History::default(),
            names: Names::default(),
            exotic: BTreeMap::new(),
            periods: Mutex::new(PeriodCache::default()),
            cache: Mutex::new(ResultCache::new(cache::DEFAULT_CAPACITY)),
        }
    }
}

impl StatsIndex {
    /// Builds the index of `views`, with the registration days in [`DEFAULT_TIME_ZONE`]
    /// computed up front.
    pub fn from_views<'a>(views: impl IntoIterator<Item = &'a TicketView>) -> StatsIndex {
        let mut index = StatsIndex::default();
        index.update(views);
        index.history.shrink_to_fit();
        index.day_column(DEFAULT_TIME_ZONE);
        index
    }

    /// Replaces the rows of the given views (adding rows for new tickets) and drops cached
    /// results.
    pub fn update<'a>(&mut self, views: impl IntoIterator<Item = &'a TicketView>) {
        let periods = lock(&mut self.periods);
        for view in views {
            let next_row = self.rows.len();
            let row = *self.rows.entry(view.id).or_insert(next_row);
            match Row::of(view, &mut self.names) {
                Some(compact) => {
                    self.columns.set(row, &compact);
                    self.history.set(row, &compact.history);
                    self.exotic.remove(&row);
                    periods.set(row, Some(compact.registered_at));
                }
                None => {
                    self.names.intern_view(view);
                    self.columns.set_placeholder(row);
                    self.history.set(row, &[]);
                    self.exotic.insert(row, view.clone());
                    periods.set(row, None);
                }
            }
        }
        lock(&mut self.cache).clear();
    }

    /// Returns the number of tickets.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Computes SLA statistics, equal to [`crate::stats::sla_stats`] over the indexed views.
    /// A result is kept until the next [`StatsIndex::update`], so a repeated query is
    /// served from memory.
    pub fn sla_stats(&self, group_by: &[Dimension], filter: &StatsFilter, tz: Tz) -> Vec<SlaStatsRow> {
        let question = Question {
            group_by: group_by.to_vec(),
            filter: filter.clone(),
            tz,
        };
        if let Some(answer) = lock_shared(&self.cache).get(&question) {
            return answer.clone();
        }
        let answer = sla::compute(self, group_by, filter, tz);
        lock_shared(&self.cache).insert(question, answer.clone());
        answer
    }

    /// Counts open and overdue tickets at `as_of`, equal to
    /// [`crate::stats::overdue_counters_filtered`] over the indexed views.
    pub fn overdue_counters(
        &self,
        group_by: &[Dimension],
        filter: &StatsFilter,
        as_of: DateTime<Utc>,
        tz: Tz,
    ) -> Vec<OverdueRow> {
        overdue::compute(self, group_by, filter, as_of, tz)
    }

    /// Sets how many SLA statistics results to keep between updates (64 by default).
    /// Capacity 0 turns the cache off, as benchmarks of the computation need.
    pub fn set_cache_capacity(&self, capacity: usize) {
        lock_shared(&self.cache).set_capacity(capacity);
    }

    /// Estimates the heap memory the index uses, in bytes: the columns, the timelines, the
    /// names and the day columns. Whole views of tickets outside the stamp range count only
    /// their inline size.
    pub fn heap_bytes(&self) -> usize {
        let row_map_slot = std::mem::size_of::<(Uuid, usize)>() + 1;
        self.columns.heap_bytes()
            + self.history.heap_bytes()
            + self.names.heap_bytes()
            + self.rows.capacity() * row_map_slot
            + self.exotic.len() * std::mem::size_of::<TicketView>()
            + lock_shared(&self.periods).heap_bytes()
    }

    /// Returns the day column of `tz` when `group_by` has a period dimension.
    fn day_column_for(&self, group_by: &[Dimension], tz: Tz) -> Option<Arc<DayColumn>> {
        let periods = [Dimension::Day, Dimension::Week, Dimension::Month];
        group_by
            .iter()
            .any(|dimension| periods.contains(dimension))
            .then(|| self.day_column(tz))
    }

    fn day_column(&self, tz: Tz) -> Arc<DayColumn> {
        let columns = &self.columns;
        let registered = (0..columns.len()).map(|row| {
            let placeholder = columns.flags[row] & flag::EXOTIC != 0;
            (!placeholder).then(|| columns.registered_at[row])
        });
        lock_shared(&self.periods).column(tz, registered)
    }
}

/// Locks a mutex of the index, ignoring poisoning as the read model's tokio locks do. A day
/// column is added whole or not at all, and the cache is cleared on every update.
fn lock_shared<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock<T>(mutex: &mut Mutex<T>) -> &mut T {
    mutex.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
}
