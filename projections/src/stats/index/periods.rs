//! Registration periods in a caller's time zone. Each row's local registration date is
//! computed once per time zone and cached as a day number. Period keys and labels derive from
//! it with integer arithmetic.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use super::row::Stamp;
use crate::stats::slices::{period_label_of_date, Dimension};

/// How many time zones keep a day column; the least recently built one is dropped first.
const CACHED_TIME_ZONES: usize = 4;

/// Returns the local calendar date of `at` in `tz` as days from the common era
/// (`NaiveDate::num_days_from_ce`, 0001-01-01 is day 1).
pub(super) fn local_day(at: DateTime<Utc>, tz: Tz) -> i32 {
    at.with_timezone(&tz).date_naive().num_days_from_ce()
}

/// Local registration days of every row in one time zone.
#[derive(Clone, Debug)]
pub(super) struct DayColumn {
    /// By row; 0 for placeholder rows.
    pub days: Vec<i32>,
    /// The smallest and largest day of the compact rows; `min_day > max_day` when there are
    /// none.
    pub min_day: i32,
    pub max_day: i32,
}

impl DayColumn {
    fn empty() -> DayColumn {
        DayColumn {
            days: Vec::new(),
            min_day: i32::MAX,
            max_day: i32::MIN,
        }
    }

    /// Builds the column of `tz` from the registration stamps; `None` marks a placeholder row.
    fn build(registered: impl Iterator<Item = Option<Stamp>>, tz: Tz) -> DayColumn {
        let mut column = DayColumn::empty();
        for (row, stamp) in registered.enumerate() {
            column.set(row, stamp, tz);
        }
        column
    }

    /// Sets the day of `row`. A row may be added only right after the last one.
    fn set(&mut self, row: usize, registered_at: Option<Stamp>, tz: Tz) {
        let day = match registered_at {
            Some(stamp) => {
                let day = local_day(DateTime::from_timestamp_nanos(stamp), tz);
                self.min_day = self.min_day.min(day);
                self.max_day = self.max_day.max(day);
                day
            }
            None => 0,
        };
        if row == self.days.len() {
            self.days.push(day);
        } else {
            self.days[row] = day;
        }
    }
}

/// Day columns of the time zones queries asked for recently.
#[derive(Debug, Default)]
pub(super) struct PeriodCache {
    columns: Vec<(Tz, Arc<DayColumn>)>,
}

impl PeriodCache {
    /// Returns the column of `tz`, building it from `registered` when it is not cached.
    pub fn column(&mut self, tz: Tz, registered: impl Iterator<Item = Option<Stamp>>) -> Arc<DayColumn> {
        if let Some((_, column)) = self.columns.iter().find(|(cached, _)| *cached == tz) {
            return Arc::clone(column);
        }
        let column = Arc::new(DayColumn::build(registered, tz));
        if self.columns.len() == CACHED_TIME_ZONES {
            self.columns.remove(0);
        }
        self.columns.push((tz, Arc::clone(&column)));
        column
    }

    /// Sets the registration of `row` in every cached column.
    pub fn set(&mut self, row: usize, registered_at: Option<Stamp>) {
        for (tz, column) in &mut self.columns {
            Arc::make_mut(column).set(row, registered_at, *tz);
        }
    }

    /// Estimates the heap memory used, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|(_, column)| column.days.capacity() * std::mem::size_of::<i32>())
            .sum()
    }
}

/// Returns the number of the period of `period` that contains `day`: the day itself, the day
/// number of the week's Monday, or `year * 12 + month0`. Numbers of one period kind are
/// distinct and increase with time.
pub(super) fn period_number(day: i32, period: Dimension) -> i64 {
    match period {
        Dimension::Week => week_monday(day),
        Dimension::Month => NaiveDate::from_num_days_from_ce_opt(day)
            .map_or(i64::from(day), |date| i64::from(date.year()) * 12 + i64::from(date.month0())),
        _ => i64::from(day),
    }
}

/// Returns the day number of the Monday that starts the ISO week of `day`. Day 1 (0001-01-01
/// of the proleptic Gregorian calendar) is a Monday.
pub(super) fn week_monday(day: i32) -> i64 {
    let day = i64::from(day);
    day - (day - 1).rem_euclid(7)
}

/// Returns the label of a period number, as `period_label` gives it.
pub(super) fn period_number_label(number: i64, period: Dimension) -> String {
    let date = match period {
        Dimension::Month => {
            let year = i32::try_from(number.div_euclid(12)).ok();
            year.and_then(|year| NaiveDate::from_ymd_opt(year, number.rem_euclid(12) as u32 + 1, 1))
        }
        _ => i32::try_from(number).ok().and_then(NaiveDate::from_num_days_from_ce_opt),
    };
    date.map_or_else(|| number.to_string(), |date| period_label_of_date(date, period))
}

/// Month numbers of the days of a day column, looked up by `day - first_day`.
#[derive(Clone, Debug, Default)]
pub(super) struct MonthTable {
    first_day: i32,
    months: Vec<i64>,
}

impl MonthTable {
    /// Tabulates the days from `min_day` to `max_day`; an empty range gives an empty table.
    pub fn new(min_day: i32, max_day: i32) -> MonthTable {
        let months = (min_day..=max_day)
            .map(|day| period_number(day, Dimension::Month))
            .collect();
        MonthTable {
            first_day: min_day,
            months,
        }
    }

    /// Returns the month number of `day`.
    pub fn month(&self, day: i32) -> i64 {
        let index = i64::from(day) - i64::from(self.first_day);
        match usize::try_from(index).ok().and_then(|index| self.months.get(index)) {
            Some(month) => *month,
            None => period_number(day, Dimension::Month),
        }
    }
}
