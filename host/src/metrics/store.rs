//! Labeled series in bounded ring buffers, queried by metric name, label
//! matchers and time window. This is what the `query-series` host import reads.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use crate::plugin::records::{Labels, Sample, Series, SeriesSelector, TimestampMs};

/// Why a sample was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many series as it may; a new one was refused.
    #[error(
        "the store already holds its limit of {limit} series; `{metric}` with new labels was refused (raise `max_series` or drop a label with many values)"
    )]
    TooManySeries {
        /// The limit.
        limit: usize,
        /// The metric of the refused series.
        metric: String,
    },
    /// The value is NaN or infinite.
    #[error("`{metric}`: value {value} is not a finite number")]
    NotFinite {
        /// The metric.
        metric: String,
        /// The value, as text.
        value: String,
    },
}

struct SeriesData {
    metric: String,
    labels: Labels,
    samples: VecDeque<Sample>,
}

#[derive(Default)]
struct Inner {
    index: HashMap<(String, Labels), usize>,
    by_metric: HashMap<String, Vec<usize>>,
    series: Vec<SeriesData>,
    refused: u64,
}

/// The series store. Shared between ingest and every policy evaluation.
pub struct SeriesStore {
    inner: RwLock<Inner>,
    max_series: usize,
    max_samples: usize,
}

impl std::fmt::Debug for SeriesStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesStore")
            .field("max_series", &self.max_series)
            .field("max_samples", &self.max_samples)
            .finish_non_exhaustive()
    }
}

impl Default for SeriesStore {
    fn default() -> Self {
        SeriesStore::new(100_000, 720)
    }
}

impl SeriesStore {
    /// Returns a store of at most `max_series` series, each keeping its newest
    /// `max_samples` samples.
    pub fn new(max_series: usize, max_samples: usize) -> Self {
        SeriesStore {
            inner: RwLock::new(Inner::default()),
            max_series,
            max_samples: max_samples.max(1),
        }
    }

    /// Records `value` at `at_ms` for the series `metric{labels}`.
    pub fn record(
        &self,
        metric: &str,
        labels: &[(&str, &str)],
        at_ms: TimestampMs,
        value: f64,
    ) -> Result<(), StoreError> {
        if !value.is_finite() {
            return Err(StoreError::NotFinite {
                metric: metric.to_owned(),
                value: value.to_string(),
            });
        }
        let mut key_labels: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        key_labels.sort();
        let key = (metric.to_owned(), key_labels);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let id = match inner.index.get(&key) {
            Some(id) => *id,
            None => {
                if inner.series.len() >= self.max_series {
                    inner.refused += 1;
                    return Err(StoreError::TooManySeries {
                        limit: self.max_series,
                        metric: metric.to_owned(),
                    });
                }
                let id = inner.series.len();
                inner.series.push(SeriesData {
                    metric: key.0.clone(),
                    labels: key.1.clone(),
                    samples: VecDeque::new(),
                });
                inner.by_metric.entry(key.0.clone()).or_default().push(id);
                inner.index.insert(key, id);
                id
            }
        };
        let samples = &mut inner.series[id].samples;
        if samples.len() == self.max_samples {
            samples.pop_front();
        }
        samples.push_back(Sample { at_ms, value });
        Ok(())
    }

    /// Returns the number of series.
    pub fn series_count(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .series
            .len()
    }

    /// Returns how many new series were refused for the series cap.
    pub fn refused_series(&self) -> u64 {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).refused
    }

    /// Returns every series matching `selector` with its samples in
    /// `(now - window_ms, now]`.
    pub fn query(
        &self,
        selector: &SeriesSelector,
        window_ms: u64,
        now_ms: TimestampMs,
    ) -> Vec<Series> {
        let from = now_ms.saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(ids) = inner.by_metric.get(&selector.metric) else {
            return Vec::new();
        };
        ids.iter()
            .map(|id| &inner.series[*id])
            .filter(|s| {
                selector
                    .matchers
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|s| Series {
                metric: s.metric.clone(),
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .filter(|p| p.at_ms > from && p.at_ms <= now_ms)
                    .copied()
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(metric: &str, matchers: &[(&str, &str)]) -> SeriesSelector {
        SeriesSelector {
            metric: metric.into(),
            matchers: matchers
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn query_filters_by_labels_and_window_and_keeps_order() {
        let s = SeriesStore::new(10, 100);
        for t in 1..=5 {
            s.record("cpu", &[("core", "0")], t * 1000, t as f64)
                .unwrap();
            s.record("cpu", &[("core", "1")], t * 1000, -(t as f64))
                .unwrap();
        }
        let got = s.query(&sel("cpu", &[("core", "0")]), 2500, 5000);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![3.0, 4.0, 5.0]
        );
        assert_eq!(s.query(&sel("cpu", &[]), 60_000, 5000).len(), 2);
        assert!(s.query(&sel("mem", &[]), 60_000, 5000).is_empty());
    }

    #[test]
    fn label_order_does_not_make_a_new_series() {
        let s = SeriesStore::new(10, 10);
        s.record("m", &[("a", "1"), ("b", "2")], 1, 1.0).unwrap();
        s.record("m", &[("b", "2"), ("a", "1")], 2, 2.0).unwrap();
        assert_eq!(s.series_count(), 1);
    }

    #[test]
    fn ring_buffer_keeps_the_newest_samples() {
        let s = SeriesStore::new(10, 3);
        for t in 1..=10 {
            s.record("m", &[], t, t as f64).unwrap();
        }
        let got = s.query(&sel("m", &[]), 1000, 10);
        assert_eq!(
            got[0].samples.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
            vec![8, 9, 10]
        );
    }

    #[test]
    fn the_series_cap_refuses_new_series_with_a_clear_error() {
        let s = SeriesStore::new(2, 3);
        s.record("m", &[("i", "1")], 1, 1.0).unwrap();
        s.record("m", &[("i", "2")], 1, 1.0).unwrap();
        let e = s.record("m", &[("i", "3")], 1, 1.0).unwrap_err();
        assert!(e.to_string().contains("limit of 2 series"), "{e}");
        s.record("m", &[("i", "1")], 2, 1.0).unwrap();
        assert_eq!((s.series_count(), s.refused_series()), (2, 1));
        assert!(matches!(
            s.record("m", &[], 1, f64::NAN),
            Err(StoreError::NotFinite { .. })
        ));
    }
}
