//! SLA statistics over the rows of the index, equal to [`crate::stats::sla_stats`] over the
//! same views.
//!
//! The scan is branch-free per row where the data decide: counters add flag bits, and duration
//! keys are written to the next free slot and kept only when they count. A grouped query makes
//! two passes: the first assigns each row its group and counts, the second scatters the
//! duration keys into one array cut into a segment per group, as a counting sort does.

use chrono_tz::Tz;

use super::columns::Columns;
use super::grouping::{key_of_view, CurrentAttributes, Grouper, RowFilter};
use super::row::{flag, SlaFacts, NO_DURATION};
use super::select::quantiles;
use super::StatsIndex;
use crate::stats::sla::{share, SlaStatsRow};
use crate::stats::slices::{Dimension, GroupKey, StatsFilter};

/// The counters of one group; the same sums as the accumulator of `sla_stats`.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    received: u64,
    resolved: u64,
    resolved_on_time: u64,
    reported_complete: u64,
    reopened: u64,
    resident_answers: u64,
    confirmed: u64,
    rating_sum: u64,
    rating_count: u64,
    cancelled: u64,
    flagged: u64,
    /// How many acceptance and resolution durations the group has.
    accepts: u64,
    resolves: u64,
}

/// The durations of a row that count: bit 0 the acceptance, bit 1 the resolution.
type Counted = u64;

impl Totals {
    /// Adds a ticket and returns which of its durations count. Cancelled tickets count only
    /// as received, cancelled and flagged; resolution figures count only closed tickets.
    #[inline(always)]
    fn add(&mut self, facts: SlaFacts) -> Counted {
        let bits = u64::from(facts.flags);
        let bit = |mask: u16| u64::from(bits & u64::from(mask) != 0);
        let live = 1 - bit(flag::CANCELLED);
        let resolved = bit(flag::RESOLVED) & live;
        let answered = bit(flag::ANSWERED) & resolved;
        let rated = bit(flag::RATED) & live;

        self.received += 1;
        self.flagged += bit(flag::FLAGGED);
        self.cancelled += 1 - live;
        self.reported_complete += bit(flag::REPORTED) & live;
        self.reopened += bit(flag::REOPENED) & live;
        self.rating_sum += rated * u64::from(facts.rating);
        self.rating_count += rated;
        self.resolved += resolved;
        self.resolved_on_time += bit(flag::ON_TIME) & resolved;
        self.resident_answers += answered;
        self.confirmed += bit(flag::CONFIRMED) & answered;

        let counted = counted(facts);
        self.accepts += counted & 1;
        self.resolves += counted >> 1;
        counted
    }

    fn into_row(self, key: GroupKey, accept_keys: &mut [i64], resolve_keys: &mut [i64]) -> SlaStatsRow {
        let [accept_median, accept_p90] = quantiles(accept_keys, [0.5, 0.9]);
        let [resolve_median, resolve_p90] = quantiles(resolve_keys, [0.5, 0.9]);
        SlaStatsRow {
            key,
            received: self.received,
            resolved: self.resolved,
            resolved_on_time: self.resolved_on_time,
            on_time_share: share(self.resolved_on_time, self.resolved),
            accept_median_seconds: accept_median,
            accept_p90_seconds: accept_p90,
            resolve_median_seconds: resolve_median,
            resolve_p90_seconds: resolve_p90,
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

/// Returns which durations of a ticket count, by the rules of [`Totals::add`].
#[inline(always)]
fn counted(facts: SlaFacts) -> Counted {
    let has = |mask: u16| u64::from(facts.flags & mask != 0);
    let live = 1 - has(flag::CANCELLED);
    let accept = live & u64::from(facts.accept_key != NO_DURATION);
    let resolve = has(flag::RESOLVED) & live & u64::from(facts.resolve_key != NO_DURATION);
    accept | (resolve << 1)
}

fn facts_of_row(columns: &Columns, row: usize) -> SlaFacts {
    SlaFacts {
        flags: columns.flags[row],
        rating: columns.rating[row],
        accept_key: columns.accept_key[row],
        resolve_key: columns.resolve_key[row],
    }
}

/// The state of one query: totals by slot, where slot 0 collects the rows the query leaves
/// out and slot `group + 1` is the grouper's group `group`.
struct Scan<'a> {
    index: &'a StatsIndex,
    filter: Option<RowFilter>,
    grouper: Grouper<'a>,
    totals: Vec<Totals>,
    /// Durations of tickets kept as whole views, by slot: appended to the slot's segment.
    extra_accepts: Vec<(usize, i64)>,
    extra_resolves: Vec<(usize, i64)>,
}

impl Scan<'_> {
    /// Returns true when a compact row passes the filter.
    #[inline(always)]
    fn includes(&self, row: usize) -> bool {
        let columns = &self.index.columns;
        let placeholder = columns.flags[row] & flag::EXOTIC != 0;
        let passes = match &self.filter {
            Some(filter) if filter.passes_all() => true,
            Some(filter) => filter.matches(columns, row, &CurrentAttributes { columns, row }),
            None => false,
        };
        passes && !placeholder
    }

    fn slot_totals(&mut self, slot: usize) -> &mut Totals {
        if slot >= self.totals.len() {
            self.totals.resize(slot + 1, Totals::default());
        }
        &mut self.totals[slot]
    }

    /// Adds the tickets kept as whole views, by the reference rules.
    fn add_whole_views(&mut self, group_by: &[Dimension], filter: &StatsFilter, tz: Tz) {
        if self.filter.is_none() {
            return;
        }
        let index = self.index;
        for view in index.exotic.values() {
            let state = view.current_state();
            if !filter.matches(view, &state) {
                continue;
            }
            let key = key_of_view(view, &state, group_by, &index.names, tz);
            let slot = self.grouper.group_of_key(&key) + 1;
            let facts = SlaFacts::of(view);
            let counted = self.slot_totals(slot).add(facts);
            if counted & 1 != 0 {
                self.extra_accepts.push((slot, facts.accept_key));
            }
            if counted & 2 != 0 {
                self.extra_resolves.push((slot, facts.resolve_key));
            }
        }
    }

    /// Turns the totals and the duration segments into rows sorted by key.
    fn into_rows(self, mut accepts: Segments, mut resolves: Segments) -> Vec<SlaStatsRow> {
        let mut rows = Vec::with_capacity(self.totals.len().saturating_sub(1));
        for (slot, totals) in self.totals.iter().enumerate().skip(1) {
            let mut accept_keys = accepts.keys_of(slot, &self.extra_accepts);
            let mut resolve_keys = resolves.keys_of(slot, &self.extra_resolves);
            let key = self.grouper.group_key(slot - 1, &self.index.names);
            rows.push(totals.into_row(key, accept_keys.as_mut_slice(), resolve_keys.as_mut_slice()));
        }
        rows.sort_by(|left, right| left.key.cmp(&right.key));
        rows
    }
}

/// Duration keys of all slots in one array, slot after slot.
struct Segments {
    keys: Vec<i64>,
    /// Start of each slot's segment, and its length.
    spans: Vec<(usize, usize)>,
}

/// The keys of one slot: its segment, or a copy with the keys of whole views appended.
enum SlotKeys<'a> {
    Segment(&'a mut [i64]),
    Copy(Vec<i64>),
}

impl SlotKeys<'_> {
    fn as_mut_slice(&mut self) -> &mut [i64] {
        match self {
            SlotKeys::Segment(keys) => keys,
            SlotKeys::Copy(keys) => keys,
        }
    }
}

impl Segments {
    fn keys_of<'a>(&'a mut self, slot: usize, extra: &[(usize, i64)]) -> SlotKeys<'a> {
        let (start, len) = self.spans.get(slot).copied().unwrap_or((0, 0));
        let segment = &mut self.keys[start..start + len];
        if !extra.iter().any(|(extra_slot, _)| *extra_slot == slot) {
            return SlotKeys::Segment(segment);
        }
        let mut keys = segment.to_vec();
        keys.extend(extra.iter().filter(|(extra_slot, _)| *extra_slot == slot).map(|(_, key)| *key));
        SlotKeys::Copy(keys)
    }
}

/// Computes SLA statistics with the semantics of [`crate::stats::sla_stats`].
pub(super) fn compute(index: &StatsIndex, group_by: &[Dimension], filter: &StatsFilter, tz: Tz) -> Vec<SlaStatsRow> {
    let days = index.day_column_for(group_by, tz);
    let mut scan = Scan {
        index,
        filter: RowFilter::compile(filter, &index.names),
        grouper: Grouper::new(group_by, &index.names, days.as_deref()),
        totals: vec![Totals::default()],
        extra_accepts: Vec::new(),
        extra_resolves: Vec::new(),
    };
    if group_by.is_empty() {
        scan.grouper.group_of_key(&[]);
        scan.totals.push(Totals::default());
    }

    let (accepts, resolves) = if group_by.is_empty() {
        scan_ungrouped(&mut scan)
    } else {
        scan_grouped(&mut scan)
    };
    scan.add_whole_views(group_by, filter, tz);
    scan.into_rows(accepts, resolves)
}

/// Scans in one pass into slot 1 (or slot 0 for rows left out), compacting the duration keys.
fn scan_ungrouped(scan: &mut Scan<'_>) -> (Segments, Segments) {
    let index = scan.index;
    let columns = &index.columns;
    let rows = columns.len();
    let mut accept_keys = vec![0i64; rows + 1];
    let mut resolve_keys = vec![0i64; rows + 1];
    let (mut accepts, mut resolves) = (0usize, 0usize);
    let mut totals = [Totals::default(); 2];
    for row in 0..rows {
        let slot = usize::from(scan.includes(row));
        let facts = facts_of_row(columns, row);
        let counted = totals[slot].add(facts) * slot as u64;
        accept_keys[accepts] = facts.accept_key;
        accepts += (counted & 1) as usize;
        resolve_keys[resolves] = facts.resolve_key;
        resolves += (counted >> 1) as usize;
    }
    accept_keys.truncate(accepts);
    resolve_keys.truncate(resolves);
    scan.totals[..2].copy_from_slice(&totals);
    (
        Segments { keys: accept_keys, spans: vec![(0, 0), (0, accepts)] },
        Segments { keys: resolve_keys, spans: vec![(0, 0), (0, resolves)] },
    )
}

/// Scans in two passes: slots and counters, then the duration keys scattered by slot.
fn scan_grouped(scan: &mut Scan<'_>) -> (Segments, Segments) {
    let index = scan.index;
    let columns = &index.columns;
    let rows = columns.len();
    let mut slots = vec![0u32; rows];
    for (row, row_slot) in slots.iter_mut().enumerate() {
        let slot = if scan.includes(row) {
            scan.grouper.group_of_row(columns, row, &CurrentAttributes { columns, row }) + 1
        } else {
            0
        };
        *row_slot = slot as u32;
        scan.slot_totals(slot).add(facts_of_row(columns, row));
    }

    // Slot 0 gets no keys; every segment has one spare cell for the writes that do not count.
    let layout = |count: &dyn Fn(&Totals) -> u64| {
        let mut spans = Vec::with_capacity(scan.totals.len());
        let mut next = Vec::with_capacity(scan.totals.len());
        let mut start = 0usize;
        for (slot, totals) in scan.totals.iter().enumerate() {
            let len = if slot == 0 { 0 } else { count(totals) as usize };
            spans.push((start, len));
            next.push(start);
            start += len + 1;
        }
        (spans, next, start)
    };
    let (accept_spans, mut accept_next, accept_cells) = layout(&|totals| totals.accepts);
    let (resolve_spans, mut resolve_next, resolve_cells) = layout(&|totals| totals.resolves);
    let mut accept_keys = vec![0i64; accept_cells];
    let mut resolve_keys = vec![0i64; resolve_cells];
    for (row, slot) in slots.iter().enumerate() {
        let slot = *slot as usize;
        let facts = facts_of_row(columns, row);
        let counted = counted(facts) * u64::from(slot != 0);
        accept_keys[accept_next[slot]] = facts.accept_key;
        accept_next[slot] += (counted & 1) as usize;
        resolve_keys[resolve_next[slot]] = facts.resolve_key;
        resolve_next[slot] += (counted >> 1) as usize;
    }
    (
        Segments { keys: accept_keys, spans: accept_spans },
        Segments { keys: resolve_keys, spans: resolve_spans },
    )
}
