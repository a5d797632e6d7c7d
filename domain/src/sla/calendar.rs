//! The Russian production calendar (производственный календарь) for a five-day week: federal
//! holidays and transferred days off, plus regional overlays such as Tatarstan's days off.
//!
//! A date is a day off if the federal layer or the building's regional layer lists it as a day
//! off (`holiday`, `transferred_day_off` or `expected_holiday`), or if it is a Saturday or Sunday
//! that no layer lists as `working_weekend`. Every other date is a working day; a `shortened`
//! day is still a working day. The calendar covers whole years and returns
//! [`SlaError::CalendarOutOfRange`] outside them instead of guessing.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use super::{PolicyDataError, SlaError};

/// The kind of a listed calendar day, as the data files name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// A non-working holiday (Labour Code art. 112, or a regional law), listed even on a weekend.
    Holiday,
    /// A weekday that is a day off because a day off was moved onto it.
    TransferredDayOff,
    /// A Saturday or Sunday that is a working day because its day off was moved elsewhere.
    WorkingWeekend,
    /// A working day one hour shorter before a holiday (Labour Code art. 95).
    Shortened,
    /// A regional holiday forecast before the act that sets it; a day off until the data changes.
    ExpectedHoliday,
}

impl DayKind {
    pub const ALL: [DayKind; 5] = [
        DayKind::Holiday,
        DayKind::TransferredDayOff,
        DayKind::WorkingWeekend,
        DayKind::Shortened,
        DayKind::ExpectedHoliday,
    ];

    /// Returns the snake_case name used in the data files.
    pub fn as_str(self) -> &'static str {
        match self {
            DayKind::Holiday => "holiday",
            DayKind::TransferredDayOff => "transferred_day_off",
            DayKind::WorkingWeekend => "working_weekend",
            DayKind::Shortened => "shortened",
            DayKind::ExpectedHoliday => "expected_holiday",
        }
    }

    /// Parses the snake_case name; `None` for an unknown kind.
    pub fn parse(name: &str) -> Option<DayKind> {
        DayKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Tells whether a day of this kind is a day off.
    pub fn is_day_off(self) -> bool {
        matches!(self, DayKind::Holiday | DayKind::TransferredDayOff | DayKind::ExpectedHoliday)
    }
}

impl fmt::Display for DayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The listed days of one layer (federal, or one region): the kinds given for each date.
#[derive(Clone, Debug, Default)]
struct DayTable {
    days: BTreeMap<NaiveDate, Vec<DayKind>>,
}

impl DayTable {
    fn insert(&mut self, date: NaiveDate, kind: DayKind, region: Option<&str>) -> Result<(), PolicyDataError> {
        let kinds = self.days.entry(date).or_default();
        if kinds.contains(&kind) {
            return Err(PolicyDataError::DuplicateDay { date, kind, region: region.map(str::to_string) });
        }

        // A day off excludes every other kind on the same date. Two working kinds may share one,
        // as a working Saturday that is also shortened does.
        if let Some(&existing) = kinds.iter().find(|existing| existing.is_day_off() || kind.is_day_off()) {
            return Err(PolicyDataError::ConflictingDay {
                date,
                first: existing,
                second: kind,
                region: region.map(str::to_string),
            });
        }

        kinds.push(kind);
        Ok(())
    }

    fn lists(&self, date: NaiveDate, predicate: impl Fn(DayKind) -> bool) -> bool {
        self.days.get(&date).is_some_and(|kinds| kinds.iter().any(|&kind| predicate(kind)))
    }
}

/// Federal working days and days off for a range of whole years, with regional overlays keyed
/// by ISO 3166-2 code. Built from data by the `fixtures` loader.
#[derive(Clone, Debug)]
pub struct ProductionCalendar {
    first_year: i32,
    last_year: i32,
    federal: DayTable,
    regional: BTreeMap<String, DayTable>,
}

impl ProductionCalendar {
    /// Creates an empty calendar for the years `first_year..=last_year`: until days are added,
    /// every Monday to Friday is a working day.
    pub fn new(first_year: i32, last_year: i32) -> Result<ProductionCalendar, PolicyDataError> {
        if first_year > last_year {
            return Err(PolicyDataError::InvalidCalendarYears { first_year, last_year });
        }
        Ok(ProductionCalendar { first_year, last_year, federal: DayTable::default(), regional: BTreeMap::new() })
    }

    /// Adds a federal day. Rejects dates outside the calendar's years, duplicates, a day off
    /// combined with another kind, and kinds on the wrong weekday.
    pub fn add_federal_day(&mut self, date: NaiveDate, kind: DayKind) -> Result<(), PolicyDataError> {
        self.check_date(date, kind)?;
        self.federal.insert(date, kind, None)
    }

    /// Adds a day of a regional overlay (`region` is an ISO 3166-2 code such as `RU-TA`), with
    /// the same checks as [`add_federal_day`](Self::add_federal_day).
    pub fn add_regional_day(&mut self, region: &str, date: NaiveDate, kind: DayKind) -> Result<(), PolicyDataError> {
        if !is_region_code(region) {
            return Err(PolicyDataError::InvalidRegionCode { region: region.to_string() });
        }
        self.check_date(date, kind)?;
        self.regional.entry(region.to_string()).or_default().insert(date, kind, Some(region))
    }

    pub fn first_year(&self) -> i32 {
        self.first_year
    }

    pub fn last_year(&self) -> i32 {
        self.last_year
    }

    /// Tells whether the calendar has data for the date's year.
    pub fn covers(&self, date: NaiveDate) -> bool {
        (self.first_year..=self.last_year).contains(&date.year())
    }

    /// Returns the codes of the regions that have an overlay.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regional.keys().map(String::as_str)
    }

    /// Tells whether `date` is a working day in `region`. A region without an overlay, and a
    /// building with no region, get the federal calendar alone; region codes match ignoring case.
    pub fn is_working_day(&self, date: NaiveDate, region: Option<&str>) -> Result<bool, SlaError> {
        if !self.covers(date) {
            return Err(SlaError::CalendarOutOfRange { date });
        }

        let overlay = region.and_then(|region| self.overlay(region));
        let listed = |predicate: fn(DayKind) -> bool| {
            self.federal.lists(date, predicate) || overlay.is_some_and(|table| table.lists(date, predicate))
        };

        if listed(DayKind::is_day_off) {
            return Ok(false);
        }
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Ok(listed(|kind| kind == DayKind::WorkingWeekend));
        }
        Ok(true)
    }

    /// Returns the `days`-th working day after `date` (the count starts the next day, so `date`
    /// itself never counts), or `date` itself when `days` is 0.
    pub fn add_working_days(&self, date: NaiveDate, days: u32, region: Option<&str>) -> Result<NaiveDate, SlaError> {
        let mut current = date;
        let mut remaining = days;
        while remaining > 0 {
            current = next_date(current)?;
            if self.is_working_day(current, region)? {
                remaining -= 1;
            }
        }
        Ok(current)
    }

    /// Counts the working days after `from` up to and including `to`; 0 when `to` is not later.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate, region: Option<&str>) -> Result<u32, SlaError> {
        let mut count = 0;
        let mut current = from;
        while current < to {
            current = next_date(current)?;
            if self.is_working_day(current, region)? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Returns `date` if it is a working day, else the next working day after it.
    pub fn working_day_on_or_after(&self, date: NaiveDate, region: Option<&str>) -> Result<NaiveDate, SlaError> {
        let mut current = date;
        while !self.is_working_day(current, region)? {
            current = next_date(current)?;
        }
        Ok(current)
    }

    fn overlay(&self, region: &str) -> Option<&DayTable> {
        self.regional.iter().find(|(code, _)| code.eq_ignore_ascii_case(region)).map(|(_, table)| table)
    }

    fn check_date(&self, date: NaiveDate, kind: DayKind) -> Result<(), PolicyDataError> {
        if !self.covers(date) {
            return Err(PolicyDataError::DateOutsideCalendar {
                date,
                first_year: self.first_year,
                last_year: self.last_year,
            });
        }

        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let wrong_weekday = match kind {
            DayKind::WorkingWeekend => !weekend,
            DayKind::TransferredDayOff => weekend,
            DayKind::Holiday | DayKind::Shortened | DayKind::ExpectedHoliday => false,
        };
        if wrong_weekday {
            return Err(PolicyDataError::KindOnWrongWeekday { date, weekday: date.weekday(), kind });
        }
        Ok(())
    }
}

fn next_date(date: NaiveDate) -> Result<NaiveDate, SlaError> {
    date.succ_opt().ok_or(SlaError::CalendarOutOfRange { date })
}

/// Checks the shape of an ISO 3166-2 code: two capital letters, a hyphen, then one to three
/// capital letters or digits (`RU-TA`, `RU-MOW`, `US-NY`).
fn is_region_code(code: &str) -> bool {
    let Some((country, subdivision)) = code.split_once('-') else {
        return false;
    };
    country.len() == 2
        && country.bytes().all(|byte| byte.is_ascii_uppercase())
        && (1..=3).contains(&subdivision.len())
        && subdivision.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
}

/// The calendar data of the `fixtures` crate, parsed with a minimal reader so that domain tests
/// check the arithmetic against the real 2025–2027 calendar.
#[cfg(test)]
pub(crate) mod test_calendar {
    use super::*;

    const FEDERAL_CSV: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/calendars/ru-production-calendar.csv"));
    const REGIONAL_CSV: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/calendars/ru-regional-holidays.csv"));

    pub(crate) fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
    }

    /// Builds the 2025–2027 calendar with every regional overlay of the data files.
    pub(crate) fn russian_calendar() -> ProductionCalendar {
        let mut calendar = ProductionCalendar::new(2025, 2027).expect("years");
        for line in FEDERAL_CSV.lines().skip(1) {
            let fields: Vec<&str> = line.splitn(4, ',').collect();
            let kind = DayKind::parse(fields[1]).expect("federal kind");
            calendar.add_federal_day(date(fields[0]), kind).expect("federal row");
        }
        for line in REGIONAL_CSV.lines().skip(1) {
            let fields: Vec<&str> = line.splitn(5, ',').collect();
            let kind = DayKind::parse(fields[2]).expect("regional kind");
            calendar.add_regional_day(fields[0], date(fields[1]), kind).expect("regional row");
        }
        calendar
    }
}

#[cfg(test)]
mod tests {
    use super::test_calendar::{date, russian_calendar};
    use super::*;
    use proptest::prelude::*;

    const KAZAN: Option<&str> = Some("RU-TA");
    const MOSCOW: Option<&str> = Some("RU-MOW");

    fn working_days_in_year(calendar: &ProductionCalendar, year: i32, region: Option<&str>) -> u32 {
        let first = NaiveDate::from_ymd_opt(year, 1, 1).expect("first day");
        let last = NaiveDate::from_ymd_opt(year, 12, 31).expect("last day");
        let before_first = first.pred_opt().expect("day before");
        // The day before 1 January lies outside the calendar, but counting starts after it.
        calendar.working_days_between(before_first, last, region).expect("count")
    }

    #[test]
    fn working_day_counts_match_published_norms() {
        let calendar = russian_calendar();
        for year in 2025..=2027 {
            assert_eq!(working_days_in_year(&calendar, year, None), 247, "federal {year}");
            assert_eq!(working_days_in_year(&calendar, year, MOSCOW), 247, "Moscow {year}");
        }
        assert_eq!(working_days_in_year(&calendar, 2025, KAZAN), 245);
        assert_eq!(working_days_in_year(&calendar, 2026, KAZAN), 244);
        assert_eq!(working_days_in_year(&calendar, 2027, KAZAN), 245);
    }

    #[test]
    fn new_year_break_2026_is_skipped() {
        let calendar = russian_calendar();
        assert_eq!(calendar.add_working_days(date("2025-12-29"), 1, None), Ok(date("2025-12-30")));
        assert_eq!(calendar.add_working_days(date("2025-12-30"), 1, None), Ok(date("2026-01-12")));
        assert_eq!(calendar.is_working_day(date("2025-12-31"), None), Ok(false));
        for day in 1..=11 {
            let text = format!("2026-01-{day:02}");
            assert_eq!(calendar.is_working_day(date(&text), None), Ok(false), "{text}");
        }
    }

    #[test]
    fn working_saturday_2025_11_01_counts() {
        let calendar = russian_calendar();
        assert_eq!(calendar.is_working_day(date("2025-11-01"), None), Ok(true));
        assert_eq!(calendar.is_working_day(date("2025-11-03"), None), Ok(false));
        assert_eq!(calendar.add_working_days(date("2025-10-31"), 1, None), Ok(date("2025-11-01")));
        assert_eq!(calendar.add_working_days(date("2025-10-31"), 2, None), Ok(date("2025-11-05")));
    }

    #[test]
    fn kazan_rests_on_uraza_bayram_2026() {
        let calendar = russian_calendar();
        assert_eq!(calendar.is_working_day(date("2026-03-20"), KAZAN), Ok(false));
        assert_eq!(calendar.is_working_day(date("2026-03-20"), MOSCOW), Ok(true));
        assert_eq!(calendar.is_working_day(date("2026-03-20"), Some("ru-ta")), Ok(false));
        assert_eq!(calendar.add_working_days(date("2026-03-19"), 1, KAZAN), Ok(date("2026-03-23")));
        assert_eq!(calendar.add_working_days(date("2026-03-19"), 1, MOSCOW), Ok(date("2026-03-20")));
    }

    #[test]
    fn shortened_day_is_working() {
        let calendar = russian_calendar();
        assert_eq!(calendar.is_working_day(date("2026-03-19"), KAZAN), Ok(true));
        assert_eq!(calendar.is_working_day(date("2026-04-30"), None), Ok(true));
    }

    #[test]
    fn expected_holiday_is_day_off() {
        let calendar = russian_calendar();
        assert_eq!(calendar.is_working_day(date("2027-03-09"), KAZAN), Ok(false));
        assert_eq!(calendar.is_working_day(date("2027-03-09"), None), Ok(true));
    }

    #[test]
    fn dates_outside_years_are_rejected() {
        let calendar = russian_calendar();
        assert_eq!(
            calendar.is_working_day(date("2028-01-03"), None),
            Err(SlaError::CalendarOutOfRange { date: date("2028-01-03") })
        );
        assert_eq!(
            calendar.add_working_days(date("2027-12-30"), 2, None),
            Err(SlaError::CalendarOutOfRange { date: date("2028-01-01") })
        );
        assert_eq!(
            calendar.is_working_day(date("2024-12-31"), None),
            Err(SlaError::CalendarOutOfRange { date: date("2024-12-31") })
        );
    }

    #[test]
    fn invalid_data_is_rejected() {
        let mut calendar = ProductionCalendar::new(2026, 2026).expect("years");
        assert_eq!(
            ProductionCalendar::new(2027, 2026).map(|_| ()),
            Err(PolicyDataError::InvalidCalendarYears { first_year: 2027, last_year: 2026 })
        );
        assert_eq!(
            calendar.add_federal_day(date("2025-12-31"), DayKind::Holiday).map_err(|error| error.code()),
            Err("DATE_OUTSIDE_CALENDAR")
        );
        assert_eq!(
            calendar.add_federal_day(date("2026-03-18"), DayKind::WorkingWeekend).map_err(|error| error.code()),
            Err("DAY_KIND_ON_WRONG_WEEKDAY")
        );
        assert_eq!(
            calendar.add_federal_day(date("2026-03-21"), DayKind::TransferredDayOff).map_err(|error| error.code()),
            Err("DAY_KIND_ON_WRONG_WEEKDAY")
        );
        assert_eq!(
            calendar.add_regional_day("Tatarstan", date("2026-03-20"), DayKind::Holiday).map_err(|error| error.code()),
            Err("INVALID_REGION_CODE")
        );

        calendar.add_federal_day(date("2026-01-01"), DayKind::Holiday).expect("first holiday");
        assert_eq!(
            calendar.add_federal_day(date("2026-01-01"), DayKind::Holiday).map_err(|error| error.code()),
            Err("DUPLICATE_CALENDAR_DAY")
        );
        assert_eq!(
            calendar.add_federal_day(date("2026-01-01"), DayKind::Shortened).map_err(|error| error.code()),
            Err("CONFLICTING_CALENDAR_DAY")
        );
    }

    #[test]
    fn working_saturday_may_also_be_shortened() {
        let mut calendar = ProductionCalendar::new(2027, 2027).expect("years");
        calendar.add_federal_day(date("2027-02-20"), DayKind::WorkingWeekend).expect("working Saturday");
        calendar.add_federal_day(date("2027-02-20"), DayKind::Shortened).expect("shortened Saturday");
        assert_eq!(calendar.is_working_day(date("2027-02-20"), None), Ok(true));
    }

    #[test]
    fn day_kind_names_round_trip() {
        for kind in DayKind::ALL {
            assert_eq!(DayKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(DayKind::parse("day_off"), None);
    }

    fn calendar_date() -> impl Strategy<Value = NaiveDate> {
        // Start dates leave room for 40 working days before the calendar ends.
        dates_until("2027-10-31")
    }

    fn dates_until(last: &str) -> impl Strategy<Value = NaiveDate> {
        let first = date("2025-01-01");
        let span = (date(last) - first).num_days();
        (0..=span).prop_map(move |offset| first + chrono::Duration::days(offset))
    }

    fn region() -> impl Strategy<Value = Option<&'static str>> {
        prop::sample::select(vec![None, Some("RU-TA"), Some("RU-MOW"), Some("RU-CE"), Some("RU-AL"), Some("RU-KO")])
    }

    proptest! {
        #[test]
        fn add_working_days_lands_on_working_day(start in calendar_date(), days in 1u32..40, region in region()) {
            let calendar = russian_calendar();
            let end = calendar.add_working_days(start, days, region).expect("in range");
            prop_assert!(end > start);
            prop_assert_eq!(calendar.is_working_day(end, region), Ok(true));
        }

        #[test]
        fn counting_back_returns_added_days(start in calendar_date(), days in 0u32..40, region in region()) {
            let calendar = russian_calendar();
            let end = calendar.add_working_days(start, days, region).expect("in range");
            prop_assert_eq!(calendar.working_days_between(start, end, region), Ok(days));
        }

        #[test]
        fn add_working_days_is_monotonic(
            // Room for 29 more days and then 29 working days, past the New Year holidays too.
            start in dates_until("2027-10-01"),
            later_by in 0i64..30,
            days in 1u32..30,
            region in region(),
        ) {
            let calendar = russian_calendar();
            let later = start + chrono::Duration::days(later_by);
            let first_end = calendar.add_working_days(start, days, region).expect("in range");
            let second_end = calendar.add_working_days(later, days, region).expect("in range");
            prop_assert!(first_end <= second_end);
        }

        #[test]
        fn regional_overlay_only_removes_working_days(day in calendar_date()) {
            let calendar = russian_calendar();
            let federal = calendar.is_working_day(day, None).expect("in range");
            for region in ["RU-TA", "RU-CE", "RU-AL"] {
                let regional = calendar.is_working_day(day, Some(region)).expect("in range");
                prop_assert!(!regional || federal, "{} works on {} but the federal calendar rests", region, day);
            }
            prop_assert_eq!(calendar.is_working_day(day, MOSCOW), Ok(federal));
        }
    }
}
