//! The store on `/metrics`, through `prometheus-client`'s encoder: each
//! series' newest value (a counter's total, a gauge's value); a histogram as
//! its 0.5/0.9/0.99 quantiles over the last [`SUMMARY_WINDOW`] plus `_count`
//! and `_sum` over the same window.
//!
//! Label values are pushed by anyone with the token and `prometheus-client`
//! 0.24 writes them as they are, so they are escaped here ([`escape`]): a
//! value with a quote and a newline must not end its line and forge another.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::aggregate::{Accumulator, Aggregation};
use super::series::Kind;
use super::store::SeriesStore;

/// How far back a histogram's quantiles look, and how stale a value may be
/// and still be shown.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(300);

const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];

/// Encodes the store for a scrape.
#[derive(Debug)]
pub struct StoreCollector(pub Arc<SeriesStore>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = warden_core::clock::now_ms();
        let from = now - i64::try_from(SUMMARY_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let mut result = Ok(());
        self.0.for_each_metric(from, now, |metric, kind, rows| {
            if result.is_err() {
                return;
            }
            result = encode_metric(&mut encoder, metric, kind, rows);
        });
        result
    }
}

fn encode_metric(
    encoder: &mut DescriptorEncoder,
    metric: &str,
    kind: Kind,
    rows: &[(&super::series::SeriesKey, Vec<warden_core::records::Sample>)],
) -> Result<(), std::fmt::Error> {
    match kind {
        Kind::Counter => {
            // The encoder adds `_total` itself.
            let name = metric.strip_suffix("_total").unwrap_or(metric);
            let mut family = encoder.encode_descriptor(
                name,
                "Counter recorded through Warden",
                None,
                MetricType::Counter,
            )?;
            for (key, samples) in rows {
                let labels = labels_of(key);
                let v = samples.last().map_or(0.0, |s| s.value);
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, f64, f64>(&v, None)?;
            }
        }
        Kind::Gauge => {
            let mut family = encoder.encode_descriptor(
                metric,
                "Gauge recorded through Warden",
                None,
                MetricType::Gauge,
            )?;
            for (key, samples) in rows {
                let labels = labels_of(key);
                let v = samples.last().map_or(0.0, |s| s.value);
                family.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        Kind::Histogram => {
            let accs: Vec<Accumulator> = rows
                .iter()
                .map(|(key, samples)| {
                    let mut a = Accumulator::new(true);
                    a.add_series(key.kind, samples.iter().copied());
                    a
                })
                .collect();
            {
                let mut family = encoder.encode_descriptor(
                    metric,
                    "Quantiles of observations recorded through Warden, last 5 minutes",
                    None,
                    MetricType::Gauge,
                )?;
                for ((key, _), acc) in rows.iter().zip(&accs) {
                    for (q, text) in QUANTILES {
                        let mut labels = labels_of(key);
                        labels.push(("quantile", Cow::Borrowed(text)));
                        let v = acc.get(Aggregation::Quantile(q)).unwrap_or(0.0);
                        family.encode_family(&labels)?.encode_gauge(&v)?;
                    }
                }
            }
            for (suffix, agg) in [("_count", Aggregation::Count), ("_sum", Aggregation::Sum)] {
                let name = format!("{metric}{suffix}");
                let mut family = encoder.encode_descriptor(
                    &name,
                    "Observations recorded through Warden, last 5 minutes",
                    None,
                    MetricType::Gauge,
                )?;
                for ((key, _), acc) in rows.iter().zip(&accs) {
                    let labels = labels_of(key);
                    let v = acc.get(agg).unwrap_or(0.0);
                    family.encode_family(&labels)?.encode_gauge(&v)?;
                }
            }
        }
    }
    Ok(())
}

fn labels_of(key: &super::series::SeriesKey) -> Vec<(&str, Cow<'_, str>)> {
    key.labels.iter().map(|(k, v)| (&**k, escape(v))).collect()
}

/// A label value as the text format writes it: `\`, `"` and a newline
/// escaped (OpenMetrics and Prometheus' text format agree on these three).
pub fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The recording pipeline's own counters, as `warden_metrics_*`.
#[derive(Debug)]
pub struct StatsCollector(pub super::Metrics);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let counters: [(&str, &str, u64); 8] = [
            (
                "warden_metrics_recorded",
                "Records taken into the metrics queue",
                s.total_recorded,
            ),
            (
                "warden_metrics_persisted",
                "Records written to batch files",
                s.total_persisted,
            ),
            (
                "warden_metrics_batches_written",
                "Batch files written",
                s.batches_written,
            ),
            (
                "warden_metrics_dropped_oldest",
                "Queued records dropped to make room (drop_oldest)",
                s.dropped_oldest,
            ),
            (
                "warden_metrics_rejected",
                "Records refused because the queue was full (reject)",
                s.rejected,
            ),
            (
                "warden_metrics_wait_timeouts",
                "Records refused after waiting for room (wait)",
                s.wait_timeouts,
            ),
            (
                "warden_metrics_write_errors",
                "Failed batch writes (each retried)",
                s.write_errors,
            ),
            (
                "warden_metrics_abandoned",
                "Records whose batch could not be written before shutdown",
                s.abandoned_at_shutdown,
            ),
        ];
        for (name, help, v) in counters {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, u64, f64>(&v, None)?;
        }
        let refused = s.series_refused;
        encoder
            .encode_descriptor(
                "warden_metrics_series_refused",
                "New series refused by the series cap",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, u64, f64>(&refused, None)?;
        let mut family = encoder.encode_descriptor(
            "warden_metrics_push_refused",
            "Pushed records refused, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &s.refused {
            family
                .encode_family(&[("reason", *reason)])?
                .encode_counter::<NoLabelSet, u64, f64>(n, None)?;
        }
        let gauges: [(&str, &str, i64); 3] = [
            (
                "warden_metrics_write_failing",
                "1 while batch files cannot be written (a full disk), else 0",
                i64::from(s.write_failing.is_some()),
            ),
            (
                "warden_metrics_queue_size",
                "Records queued or being written",
                i64::try_from(s.queue_size).unwrap_or(i64::MAX),
            ),
            (
                "warden_metrics_series",
                "Series in the store",
                i64::try_from(s.series).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, v) in gauges {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)?;
        }
        Ok(())
    }
}

/// A registry holding the store and the pipeline's counters, unprefixed:
/// series keep the names they were recorded under.
pub fn registry(metrics: &super::Metrics) -> prometheus_client::registry::Registry {
    let mut r = prometheus_client::registry::Registry::default();
    r.register_collector(Box::new(StatsCollector(metrics.clone())));
    r.register_collector(Box::new(StoreCollector(Arc::clone(metrics.store()))));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain /a b"), "plain /a b");
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
