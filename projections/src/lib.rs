//! Read models of «Открытый город»: pure folds from ticket events to views, and the statistics
//! computed over those views (SLA statistics, overdue counters, contractor ratings).
//!
//! Everything here uses business time (`occurred_at` of the events and the instants a caller
//! passes in), never the wall clock, so a replay of the same log gives the same numbers.
//!
//! # Layout
//! - [`fold`]: [`TicketView`], the read model of one ticket, its fold rules, and the timeline of
//!   states that answers "as of" questions; [`fold_from_scratch`] and [`fold_into`] for a whole log.
//! - [`runner`]: the projection runner that commits views with its checkpoint, and the
//!   in-memory mirror the API reads; [`reference`](mod@reference): buildings, organizations and contractors seen
//!   in the log.
//! - [`consistency`]: waiting until the projections have applied a position (read-your-writes).
//! - [`rebuild`](mod@rebuild): new read-model tables from the whole log, swapped in without downtime.
//! - [`stats`]: slices ([`Dimension`], [`StatsFilter`]), [`sla_stats`], [`overdue_counters`] and
//!   [`contractor_ratings`] (the formula is described in `docs/ratings.md`), and [`StatsIndex`],
//!   the compact form that computes the first two fast.

pub mod consistency;
pub mod fold;
pub mod rebuild;
pub mod reference;
pub mod runner;
pub mod stats;

pub use fold::{apply_event, fold_from_scratch, fold_into, StateChange, TicketState, TicketView};
pub use stats::{
    contractor_ratings, contractor_ratings_with, overdue_counters, overdue_counters_filtered,
    percentile, sla_stats, ContractorRating, Dimension, GroupKey, OverdueRow, RatingComponents,
    RatingParams, SlaStatsRow, StatsFilter, StatsIndex, DEFAULT_TIME_ZONE,
};
