//! Results of recent SLA statistics queries, valid until the index next changes, so that
//! dashboards that repeat a query between two projection batches get the stored result.
//!
//! Overdue counters are not cached: live counters ask at the current time, which never repeats,
//! and would only push other results out.

use std::collections::{HashMap, VecDeque};

use chrono_tz::Tz;

use crate::stats::sla::SlaStatsRow;
use crate::stats::slices::{Dimension, StatsFilter};

/// How many results the index keeps by default.
pub(super) const DEFAULT_CAPACITY: usize = 64;

/// The arguments of an SLA statistics query: the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Question {
    pub group_by: Vec<Dimension>,
    pub filter: StatsFilter,
    pub tz: Tz,
}

type Answer = Vec<SlaStatsRow>;

/// Results by question, dropped oldest first beyond the capacity.
#[derive(Debug)]
pub(super) struct ResultCache {
    capacity: usize,
    answers: HashMap<Question, Answer>,
    order: VecDeque<Question>,
}

impl ResultCache {
    pub fn new(capacity: usize) -> ResultCache {
        ResultCache {
            capacity,
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, question: &Question) -> Option<&Answer> {
        self.answers.get(question)
    }

    pub fn insert(&mut self, question: Question, answer: Answer) {
        if self.capacity == 0 || self.answers.contains_key(&question) {
            return;
        }
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
        self.order.push_back(question.clone());
        self.answers.insert(question, answer);
    }

    /// Drops every result. The index calls it whenever it changes.
    pub fn clear(&mut self) {
        self.answers.clear();
        self.order.clear();
    }

    /// Sets how many results to keep. Capacity 0 turns the cache off.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.order.len() > capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
    }
}
