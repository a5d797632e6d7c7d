//! Slices of the statistics: the dimensions rows are grouped by, and the filter that selects
//! tickets.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use opencity_domain::values::{Channel, Priority};
use serde::{Deserialize, Serialize};

use crate::fold::{TicketState, TicketView};

/// The time zone that period dimensions use unless the caller sets another: Moscow time, where
/// most of the seed cities are.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Europe::Moscow;

/// A dimension to group statistics by.
///
/// The period dimensions bucket tickets by registration time in the caller's time zone: `Day`
/// as `2024-03-01`, `Week` as the ISO week `2024-W09` (weeks start on Monday and belong to the
/// year of their Thursday), `Month` as `2024-03`. These labels sort in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Organization,
    Contractor,
    Category,
    Priority,
    District,
    Building,
    Channel,
    Day,
    Week,
    Month,
}

impl Dimension {
    pub const ALL: [Dimension; 10] = [
        Dimension::Organization,
        Dimension::Contractor,
        Dimension::Category,
        Dimension::Priority,
        Dimension::District,
        Dimension::Building,
        Dimension::Channel,
        Dimension::Day,
        Dimension::Week,
        Dimension::Month,
    ];

    /// Returns the snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Organization => "organization",
            Dimension::Contractor => "contractor",
            Dimension::Category => "category",
            Dimension::Priority => "priority",
            Dimension::District => "district",
            Dimension::Building => "building",
            Dimension::Channel => "channel",
            Dimension::Day => "day",
            Dimension::Week => "week",
            Dimension::Month => "month",
        }
    }

    /// Parses the snake_case name, or returns `None` for an unknown dimension.
    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL
            .into_iter()
            .find(|dimension| dimension.as_str() == name)
    }
}

/// The values of a row's dimensions, in the order the caller grouped by. `None` is a ticket
/// without that attribute: not routed yet, no contractor, a building without a district.
/// Organizations, contractors and buildings are given by id.
pub type GroupKey = Vec<(Dimension, Option<String>)>;

/// Returns the group key of a ticket. Changeable attributes come from `state`, so the caller
/// chooses between the current state and the state at some past time.
pub(crate) fn group_key(
    view: &TicketView,
    state: &TicketState,
    group_by: &[Dimension],
    tz: Tz,
) -> GroupKey {
    group_by
        .iter()
        .map(|&dimension| (dimension, dimension_value(view, state, dimension, tz)))
        .collect()
}

fn dimension_value(
    view: &TicketView,
    state: &TicketState,
    dimension: Dimension,
    tz: Tz,
) -> Option<String> {
    match dimension {
        Dimension::Organization => state.organization_id.clone(),
        Dimension::Contractor => state.contractor_id.clone(),
        Dimension::Category => Some(state.category.clone()),
        Dimension::Priority => Some(state.priority.as_str().to_string()),
        Dimension::District => view.district.clone(),
        Dimension::Building => Some(view.building_id.clone()),
        Dimension::Channel => Some(view.channel.as_str().to_string()),
        Dimension::Day | Dimension::Week | Dimension::Month => {
            Some(period_label(view.registered_at, dimension, tz))
        }
    }
}

/// Returns the label of the period that contains `at` in time zone `tz`. A dimension that is
/// not a period gets the day's label.
pub fn period_label(at: DateTime<Utc>, period: Dimension, tz: Tz) -> String {
    period_label_of_date(at.with_timezone(&tz).date_naive(), period)
}

/// Returns the label of the period that contains the local calendar date `date`.
pub(crate) fn period_label_of_date(date: NaiveDate, period: Dimension) -> String {
    match period {
        Dimension::Week => {
            let week = date.iso_week();
            format!("{:04}-W{:02}", week.year(), week.week())
        }
        Dimension::Month => date.format("%Y-%m").to_string(),
        _ => date.format("%Y-%m-%d").to_string(),
    }
}

/// Selects the tickets statistics are computed over. A ticket passes when every set field
/// matches it, and an unset field matches any ticket. Organization, contractor, category and priority are matched against the
/// same state the group keys use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatsFilter {
    pub organization_id: Option<String>,
    pub contractor_id: Option<String>,
    pub category: Option<String>,
    pub priority: Option<Priority>,
    pub district: Option<String>,
    pub building_id: Option<String>,
    pub channel: Option<Channel>,
    /// Tickets registered at or after this time.
    pub registered_from: Option<DateTime<Utc>>,
    /// Tickets registered before this time.
    pub registered_to: Option<DateTime<Utc>>,
}

impl StatsFilter {
    /// Returns true when the ticket in its current state matches (the list of tickets uses it).
    pub fn matches_current(&self, view: &TicketView) -> bool {
        self.matches(view, &view.current_state())
    }

    pub(crate) fn matches(&self, view: &TicketView, state: &TicketState) -> bool {
        matches_text(&self.organization_id, state.organization_id.as_deref())
            && matches_text(&self.contractor_id, state.contractor_id.as_deref())
            && matches_text(&self.category, Some(&state.category))
            && self
                .priority
                .is_none_or(|priority| priority == state.priority)
            && matches_text(&self.district, view.district.as_deref())
            && matches_text(&self.building_id, Some(&view.building_id))
            && self.channel.is_none_or(|channel| channel == view.channel)
            && self
                .registered_from
                .is_none_or(|from| view.registered_at >= from)
            && self.registered_to.is_none_or(|to| view.registered_at < to)
    }
}

fn matches_text(wanted: &Option<String>, actual: Option<&str>) -> bool {
    match wanted {
        None => true,
        Some(wanted) => actual == Some(wanted.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::testing::*;
    use chrono::TimeZone;

    #[test]
    fn dimension_names_round_trip() {
        for dimension in Dimension::ALL {
            assert_eq!(Dimension::parse(dimension.as_str()), Some(dimension));
        }
        assert_eq!(Dimension::parse("quarter"), None);
    }

    #[test]
    fn period_labels_use_time_zone() {
        // 2024-03-31 22:30 UTC is already April 1 in Moscow (UTC+3) and in Barnaul (UTC+7).
        let late_evening = Utc.with_ymd_and_hms(2024, 3, 31, 22, 30, 0).unwrap();

        assert_eq!(
            period_label(late_evening, Dimension::Day, chrono_tz::UTC),
            "2024-03-31"
        );
        assert_eq!(
            period_label(late_evening, Dimension::Day, DEFAULT_TIME_ZONE),
            "2024-04-01"
        );
        assert_eq!(
            period_label(late_evening, Dimension::Month, DEFAULT_TIME_ZONE),
            "2024-04"
        );
        assert_eq!(
            period_label(late_evening, Dimension::Month, chrono_tz::Asia::Barnaul),
            "2024-04"
        );
        assert_eq!(
            period_label(late_evening, Dimension::Week, chrono_tz::UTC),
            "2024-W13"
        );
        assert_eq!(
            period_label(late_evening, Dimension::Week, DEFAULT_TIME_ZONE),
            "2024-W14"
        );
    }

    #[test]
    fn iso_week_belongs_to_year_of_thursday() {
        let new_year_eve = Utc.with_ymd_and_hms(2024, 12, 30, 12, 0, 0).unwrap();
        let first_of_2021 = Utc.with_ymd_and_hms(2021, 1, 1, 12, 0, 0).unwrap();

        assert_eq!(
            period_label(new_year_eve, Dimension::Week, DEFAULT_TIME_ZONE),
            "2025-W01"
        );
        assert_eq!(
            period_label(first_of_2021, Dimension::Week, DEFAULT_TIME_ZONE),
            "2020-W53"
        );
    }

    #[test]
    fn group_key_follows_requested_order() {
        let view = fold_one(1, vec![registered(1, at(1, 8)), routed("org-1", at(1, 8))]);
        let state = view.current_state();

        let key = group_key(
            &view,
            &state,
            &[
                Dimension::Month,
                Dimension::Contractor,
                Dimension::Organization,
                Dimension::Priority,
            ],
            DEFAULT_TIME_ZONE,
        );

        assert_eq!(
            key,
            vec![
                (Dimension::Month, Some("2024-03".to_string())),
                (Dimension::Contractor, None),
                (Dimension::Organization, Some("org-1".to_string())),
                (Dimension::Priority, Some("emergency".to_string())),
            ]
        );
    }

    #[test]
    fn filter_matches_every_set_field() {
        let view = fold_one(1, vec![registered(1, at(1, 8)), routed("org-1", at(1, 8))]);
        let state = view.current_state();
        let matching = StatsFilter {
            organization_id: Some("org-1".to_string()),
            category: Some("leak".to_string()),
            priority: Some(Priority::Emergency),
            district: Some("Центральный".to_string()),
            building_id: Some("b-1".to_string()),
            channel: Some(Channel::Web),
            registered_from: Some(at(1, 8)),
            registered_to: Some(at(1, 9)),
            ..StatsFilter::default()
        };

        assert!(StatsFilter::default().matches(&view, &state));
        assert!(matching.matches(&view, &state));
        let mismatches = [
            StatsFilter {
                organization_id: Some("org-2".to_string()),
                ..matching.clone()
            },
            StatsFilter {
                contractor_id: Some("c-1".to_string()),
                ..matching.clone()
            },
            StatsFilter {
                category: Some("lift".to_string()),
                ..matching.clone()
            },
            StatsFilter {
                priority: Some(Priority::Routine),
                ..matching.clone()
            },
            StatsFilter {
                district: Some("Северный".to_string()),
                ..matching.clone()
            },
            StatsFilter {
                building_id: Some("b-2".to_string()),
                ..matching.clone()
            },
            StatsFilter {
                channel: Some(Channel::Portal),
                ..matching.clone()
            },
            StatsFilter {
                registered_from: Some(at(1, 9)),
                ..matching.clone()
            },
            StatsFilter {
                registered_to: Some(at(1, 8)),
                ..matching.clone()
            },
        ];
        for filter in mismatches {
            assert!(!filter.matches(&view, &state), "{filter:?}");
        }
    }
}
