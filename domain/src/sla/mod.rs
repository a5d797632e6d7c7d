//! SLA policy: the catalogue of categories with their targets and legal basis, the production
//! calendar of working days, and the arithmetic that turns a registration time into deadlines.
//!
//! The catalogue and the calendars are data (loaded by the `fixtures` crate), so a new decree or
//! a regional override is a data change.
//!
//! # Layout
//! - [`calendar`]: the production calendar (federal days plus regional overlays).
//! - [`clock`]: targets, the clocks they run on and the local-time arithmetic of a deadline.
//! - [`catalogue`]: category rules with effective dates and seasons; computes a ticket's deadlines.

pub mod calendar;
pub mod catalogue;
pub mod clock;

pub use calendar::{DayKind, ProductionCalendar};
pub use catalogue::{CategoryRule, ClockKind, Jurisdiction, SlaCatalogue, SlaCatalogueParts, Target, WinterSeason};

use chrono::NaiveDate;

/// Errors of deadline computation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaError {
    #[error("unknown category `{category}`")]
    UnknownCategory { category: String },
    #[error("unknown time zone `{time_zone}`")]
    UnknownTimeZone { time_zone: String },
    #[error("the production calendar has no data for {date}")]
    CalendarOutOfRange { date: NaiveDate },
    /// The category exists, but none of its rows is in force on the date.
    #[error("category `{category}` has no rule in force on {date}")]
    NoRuleInForce { category: String, date: NaiveDate },
    /// A local time could not be mapped to an instant, even after skipping a daylight-saving gap.
    #[error("no instant in time zone `{time_zone}` starts at or after local time {local}")]
    UnrepresentableLocalTime { time_zone: String, local: chrono::NaiveDateTime },
}

impl SlaError {
    /// Returns the stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            SlaError::UnknownCategory { .. } => "UNKNOWN_CATEGORY",
            SlaError::UnknownTimeZone { .. } => "UNKNOWN_TIME_ZONE",
            SlaError::CalendarOutOfRange { .. } => "CALENDAR_OUT_OF_RANGE",
            SlaError::NoRuleInForce { .. } => "NO_RULE_IN_FORCE",
            SlaError::UnrepresentableLocalTime { .. } => "UNREPRESENTABLE_LOCAL_TIME",
        }
    }
}

/// Errors in SLA policy data: a calendar or a catalogue that contradicts itself. The loader
/// reports them with the file and line; the domain checks the facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyDataError {
    #[error("calendar years {first_year}..={last_year} are invalid: the first year must not exceed the last")]
    InvalidCalendarYears { first_year: i32, last_year: i32 },
    #[error("{date} lies outside the calendar years {first_year}..={last_year}")]
    DateOutsideCalendar { date: NaiveDate, first_year: i32, last_year: i32 },
    #[error("{date} is listed twice as `{kind}`{}", region_suffix(region))]
    DuplicateDay { date: NaiveDate, kind: DayKind, region: Option<String> },
    #[error("{date} cannot be both `{first}` and `{second}`{}", region_suffix(region))]
    ConflictingDay { date: NaiveDate, first: DayKind, second: DayKind, region: Option<String> },
    #[error("{date} is a {weekday}, so it cannot be `{kind}`")]
    KindOnWrongWeekday { date: NaiveDate, weekday: chrono::Weekday, kind: DayKind },
    #[error("invalid region code `{region}`: expected ISO 3166-2, such as RU-TA")]
    InvalidRegionCode { region: String },
    #[error("invalid target: {reason}")]
    InvalidTarget { reason: String },
    #[error("invalid category code `{code}`: expected snake_case ASCII, such as roof_leak")]
    InvalidCategoryCode { code: String },
    #[error("category `{code}`: field `{field}` must not be empty")]
    EmptyField { code: String, field: &'static str },
    #[error("rows of category `{code}` disagree on `{field}`; an amended row keeps the name and priority")]
    InconsistentCategory { code: String, field: &'static str },
    #[error("category `{code}`: effective_to {to} is before effective_from {from}")]
    InvalidEffectivePeriod { code: String, from: NaiveDate, to: NaiveDate },
    #[error("rows of category `{code}` effective from {first} and from {second} overlap")]
    OverlappingRules { code: String, first: NaiveDate, second: NaiveDate },
    #[error("fallback category `{code}` is not in the catalogue")]
    UnknownFallbackCategory { code: String },
    #[error("invalid month and day {month:02}-{day:02} in the winter season")]
    InvalidSeasonDate { month: u32, day: u32 },
}

fn region_suffix(region: &Option<String>) -> String {
    match region {
        Some(region) => format!(" in region {region}"),
        None => String::new(),
    }
}

impl PolicyDataError {
    /// Returns the stable error code of the data error.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyDataError::InvalidCalendarYears { .. } => "INVALID_CALENDAR_YEARS",
            PolicyDataError::DateOutsideCalendar { .. } => "DATE_OUTSIDE_CALENDAR",
            PolicyDataError::DuplicateDay { .. } => "DUPLICATE_CALENDAR_DAY",
            PolicyDataError::ConflictingDay { .. } => "CONFLICTING_CALENDAR_DAY",
            PolicyDataError::KindOnWrongWeekday { .. } => "DAY_KIND_ON_WRONG_WEEKDAY",
            PolicyDataError::InvalidRegionCode { .. } => "INVALID_REGION_CODE",
            PolicyDataError::InvalidTarget { .. } => "INVALID_TARGET",
            PolicyDataError::InvalidCategoryCode { .. } => "INVALID_CATEGORY_CODE",
            PolicyDataError::EmptyField { .. } => "EMPTY_FIELD",
            PolicyDataError::InconsistentCategory { .. } => "INCONSISTENT_CATEGORY",
            PolicyDataError::InvalidEffectivePeriod { .. } => "INVALID_EFFECTIVE_PERIOD",
            PolicyDataError::OverlappingRules { .. } => "OVERLAPPING_RULES",
            PolicyDataError::UnknownFallbackCategory { .. } => "UNKNOWN_FALLBACK_CATEGORY",
            PolicyDataError::InvalidSeasonDate { .. } => "INVALID_SEASON_DATE",
        }
    }
}
