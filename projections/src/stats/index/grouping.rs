//! Filters and group keys over rows: a [`StatsFilter`] compiled to interned ids and stamps, and
//! the [`Grouper`] that maps each row's key to a dense group number.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use opencity_domain::values::{Channel, Priority};

use super::columns::Columns;
use super::names::Names;
use super::periods::{period_number, period_number_label, week_monday, DayColumn, MonthTable};
use super::row::{query_stamp, StateAttributes, Stamp};
use crate::stats::slices::{Dimension, GroupKey, StatsFilter};

/// The changeable attributes of a row at the time a query looks at: the current state for SLA
/// statistics, the state in force at `asOf` for overdue counters.
pub(super) trait Attributes {
    fn organization(&self) -> u32;
    fn contractor(&self) -> u32;
    fn category(&self) -> u32;
    fn priority(&self) -> u8;
}

impl Attributes for StateAttributes {
    fn organization(&self) -> u32 {
        self.organization
    }
    fn contractor(&self) -> u32 {
        self.contractor
    }
    fn category(&self) -> u32 {
        self.category
    }
    fn priority(&self) -> u8 {
        self.priority
    }
}

/// The current attributes of a row, read from the columns only when a filter or key needs them.
pub(super) struct CurrentAttributes<'a> {
    pub columns: &'a Columns,
    pub row: usize,
}

impl Attributes for CurrentAttributes<'_> {
    fn organization(&self) -> u32 {
        self.columns.organization[self.row]
    }
    fn contractor(&self) -> u32 {
        self.columns.contractor[self.row]
    }
    fn category(&self) -> u32 {
        self.columns.category[self.row]
    }
    fn priority(&self) -> u8 {
        self.columns.priority[self.row]
    }
}

/// A [`StatsFilter`] over interned ids and stamps.
#[derive(Clone, Debug)]
pub(super) struct RowFilter {
    organization: Option<u32>,
    contractor: Option<u32>,
    category: Option<u32>,
    priority: Option<u8>,
    district: Option<u32>,
    building: Option<u32>,
    channel: Option<u8>,
    registered_from: Option<Stamp>,
    registered_to: Option<Stamp>,
}

impl RowFilter {
    /// Compiles `filter`, or returns `None` when it names a value that no ticket ever had, so
    /// that no ticket can pass.
    pub fn compile(filter: &StatsFilter, names: &Names) -> Option<RowFilter> {
        fn lookup(expected: &Option<String>, interner: &super::names::Interner) -> Option<Option<u32>> {
            match expected {
                None => Some(None),
                Some(name) => interner.id(name).map(Some),
            }
        }
        Some(RowFilter {
            organization: lookup(&filter.organization_id, &names.organizations)?,
            contractor: lookup(&filter.contractor_id, &names.contractors)?,
            category: lookup(&filter.category, &names.categories)?,
            priority: filter.priority.map(|priority| priority as u8),
            district: lookup(&filter.district, &names.districts)?,
            building: lookup(&filter.building_id, &names.buildings)?,
            channel: filter.channel.map(|channel| channel as u8),
            registered_from: filter.registered_from.map(query_stamp),
            registered_to: filter.registered_to.map(query_stamp),
        })
    }

    /// Returns true when the filter sets no field, so that every ticket passes.
    pub fn passes_all(&self) -> bool {
        self.organization.is_none()
            && self.contractor.is_none()
            && self.category.is_none()
            && self.priority.is_none()
            && self.district.is_none()
            && self.building.is_none()
            && self.channel.is_none()
            && self.registered_from.is_none()
            && self.registered_to.is_none()
    }

    /// Returns true when `row` with the changeable attributes `attributes` passes, with the
    /// semantics of `StatsFilter::matches`.
    #[inline]
    pub fn matches(&self, columns: &Columns, row: usize, attributes: &impl Attributes) -> bool {
        fn passes<T: PartialEq>(expected: Option<T>, actual: impl FnOnce() -> T) -> bool {
            expected.is_none_or(|expected| expected == actual())
        }
        // An id filter never matches id 0: a filter names a value, and 0 is "none".
        passes(self.organization, || attributes.organization())
            && passes(self.contractor, || attributes.contractor())
            && passes(self.category, || attributes.category())
            && passes(self.priority, || attributes.priority())
            && passes(self.district, || columns.district[row])
            && passes(self.building, || columns.building[row])
            && passes(self.channel, || columns.channel[row])
            && self.registered_from.is_none_or(|from| columns.registered_at[row] >= from)
            && self.registered_to.is_none_or(|to| columns.registered_at[row] < to)
    }
}

/// Group tables up to this many cells are arrays indexed by the key; larger ones are hashed.
const DENSE_CELLS: u64 = 1 << 16;

/// The mapping of one dimension's values to a part of the packed key: `(value - min) * stride`.
#[derive(Clone, Copy, Debug)]
struct Radix {
    dimension: Dimension,
    min: i64,
    cardinality: u64,
    stride: u64,
}

/// The lookup from packed keys to group numbers.
#[derive(Clone, Debug)]
enum Table {
    /// Group number plus one by packed key, 0 for none yet.
    Dense(Vec<u32>),
    Hashed(HashMap<u64, u32, BuildHasherDefault<KeyHasher>>),
    /// The product of the cardinalities does not fit 64 bits: every key goes to `overflow`.
    Unpacked,
}

/// Assigns dense group numbers, from 0 in order of first appearance, to the keys of rows.
///
/// A key is the tuple of the row's values of the grouped dimensions: interned ids, indexes of
/// `Priority::ALL` and `Channel::ALL`, and period numbers. Keys within the value ranges of the
/// index are packed into one integer in mixed radix. Any other key goes to a map by the whole
/// tuple, because a ticket kept as a whole view may lie outside those ranges.
#[derive(Clone, Debug)]
pub(super) struct Grouper<'a> {
    radixes: Vec<Radix>,
    table: Table,
    overflow: HashMap<Vec<i64>, u32>,
    /// The key tuple of each group number.
    keys: Vec<Vec<i64>>,
    days: Option<&'a DayColumn>,
    months: MonthTable,
    buffer: Vec<i64>,
}

impl<'a> Grouper<'a> {
    /// Prepares the grouping of `group_by`. `days` must be the day column of the query's time
    /// zone when `group_by` has a period dimension.
    pub fn new(group_by: &[Dimension], names: &Names, days: Option<&'a DayColumn>) -> Grouper<'a> {
        let (min_day, max_day) = days.map_or((0, -1), |days| (days.min_day, days.max_day));
        let mut radixes = Vec::with_capacity(group_by.len());
        let mut product: Option<u64> = Some(1);
        for &dimension in group_by {
            let (min, max) = value_range(dimension, names, min_day, max_day);
            let cardinality = u64::try_from(max - min + 1).unwrap_or(0).max(1);
            let stride = product.unwrap_or(0);
            product = product.and_then(|product| product.checked_mul(cardinality));
            radixes.push(Radix { dimension, min, cardinality, stride });
        }
        let table = match product {
            Some(cells) if cells <= DENSE_CELLS => Table::Dense(vec![0; cells as usize]),
            Some(_) => Table::Hashed(HashMap::default()),
            None => Table::Unpacked,
        };
        let needs_months = group_by.contains(&Dimension::Month);
        Grouper {
            radixes,
            table,
            overflow: HashMap::new(),
            keys: Vec::new(),
            days,
            months: if needs_months { MonthTable::new(min_day, max_day) } else { MonthTable::default() },
            buffer: Vec::with_capacity(group_by.len()),
        }
    }

    /// Returns the group of a compact row with the changeable attributes `attributes`.
    #[inline]
    pub fn group_of_row(&mut self, columns: &Columns, row: usize, attributes: &impl Attributes) -> usize {
        let mut packed: u64 = 0;
        let mut in_range = true;
        for radix in &self.radixes {
            let value = self.row_value(radix.dimension, columns, row, attributes);
            let offset = value.wrapping_sub(radix.min) as u64;
            in_range &= offset < radix.cardinality;
            packed = packed.wrapping_add(offset.wrapping_mul(radix.stride));
        }
        if in_range {
            if let Some(group) = self.packed_group(packed) {
                return group;
            }
        }
        self.fill_buffer_from_row(columns, row, attributes);
        self.overflow_group()
    }

    /// Returns the group of a key tuple given in full (values in `group_by` order).
    pub fn group_of_key(&mut self, key: &[i64]) -> usize {
        let mut packed: u64 = 0;
        let mut in_range = true;
        for (radix, value) in self.radixes.iter().zip(key) {
            let offset = value.wrapping_sub(radix.min) as u64;
            in_range &= offset < radix.cardinality;
            packed = packed.wrapping_add(offset.wrapping_mul(radix.stride));
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(key);
        if in_range {
            if let Some(group) = self.packed_group(packed) {
                return group;
            }
        }
        self.overflow_group()
    }

    /// Looks up or adds the group of a packed key; `None` when keys are not packed. The lookup
    /// of a group already seen is inlined into the row loop; adding one is not.
    #[inline(always)]
    fn packed_group(&mut self, packed: u64) -> Option<usize> {
        let existing = match &mut self.table {
            Table::Dense(cells) => cells[packed as usize].checked_sub(1),
            Table::Hashed(map) => map.get(&packed).copied(),
            Table::Unpacked => return None,
        };
        match existing {
            Some(group) => Some(group as usize),
            None => Some(self.add_packed_group(packed)),
        }
    }

    /// Adds the group of a packed key seen for the first time.
    #[cold]
    #[inline(never)]
    fn add_packed_group(&mut self, packed: u64) -> usize {
        let group = self.keys.len() as u32;
        self.keys.push(self.unpack(packed));
        match &mut self.table {
            Table::Dense(cells) => cells[packed as usize] = group + 1,
            Table::Hashed(map) => {
                map.insert(packed, group);
            }
            Table::Unpacked => {}
        }
        group as usize
    }

    fn unpack(&self, packed: u64) -> Vec<i64> {
        self.radixes
            .iter()
            .map(|radix| radix.min + ((packed / radix.stride) % radix.cardinality) as i64)
            .collect()
    }

    fn fill_buffer_from_row(&mut self, columns: &Columns, row: usize, attributes: &impl Attributes) {
        self.buffer.clear();
        for index in 0..self.radixes.len() {
            let value = self.row_value(self.radixes[index].dimension, columns, row, attributes);
            self.buffer.push(value);
        }
    }

    /// Returns the key value of `dimension` for a compact row.
    #[inline(always)]
    fn row_value(&self, dimension: Dimension, columns: &Columns, row: usize, attributes: &impl Attributes) -> i64 {
        match dimension {
            Dimension::Organization => i64::from(attributes.organization()),
            Dimension::Contractor => i64::from(attributes.contractor()),
            Dimension::Category => i64::from(attributes.category()),
            Dimension::Priority => i64::from(attributes.priority()),
            Dimension::District => i64::from(columns.district[row]),
            Dimension::Building => i64::from(columns.building[row]),
            Dimension::Channel => i64::from(columns.channel[row]),
            Dimension::Day | Dimension::Week | Dimension::Month => {
                let day = self.days.map_or(0, |days| days.days[row]);
                match dimension {
                    Dimension::Day => i64::from(day),
                    Dimension::Week => week_monday(day),
                    _ => self.months.month(day),
                }
            }
        }
    }

    /// Looks up or adds the group of the key in `buffer` in the map by whole tuple.
    fn overflow_group(&mut self) -> usize {
        if let Some(group) = self.overflow.get(self.buffer.as_slice()) {
            return *group as usize;
        }
        let group = self.keys.len() as u32;
        self.keys.push(self.buffer.clone());
        self.overflow.insert(self.buffer.clone(), group);
        group as usize
    }

    /// Returns how many groups have been assigned.
    pub fn group_count(&self) -> usize {
        self.keys.len()
    }

    /// Returns the key tuple of group number `group`, in `group_by` order.
    pub fn key_values(&self, group: usize) -> &[i64] {
        &self.keys[group]
    }

    /// Returns the group key of group number `group`, with names and labels.
    pub fn group_key(&self, group: usize, names: &Names) -> GroupKey {
        self.radixes
            .iter()
            .zip(&self.keys[group])
            .map(|(radix, value)| (radix.dimension, value_label(radix.dimension, *value, names)))
            .collect()
    }
}

/// Returns the smallest and largest value of `dimension` among compact rows.
fn value_range(dimension: Dimension, names: &Names, min_day: i32, max_day: i32) -> (i64, i64) {
    let ids = |interner: &super::names::Interner| (0, interner.cardinality() as i64 - 1);
    match dimension {
        Dimension::Organization => ids(&names.organizations),
        Dimension::Contractor => ids(&names.contractors),
        Dimension::Category => ids(&names.categories),
        Dimension::District => ids(&names.districts),
        Dimension::Building => ids(&names.buildings),
        Dimension::Priority => (0, Priority::ALL.len() as i64 - 1),
        Dimension::Channel => (0, Channel::ALL.len() as i64 - 1),
        _ if min_day > max_day => (0, 0),
        period => (period_number(min_day, period), period_number(max_day, period)),
    }
}

/// Returns the value a group key shows for `value` of `dimension`.
fn value_label(dimension: Dimension, value: i64, names: &Names) -> Option<String> {
    let name = |interner: &super::names::Interner| {
        u32::try_from(value).ok().and_then(|id| interner.name(id)).map(str::to_string)
    };
    let index = usize::try_from(value).unwrap_or(usize::MAX);
    match dimension {
        Dimension::Organization => name(&names.organizations),
        Dimension::Contractor => name(&names.contractors),
        Dimension::Category => name(&names.categories),
        Dimension::District => name(&names.districts),
        Dimension::Building => name(&names.buildings),
        Dimension::Priority => Priority::ALL.get(index).map(|priority| priority.as_str().to_string()),
        Dimension::Channel => Channel::ALL.get(index).map(|channel| channel.as_str().to_string()),
        period => Some(period_number_label(value, period)),
    }
}

/// A hasher for packed keys: one multiplication and a fold of the high bits, enough for keys
/// that are mostly small distinct integers.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        let mixed = (self.0 ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 32);
    }
}

/// Returns the key tuple of a ticket kept as a whole view, in its state `state`, with the
/// values [`Grouper::group_of_row`] would give a compact row. Names of such views are interned
/// when they enter the index, and a name that is missing anyway gets -1, which no id equals.
pub(super) fn key_of_view(
    view: &crate::fold::TicketView,
    state: &crate::fold::TicketState,
    group_by: &[Dimension],
    names: &Names,
    tz: chrono_tz::Tz,
) -> Vec<i64> {
    let id = |id: Option<u32>| id.map_or(-1, i64::from);
    group_by
        .iter()
        .map(|&dimension| match dimension {
            Dimension::Organization => id(names.organizations.id_optional(state.organization_id.as_deref())),
            Dimension::Contractor => id(names.contractors.id_optional(state.contractor_id.as_deref())),
            Dimension::Category => id(names.categories.id(&state.category)),
            Dimension::Priority => state.priority as i64,
            Dimension::District => id(names.districts.id_optional(view.district.as_deref())),
            Dimension::Building => id(names.buildings.id(&view.building_id)),
            Dimension::Channel => view.channel as i64,
            period => period_number(super::periods::local_day(view.registered_at, tz), period),
        })
        .collect()
}
