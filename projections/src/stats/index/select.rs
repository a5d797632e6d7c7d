//! Exact quantiles of duration keys without a full sort: a histogram over the high bits finds
//! the buckets that hold the needed ranks, and only those buckets are searched.

use super::row::duration_from_key;
use crate::stats::percentile::QuantileRanks;

/// Inputs up to this length are searched by [`select_ranks`]: faster than two passes over a
/// histogram.
const SELECT_UP_TO: usize = 4096;
/// At most this many bits of a key's offset pick its histogram bucket.
const MAX_BUCKET_BITS: u32 = 16;

/// Returns the `ps` quantiles of the durations whose keys are `keys`, reordering `keys`. Each
/// equals `percentile` over the durations themselves, and each is `None` when `keys` is empty.
pub(super) fn quantiles<const N: usize>(keys: &mut [i64], ps: [f64; N]) -> [Option<f64>; N] {
    let ranks = ps.map(|p| QuantileRanks::new(keys.len(), p));
    let mut needed: Vec<usize> = ranks
        .iter()
        .flatten()
        .flat_map(|ranks| [ranks.lower, ranks.upper])
        .collect();
    needed.sort_unstable();
    needed.dedup();
    let values = order_statistics(keys, &needed);
    let value_at = |rank: usize| {
        let index = needed.partition_point(|needed| *needed < rank);
        duration_from_key(values[index])
    };
    ranks.map(|ranks| ranks.map(|ranks| ranks.interpolate(value_at(ranks.lower), value_at(ranks.upper))))
}

/// Order-preserving map of a key to an unsigned integer.
fn unsigned(key: i64) -> u64 {
    (key as u64) ^ (1 << 63)
}

/// Returns the values at `ranks` (ascending, distinct, each below `keys.len()`) of `keys` in
/// ascending order, reordering `keys`.
///
/// Larger inputs are bucketed by the high bits of their offset from the smallest key, with
/// about eight keys per bucket, so that the histogram stays in cache. One pass counts the keys
/// per bucket, the counts locate each rank's bucket, and a second pass gathers only the keys of
/// those buckets for a selection.
pub(super) fn order_statistics(keys: &mut [i64], ranks: &[usize]) -> Vec<i64> {
    if keys.len() <= SELECT_UP_TO || u32::try_from(keys.len()).is_err() {
        return select_ranks(keys, ranks);
    }
    let (min, max) = keys
        .iter()
        .fold((i64::MAX, i64::MIN), |(min, max), key| (min.min(*key), max.max(*key)));
    if min == max {
        return vec![min; ranks.len()];
    }

    // Buckets in index order are in key order.
    let low = unsigned(min);
    let range = unsigned(max) - low;
    let bucket_bits = (usize::BITS - keys.len().leading_zeros()).saturating_sub(3).clamp(8, MAX_BUCKET_BITS);
    let shift = (u64::BITS - range.leading_zeros()).saturating_sub(bucket_bits);
    let bucket = |key: i64| ((unsigned(key) - low) >> shift) as usize;
    let mut counts = vec![0u32; (range >> shift) as usize + 1];
    for key in keys.iter() {
        counts[bucket(*key)] += 1;
    }

    // Find the bucket of each rank and the rank within that bucket.
    let mut targets: Vec<(usize, usize)> = Vec::with_capacity(ranks.len());
    let mut before = 0usize;
    let mut next = ranks.iter().peekable();
    for (bucket, count) in counts.iter().enumerate() {
        let count = *count as usize;
        while let Some(rank) = next.next_if(|rank| **rank < before + count) {
            targets.push((bucket, *rank - before));
        }
        before += count;
    }

    // Gather the keys of the target buckets and select within each.
    let mut target_buckets: Vec<usize> = targets.iter().map(|(bucket, _)| *bucket).collect();
    target_buckets.dedup();
    let mut slot_of_bucket = counts;
    slot_of_bucket.fill(0);
    for (slot, bucket) in target_buckets.iter().enumerate() {
        slot_of_bucket[*bucket] = slot as u32 + 1;
    }
    let mut gathered: Vec<Vec<i64>> = vec![Vec::new(); target_buckets.len()];
    for key in keys.iter() {
        if let Some(slot) = slot_of_bucket[bucket(*key)].checked_sub(1) {
            gathered[slot as usize].push(*key);
        }
    }
    targets
        .iter()
        .map(|(bucket, rank)| {
            let slot = target_buckets.partition_point(|target| target < bucket);
            *gathered[slot].select_nth_unstable(*rank).1
        })
        .collect()
}

/// Returns the values at `ranks` (ascending, distinct, each below `keys.len()`) of `keys` in
/// ascending order, reordering `keys`. It selects from the highest rank down: each selection
/// leaves the smaller keys before its rank, so the next one searches only those. Four ranks of a
/// few thousand keys take a fraction of a full sort.
fn select_ranks(keys: &mut [i64], ranks: &[usize]) -> Vec<i64> {
    let mut values = vec![0; ranks.len()];
    let mut rest = keys;
    for (index, rank) in ranks.iter().enumerate().rev() {
        let (smaller, value, _) = std::mem::take(&mut rest).select_nth_unstable(*rank);
        values[index] = *value;
        rest = smaller;
    }
    values
}
