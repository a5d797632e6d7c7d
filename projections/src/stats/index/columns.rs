//! The rows of the index stored column by column, so that a query reads only the columns it
//! needs in one sequential pass.

use super::row::{flag, Row, Stamp, NEVER, NO_DURATION};

/// One entry per row in each column; row numbers never change.
#[derive(Debug, Default)]
pub(super) struct Columns {
    pub registered_at: Vec<Stamp>,
    pub organization: Vec<u32>,
    pub contractor: Vec<u32>,
    pub category: Vec<u32>,
    pub priority: Vec<u8>,
    pub district: Vec<u32>,
    pub building: Vec<u32>,
    pub channel: Vec<u8>,
    /// Bits of `row::flag`.
    pub flags: Vec<u16>,
    pub rating: Vec<u8>,
    /// Duration keys (`row::duration_key`) of the acceptance and resolution times.
    pub accept_key: Vec<i64>,
    pub resolve_key: Vec<i64>,
    /// The time from which the tail state holds; [`NEVER`] for placeholder rows.
    pub tail_from: Vec<Stamp>,
    /// The dues of the tail state (`OverdueState`); the tail's attributes are the current ones.
    pub response_due: Vec<Stamp>,
    pub resolution_due: Vec<Stamp>,
    /// One bit per row, set when the row's tail state is open.
    pub open_tails: Vec<u64>,
    /// A time at or after every compact row's `tail_from`. It only grows, so after a row's
    /// tail moves back it may be later than needed, which costs speed, never correctness.
    pub latest_tail_from: Stamp,
}

impl Columns {
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Writes `row` at `index`, or appends it when `index` is the row count.
    pub fn set(&mut self, index: usize, row: &Row) {
        self.set_open_tail(index, row.tail.open);
        self.latest_tail_from = self.latest_tail_from.max(row.tail.from);
        let tail_open = if row.tail.open { flag::TAIL_OPEN } else { 0 };
        self.write(
            index,
            Fields {
                registered_at: row.registered_at,
                organization: row.current.organization,
                contractor: row.current.contractor,
                category: row.current.category,
                priority: row.current.priority,
                district: row.district,
                building: row.building,
                channel: row.channel,
                flags: row.facts.flags | tail_open,
                rating: row.facts.rating,
                accept_key: row.facts.accept_key,
                resolve_key: row.facts.resolve_key,
                tail_from: row.tail.from,
                response_due: row.tail.response_due,
                resolution_due: row.tail.resolution_due,
            },
        );
    }

    /// Writes a placeholder at `index` (or appends it): a row that no query counts, because
    /// its ticket is kept as a whole view. Its tail starts at [`NEVER`] and is closed, and it
    /// has no history, so overdue counting passes over it.
    pub fn set_placeholder(&mut self, index: usize) {
        self.set_open_tail(index, false);
        self.write(
            index,
            Fields {
                registered_at: 0,
                organization: 0,
                contractor: 0,
                category: 0,
                priority: 0,
                district: 0,
                building: 0,
                channel: 0,
                flags: flag::EXOTIC,
                rating: 0,
                accept_key: NO_DURATION,
                resolve_key: NO_DURATION,
                tail_from: NEVER,
                response_due: NEVER,
                resolution_due: NEVER,
            },
        );
    }

    fn set_open_tail(&mut self, index: usize, open: bool) {
        let (word, bit) = (index / 64, index % 64);
        if word >= self.open_tails.len() {
            self.open_tails.resize(word + 1, 0);
        }
        if open {
            self.open_tails[word] |= 1 << bit;
        } else {
            self.open_tails[word] &= !(1 << bit);
        }
    }

    /// Returns the rows whose tail state is open, in ascending order.
    pub fn open_tail_rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.open_tails.iter().enumerate().flat_map(|(word_index, word)| {
            let mut bits = *word;
            std::iter::from_fn(move || {
                let bit = bits.trailing_zeros();
                (bit < 64).then(|| {
                    bits &= bits - 1;
                    word_index * 64 + bit as usize
                })
            })
        })
    }

    fn write(&mut self, index: usize, fields: Fields) {
        macro_rules! store {
            ($($column:ident),*) => {
                if index == self.len() {
                    $(self.$column.push(fields.$column);)*
                } else {
                    $(self.$column[index] = fields.$column;)*
                }
            };
        }
        store!(
            registered_at, organization, contractor, category, priority, district, building, channel,
            flags, rating, accept_key, resolve_key, tail_from, response_due, resolution_due
        );
    }

    /// Estimates the heap memory used, in bytes.
    pub fn heap_bytes(&self) -> usize {
        fn bytes<T>(column: &Vec<T>) -> usize {
            column.capacity() * std::mem::size_of::<T>()
        }
        bytes(&self.registered_at)
            + bytes(&self.organization)
            + bytes(&self.contractor)
            + bytes(&self.category)
            + bytes(&self.priority)
            + bytes(&self.district)
            + bytes(&self.building)
            + bytes(&self.channel)
            + bytes(&self.flags)
            + bytes(&self.rating)
            + bytes(&self.accept_key)
            + bytes(&self.resolve_key)
            + bytes(&self.tail_from)
            + bytes(&self.response_due)
            + bytes(&self.resolution_due)
            + bytes(&self.open_tails)
    }
}

/// One row's values, in column order.
struct Fields {
    registered_at: Stamp,
    organization: u32,
    contractor: u32,
    category: u32,
    priority: u8,
    district: u32,
    building: u32,
    channel: u8,
    flags: u16,
    rating: u8,
    accept_key: i64,
    resolve_key: i64,
    tail_from: Stamp,
    response_due: Stamp,
    resolution_due: Stamp,
}
