//! Contractor ratings: a score from 0 to 100 over on-time resolution, first-time fix, resident
//! confirmation and residents' ratings, smoothed for small volumes, and the unreliable flag.
//!
//! `docs/ratings.md` describes the formula for users, with a worked example that the test
//! `worked_example_from_docs` checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sla::share;
use crate::fold::TicketView;

/// Parameters of the rating formula.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatingParams {
    /// How many tickets' worth of the all-contractor mean each component starts with.
    pub prior_weight: f64,
    pub on_time_weight: f64,
    pub first_time_fix_weight: f64,
    pub confirmation_weight: f64,
    pub rating_weight: f64,
    /// Contractors with fewer resolved tickets are never flagged unreliable.
    pub min_resolved_for_flag: u64,
    /// A score below this (0 to 100) flags the contractor: reason `low_score`.
    pub low_score: f64,
    /// A smoothed on-time share below this flags the contractor: reason `late_resolution`.
    pub low_on_time_share: f64,
    /// A smoothed first-time-fix share below this flags the contractor: reason
    /// `frequent_reopening`.
    pub low_first_time_fix_share: f64,
}

impl Default for RatingParams {
    fn default() -> RatingParams {
        RatingParams {
            prior_weight: 10.0,
            on_time_weight: 0.35,
            first_time_fix_weight: 0.25,
            confirmation_weight: 0.20,
            rating_weight: 0.20,
            min_resolved_for_flag: 10,
            low_score: 60.0,
            low_on_time_share: 0.6,
            low_first_time_fix_share: 0.75,
        }
    }
}

/// The four components of a score, each from 0 to 1 after smoothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RatingComponents {
    pub on_time: f64,
    pub first_time_fix: f64,
    pub confirmation: f64,
    /// The mean rating mapped from 1..5 to 0..1 as `(rating - 1) / 4`.
    pub rating: f64,
}

/// The rating of one contractor, over the tickets whose current contractor it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContractorRating {
    pub contractor_id: String,
    /// The name on the contractor's most recent assignment.
    pub name: String,
    /// Assigned tickets, cancelled ones excluded.
    pub tickets: u64,
    /// Closed tickets: the base of the on-time and first-time-fix shares.
    pub resolved: u64,
    /// Unsmoothed share of resolved tickets closed by the deadline.
    pub on_time_share: Option<f64>,
    /// Unsmoothed share of resolved tickets never reopened.
    pub first_time_fix_share: Option<f64>,
    /// Unsmoothed share of resident answers that confirmed the work.
    pub confirmation_share: Option<f64>,
    pub resident_answers: u64,
    /// Unsmoothed mean of residents' ratings, 1 to 5.
    pub mean_rating: Option<f64>,
    pub rating_count: u64,
    /// The components after smoothing toward the all-contractor mean.
    pub smoothed: RatingComponents,
    /// The weighted mean of the smoothed components, from 0 to 100.
    pub score: f64,
    pub unreliable: bool,
    /// Why the contractor is unreliable: `low_score`, `late_resolution`, `frequent_reopening`.
    pub reasons: Vec<String>,
}

/// Successes and trials of each component, for one contractor or for all of them.
#[derive(Clone, Debug, Default)]
struct Tally {
    tickets: u64,
    resolved: u64,
    on_time: u64,
    first_time_fix: u64,
    resident_answers: u64,
    confirmed: u64,
    rating_count: u64,
    rating_sum: u64,
    /// The sum of ratings mapped to 0..1.
    rating_points: f64,
    /// The log position of the view the name was taken from.
    name_position: i64,
    name: String,
}

impl Tally {
    fn add(&mut self, view: &TicketView) {
        self.tickets += 1;
        if let Some(rating) = view.rating {
            self.rating_count += 1;
            self.rating_sum += u64::from(rating);
            self.rating_points += f64::from(rating.saturating_sub(1)) / 4.0;
        }
        if !view.is_resolved() {
            return;
        }

        self.resolved += 1;
        self.on_time += u64::from(view.resolution_on_time() == Some(true));
        self.first_time_fix += u64::from(view.reopen_count == 0);
        if let Some(confirmed) = view.confirmed {
            self.resident_answers += 1;
            self.confirmed += u64::from(confirmed);
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.tickets += other.tickets;
        self.resolved += other.resolved;
        self.on_time += other.on_time;
        self.first_time_fix += other.first_time_fix;
        self.resident_answers += other.resident_answers;
        self.confirmed += other.confirmed;
        self.rating_count += other.rating_count;
        self.rating_sum += other.rating_sum;
        self.rating_points += other.rating_points;
    }
}

/// A component's all-contractor mean: the pooled share over every contractor's tickets, or 0.5
/// when no contractor has data for it yet.
#[derive(Clone, Copy, Debug)]
struct Prior {
    on_time: f64,
    first_time_fix: f64,
    confirmation: f64,
    rating: f64,
}

impl Prior {
    fn pooled(all: &Tally) -> Prior {
        const NO_DATA: f64 = 0.5;
        Prior {
            on_time: share(all.on_time, all.resolved).unwrap_or(NO_DATA),
            first_time_fix: share(all.first_time_fix, all.resolved).unwrap_or(NO_DATA),
            confirmation: share(all.confirmed, all.resident_answers).unwrap_or(NO_DATA),
            rating: ratio(all.rating_points, all.rating_count).unwrap_or(NO_DATA),
        }
    }
}

fn ratio(sum: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

/// Shrinks `successes / trials` toward `prior`, as if `weight` more trials had the prior share.
fn smoothed(successes: f64, trials: u64, prior: f64, weight: f64) -> f64 {
    let denominator = trials as f64 + weight;
    if denominator <= 0.0 {
        return prior;
    }
    (successes + weight * prior) / denominator
}

/// Rates every contractor with the default [`RatingParams`].
pub fn contractor_ratings<'a>(
    views: impl IntoIterator<Item = &'a TicketView>,
) -> Vec<ContractorRating> {
    contractor_ratings_with(views, &RatingParams::default())
}

/// Rates every contractor that has a non-cancelled ticket, sorted by score (best first), then by
/// contractor id.
///
/// Each component is smoothed toward the all-contractor mean with `prior_weight` pseudo-tickets:
/// `(successes + prior_weight * mean) / (trials + prior_weight)`. The score is
/// `100 * sum(weight * component) / sum(weights)`. A contractor with at least
/// `min_resolved_for_flag` resolved tickets is unreliable when its score or its smoothed on-time
/// or first-time-fix share is below the threshold.
///
/// Currently, a ticket counts for its current contractor only, also when an earlier contractor
/// did the work that the resident rejected.
pub fn contractor_ratings_with<'a>(
    views: impl IntoIterator<Item = &'a TicketView>,
    params: &RatingParams,
) -> Vec<ContractorRating> {
    let tallies = tally_by_contractor(views);
    let mut all = Tally::default();
    for tally in tallies.values() {
        all.merge(tally);
    }
    let prior = Prior::pooled(&all);

    let mut ratings: Vec<ContractorRating> = tallies
        .into_iter()
        .map(|(contractor_id, tally)| rate(contractor_id, tally, prior, params))
        .collect();
    ratings.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.contractor_id.cmp(&b.contractor_id))
    });
    ratings
}

fn tally_by_contractor<'a>(
    views: impl IntoIterator<Item = &'a TicketView>,
) -> BTreeMap<String, Tally> {
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    for view in views {
        let Some(contractor_id) = &view.contractor_id else {
            continue;
        };
        if view.is_cancelled() {
            continue;
        }
        let tally = tallies.entry(contractor_id.clone()).or_default();
        tally.add(view);
        if tally.name.is_empty() || view.last_position > tally.name_position {
            tally.name_position = view.last_position;
            tally.name = view.contractor_name.clone().unwrap_or_default();
        }
    }
    tallies
}

fn rate(
    contractor_id: String,
    tally: Tally,
    prior: Prior,
    params: &RatingParams,
) -> ContractorRating {
    let weight = params.prior_weight.max(0.0);
    let components = RatingComponents {
        on_time: smoothed(tally.on_time as f64, tally.resolved, prior.on_time, weight),
        first_time_fix: smoothed(
            tally.first_time_fix as f64,
            tally.resolved,
            prior.first_time_fix,
            weight,
        ),
        confirmation: smoothed(
            tally.confirmed as f64,
            tally.resident_answers,
            prior.confirmation,
            weight,
        ),
        rating: smoothed(
            tally.rating_points,
            tally.rating_count,
            prior.rating,
            weight,
        ),
    };
    let score = score(&components, params);
    let reasons = unreliability_reasons(&tally, &components, score, params);

    ContractorRating {
        contractor_id,
        name: tally.name,
        tickets: tally.tickets,
        resolved: tally.resolved,
        on_time_share: share(tally.on_time, tally.resolved),
        first_time_fix_share: share(tally.first_time_fix, tally.resolved),
        confirmation_share: share(tally.confirmed, tally.resident_answers),
        resident_answers: tally.resident_answers,
        mean_rating: share(tally.rating_sum, tally.rating_count),
        rating_count: tally.rating_count,
        smoothed: components,
        score,
        unreliable: !reasons.is_empty(),
        reasons,
    }
}

/// Returns the weighted mean of the components on a 0 to 100 scale, or 0 when no weight is positive.
fn score(components: &RatingComponents, params: &RatingParams) -> f64 {
    let weighted = [
        (params.on_time_weight, components.on_time),
        (params.first_time_fix_weight, components.first_time_fix),
        (params.confirmation_weight, components.confirmation),
        (params.rating_weight, components.rating),
    ];
    let total_weight: f64 = weighted.iter().map(|(weight, _)| weight.max(0.0)).sum();
    if total_weight <= 0.0 {
        return 0.0;
    }
    let sum: f64 = weighted
        .iter()
        .map(|(weight, value)| weight.max(0.0) * value)
        .sum();
    100.0 * sum / total_weight
}

fn unreliability_reasons(
    tally: &Tally,
    components: &RatingComponents,
    score: f64,
    params: &RatingParams,
) -> Vec<String> {
    if tally.resolved < params.min_resolved_for_flag {
        return Vec::new();
    }
    let checks = [
        (score < params.low_score, "low_score"),
        (
            components.on_time < params.low_on_time_share,
            "late_resolution",
        ),
        (
            components.first_time_fix < params.low_first_time_fix_share,
            "frequent_reopening",
        ),
    ];
    checks
        .into_iter()
        .filter(|(failed, _)| *failed)
        .map(|(_, reason)| reason.to_string())
        .collect()
}

#[cfg(test)]
mod tests;
