//! Percentiles of durations.

/// Returns the `p`-th quantile (`p` from 0 to 1) of `values`, or `None` when there are none.
///
/// The method is linear interpolation between the closest ranks (Hyndman and Fan type 7, the
/// default of NumPy and R, and Excel's PERCENTILE.INC). With the `n` values sorted ascending as
/// `x[0..n]` and `h = (n - 1) * p`, the quantile is
/// `x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])`.
/// So the median of an even count is the mean of the two middle values, `p = 0` gives the
/// minimum and `p = 1` the maximum. A `p` outside 0 to 1 is clamped; NaN values sort last.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_of_sorted(&sorted, p)
}

/// Computes [`percentile`] of values already sorted ascending.
pub(crate) fn percentile_of_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let ranks = QuantileRanks::new(sorted.len(), p)?;
    Some(ranks.interpolate(sorted[ranks.lower], sorted[ranks.upper]))
}

/// The two ranks (0-based, in ascending order) that the `p`-th quantile of `len` values lies
/// between, and how far it lies from the lower one. Both [`percentile_of_sorted`] and the
/// selection in the stats index use it, so they give bit-identical results.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct QuantileRanks {
    pub lower: usize,
    pub upper: usize,
    pub fraction: f64,
}

impl QuantileRanks {
    /// Returns the ranks of the `p`-th quantile, or `None` when `len` is zero.
    pub(crate) fn new(len: usize, p: f64) -> Option<QuantileRanks> {
        let last = len.checked_sub(1)?;
        let rank = last as f64 * p.clamp(0.0, 1.0);
        let lower = rank.floor() as usize;
        Some(QuantileRanks {
            lower,
            upper: (lower + 1).min(last),
            fraction: rank - lower as f64,
        })
    }

    /// Interpolates between the values at the lower and the upper rank.
    pub(crate) fn interpolate(self, lower_value: f64, upper_value: f64) -> f64 {
        lower_value + self.fraction * (upper_value - lower_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_empty_is_none() {
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn percentile_of_single_value() {
        assert_eq!(percentile(&[7.0], 0.5), Some(7.0));
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
    }

    #[test]
    fn median_of_even_count_interpolates() {
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
    }

    #[test]
    fn median_of_odd_count_is_middle() {
        assert_eq!(percentile(&[5.0, 1.0, 3.0], 0.5), Some(3.0));
    }

    #[test]
    fn p90_interpolates_between_ranks() {
        // h = 3 * 0.9 = 2.7: 30 + 0.7 * (40 - 30).
        let p90 = percentile(&[10.0, 20.0, 30.0, 40.0], 0.9).unwrap();
        assert!((p90 - 37.0).abs() < 1e-9, "{p90}");

        // h = 9 * 0.9 = 8.1: 9 + 0.1 * (10 - 9).
        let tenths: Vec<f64> = (1..=10).map(f64::from).collect();
        let p90 = percentile(&tenths, 0.9).unwrap();
        assert!((p90 - 9.1).abs() < 1e-9, "{p90}");
    }

    #[test]
    fn percentile_bounds_are_min_and_max() {
        let values = [3.0, 9.0, 1.0];
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&values, 1.0), Some(9.0));
        assert_eq!(percentile(&values, 1.5), Some(9.0));
        assert_eq!(percentile(&values, -1.0), Some(1.0));
    }
}
