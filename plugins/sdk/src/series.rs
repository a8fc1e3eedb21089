//! Reading series from the host's store.

use std::time::Duration;

use crate::__bindings::types as wit;
use crate::LabelPair;

pub use wit::{Sample, Series};

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
    Ok(crate::__bindings::host::query_series(&selector, window_ms)?)
}

impl Series {
    /// Returns the newest sample, if the window held any.
    pub fn latest(&self) -> Option<Sample> {
        self.samples.last().cloned()
    }

    /// Returns the value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        crate::label(&self.labels, key)
    }
}
