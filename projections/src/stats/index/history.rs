//! The timelines of all rows in one arena: each row's entries before its tail are contiguous,
//! so "as of" lookups read one short slice and the index makes no allocation per ticket.

use super::row::OverdueState;

/// A row's entries: `entries[start..start + len]`.
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    start: usize,
    len: u32,
}

/// Compact timeline entries of every row, before their tails.
///
/// A row whose timeline grows gets a new span at the end of the arena and leaves its old one
/// unused. When unused entries outnumber used ones, the arena is rewritten in row order.
#[derive(Debug, Default)]
pub(super) struct History {
    entries: Vec<OverdueState>,
    spans: Vec<Span>,
    unused: usize,
}

/// The arena is not rewritten while it has fewer unused entries than this.
const MIN_UNUSED_TO_COMPACT: usize = 1 << 16;

impl History {
    /// Returns the entries of `row`, ordered by `from`.
    pub fn get(&self, row: usize) -> &[OverdueState] {
        match self.spans.get(row) {
            Some(span) => &self.entries[span.start..span.start + span.len as usize],
            None => &[],
        }
    }

    /// Replaces the entries of `row`. A row may be added only right after the last one.
    pub fn set(&mut self, row: usize, states: &[OverdueState]) {
        if row == self.spans.len() {
            self.spans.push(Span::default());
        }
        let old = self.spans[row];
        let len = u32::try_from(states.len()).unwrap_or(u32::MAX);
        let states = &states[..len as usize];
        if len <= old.len {
            self.entries[old.start..old.start + states.len()].copy_from_slice(states);
            self.unused += (old.len - len) as usize;
            self.spans[row].len = len;
            return;
        }

        self.unused += old.len as usize;
        self.spans[row] = Span { start: self.entries.len(), len };
        self.entries.extend_from_slice(states);
        if self.unused >= MIN_UNUSED_TO_COMPACT && self.unused > self.entries.len() / 2 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut entries = Vec::with_capacity(self.entries.len() - self.unused);
        for span in &mut self.spans {
            let start = entries.len();
            entries.extend_from_slice(&self.entries[span.start..span.start + span.len as usize]);
            span.start = start;
        }
        self.entries = entries;
        self.unused = 0;
    }

    /// Releases the spare capacity that growing the arena left, after a bulk load.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.spans.shrink_to_fit();
    }

    /// Estimates the heap memory used, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<OverdueState>()
            + self.spans.capacity() * std::mem::size_of::<Span>()
    }
}
