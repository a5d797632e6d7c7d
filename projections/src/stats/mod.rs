//! Statistics over ticket views: SLA statistics, overdue counters and contractor ratings.
//!
//! Every function returns its rows in a fixed order (statistics by key, ratings by score), so the
//! output does not depend on the order of the input views.
//!
//! [`sla_stats`] and [`overdue_counters_filtered`] scan whole views and are the reference rules.
//! [`StatsIndex`] gives the same results from a compact form that the projection runner keeps
//! up to date; the API queries it.

mod index;
mod overdue;
mod percentile;
mod ratings;
mod sla;
mod slices;

pub use index::StatsIndex;
pub use overdue::{overdue_counters, overdue_counters_filtered, OverdueRow};
pub use percentile::percentile;
pub use ratings::{
    contractor_ratings, contractor_ratings_with, ContractorRating, RatingComponents, RatingParams,
};
pub use sla::{sla_stats, SlaStatsRow};
pub use slices::{period_label, Dimension, GroupKey, StatsFilter, DEFAULT_TIME_ZONE};
