//! The SLA catalogue of one jurisdiction: category rules with targets, legal basis, effective
//! dates and a winter variant, together with the production calendar they count on.
//!
//! A category may have several rows: an amended rule is a new row with a later
//! `effective_from`, so tickets registered before the amendment keep their deadlines. The row in
//! force, and the season, are chosen by the local date of the instant the clock starts, in the
//! building's time zone.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::calendar::ProductionCalendar;
use super::clock::parse_time_zone;
use super::{PolicyDataError, SlaError};
use crate::values::{BuildingRef, Deadlines, Priority};

pub use super::clock::{ClockKind, Target};

/// The jurisdiction a catalogue belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jurisdiction {
    /// ISO 3166 code of the country or region, such as `RU`.
    pub code: String,
    /// Russian display name.
    pub name: String,
}

/// The part of the year when the winter targets apply, as an inclusive range of month and day
/// that may wrap over the new year (1 October to 30 April).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinterSeason {
    first: (u32, u32),
    last: (u32, u32),
}

impl WinterSeason {
    /// Creates a season from its first and last month and day, both inclusive.
    pub fn new(
        first_month: u32,
        first_day: u32,
        last_month: u32,
        last_day: u32,
    ) -> Result<WinterSeason, PolicyDataError> {
        for (month, day) in [(first_month, first_day), (last_month, last_day)] {
            // A leap year accepts 29 February as well.
            if NaiveDate::from_ymd_opt(2000, month, day).is_none() {
                return Err(PolicyDataError::InvalidSeasonDate { month, day });
            }
        }
        Ok(WinterSeason { first: (first_month, first_day), last: (last_month, last_day) })
    }

    /// Returns the first month and day of the season.
    pub fn first_day(&self) -> (u32, u32) {
        self.first
    }

    /// Returns the last month and day of the season.
    pub fn last_day(&self) -> (u32, u32) {
        self.last
    }

    /// Tells whether `date` falls into the season.
    pub fn contains(&self, date: NaiveDate) -> bool {
        let month_day = (date.month(), date.day());
        if self.first <= self.last {
            self.first <= month_day && month_day <= self.last
        } else {
            month_day >= self.first || month_day <= self.last
        }
    }
}

/// One row of the catalogue: a category's targets over a period of effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CategoryRule {
    /// snake_case English code, such as `roof_leak`.
    pub code: String,
    /// Russian display name.
    pub name: String,
    pub priority: Priority,
    /// Reaction target (for emergencies, localization of the accident), if the rule sets one.
    pub response: Option<Target>,
    /// Resolution target; in winter, `winter_resolution` replaces it when set.
    pub resolution: Target,
    pub winter_resolution: Option<Target>,
    /// Legal basis of the targets, such as "ПП РФ от 15.05.2013 № 416, п. 13".
    pub basis: String,
    /// Russian instruction for the executor beyond the deadline ("оградить опасную зону").
    pub note: Option<String>,
    /// First local date on which the row applies.
    pub effective_from: NaiveDate,
    /// Last local date on which the row applies (inclusive); `None` while in force.
    pub effective_to: Option<NaiveDate>,
}

impl CategoryRule {
    /// Tells whether the row applies on the local date `date`.
    pub fn is_in_force(&self, date: NaiveDate) -> bool {
        self.effective_from <= date && self.effective_to.is_none_or(|last| date <= last)
    }

    /// Returns the resolution target for the season.
    pub fn resolution_for(&self, winter: bool) -> Target {
        match (winter, self.winter_resolution) {
            (true, Some(target)) => target,
            _ => self.resolution,
        }
    }

    fn validate(&self) -> Result<(), PolicyDataError> {
        if !is_category_code(&self.code) {
            return Err(PolicyDataError::InvalidCategoryCode { code: self.code.clone() });
        }
        for (field, value) in [("name", &self.name), ("basis", &self.basis)] {
            if value.trim().is_empty() {
                return Err(PolicyDataError::EmptyField { code: self.code.clone(), field });
            }
        }
        if let Some(last) = self.effective_to.filter(|last| *last < self.effective_from) {
            return Err(PolicyDataError::InvalidEffectivePeriod {
                code: self.code.clone(),
                from: self.effective_from,
                to: last,
            });
        }
        Ok(())
    }
}

fn is_category_code(code: &str) -> bool {
    code.starts_with(|first: char| first.is_ascii_lowercase())
        && code.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

/// The rows of one category, sorted by `effective_from`.
#[derive(Clone, Debug)]
struct CategoryRows {
    code: String,
    rows: Vec<CategoryRule>,
}

impl CategoryRows {
    fn latest(&self) -> &CategoryRule {
        // A `CategoryRows` is only built with at least one row.
        &self.rows[self.rows.len() - 1]
    }
}

/// Everything a catalogue is built from.
#[derive(Clone, Debug)]
pub struct SlaCatalogueParts {
    pub jurisdiction: Jurisdiction,
    /// Code of the category for tickets whose type maps to no rule (`other`).
    pub fallback_category: String,
    pub winter: WinterSeason,
    /// Rows in display order; rows of one category may be anywhere in the list.
    pub rules: Vec<CategoryRule>,
    pub calendar: ProductionCalendar,
}

/// The SLA catalogue of a jurisdiction and the calendar it counts working days on.
#[derive(Clone, Debug)]
pub struct SlaCatalogue {
    jurisdiction: Jurisdiction,
    /// Index of the fallback category in `categories`.
    fallback_index: usize,
    winter: WinterSeason,
    categories: Vec<CategoryRows>,
    calendar: ProductionCalendar,
}

impl SlaCatalogue {
    /// Builds a catalogue. Checks each row, checks that the rows of one category share the name
    /// and the priority and do not overlap in time, and checks that the fallback category exists.
    pub fn new(parts: SlaCatalogueParts) -> Result<SlaCatalogue, PolicyDataError> {
        let mut categories: Vec<CategoryRows> = Vec::new();
        for rule in parts.rules {
            rule.validate()?;
            match categories.iter_mut().find(|category| category.code == rule.code) {
                Some(category) => category.rows.push(rule),
                None => categories.push(CategoryRows { code: rule.code.clone(), rows: vec![rule] }),
            }
        }
        for category in &mut categories {
            category.rows.sort_by_key(|row| row.effective_from);
            check_rows_agree(category)?;
        }

        let Some(fallback_index) = categories.iter().position(|category| category.code == parts.fallback_category)
        else {
            return Err(PolicyDataError::UnknownFallbackCategory { code: parts.fallback_category });
        };

        Ok(SlaCatalogue {
            jurisdiction: parts.jurisdiction,
            fallback_index,
            winter: parts.winter,
            categories,
            calendar: parts.calendar,
        })
    }

    pub fn jurisdiction(&self) -> &Jurisdiction {
        &self.jurisdiction
    }

    pub fn calendar(&self) -> &ProductionCalendar {
        &self.calendar
    }

    pub fn winter(&self) -> &WinterSeason {
        &self.winter
    }

    /// Looks up a category by its code (e.g. "roof_leak"). With several rows, returns the one
    /// with the latest `effective_from`; the name and priority are the same in every row.
    pub fn category(&self, code: &str) -> Option<&CategoryRule> {
        self.rows_of(code).map(CategoryRows::latest)
    }

    /// Returns each category once (its latest row), in the order of the data file.
    pub fn categories(&self) -> impl Iterator<Item = &CategoryRule> {
        self.categories.iter().map(CategoryRows::latest)
    }

    /// Returns every row of a category, oldest first; empty for an unknown code.
    pub fn history(&self, code: &str) -> impl Iterator<Item = &CategoryRule> {
        self.rows_of(code).into_iter().flat_map(|category| category.rows.iter())
    }

    /// Returns the category for imported tickets whose type maps to no rule.
    pub fn fallback_category(&self) -> &CategoryRule {
        self.categories[self.fallback_index].latest()
    }

    /// Returns the row of `category` in force on the local date `date`.
    pub fn rule_in_force(&self, category: &str, date: NaiveDate) -> Result<&CategoryRule, SlaError> {
        let rows =
            self.rows_of(category).ok_or_else(|| SlaError::UnknownCategory { category: category.to_string() })?;
        rows.rows
            .iter()
            .find(|row| row.is_in_force(date))
            .ok_or_else(|| SlaError::NoRuleInForce { category: category.to_string(), date })
    }

    /// Computes the deadlines of a ticket registered at `registered_at` for a building. The row
    /// and the season are those of the registration's local date in the building's time zone.
    pub fn deadlines(
        &self,
        category: &str,
        registered_at: DateTime<Utc>,
        building: &BuildingRef,
    ) -> Result<Deadlines, SlaError> {
        let start = self.clock_start(category, registered_at, building)?;
        let response = match start.rule.response {
            Some(target) => Some(start.deadline(target, self)?),
            None => None,
        };
        let resolution = start.deadline(start.rule.resolution_for(start.winter), self)?;
        Ok(Deadlines { response, resolution, basis: start.rule.basis.clone() })
    }

    /// Computes a new resolution deadline counted from `from` (used when a resident rejects
    /// completion and the ticket reopens), with the row and the season of `from`'s local date.
    pub fn resolution_deadline_from(
        &self,
        category: &str,
        from: DateTime<Utc>,
        building: &BuildingRef,
    ) -> Result<DateTime<Utc>, SlaError> {
        let start = self.clock_start(category, from, building)?;
        start.deadline(start.rule.resolution_for(start.winter), self)
    }

    fn rows_of(&self, code: &str) -> Option<&CategoryRows> {
        self.categories.iter().find(|category| category.code == code)
    }

    fn clock_start<'a>(
        &'a self,
        category: &str,
        at: DateTime<Utc>,
        building: &'a BuildingRef,
    ) -> Result<ClockStart<'a>, SlaError> {
        let zone = parse_time_zone(&building.time_zone)?;
        let local_date = at.with_timezone(&zone).date_naive();
        let rule = self.rule_in_force(category, local_date)?;
        Ok(ClockStart { at, zone, region: building.region.as_deref(), rule, winter: self.winter.contains(local_date) })
    }
}

/// A clock about to start: the instant, the building's zone and region, and the row and season
/// in force then.
struct ClockStart<'a> {
    at: DateTime<Utc>,
    zone: chrono_tz::Tz,
    region: Option<&'a str>,
    rule: &'a CategoryRule,
    winter: bool,
}

impl ClockStart<'_> {
    fn deadline(&self, target: Target, catalogue: &SlaCatalogue) -> Result<DateTime<Utc>, SlaError> {
        target.deadline_from(self.at, self.zone, &catalogue.calendar, self.region)
    }
}

fn check_rows_agree(category: &CategoryRows) -> Result<(), PolicyDataError> {
    let first = &category.rows[0];
    for row in &category.rows[1..] {
        if row.name != first.name {
            return Err(PolicyDataError::InconsistentCategory { code: category.code.clone(), field: "name" });
        }
        if row.priority != first.priority {
            return Err(PolicyDataError::InconsistentCategory { code: category.code.clone(), field: "priority" });
        }
    }

    for pair in category.rows.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        let earlier_still_in_force = earlier.effective_to.is_none_or(|last| last >= later.effective_from);
        if earlier_still_in_force {
            return Err(PolicyDataError::OverlappingRules {
                code: category.code.clone(),
                first: earlier.effective_from,
                second: later.effective_from,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::calendar::test_calendar::{date, russian_calendar};
    use chrono::Duration;
    use proptest::prelude::*;

    const BASIS_416: &str = "ПП РФ от 15.05.2013 № 416, п. 13";

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("test instant").with_timezone(&Utc)
    }

    fn rule(code: &str, priority: Priority, response: Option<Target>, resolution: Target) -> CategoryRule {
        CategoryRule {
            code: code.to_string(),
            name: format!("Категория {code}"),
            priority,
            response,
            resolution,
            winter_resolution: None,
            basis: BASIS_416.to_string(),
            note: None,
            effective_from: date("2019-03-01"),
            effective_to: None,
        }
    }

    fn rules() -> Vec<CategoryRule> {
        let mut broken_glass = rule("broken_glass", Priority::Routine, None, Target::days(3).expect("target"));
        broken_glass.winter_resolution = Some(Target::days(1).expect("target"));

        // A rule amended on 1 January 2026: 5 days before, 2 days from then on.
        let mut drainage_old = rule("drainage_damage", Priority::Routine, None, Target::days(5).expect("target"));
        drainage_old.effective_to = Some(date("2025-12-31"));
        let mut drainage_new = rule("drainage_damage", Priority::Routine, None, Target::days(2).expect("target"));
        drainage_new.effective_from = date("2026-01-01");

        vec![
            rule(
                "emergency_heating",
                Priority::Emergency,
                Some(Target::minutes(30).expect("target")),
                Target::days(3).expect("target"),
            ),
            broken_glass,
            drainage_new,
            drainage_old,
            rule("written_appeal", Priority::Appeal, None, Target::working_days(10).expect("target")),
            rule("other", Priority::Routine, None, Target::working_days(10).expect("target")),
        ]
    }

    fn parts(rules: Vec<CategoryRule>) -> SlaCatalogueParts {
        SlaCatalogueParts {
            jurisdiction: Jurisdiction {
                code: "RU".to_string(), name: "Российская Федерация".to_string()
            },
            fallback_category: "other".to_string(),
            winter: WinterSeason::new(10, 1, 4, 30).expect("season"),
            rules,
            calendar: russian_calendar(),
        }
    }

    fn catalogue() -> SlaCatalogue {
        SlaCatalogue::new(parts(rules())).expect("catalogue")
    }

    fn building(time_zone: &str, region: Option<&str>) -> BuildingRef {
        BuildingRef {
            id: "building-1".to_string(),
            address: "Казань, ул. Баумана, 1".to_string(),
            district: None,
            time_zone: time_zone.to_string(),
            region: region.map(str::to_string),
        }
    }

    fn kazan() -> BuildingRef {
        building("Europe/Moscow", Some("RU-TA"))
    }

    #[test]
    fn emergency_deadlines_are_elapsed_time() {
        let deadlines =
            catalogue().deadlines("emergency_heating", utc("2026-03-19T10:00:00Z"), &kazan()).expect("deadlines");
        assert_eq!(deadlines.response, Some(utc("2026-03-19T10:30:00Z")));
        assert_eq!(deadlines.resolution, utc("2026-03-22T10:00:00Z"));
        assert_eq!(deadlines.basis, BASIS_416);
    }

    #[test]
    fn written_appeal_in_kazan_skips_uraza_bayram() {
        let catalogue = catalogue();
        let registered = utc("2026-03-19T09:00:00Z");
        let kazan = catalogue.deadlines("written_appeal", registered, &kazan()).expect("deadlines");
        let moscow = catalogue
            .deadlines("written_appeal", registered, &building("Europe/Moscow", Some("RU-MOW")))
            .expect("deadlines");
        // Kazan: 23 March to 3 April; Moscow: 20 March to 2 April. Both end at 24:00 MSK.
        assert_eq!(kazan.resolution, utc("2026-04-03T21:00:00Z"));
        assert_eq!(moscow.resolution, utc("2026-04-02T21:00:00Z"));
        assert_eq!(kazan.response, None);
    }

    #[test]
    fn broken_glass_depends_on_season() {
        let catalogue = catalogue();
        let winter = catalogue.deadlines("broken_glass", utc("2026-04-30T20:00:00Z"), &kazan()).expect("deadlines");
        let summer = catalogue.deadlines("broken_glass", utc("2026-04-30T21:00:00Z"), &kazan()).expect("deadlines");
        // 23:00 MSK on 30 April is still winter; 00:00 MSK on 1 May is summer.
        assert_eq!(winter.resolution, utc("2026-05-01T20:00:00Z"));
        assert_eq!(summer.resolution, utc("2026-05-03T21:00:00Z"));
    }

    #[test]
    fn season_follows_building_local_date() {
        let catalogue = catalogue();
        // 18:00 UTC on 30 September is already 1 October in Barnaul (UTC+7), but not in Moscow.
        let registered = utc("2026-09-30T18:00:00Z");
        let barnaul = catalogue
            .deadlines("broken_glass", registered, &building("Asia/Barnaul", Some("RU-AL")))
            .expect("deadlines");
        let moscow = catalogue.deadlines("broken_glass", registered, &kazan()).expect("deadlines");
        assert_eq!(barnaul.resolution - registered, Duration::days(1));
        assert_eq!(moscow.resolution - registered, Duration::days(3));
    }

    #[test]
    fn amended_rule_applies_from_its_date() {
        let catalogue = catalogue();
        let before = utc("2025-12-31T20:59:00Z");
        let after = utc("2025-12-31T21:00:00Z");
        assert_eq!(
            catalogue.deadlines("drainage_damage", before, &kazan()).map(|d| d.resolution - before),
            Ok(Duration::days(5))
        );
        assert_eq!(
            catalogue.deadlines("drainage_damage", after, &kazan()).map(|d| d.resolution - after),
            Ok(Duration::days(2))
        );
        assert_eq!(catalogue.category("drainage_damage").map(|rule| rule.resolution), Target::days(2).ok());
        assert_eq!(catalogue.history("drainage_damage").count(), 2);
        assert_eq!(
            catalogue.deadlines("drainage_damage", utc("2019-02-28T12:00:00Z"), &kazan()),
            Err(SlaError::NoRuleInForce { category: "drainage_damage".to_string(), date: date("2019-02-28") })
        );
    }

    #[test]
    fn categories_listed_once_in_file_order() {
        let codes: Vec<String> = catalogue().categories().map(|rule| rule.code.clone()).collect();
        assert_eq!(codes, ["emergency_heating", "broken_glass", "drainage_damage", "written_appeal", "other"]);
    }

    #[test]
    fn reopen_counts_from_rejection() {
        let catalogue = catalogue();
        let rejected = utc("2026-03-19T09:00:00Z");
        assert_eq!(
            catalogue.resolution_deadline_from("written_appeal", rejected, &kazan()),
            Ok(utc("2026-04-03T21:00:00Z"))
        );
        assert_eq!(
            catalogue.resolution_deadline_from("emergency_heating", rejected, &kazan()),
            Ok(utc("2026-03-22T09:00:00Z"))
        );
    }

    #[test]
    fn unknown_inputs_are_errors() {
        let catalogue = catalogue();
        let registered = utc("2026-03-19T09:00:00Z");
        assert_eq!(
            catalogue.deadlines("gas_leak", registered, &kazan()),
            Err(SlaError::UnknownCategory { category: "gas_leak".to_string() })
        );
        assert_eq!(
            catalogue.deadlines("written_appeal", registered, &building("Europe/Kazan", Some("RU-TA"))),
            Err(SlaError::UnknownTimeZone { time_zone: "Europe/Kazan".to_string() })
        );
        assert_eq!(
            catalogue.deadlines("written_appeal", utc("2027-12-27T09:00:00Z"), &kazan()),
            Err(SlaError::CalendarOutOfRange { date: date("2028-01-01") })
        );
        // A 24/7 target needs no calendar, so it works past the calendar's years.
        assert!(catalogue.deadlines("emergency_heating", utc("2030-01-01T09:00:00Z"), &kazan()).is_ok());
    }

    #[test]
    fn unknown_region_uses_federal_calendar() {
        let catalogue = catalogue();
        let registered = utc("2026-03-19T09:00:00Z");
        let federal =
            catalogue.deadlines("written_appeal", registered, &building("Europe/Moscow", None)).expect("deadlines");
        let unknown = catalogue
            .deadlines("written_appeal", registered, &building("Europe/Moscow", Some("RU-XX")))
            .expect("deadlines");
        assert_eq!(federal.resolution, utc("2026-04-02T21:00:00Z"));
        assert_eq!(unknown.resolution, federal.resolution);
    }

    #[test]
    fn fallback_category_is_other() {
        let catalogue = catalogue();
        assert_eq!(catalogue.fallback_category().code, "other");
        let mut parts = parts(rules());
        parts.fallback_category = "misc".to_string();
        assert_eq!(
            SlaCatalogue::new(parts).map(|_| ()),
            Err(PolicyDataError::UnknownFallbackCategory { code: "misc".to_string() })
        );
    }

    #[test]
    fn invalid_rows_are_rejected() {
        let target = Target::days(1).expect("target");
        let cases: Vec<(CategoryRule, &str)> = vec![
            (rule("Roof-Leak", Priority::Routine, None, target), "INVALID_CATEGORY_CODE"),
            (
                CategoryRule { basis: " ".to_string(), ..rule("roof_leak", Priority::Routine, None, target) },
                "EMPTY_FIELD",
            ),
            (
                CategoryRule {
                    effective_to: Some(date("2019-01-01")),
                    ..rule("roof_leak", Priority::Routine, None, target)
                },
                "INVALID_EFFECTIVE_PERIOD",
            ),
        ];
        for (bad_rule, code) in cases {
            let mut rules = rules();
            rules.push(bad_rule);
            assert_eq!(SlaCatalogue::new(parts(rules)).map(|_| ()).map_err(|error| error.code()), Err(code));
        }
    }

    #[test]
    fn conflicting_rows_are_rejected() {
        let overlapping = rule("written_appeal", Priority::Appeal, None, Target::working_days(5).expect("target"));
        let renamed = CategoryRule {
            name: "Другое имя".to_string(),
            effective_from: date("2030-01-01"),
            ..rule("other", Priority::Routine, None, Target::working_days(5).expect("target"))
        };
        let reprioritized = CategoryRule {
            effective_from: date("2030-01-01"),
            ..rule("emergency_heating", Priority::Routine, None, Target::days(1).expect("target"))
        };
        let cases = [
            (overlapping, "OVERLAPPING_RULES"),
            (renamed, "INCONSISTENT_CATEGORY"),
            (reprioritized, "INCONSISTENT_CATEGORY"),
        ];
        for (bad_rule, code) in cases {
            let mut rules = rules();
            rules.push(bad_rule);
            assert_eq!(SlaCatalogue::new(parts(rules)).map(|_| ()).map_err(|error| error.code()), Err(code));
        }
    }

    #[test]
    fn catalogue_is_shareable_between_threads() {
        fn assert_shareable<T: Clone + std::fmt::Debug + Send + Sync>() {}
        assert_shareable::<SlaCatalogue>();
    }

    #[test]
    fn winter_season_wraps_new_year() {
        let season = WinterSeason::new(10, 1, 4, 30).expect("season");
        assert!(season.contains(date("2026-10-01")));
        assert!(season.contains(date("2026-01-15")));
        assert!(season.contains(date("2026-04-30")));
        assert!(!season.contains(date("2026-05-01")));
        assert!(!season.contains(date("2026-09-30")));
        let calendar_winter = WinterSeason::new(12, 1, 2, 29).expect("season");
        assert!(calendar_winter.contains(date("2027-02-28")));
        assert!(!calendar_winter.contains(date("2027-03-01")));
        assert_eq!(WinterSeason::new(2, 30, 4, 30), Err(PolicyDataError::InvalidSeasonDate { month: 2, day: 30 }));
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        let first = utc("2025-01-01T00:00:00Z").timestamp();
        (0i64..86_000_000).prop_map(move |offset| DateTime::from_timestamp(first + offset, 0).expect("instant"))
    }

    fn time_zone() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["Europe/Moscow", "Asia/Barnaul", "Europe/Berlin", "America/New_York"])
    }

    proptest! {
        #[test]
        fn deadlines_are_monotonic_in_registration(
            registered in instant(),
            later_by in 0i64..2_000_000,
            category in prop::sample::select(vec!["emergency_heating", "written_appeal", "other"]),
            time_zone in time_zone(),
            region in prop::sample::select(vec![None, Some("RU-TA")]),
        ) {
            let catalogue = catalogue();
            let building = building(time_zone, region);
            let later = registered + Duration::seconds(later_by);
            let first = catalogue.deadlines(category, registered, &building).expect("deadlines");
            let second = catalogue.deadlines(category, later, &building).expect("deadlines");
            prop_assert!(first.resolution <= second.resolution);
            prop_assert!(first.response <= second.response);
            prop_assert!(first.resolution > registered);
        }

        #[test]
        fn emergency_deadlines_ignore_time_zone(registered in instant(), time_zone in time_zone()) {
            let catalogue = catalogue();
            let building = building(time_zone, Some("RU-TA"));
            let deadlines = catalogue.deadlines("emergency_heating", registered, &building).expect("deadlines");
            prop_assert_eq!(deadlines.response, Some(registered + Duration::minutes(30)));
            prop_assert_eq!(deadlines.resolution, registered + Duration::hours(72));
        }

        #[test]
        fn reopen_matches_registration_rule(registered in instant(), time_zone in time_zone()) {
            let catalogue = catalogue();
            let building = building(time_zone, Some("RU-TA"));
            let deadlines = catalogue.deadlines("written_appeal", registered, &building).expect("deadlines");
            let reopened = catalogue.resolution_deadline_from("written_appeal", registered, &building);
            prop_assert_eq!(reopened, Ok(deadlines.resolution));
        }
    }
}
