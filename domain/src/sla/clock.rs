//! Targets, the clocks they run on, and the local-time arithmetic that turns a start instant
//! into a deadline in the building's time zone.
//!
//! A deadline is the instant at which the time runs out: work finished strictly before it is on
//! time. A day-counted target ends at 24:00 of its last day (Civil Code art. 194: an action may
//! be done until twenty-four hours of the last day), which is the first instant of the next
//! local day. Periods counted in days start on the day after the start instant (Civil Code
//! art. 191).

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::calendar::ProductionCalendar;
use super::{PolicyDataError, SlaError};

/// The maximum target length the catalogue accepts, in days. A longer target is a data error.
pub const MAX_TARGET_DAYS: u32 = 366;

const MINUTES_PER_DAY: u32 = 24 * 60;

/// The clock a target runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClockKind {
    /// 24/7 elapsed time, the same in every time zone: "1 сутки" is 24 hours.
    Continuous,
    /// Elapsed time counted only between two local times of every day, weekends and holidays
    /// included (a garbage chute is cleared only from 08:00 to 23:00).
    DailyWindow { opens: NaiveTime, closes: NaiveTime },
    /// Working days of the production calendar of the building's region, counted from the day
    /// after the start and ending at 24:00 local time of the last one.
    WorkingDays,
    /// Calendar days counted from the day after the start, ending at 24:00 local time of the
    /// last one. When the last day is not a working day, the next working day becomes the last
    /// (Civil Code art. 193).
    CalendarDays,
}

/// An SLA target: an amount on a clock. The amount is minutes on the elapsed-time clocks
/// (`Continuous`, `DailyWindow`) and days on the day clocks (`WorkingDays`, `CalendarDays`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    clock: ClockKind,
    amount: u32,
}

impl Target {
    /// Creates a 24/7 target of `minutes` minutes.
    pub fn minutes(minutes: u32) -> Result<Target, PolicyDataError> {
        Target::new(ClockKind::Continuous, minutes)
    }

    /// Creates a 24/7 target of `hours` hours.
    pub fn hours(hours: u32) -> Result<Target, PolicyDataError> {
        Target::minutes(checked_minutes(hours, 60)?)
    }

    /// Creates a 24/7 target of `days` whole 24-hour days ("сутки").
    pub fn days(days: u32) -> Result<Target, PolicyDataError> {
        Target::minutes(checked_minutes(days, MINUTES_PER_DAY)?)
    }

    /// Creates a target of `minutes` counted only between `opens` and `closes` local time.
    pub fn within_daily_window(minutes: u32, opens: NaiveTime, closes: NaiveTime) -> Result<Target, PolicyDataError> {
        if opens >= closes {
            return Err(PolicyDataError::InvalidTarget {
                reason: format!(
                    "the daily window opens at {opens} but closes at {closes}; it must close later the same day"
                ),
            });
        }
        Target::new(ClockKind::DailyWindow { opens, closes }, minutes)
    }

    /// Creates a target of `days` working days.
    pub fn working_days(days: u32) -> Result<Target, PolicyDataError> {
        Target::new(ClockKind::WorkingDays, days)
    }

    /// Creates a target of `days` calendar days.
    pub fn calendar_days(days: u32) -> Result<Target, PolicyDataError> {
        Target::new(ClockKind::CalendarDays, days)
    }

    fn new(clock: ClockKind, amount: u32) -> Result<Target, PolicyDataError> {
        let (limit, unit) = match clock {
            ClockKind::Continuous | ClockKind::DailyWindow { .. } => (MAX_TARGET_DAYS * MINUTES_PER_DAY, "minutes"),
            ClockKind::WorkingDays | ClockKind::CalendarDays => (MAX_TARGET_DAYS, "days"),
        };
        if amount == 0 || amount > limit {
            return Err(PolicyDataError::InvalidTarget { reason: format!("{amount} {unit} is outside 1..={limit}") });
        }
        Ok(Target { clock, amount })
    }

    pub fn clock(&self) -> ClockKind {
        self.clock
    }

    /// Returns the amount: minutes on the elapsed-time clocks, days on the day clocks.
    pub fn amount(&self) -> u32 {
        self.amount
    }

    /// Computes the deadline of a clock started at `start` for a building in `zone` and
    /// `region`. Only the day clocks consult the calendar, so only they can fail with
    /// [`SlaError::CalendarOutOfRange`].
    pub fn deadline_from(
        &self,
        start: DateTime<Utc>,
        zone: Tz,
        calendar: &ProductionCalendar,
        region: Option<&str>,
    ) -> Result<DateTime<Utc>, SlaError> {
        let start_date = start.with_timezone(&zone).date_naive();
        match self.clock {
            ClockKind::Continuous => Ok(start + Duration::minutes(self.amount.into())),
            ClockKind::DailyWindow { opens, closes } => daily_window_deadline(start, self.amount, opens, closes, zone),
            ClockKind::WorkingDays => {
                let last_day = calendar.add_working_days(start_date, self.amount, region)?;
                end_of_local_day(zone, last_day)
            }
            ClockKind::CalendarDays => {
                let nominal_last_day = start_date + Duration::days(self.amount.into());
                let last_day = calendar.working_day_on_or_after(nominal_last_day, region)?;
                end_of_local_day(zone, last_day)
            }
        }
    }
}

fn checked_minutes(amount: u32, minutes_per_unit: u32) -> Result<u32, PolicyDataError> {
    amount.checked_mul(minutes_per_unit).ok_or_else(|| PolicyDataError::InvalidTarget {
        reason: format!("{amount} × {minutes_per_unit} minutes overflows"),
    })
}

/// Parses an IANA time zone name such as `Europe/Moscow`.
pub fn parse_time_zone(name: &str) -> Result<Tz, SlaError> {
    Tz::from_str(name).map_err(|_| SlaError::UnknownTimeZone { time_zone: name.to_string() })
}

/// Returns the earliest instant whose local time in `zone` is `local` or later. That is the
/// earlier of two instants when a clock change repeats `local`, and the end of the gap when a
/// clock change skips it.
pub fn first_instant_at_or_after(zone: Tz, local: NaiveDateTime) -> Result<DateTime<Utc>, SlaError> {
    if let Some(instant) = zone.from_local_datetime(&local).earliest() {
        return Ok(instant.with_timezone(&Utc));
    }

    // `local` falls into a gap. Gaps in modern tz data are whole minutes, at most a day long
    // (Pacific/Apia skipped 30 December 2011), so the first local minute that exists after
    // `local` is the end of the gap. Searching two days leaves a margin.
    for minutes_later in 1..=2 * MINUTES_PER_DAY {
        let candidate = local + Duration::minutes(minutes_later.into());
        if let Some(instant) = zone.from_local_datetime(&candidate).earliest() {
            return Ok(instant.with_timezone(&Utc));
        }
    }
    Err(SlaError::UnrepresentableLocalTime { time_zone: zone.name().to_string(), local })
}

/// Returns the end of local day `date` in `zone` (24:00, the first instant of the next day).
pub fn end_of_local_day(zone: Tz, date: NaiveDate) -> Result<DateTime<Utc>, SlaError> {
    let next_day = date.succ_opt().ok_or(SlaError::CalendarOutOfRange { date })?;
    first_instant_at_or_after(zone, next_day.and_time(NaiveTime::MIN))
}

/// Counts `minutes` of elapsed time from `start`, only inside `[opens, closes)` local time of
/// each day. The window's ends are mapped with [`first_instant_at_or_after`], so a window cut by
/// a clock change loses or gains that hour.
fn daily_window_deadline(
    start: DateTime<Utc>,
    minutes: u32,
    opens: NaiveTime,
    closes: NaiveTime,
    zone: Tz,
) -> Result<DateTime<Utc>, SlaError> {
    let mut remaining = Duration::minutes(minutes.into());
    let mut day = start.with_timezone(&zone).date_naive();
    loop {
        let window_start = first_instant_at_or_after(zone, day.and_time(opens))?.max(start);
        let window_end = first_instant_at_or_after(zone, day.and_time(closes))?;
        if window_start < window_end {
            let available = window_end - window_start;
            if available >= remaining {
                return Ok(window_start + remaining);
            }
            remaining -= available;
        }
        day = day.succ_opt().ok_or(SlaError::CalendarOutOfRange { date: day })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::calendar::test_calendar::{date, russian_calendar};
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("test instant").with_timezone(&Utc)
    }

    fn zone(name: &str) -> Tz {
        parse_time_zone(name).expect("test zone")
    }

    fn time(text: &str) -> NaiveTime {
        NaiveTime::parse_from_str(text, "%H:%M").expect("test time")
    }

    #[test]
    fn unknown_time_zone_is_rejected() {
        assert_eq!(
            parse_time_zone("Europe/Kazan"),
            Err(SlaError::UnknownTimeZone { time_zone: "Europe/Kazan".to_string() })
        );
    }

    #[test]
    fn targets_reject_zero_and_oversized_amounts() {
        assert_eq!(Target::minutes(0).map_err(|error| error.code()), Err("INVALID_TARGET"));
        assert_eq!(Target::working_days(367).map_err(|error| error.code()), Err("INVALID_TARGET"));
        assert_eq!(Target::days(u32::MAX).map_err(|error| error.code()), Err("INVALID_TARGET"));
        assert_eq!(
            Target::within_daily_window(120, time("23:00"), time("08:00")).map_err(|error| error.code()),
            Err("INVALID_TARGET")
        );
        assert_eq!(Target::days(3).map(|target| target.amount()), Ok(3 * 24 * 60));
    }

    #[test]
    fn working_days_end_at_local_midnight() {
        let calendar = russian_calendar();
        let target = Target::working_days(10).expect("target");
        // Registered on Monday 29 December 2025 in Moscow. 30 December counts, then the New Year
        // break is skipped, then 12–22 January count, so the time runs out at 24:00 MSK on 22 January.
        let deadline = target.deadline_from(utc("2025-12-29T07:00:00Z"), zone("Europe/Moscow"), &calendar, None);
        assert_eq!(deadline, Ok(utc("2026-01-22T21:00:00Z")));
    }

    #[test]
    fn working_days_use_the_local_date() {
        let calendar = russian_calendar();
        let target = Target::working_days(1).expect("target");
        // 22:30 UTC on Thursday 19 March is already Friday 20 March in Barnaul (UTC+7).
        let deadline = target.deadline_from(utc("2026-03-19T22:30:00Z"), zone("Asia/Barnaul"), &calendar, None);
        assert_eq!(deadline, Ok(utc("2026-03-23T17:00:00Z")));
    }

    #[test]
    fn calendar_days_move_off_a_day_off() {
        let calendar = russian_calendar();
        let target = Target::calendar_days(1).expect("target");
        // Friday → Saturday is not a working day, so the time runs out at the end of Monday.
        let friday = utc("2026-03-13T09:00:00Z");
        assert_eq!(
            target.deadline_from(friday, zone("Europe/Moscow"), &calendar, None),
            Ok(utc("2026-03-16T21:00:00Z"))
        );
        let tuesday = utc("2026-03-17T09:00:00Z");
        assert_eq!(
            target.deadline_from(tuesday, zone("Europe/Moscow"), &calendar, None),
            Ok(utc("2026-03-18T21:00:00Z"))
        );
    }

    #[test]
    fn daily_window_carries_over_to_next_morning() {
        let calendar = russian_calendar();
        let moscow = zone("Europe/Moscow");
        let target = Target::within_daily_window(120, time("08:00"), time("23:00")).expect("target");
        let cases = [
            // 22:30 MSK: 30 minutes tonight, 90 minutes from 08:00, so 09:30 MSK.
            ("2026-03-19T19:30:00Z", "2026-03-20T06:30:00Z"),
            // 01:00 MSK: the clock starts at 08:00, so 10:00 MSK.
            ("2026-03-19T22:00:00Z", "2026-03-20T07:00:00Z"),
            // 12:00 MSK: inside the window, so 14:00 MSK.
            ("2026-03-19T09:00:00Z", "2026-03-19T11:00:00Z"),
            // 23:00 MSK exactly: the window has closed, so 10:00 MSK next day.
            ("2026-03-19T20:00:00Z", "2026-03-20T07:00:00Z"),
        ];
        for (start, expected) in cases {
            assert_eq!(target.deadline_from(utc(start), moscow, &calendar, None), Ok(utc(expected)), "start {start}");
        }
    }

    #[test]
    fn end_of_day_skips_a_midnight_gap() {
        // Chile moves its clocks from 00:00 to 01:00 on Sunday 6 September 2026: local midnight
        // does not exist, and the day ends when the clocks jump, at 04:00 UTC.
        let santiago = zone("America/Santiago");
        let end = end_of_local_day(santiago, date("2026-09-05")).expect("end of day");
        assert_eq!(end, utc("2026-09-06T04:00:00Z"));
        assert_eq!(end.with_timezone(&santiago).time(), time("01:00"));
    }

    #[test]
    fn end_of_day_takes_earlier_repeated_midnight() {
        // Cuba moves its clocks from 01:00 back to 00:00 on Sunday 1 November 2026, so local
        // midnight happens twice; 31 October ends the first time, at 00:00 CDT (04:00 UTC).
        let havana = zone("America/Havana");
        let end = end_of_local_day(havana, date("2026-10-31")).expect("end of day");
        assert_eq!(end, utc("2026-11-01T04:00:00Z"));
    }

    #[test]
    fn end_of_day_after_repeated_hour() {
        // Chile moves its clocks from 24:00 back to 23:00 on Saturday 4 April 2026, so the last
        // hour of that day happens twice and the day ends at 00:00 -04 (04:00 UTC).
        let santiago = zone("America/Santiago");
        let end = end_of_local_day(santiago, date("2026-04-04")).expect("end of day");
        assert_eq!(end, utc("2026-04-05T04:00:00Z"));
    }

    #[test]
    fn working_days_across_berlin_spring_forward() {
        let calendar = russian_calendar();
        let berlin = zone("Europe/Berlin");
        let target = Target::working_days(1).expect("target");
        // Friday 27 March 2026 in CET; the clocks move forward on Sunday 29 March, and Monday
        // 30 March ends at 24:00 CEST, which is 22:00 UTC.
        let deadline = target.deadline_from(utc("2026-03-27T09:00:00Z"), berlin, &calendar, None);
        assert_eq!(deadline, Ok(utc("2026-03-30T22:00:00Z")));
    }

    #[test]
    fn continuous_day_across_new_york_fall_back() {
        let calendar = russian_calendar();
        let new_york = zone("America/New_York");
        let target = Target::days(1).expect("target");
        // 12:00 EDT on 31 October 2026; the clocks fall back on 1 November, so 24 hours later it
        // is 11:00 EST local time.
        let start = utc("2026-10-31T16:00:00Z");
        let deadline = target.deadline_from(start, new_york, &calendar, None).expect("deadline");
        assert_eq!(deadline, utc("2026-11-01T16:00:00Z"));
        assert_eq!(deadline.with_timezone(&new_york).time(), time("11:00"));
    }

    const ZONES: [&str; 9] = [
        "Europe/Moscow",
        "Asia/Barnaul",
        "Europe/Berlin",
        "America/New_York",
        "America/Santiago",
        "America/Havana",
        "Asia/Beirut",
        "Australia/Lord_Howe",
        "Pacific/Apia",
    ];

    fn any_zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(ZONES.to_vec()).prop_map(zone)
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // From 2025-01-01 to about 2027-10-25, leaving room for day targets before 2028.
        let first = utc("2025-01-01T00:00:00Z").timestamp();
        (0i64..86_000_000).prop_map(move |offset| DateTime::from_timestamp(first + offset, 0).expect("instant"))
    }

    fn day_target() -> impl Strategy<Value = Target> {
        prop_oneof![
            (1u32..30).prop_map(|days| Target::working_days(days).expect("target")),
            (1u32..40).prop_map(|days| Target::calendar_days(days).expect("target")),
        ]
    }

    fn any_target() -> impl Strategy<Value = Target> {
        prop_oneof![
            day_target(),
            (1u32..20_000).prop_map(|minutes| Target::minutes(minutes).expect("target")),
            (1u32..600).prop_map(|minutes| {
                Target::within_daily_window(
                    minutes,
                    NaiveTime::from_hms_opt(8, 0, 0).expect("time"),
                    NaiveTime::from_hms_opt(23, 0, 0).expect("time"),
                )
                .expect("target")
            }),
        ]
    }

    proptest! {
        #[test]
        fn continuous_target_is_exact_elapsed_time(start in instant(), minutes in 1u32..100_000, zone in any_zone()) {
            let calendar = russian_calendar();
            let target = Target::minutes(minutes).expect("target");
            let deadline = target.deadline_from(start, zone, &calendar, Some("RU-TA")).expect("deadline");
            prop_assert_eq!(deadline - start, Duration::minutes(minutes.into()));
        }

        #[test]
        fn end_of_day_starts_next_day(day_offset in 0i64..1090, zone in any_zone()) {
            let day = date("2025-01-01") + Duration::days(day_offset);
            let end = end_of_local_day(zone, day).expect("end of day");
            let just_before = end - Duration::seconds(1);
            prop_assert!(end.with_timezone(&zone).date_naive() > day);
            prop_assert!(just_before.with_timezone(&zone).date_naive() <= day);
        }

        #[test]
        fn day_target_ends_local_midnight(
            start in instant(),
            target in day_target(),
            zone in any_zone(),
            region in prop::sample::select(vec![None, Some("RU-TA")]),
        ) {
            let calendar = russian_calendar();
            let deadline = target.deadline_from(start, zone, &calendar, region).expect("deadline");
            let last_day = (deadline - Duration::seconds(1)).with_timezone(&zone).date_naive();
            let start_day = start.with_timezone(&zone).date_naive();
            prop_assert_eq!(end_of_local_day(zone, last_day), Ok(deadline));
            prop_assert_eq!(calendar.is_working_day(last_day, region), Ok(true));
            prop_assert!(last_day > start_day);
            if target.clock() == ClockKind::WorkingDays {
                prop_assert_eq!(calendar.working_days_between(start_day, last_day, region), Ok(target.amount()));
            }
        }

        #[test]
        fn deadlines_are_monotonic_in_start(
            start in instant(),
            later_by in 0i64..400_000,
            target in any_target(),
            zone in any_zone(),
        ) {
            let calendar = russian_calendar();
            let later = start + Duration::seconds(later_by);
            let first = target.deadline_from(start, zone, &calendar, Some("RU-TA")).expect("deadline");
            let second = target.deadline_from(later, zone, &calendar, Some("RU-TA")).expect("deadline");
            prop_assert!(first <= second, "{:?}: {} -> {}, {} -> {}", target, start, first, later, second);
            prop_assert!(first > start);
        }
    }
}
