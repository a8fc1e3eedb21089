//! Reading series from the host's store.

use std::time::Duration;

use crate::__bindings::types as wit;
use crate::LabelPair;

use warden_reduce::Of;
pub use warden_reduce::{Aggregate, Over, quantile_of};
pub use wit::{Reduced, Series};

/// What [`query_reduced`] computes: each window reduced `over`, then, with
/// `by`, the series grouped by those labels and each group's values combined
/// by `aggregate`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reduce<'a> {
    /// Each series' window to one value.
    pub over: Over,
    /// For [`Over::Quantile`]: which one, in 0..=1.
    pub quantile: Option<f64>,
    /// Group by these labels.
    pub by: Option<&'a [String]>,
    /// How a group's values combine.
    pub aggregate: Aggregate,
}

/// Returns, for every series of `metric` whose labels include all of
/// `matchers` and that has samples in the last `window`, the window reduced
/// as `how` says (or each group's value, in the order of the groups'
/// labels). The host computes it next to the samples, so none crosses into
/// the plugin: the cheap way to read a window when one number per series or
/// group is all a rule needs. The values are those [`reduce_series`] computes
/// from [`query`]'s answer.
pub fn query_reduced(
    metric: &str,
    matchers: &[(&str, &str)],
    window: Duration,
    how: &Reduce<'_>,
) -> crate::Result<Vec<Reduced>> {
    let (selector, window_ms) = selector(metric, matchers, window);
    let how = wit::Reduce {
        over: how.over.into(),
        quantile: how.quantile,
        by: how.by.map(<[String]>::to_vec),
        aggregate: how.aggregate.into(),
    };
    Ok(crate::host::query_reduced(&selector, window_ms, &how)?)
}

/// The contract's names for [`Over`] and [`Aggregate`], both ways, by one
/// table each.
macro_rules! both_ways {
    ($ours:ident, $wit:ident, [$($v:ident),+]) => {
        impl From<$ours> for wit::$wit {
            fn from(x: $ours) -> Self {
                match x { $($ours::$v => wit::$wit::$v),+ }
            }
        }
        impl From<wit::$wit> for $ours {
            fn from(x: wit::$wit) -> Self {
                match x { $(wit::$wit::$v => $ours::$v),+ }
            }
        }
    };
}
both_ways!(
    Over,
    Reduction,
    [Latest, Avg, Min, Max, Sum, Count, Rate, Increase, Quantile]
);
both_ways!(Aggregate, Aggregation, [Sum, Max, Min, Avg, Count]);

/// What the host's `query-reduced` computes, over series already fetched:
/// series with no sample are skipped, and a series' value keeps its labels,
/// a group's has its `by` labels in `by`'s order.
pub fn reduce_series(series: &[Series], how: &Reduce<'_>) -> Vec<Reduced> {
    let values = series
        .iter()
        .filter(|s| !s.times.is_empty())
        .filter_map(|s| Some((s, s.reduce(how.over, how.quantile)?)));
    warden_reduce::each_or_grouped(values, how.by, how.aggregate, Series::label)
        .into_iter()
        .map(|(of, value)| Reduced {
            labels: match of {
                Of::Series(s) => s.labels.clone(),
                Of::Group(key) => key.into_iter().map(|(k, v)| LabelPair::new(k, v)).collect(),
            },
            value,
        })
        .collect()
}

/// Returns the samples of every series of `metric` whose labels include all of
/// `matchers`, from the last `window`.
pub fn query(
    metric: &str,
    matchers: &[(&str, &str)],
    window: Duration,
) -> crate::Result<Vec<Series>> {
    let (selector, window_ms) = selector(metric, matchers, window);
    Ok(crate::host::query_series(&selector, window_ms)?)
}

/// A query's selector and window as the host takes them.
fn selector(
    metric: &str,
    matchers: &[(&str, &str)],
    window: Duration,
) -> (wit::SeriesSelector, u64) {
    let selector = wit::SeriesSelector {
        metric: metric.to_owned(),
        matchers: matchers
            .iter()
            .map(|(k, v)| LabelPair::new(*k, *v))
            .collect(),
    };
    (
        selector,
        u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
    )
}

/// One observation of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was observed, ms since the epoch.
    pub at_ms: i64,
    /// The value.
    pub value: f64,
}

impl Series {
    /// Returns a series, for tests of a plugin as a pure function.
    pub fn new(metric: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Self {
        Series {
            metric: metric.to_owned(),
            labels: labels.iter().map(|(k, v)| LabelPair::new(*k, *v)).collect(),
            times: samples.iter().map(|s| s.0).collect(),
            values: samples.iter().map(|s| s.1).collect(),
        }
    }

    /// Returns the samples, oldest first.
    pub fn samples(&self) -> impl ExactSizeIterator<Item = Sample> + '_ {
        self.times.iter().zip(&self.values).map(|(t, v)| Sample {
            at_ms: *t,
            value: *v,
        })
    }

    /// Returns the newest sample, if the window held any.
    pub fn latest(&self) -> Option<Sample> {
        self.samples().last()
    }

    /// Returns the window reduced `over` (with `quantile` for
    /// [`Over::Quantile`]), if it has enough samples.
    pub fn reduce(&self, over: Over, quantile: Option<f64>) -> Option<f64> {
        let points = self.times.iter().copied().zip(self.values.iter().copied());
        warden_reduce::reduce(over, quantile, points)
    }

    /// Returns the value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        crate::label(&self.labels, key)
    }
}
