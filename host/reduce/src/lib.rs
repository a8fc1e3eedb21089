//! What a rule computes from a window of samples: the window reduced to one
//! value per series ([`reduce`]), then, optionally, the series grouped by
//! labels and each group's values combined ([`Groups`]).
//!
//! One implementation serves both sides of the contract: the host answers
//! WIT 0.3.0's `query-reduced` with it, next to the samples, and the guest
//! SDK reduces what `query-series` returned with it, so a plugin gets the same
//! numbers either way, to the bit (the same operations in the same order).

use std::collections::BTreeMap;

/// How a window becomes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Over {
    /// The newest sample.
    #[default]
    Latest,
    /// The mean.
    Avg,
    /// The smallest.
    Min,
    /// The largest.
    Max,
    /// The sum of the samples.
    Sum,
    /// How many samples there are.
    Count,
    /// A counter's increase per second between the window's first and last
    /// samples; a drop is a reset, after which the counter counts from 0.
    Rate,
    /// A counter's increase between the window's first and last samples,
    /// resets handled as for `Rate`.
    Increase,
    /// A quantile of the samples, interpolated between the two nearest ranks
    /// as Prometheus' `quantile_over_time`.
    Quantile,
}

/// How the values of a group's series become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Aggregate {
    /// The sum.
    #[default]
    Sum,
    /// The largest.
    Max,
    /// The smallest.
    Min,
    /// The mean.
    Avg,
    /// How many series.
    Count,
}

/// Reduces a window of samples `(time in ms, value)`, oldest first, to one
/// value, if it has enough: values that are not finite are skipped, `Latest`
/// is the newest sample only if it is finite, `Rate` and `Increase` need two
/// samples, `Quantile` needs `quantile` in 0..=1.
pub fn reduce<I>(over: Over, quantile: Option<f64>, samples: I) -> Option<f64>
where
    I: DoubleEndedIterator<Item = (i64, f64)> + Clone,
{
    let values = samples.clone().map(|(_, v)| v).filter(|v| v.is_finite());
    match over {
        Over::Latest => {
            let mut newest_first = samples;
            newest_first
                .next_back()
                .map(|(_, v)| v)
                .filter(|v| v.is_finite())
        }
        Over::Min => values.reduce(f64::min),
        Over::Max => values.reduce(f64::max),
        Over::Sum => values.reduce(|a, b| a + b),
        Over::Count => Some(values.count() as f64),
        Over::Avg => {
            let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / n as f64)
        }
        Over::Increase => increase(samples).map(|(inc, _)| inc),
        Over::Rate => increase(samples)
            .and_then(|(inc, span_ms)| (span_ms > 0).then(|| inc / (span_ms as f64 / 1000.0))),
        Over::Quantile => {
            let mut v: Vec<f64> = values.collect();
            quantile_of(&mut v, quantile?)
        }
    }
}

/// A counter's increase over its window and the ms between the first and
/// last sample counted. A value below the one before is a reset: the counter
/// restarted from 0, so all of its new value is increase. Needs two samples.
fn increase(samples: impl Iterator<Item = (i64, f64)>) -> Option<(f64, i64)> {
    let mut points = samples.filter(|(_, v)| v.is_finite());
    let (t0, v0) = points.next()?;
    let (mut last_t, mut last_v, mut inc, mut n) = (t0, v0, 0.0, 1);
    for (t, v) in points {
        inc += if v >= last_v { v - last_v } else { v };
        (last_t, last_v) = (t, v);
        n += 1;
    }
    (n >= 2).then_some((inc, last_t - t0))
}

/// The `q` quantile of `v` by linear interpolation between ranks, as
/// Prometheus' `quantile_over_time`. Sorts `v`.
pub fn quantile_of(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let rank = q * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

/// What one value of [`each_or_grouped`] stands for.
#[derive(Debug, PartialEq)]
pub enum Of<'a, T: ?Sized> {
    /// One series, whose labels are its own.
    Series(&'a T),
    /// A group: the labels of `by` its series carry, in `by`'s order.
    Group(Vec<(&'a str, &'a str)>),
}

/// The answer to `query-reduced` from each series' value: the values as
/// they come, or with `by`, grouped ([`group_by`]). The one place the answer
/// takes its shape, for the host's store, a copied query and the SDK.
pub fn each_or_grouped<'a, T: ?Sized + 'a>(
    values: impl IntoIterator<Item = (&'a T, f64)>,
    by: Option<&'a [String]>,
    aggregate: Aggregate,
    label: impl Fn(&'a T, &str) -> Option<&'a str>,
) -> Vec<(Of<'a, T>, f64)> {
    match by {
        None => values
            .into_iter()
            .map(|(s, v)| (Of::Series(s), v))
            .collect(),
        Some(by) => group_by(values, by, aggregate, label)
            .map(|(k, v)| (Of::Group(k), v))
            .collect(),
    }
}

/// A group's running sum, max, min and count.
type Totals = (f64, f64, f64, usize);

/// Groups `values` (a series and its value) by the labels `by` names, which
/// `label` looks up in a series, and combines each group's values by
/// `aggregate`. Returns each group's labels (those of `by` its series carry,
/// in `by`'s order) and value, in the order of the labels; values are
/// combined in the order they come.
fn group_by<'a, T: ?Sized + 'a>(
    values: impl IntoIterator<Item = (&'a T, f64)>,
    by: &'a [String],
    aggregate: Aggregate,
    label: impl Fn(&'a T, &str) -> Option<&'a str>,
) -> impl Iterator<Item = (Vec<(&'a str, &'a str)>, f64)> {
    let mut groups: BTreeMap<Vec<(&str, &str)>, Totals> = BTreeMap::new();
    for (series, value) in values {
        let key = by
            .iter()
            .filter_map(|k| label(series, k).map(|v| (k.as_str(), v)))
            .collect();
        let g = groups
            .entry(key)
            .or_insert((0.0, f64::NEG_INFINITY, f64::INFINITY, 0));
        g.0 += value;
        g.1 = g.1.max(value);
        g.2 = g.2.min(value);
        g.3 += 1;
    }
    groups.into_iter().map(move |(k, (sum, max, min, n))| {
        let value = match aggregate {
            Aggregate::Sum => sum,
            Aggregate::Max => max,
            Aggregate::Min => min,
            Aggregate::Avg => sum / n as f64,
            Aggregate::Count => n as f64,
        };
        (k, value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(points: &[(i64, f64)]) -> impl DoubleEndedIterator<Item = (i64, f64)> + Clone {
        points.iter().copied()
    }

    #[test]
    fn each_reduction_over_a_window_with_a_gap_and_a_reset() {
        let w = [(0, 4.0), (10_000, f64::NAN), (20_000, 10.0), (30_000, 3.0)];
        let r = |over| reduce(over, Some(0.5), window(&w));
        assert_eq!(r(Over::Latest), Some(3.0));
        assert_eq!(r(Over::Min), Some(3.0));
        assert_eq!(r(Over::Max), Some(10.0));
        assert_eq!(r(Over::Sum), Some(17.0));
        assert_eq!(r(Over::Count), Some(3.0));
        assert_eq!(r(Over::Avg), Some(17.0 / 3.0));
        // 4 -> 10 is 6, then a reset to 3 counts 3.
        assert_eq!(r(Over::Increase), Some(9.0));
        assert_eq!(r(Over::Rate), Some(9.0 / 30.0));
        assert_eq!(r(Over::Quantile), Some(4.0));
    }

    #[test]
    fn too_little_to_say_is_none() {
        let one = [(0, 1.0)];
        assert_eq!(reduce(Over::Rate, None, window(&one)), None);
        assert_eq!(reduce(Over::Increase, None, window(&one)), None);
        assert_eq!(reduce(Over::Quantile, None, window(&one)), None);
        assert_eq!(reduce(Over::Quantile, Some(1.5), window(&one)), None);
        assert_eq!(reduce(Over::Avg, None, window(&[])), None);
        assert_eq!(reduce(Over::Count, None, window(&[])), Some(0.0));
        // The newest sample is the latest, even when it is not a number.
        assert_eq!(
            reduce(Over::Latest, None, window(&[(0, 1.0), (1, f64::NAN)])),
            None
        );
        // Two samples at one instant increase but have no rate.
        assert_eq!(
            reduce(Over::Rate, None, window(&[(5, 1.0), (5, 2.0)])),
            None
        );
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let mut v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_of(&mut v, 0.99), Some(4.96));
        assert_eq!(quantile_of(&mut v, 0.0), Some(1.0));
    }

    #[test]
    fn groups_come_out_in_key_order_combined() {
        let by = vec!["cluster".to_owned()];
        let series = [("b", 1.0), ("a", 2.0), ("b", 5.0), ("", 7.0)];
        fn label<'a>(s: &'a (&'static str, f64), k: &str) -> Option<&'a str> {
            (k == "cluster" && !s.0.is_empty()).then_some(s.0)
        }
        let values = series.iter().map(|s| (s, s.1));
        let avg: Vec<_> = group_by(values.clone(), &by, Aggregate::Avg, label).collect();
        assert_eq!(
            avg,
            vec![
                (vec![], 7.0),
                (vec![("cluster", "a")], 2.0),
                (vec![("cluster", "b")], 3.0)
            ]
        );
        // Without `by`, each series as it came; with it, the groups.
        let each = each_or_grouped(values.clone(), None, Aggregate::Sum, label);
        assert_eq!(each[1], (Of::Series(&series[1]), 2.0));
        assert_eq!(each.len(), 4);
        let grouped = each_or_grouped(values, Some(&by), Aggregate::Max, label);
        assert_eq!(grouped[2], (Of::Group(vec![("cluster", "b")]), 5.0));
    }
}
