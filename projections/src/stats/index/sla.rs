//! SLA statistics over the rows of the index, equal to [`crate::stats::sla_stats`] over the
//! same views.
//!
//! The scan is branch-free per row where the data decide: counters add flag bits, and duration
//! keys are written to the next free slot and kept only when they count. A grouped query makes
//! two passes: the first assigns each row its group and counts it by its class of facts (see
//! [`FactClasses`]), the second scatters the duration keys into one array cut into a segment
//! per group, as a counting sort does. On a large index both passes run on two threads, each
//! over half of the rows.

use chrono_tz::Tz;

use super::columns::Columns;
use super::grouping::{key_of_view, CurrentAttributes, Grouper, RowFilter};
use super::row::{flag, SlaFacts};
use super::select::quantiles;
use super::StatsIndex;
use crate::stats::sla::{share, SlaStatsRow};
use crate::stats::slices::{Dimension, GroupKey, StatsFilter};

/// The counters of one group; the same sums as the accumulator of `sla_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    /// Returns the sums of two sets of counters.
    fn merged(&self, other: &Totals) -> Totals {
        Totals {
            received: self.received + other.received,
            resolved: self.resolved + other.resolved,
            resolved_on_time: self.resolved_on_time + other.resolved_on_time,
            reported_complete: self.reported_complete + other.reported_complete,
            reopened: self.reopened + other.reopened,
            resident_answers: self.resident_answers + other.resident_answers,
            confirmed: self.confirmed + other.confirmed,
            rating_sum: self.rating_sum + other.rating_sum,
            rating_count: self.rating_count + other.rating_count,
            cancelled: self.cancelled + other.cancelled,
            flagged: self.flagged + other.flagged,
            accepts: self.accepts + other.accepts,
            resolves: self.resolves + other.resolves,
        }
    }

    /// Adds a ticket with `flags` and `rating` and returns which of its durations count.
    /// Cancelled tickets count only as received, cancelled and flagged; resolution figures
    /// count only closed tickets. The duration keys themselves are not read.
    #[inline(always)]
    fn add(&mut self, flags: u16, rating: u8) -> Counted {
        self.add_times(flags, rating, 1)
    }

    /// Adds `times` tickets with the same `flags` and `rating`, as [`Totals::add`] would one by
    /// one, and returns which durations of each count.
    #[inline(always)]
    fn add_times(&mut self, flags: u16, rating: u8, times: u64) -> Counted {
        let bits = u64::from(flags);
        let bit = |mask: u16| u64::from(bits & u64::from(mask) != 0);
        let live = 1 - bit(flag::CANCELLED);
        let resolved = bit(flag::RESOLVED) & live;
        let answered = bit(flag::ANSWERED) & resolved;
        let rated = bit(flag::RATED) & live;

        self.received += times;
        self.flagged += bit(flag::FLAGGED) * times;
        self.cancelled += (1 - live) * times;
        self.reported_complete += (bit(flag::REPORTED) & live) * times;
        self.reopened += (bit(flag::REOPENED) & live) * times;
        self.rating_sum += rated * u64::from(rating) * times;
        self.rating_count += rated * times;
        self.resolved += resolved * times;
        self.resolved_on_time += (bit(flag::ON_TIME) & resolved) * times;
        self.resident_answers += answered * times;
        self.confirmed += (bit(flag::CONFIRMED) & answered) * times;

        let counted = counted(flags);
        self.accepts += (counted & 1) * times;
        self.resolves += (counted >> 1) * times;
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

/// Returns which durations of a ticket with `flags` count, by the rules of [`Totals::add`].
#[inline(always)]
fn counted(flags: u16) -> Counted {
    let has = |mask: u16| u64::from(flags & mask != 0);
    let live = 1 - has(flag::CANCELLED);
    let accept = live & has(flag::HAS_ACCEPT);
    let resolve = has(flag::RESOLVED) & live & has(flag::HAS_RESOLVE);
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
            let counted = self.slot_totals(slot).add(facts.flags, facts.rating);
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
        let counted = totals[slot].add(facts.flags, facts.rating) * slot as u64;
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

/// Rows below which a grouped scan stays on the calling thread. Unit tests split every index of
/// two rows or more, so that the comparisons with the reference cover the merge of the halves.
#[cfg(not(test))]
const PARALLEL_ROWS: usize = 100_000;
#[cfg(test)]
const PARALLEL_ROWS: usize = 2;

/// Scans in two passes: slots and counters, then the duration keys scattered by slot. Above
/// [`PARALLEL_ROWS`] rows each pass runs on two threads, one per half of the rows. The second
/// half numbers its groups with a grouper of its own. Between the passes its numbers are mapped
/// to the first half's, so the rows come out as in one pass.
fn scan_grouped(scan: &mut Scan<'_>) -> (Segments, Segments) {
    let rows = scan.index.columns.len();
    let parallel = rows >= PARALLEL_ROWS;
    let split = if parallel { rows / 2 } else { rows };
    let mut second_grouper = scan.grouper.clone();
    let mut first_grouper = scan.grouper.clone();
    let (first, second) = {
        let scan = &*scan;
        run_both(
            parallel,
            || assign_slots(scan, &mut first_grouper, 0..split),
            || assign_slots(scan, &mut second_grouper, split..rows),
        )
    };
    scan.grouper = first_grouper;

    // Slot numbers of the second half in the first half's numbering; slot 0 stays 0.
    let mut second_to_first = vec![0u32; second_grouper.group_count() + 1];
    for group in 0..second_grouper.group_count() {
        second_to_first[group + 1] = (scan.grouper.group_of_key(second_grouper.key_values(group)) + 1) as u32;
    }
    let slot_count = scan.grouper.group_count() + 1;
    let mut first_counts = first.totals;
    first_counts.resize(slot_count, Totals::default());
    let mut second_counts = vec![Totals::default(); slot_count];
    for (slot, totals) in second.totals.iter().enumerate() {
        second_counts[second_to_first[slot] as usize] = *totals;
    }
    for slot in 0..slot_count {
        let merged = first_counts[slot].merged(&second_counts[slot]);
        *scan.slot_totals(slot) = merged;
    }

    let mut accepts = KeyLayout::new(&first_counts, &second_counts, |totals| totals.accepts);
    let mut resolves = KeyLayout::new(&first_counts, &second_counts, |totals| totals.resolves);
    let columns = &scan.index.columns;
    {
        let (accept_first, accept_second) = accepts.cells();
        let (resolve_first, resolve_second) = resolves.cells();
        let remap = |slot: u32| second_to_first[slot as usize];
        run_both(
            parallel,
            || scatter_keys(columns, 0, &first.slots, |slot| slot, accept_first, resolve_first),
            || scatter_keys(columns, split, &second.slots, remap, accept_second, resolve_second),
        );
    }
    (accepts.into_segments(), resolves.into_segments())
}

/// Runs `first` and `second`: at the same time, `second` on a scoped thread, when `parallel`,
/// and one after the other on the calling thread otherwise.
fn run_both<A: Send, B: Send>(
    parallel: bool,
    first: impl FnOnce() -> A + Send,
    second: impl FnOnce() -> B + Send,
) -> (A, B) {
    if !parallel {
        return (first(), second());
    }
    std::thread::scope(|threads| {
        let second = threads.spawn(second);
        let first = first();
        (first, second.join().expect("the second half of a grouped scan panicked"))
    })
}

/// The slots and counters of the rows of one part of a grouped scan.
struct PartSlots {
    /// Slot of each row of the part, in the part's own group numbering.
    slots: Vec<u32>,
    totals: Vec<Totals>,
}

/// First pass over `range`: the slot of each row, with `grouper` numbering the groups, and the
/// counters of each slot. Each row adds one to the count of its slot and [`FactClasses`] class.
/// The counters follow from those counts at the end, so the loop does one addition per row
/// instead of the thirteen of [`Totals::add`].
fn assign_slots(scan: &Scan<'_>, grouper: &mut Grouper<'_>, range: std::ops::Range<usize>) -> PartSlots {
    let columns = &scan.index.columns;
    let mut classes = FactClasses::for_rows(range.len());
    let mut slots = Vec::with_capacity(range.len());
    let mut totals = vec![Totals::default(); grouper.group_count() + 1];
    let mut counts = vec![0u32; totals.len() * MAX_CLASSES];
    for row in range {
        let slot = if scan.includes(row) {
            grouper.group_of_row(columns, row, &CurrentAttributes { columns, row }) + 1
        } else {
            0
        };
        if slot >= totals.len() {
            totals.resize(slot + 1, Totals::default());
            counts.resize(totals.len() * MAX_CLASSES, 0);
        }
        slots.push(slot as u32);
        let (flags, rating) = (columns.flags[row], columns.rating[row]);
        match classes.class_of(flags, rating) {
            Some(class) => counts[slot * MAX_CLASSES + class] += 1,
            None => {
                totals[slot].add(flags, rating);
            }
        }
    }
    for (slot, totals) in totals.iter_mut().enumerate() {
        let slot_counts = &counts[slot * MAX_CLASSES..(slot + 1) * MAX_CLASSES];
        for (&(flags, rating), &count) in classes.facts.iter().zip(slot_counts) {
            if count > 0 {
                totals.add_times(flags, rating, u64::from(count));
            }
        }
    }
    PartSlots { slots, totals }
}

/// Maximum number of classes in one part of a grouped scan.
const MAX_CLASSES: usize = 64;

/// The flags that [`Totals::add`] reads. The highest is bit 12, so the flags index a table of
/// 8,192 cells per rating.
const COUNTED_FLAGS: u16 = flag::CANCELLED
    | flag::RESOLVED
    | flag::ON_TIME
    | flag::REPORTED
    | flag::REOPENED
    | flag::ANSWERED
    | flag::CONFIRMED
    | flag::FLAGGED
    | flag::RATED
    | flag::HAS_ACCEPT
    | flag::HAS_RESOLVE;
const FLAG_CELLS: usize = 1 << 13;
const _: () = assert!((COUNTED_FLAGS as usize) < FLAG_CELLS);

/// Ratings below this value have classes; rows with a higher one are added one by one.
const CLASSED_RATINGS: u8 = 8;

/// Class numbers of the distinct pairs of counted flags and rating in one part, from 0 in order
/// of appearance. There are far fewer pairs than rows, so counting rows per slot and pair and
/// deriving the counters once per pair is exact and cheaper than adding every counter for every
/// row. A pair beyond the first [`MAX_CLASSES`], or with a rating of [`CLASSED_RATINGS`] or
/// more, gets no class, and its rows are added one by one.
struct FactClasses {
    /// Class number plus one by `flags & COUNTED_FLAGS` plus `rating * FLAG_CELLS`; 0 for none
    /// yet. Empty when classes are off.
    class_of: Vec<u8>,
    /// The counted flags and rating of each class.
    facts: Vec<(u16, u8)>,
}

impl FactClasses {
    /// Classes for a part of `rows` rows. They are off when a count could exceed `u32`.
    fn for_rows(rows: usize) -> FactClasses {
        let enabled = u32::try_from(rows).is_ok();
        FactClasses {
            class_of: if enabled { vec![0; FLAG_CELLS * usize::from(CLASSED_RATINGS)] } else { Vec::new() },
            facts: Vec::with_capacity(MAX_CLASSES),
        }
    }

    /// Returns the class of a row's facts and numbers a new pair. Returns `None` for a pair
    /// without a class.
    #[inline(always)]
    fn class_of(&mut self, flags: u16, rating: u8) -> Option<usize> {
        let cell = usize::from(flags & COUNTED_FLAGS) + usize::from(rating) * FLAG_CELLS;
        match self.class_of.get(cell)?.checked_sub(1) {
            Some(class) => Some(usize::from(class)),
            None => self.add(cell, flags & COUNTED_FLAGS, rating),
        }
    }

    #[cold]
    #[inline(never)]
    fn add(&mut self, cell: usize, flags: u16, rating: u8) -> Option<usize> {
        if self.facts.len() == MAX_CLASSES {
            return None;
        }
        self.facts.push((flags, rating));
        self.class_of[cell] = self.facts.len() as u8;
        Some(self.facts.len() - 1)
    }
}

/// The duration keys of every slot in one array: the first part's keys, a spare cell, the
/// second part's keys, a spare cell. The spare cells take the writes of keys that do not count,
/// so the scatter needs no branch. Slot 0 gets no keys.
struct KeyLayout {
    keys: Vec<i64>,
    /// Start of each slot's keys, and their number.
    spans: Vec<(usize, usize)>,
    /// Start of the first part's cells, by slot.
    first_starts: Vec<usize>,
    /// Start of the second part's cells, by slot.
    second_starts: Vec<usize>,
}

impl KeyLayout {
    /// Lays out the keys that `count` counts in the totals of each part.
    fn new(first: &[Totals], second: &[Totals], count: impl Fn(&Totals) -> u64) -> KeyLayout {
        let mut spans = Vec::with_capacity(first.len());
        let mut first_starts = Vec::with_capacity(first.len());
        let mut second_starts = Vec::with_capacity(first.len());
        let mut next = 0usize;
        for (slot, (first, second)) in first.iter().zip(second).enumerate() {
            let (first_len, second_len) = if slot == 0 { (0, 0) } else { (count(first) as usize, count(second) as usize) };
            spans.push((next, first_len + second_len));
            first_starts.push(next);
            second_starts.push(next + first_len + 1);
            next += first_len + second_len + 2;
        }
        KeyLayout { keys: vec![0; next], spans, first_starts, second_starts }
    }

    /// Cuts the array into the cells of each part: for each slot, its keys and the spare cell
    /// after them.
    fn cells(&mut self) -> (Vec<&mut [i64]>, Vec<&mut [i64]>) {
        let total = self.keys.len();
        let mut first_cells = Vec::with_capacity(self.spans.len());
        let mut second_cells = Vec::with_capacity(self.spans.len());
        let mut rest = self.keys.as_mut_slice();
        for slot in 0..self.spans.len() {
            let slot_end = self.first_starts.get(slot + 1).copied().unwrap_or(total);
            let (first_part, tail) = std::mem::take(&mut rest).split_at_mut(self.second_starts[slot] - self.first_starts[slot]);
            let (second_part, tail) = tail.split_at_mut(slot_end - self.second_starts[slot]);
            first_cells.push(first_part);
            second_cells.push(second_part);
            rest = tail;
        }
        (first_cells, second_cells)
    }

    /// Makes each slot's keys contiguous and returns them as segments. The spare cell between
    /// the two parts takes the second part's last key, because the order of keys within a slot
    /// does not matter to the quantiles.
    fn into_segments(mut self) -> Segments {
        for (slot, &(start, len)) in self.spans.iter().enumerate() {
            let first_len = self.second_starts[slot] - self.first_starts[slot] - 1;
            let second_len = len - first_len;
            if second_len > 0 {
                self.keys[start + first_len] = self.keys[self.second_starts[slot] + second_len - 1];
            }
        }
        Segments { keys: self.keys, spans: self.spans }
    }
}

/// Second pass over the rows of one part, from row `first_row` on: writes each row's counted
/// duration keys into its slot's cells. `slot_of` maps the part's slot numbers to the merged ones.
fn scatter_keys(
    columns: &Columns,
    first_row: usize,
    slots: &[u32],
    slot_of: impl Fn(u32) -> u32,
    mut accept_cells: Vec<&mut [i64]>,
    mut resolve_cells: Vec<&mut [i64]>,
) {
    let mut accept_next = vec![0usize; accept_cells.len()];
    let mut resolve_next = vec![0usize; resolve_cells.len()];
    for (offset, slot) in slots.iter().enumerate() {
        let row = first_row + offset;
        let slot = slot_of(*slot) as usize;
        let counted = counted(columns.flags[row]) * u64::from(slot != 0);
        accept_cells[slot][accept_next[slot]] = columns.accept_key[row];
        accept_next[slot] += (counted & 1) as usize;
        resolve_cells[slot][resolve_next[slot]] = columns.resolve_key[row];
        resolve_next[slot] += (counted >> 1) as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting through classes gives the sums of adding row by row, also for the pairs that
    /// get no class: those beyond the first 64 and those with a rating of 8 or more.
    #[test]
    fn class_counts_equal_row_sums() {
        let mut classes = FactClasses::for_rows(10_000);
        let mut counts = [0u32; MAX_CLASSES];
        let mut by_class = Totals::default();
        let mut by_row = Totals::default();
        let mut unclassed = 0;
        for row in 0u32..10_000 {
            let flags = (row.wrapping_mul(2_654_435_761) >> 9) as u16 & 0x1fff;
            let rating = (row % 11) as u8;
            by_row.add(flags, rating);
            match classes.class_of(flags, rating) {
                Some(class) => counts[class] += 1,
                None => {
                    unclassed += 1;
                    by_class.add(flags, rating);
                }
            }
        }
        for (&(flags, rating), &count) in classes.facts.iter().zip(&counts) {
            by_class.add_times(flags, rating, u64::from(count));
        }
        assert_eq!(classes.facts.len(), MAX_CLASSES);
        assert!(unclassed > 0);
        assert_eq!(by_class, by_row);
    }
}
