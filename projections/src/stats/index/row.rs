//! The compact facts of one ticket, as the index stores them, derived from a [`TicketView`]
//! through the view's own methods so that the rules stay in one place.

use chrono::{DateTime, Utc};

use super::names::Names;
use crate::fold::{TicketState, TicketView};

/// A business time as nanoseconds since the Unix epoch.
///
/// Stored stamps lie strictly between `i64::MIN` and `i64::MAX` (years 1677 to 2262). A query
/// time is clamped to those two bounds ([`query_stamp`]), so it compares with every stored
/// stamp exactly as the `DateTime`s compare. A ticket with any time outside the range is kept
/// as a whole view instead (see `StatsIndex::exotic`).
pub(super) type Stamp = i64;

/// A deadline that never passes: the state owes nothing by it.
pub(super) const NEVER: Stamp = i64::MAX;

/// The duration key of a ticket without that duration. It is the key of a NaN, and durations
/// are never NaN.
pub(super) const NO_DURATION: i64 = i64::MIN;

/// Bits of a row's `flags` column.
pub(super) mod flag {
    pub const CANCELLED: u16 = 1 << 0;
    /// Closed.
    pub const RESOLVED: u16 = 1 << 1;
    /// Closed by the resolution deadline in force.
    pub const ON_TIME: u16 = 1 << 2;
    /// Completion reported at least once.
    pub const REPORTED: u16 = 1 << 3;
    pub const REOPENED: u16 = 1 << 4;
    /// The resident confirmed or rejected the completion report in force.
    pub const ANSWERED: u16 = 1 << 5;
    pub const CONFIRMED: u16 = 1 << 6;
    /// A data anomaly was flagged.
    pub const FLAGGED: u16 = 1 << 7;
    pub const RATED: u16 = 1 << 8;
    /// The state in force from `tail_from` on is open.
    pub const TAIL_OPEN: u16 = 1 << 9;
    /// The row is a placeholder: the ticket is kept as a whole view.
    pub const EXOTIC: u16 = 1 << 10;
    /// The ticket has an acceptance duration (`accept_key` is not `NO_DURATION`).
    pub const HAS_ACCEPT: u16 = 1 << 11;
    /// The ticket has a resolution duration (`resolve_key` is not `NO_DURATION`).
    pub const HAS_RESOLVE: u16 = 1 << 12;
}

/// Returns the stamp of a stored time, or `None` when it is outside the stamp range.
pub(super) fn stored_stamp(at: DateTime<Utc>) -> Option<Stamp> {
    at.timestamp_nanos_opt()
        .filter(|nanos| *nanos != i64::MIN && *nanos != i64::MAX)
}

/// Returns the stamp of a query time, clamped to `i64::MIN` or `i64::MAX` outside the range.
pub(super) fn query_stamp(at: DateTime<Utc>) -> Stamp {
    match at.timestamp_nanos_opt() {
        Some(nanos) => nanos,
        None if at.timestamp() < 0 => i64::MIN,
        None => i64::MAX,
    }
}

/// Maps a duration in seconds to an integer key whose order is that of `f64::total_cmp`, so
/// selection compares integers. [`duration_from_key`] inverts it.
pub(super) fn duration_key(seconds: Option<f64>) -> i64 {
    let Some(seconds) = seconds else {
        return NO_DURATION;
    };
    let bits = seconds.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// Returns the seconds of a key made by [`duration_key`]; the mapping is its own inverse.
pub(super) fn duration_from_key(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

/// The facts of a ticket that SLA statistics count, from [`TicketView`]'s own methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlaFacts {
    pub flags: u16,
    /// The resident's score when `flag::RATED` is set.
    pub rating: u8,
    pub accept_key: i64,
    pub resolve_key: i64,
}

impl SlaFacts {
    pub fn of(view: &TicketView) -> SlaFacts {
        let accept_key = duration_key(view.accept_seconds());
        let resolve_key = duration_key(view.resolve_seconds());
        let bits = [
            (view.is_cancelled(), flag::CANCELLED),
            (view.is_resolved(), flag::RESOLVED),
            (view.resolution_on_time() == Some(true), flag::ON_TIME),
            (view.completion_reports > 0, flag::REPORTED),
            (view.reopen_count > 0, flag::REOPENED),
            (view.confirmed.is_some(), flag::ANSWERED),
            (view.confirmed == Some(true), flag::CONFIRMED),
            (!view.flagged.is_empty(), flag::FLAGGED),
            (view.rating.is_some(), flag::RATED),
            (accept_key != NO_DURATION, flag::HAS_ACCEPT),
            (resolve_key != NO_DURATION, flag::HAS_RESOLVE),
        ];
        let flags = bits
            .into_iter()
            .filter(|(set, _)| *set)
            .fold(0, |flags, (_, bit)| flags | bit);
        SlaFacts {
            flags,
            rating: view.rating.unwrap_or(0),
            accept_key,
            resolve_key,
        }
    }
}

/// The slice attributes that change over a ticket's life, as interned ids (0 is "none").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct StateAttributes {
    pub organization: u32,
    pub contractor: u32,
    pub category: u32,
    /// Index into `Priority::ALL`.
    pub priority: u8,
}

impl StateAttributes {
    pub fn intern(state: &TicketState, names: &mut Names) -> StateAttributes {
        StateAttributes {
            organization: names.organizations.intern_optional(state.organization_id.as_deref()),
            contractor: names.contractors.intern_optional(state.contractor_id.as_deref()),
            category: names.categories.intern(&state.category),
            priority: state.priority as u8,
        }
    }
}

/// One entry of a ticket's compact timeline: what overdue counters need of the state in force
/// from `from` until the next entry.
///
/// The response and resolution "dues" are the deadlines that the state can be overdue on:
/// the state is overdue on one at time `t` exactly when its due is before `t`. A due the state
/// can never be overdue on (accepted already, suspended, no response deadline) is [`NEVER`].
/// A state that is not open counts nowhere, so all closed entries are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OverdueState {
    pub from: Stamp,
    pub response_due: Stamp,
    pub resolution_due: Stamp,
    pub attributes: StateAttributes,
    pub open: bool,
}

impl OverdueState {
    /// Compacts the state in force from `from`, or returns `None` when a time is outside the
    /// stamp range.
    ///
    /// The dues come from the state's own rules: a state that is overdue on a deadline at the
    /// latest representable time is overdue on it at every time after the deadline, and one
    /// that is not overdue then never is.
    pub fn of(from: DateTime<Utc>, state: &TicketState, names: &mut Names) -> Option<OverdueState> {
        let from = stored_stamp(from)?;
        if !state.is_open() {
            return Some(OverdueState {
                from,
                response_due: NEVER,
                resolution_due: NEVER,
                attributes: StateAttributes::default(),
                open: false,
            });
        }
        let response_due = match state.response_deadline {
            Some(deadline) if state.is_response_overdue_at(DateTime::<Utc>::MAX_UTC) => stored_stamp(deadline)?,
            _ => NEVER,
        };
        let resolution_due = if state.is_resolution_overdue_at(DateTime::<Utc>::MAX_UTC) {
            stored_stamp(state.resolution_deadline)?
        } else {
            NEVER
        };
        Some(OverdueState {
            from,
            response_due,
            resolution_due,
            attributes: StateAttributes::intern(state, names),
            open: true,
        })
    }

    /// Returns true when the two entries count the same at every time they might hold.
    fn counts_as(&self, other: &OverdueState) -> bool {
        OverdueState { from: other.from, ..*self } == *other
    }
}

/// The compact form of one ticket: the row of the index.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Row {
    pub registered_at: Stamp,
    /// The attributes of the current state, which SLA statistics group and filter by.
    pub current: StateAttributes,
    pub district: u32,
    pub building: u32,
    /// Index into `Channel::ALL`.
    pub channel: u8,
    pub facts: SlaFacts,
    /// The last entry of the compact timeline: the state in force from `tail.from` on.
    pub tail: OverdueState,
    /// The entries before the tail, ordered by `from`.
    pub history: Vec<OverdueState>,
}

impl Row {
    /// Compacts a view, interning its names, or returns `None` when the view has a time
    /// outside the stamp range or no timeline.
    ///
    /// Consecutive timeline entries that count the same are merged, which leaves the state in
    /// force at every time unchanged for overdue counting.
    pub fn of(view: &TicketView, names: &mut Names) -> Option<Row> {
        let registered_at = stored_stamp(view.registered_at)?;
        let mut history: Vec<OverdueState> = Vec::with_capacity(view.timeline.len());
        for change in &view.timeline {
            let state = OverdueState::of(change.from, &change.state, names)?;
            if history.last().is_some_and(|last| last.counts_as(&state)) {
                continue;
            }
            history.push(state);
        }
        let tail = history.pop()?;
        let current = StateAttributes::intern(&view.current_state(), names);
        // The last timeline entry is the current state, so an open tail has its attributes.
        if tail.open && tail.attributes != current {
            return None;
        }
        Some(Row {
            registered_at,
            current,
            district: names.districts.intern_optional(view.district.as_deref()),
            building: names.buildings.intern(&view.building_id),
            channel: view.channel as u8,
            facts: SlaFacts::of(view),
            tail,
            history,
        })
    }
}
