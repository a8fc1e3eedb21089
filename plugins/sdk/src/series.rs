//! Reading series from the host's store.

use std::time::Duration;

use crate::__bindings::types as wit;
use crate::LabelPair;

pub use wit::Series;

/// Returns the samples of every series of `metric` whose labels include all of
/// `matchers`, from the last `window`.
pub fn query(
    metric: &str,
    matchers: &[(&str, &str)],
    window: Duration,
) -> crate::Result<Vec<Series>> {
    let selector = wit::SeriesSelector {
        metric: metric.to_owned(),
        matchers: matchers
            .iter()
            .map(|(k, v)| LabelPair::new(*k, *v))
            .collect(),
    };
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    Ok(crate::host::query_series(&selector, window_ms)?)
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

    /// Returns the value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        crate::label(&self.labels, key)
    }
}
