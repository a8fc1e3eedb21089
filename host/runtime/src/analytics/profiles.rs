//! Usage profiles: how each watched process and each kind of registered
//! resource uses what it holds, over a window.
//!
//! A process profile has, per resource (CPU, memory, threads, descriptors,
//! connections), the mean, the 95th percentile, the peak, the spread
//! (standard deviation and coefficient of variation), the peak against the
//! mean, the **efficiency** — the mean against the peak: what share of a
//! peak-sized provision is used on average — and the **waste**, its
//! complement in percent. A resource-kind profile counts registered
//! resources and their bytes, and calls waste what has gone unused for
//! longer than `idle`.

use std::collections::BTreeMap;

use serde::Serialize;

use warden_core::records::{ResourceFilter, ResourceKind, SeriesSelector};
use warden_metrics::SeriesStore;
use warden_resources::Registry;

/// The process metrics a profile reads, with the name it shows them under.
/// A metric with several series per process (descriptors by type) is summed
/// per sample time.
pub const PROCESS_METRICS: [(&str, &str); 5] = [
    ("cpu", "process_cpu_usage_ratio"),
    ("memory_bytes", "process_resident_memory_bytes"),
    ("threads", "process_threads"),
    ("open_fds", "process_open_fds"),
    ("tcp_connections", "process_tcp_connections"),
];

/// How one resource was used over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageStats {
    /// Samples seen.
    pub samples: usize,
    /// The mean.
    pub avg: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The largest value.
    pub peak: f64,
    /// The standard deviation.
    pub stddev: f64,
    /// The standard deviation against the mean (0 when the mean is 0).
    pub variation: f64,
    /// The peak against the mean.
    pub peak_to_avg: f64,
    /// The mean against the peak, 0 to 1.
    pub efficiency: f64,
    /// `100 × (1 − efficiency)`: the share of a peak-sized provision idle on
    /// average.
    pub waste_pct: f64,
}

impl UsageStats {
    /// The stats of `values` (finite ones), if there are any.
    pub fn of(values: &[f64]) -> Option<UsageStats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len() as f64;
        let avg = v.iter().sum::<f64>() / n;
        let stddev = (v.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n).sqrt();
        v.sort_unstable_by(f64::total_cmp);
        let peak = v[v.len() - 1];
        let rank = 0.95 * (v.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        let p95 = v[lo] + (v[hi] - v[lo]) * (rank - lo as f64);
        let efficiency = if peak > 0.0 {
            (avg / peak).clamp(0.0, 1.0)
        } else {
            1.0
        };
        Some(UsageStats {
            samples: v.len(),
            avg,
            p95,
            peak,
            stddev,
            variation: if avg != 0.0 { stddev / avg.abs() } else { 0.0 },
            peak_to_avg: if avg > 0.0 { peak / avg } else { 0.0 },
            efficiency,
            waste_pct: 100.0 * (1.0 - efficiency),
        })
    }
}

/// One process's profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessProfile {
    /// The `process` label of its series.
    pub process: String,
    /// Per resource (`cpu`, `memory_bytes`, …), how it was used.
    pub usage: BTreeMap<&'static str, UsageStats>,
}

/// One resource kind's profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindProfile {
    /// The kind.
    pub kind: &'static str,
    /// Resources registered.
    pub count: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Those unused for longer than `idle`.
    pub idle: usize,
    /// Their bytes.
    pub idle_bytes: u64,
    /// The bytes in use (not idle) against all bytes, 0 to 1 (by count when
    /// no resource has a size).
    pub efficiency: f64,
    /// `100 × (1 − efficiency)`.
    pub waste_pct: f64,
}

/// Every profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profiles {
    /// The window the process profiles cover, ms.
    pub window_ms: u64,
    /// Per process.
    pub processes: Vec<ProcessProfile>,
    /// Per kind of registered resource.
    pub resource_kinds: Vec<KindProfile>,
}

/// The profile of every process with series in `store` over the `window_ms`
/// before `now_ms`, and of every kind of resource in `registry` (idle: not
/// used for `idle_ms`).
pub fn profiles(
    store: &SeriesStore,
    registry: &Registry,
    window_ms: u64,
    idle_ms: u64,
    now_ms: i64,
) -> Profiles {
    let mut by_process: BTreeMap<String, BTreeMap<&'static str, Vec<f64>>> = BTreeMap::new();
    for (name, metric) in PROCESS_METRICS {
        let selector = SeriesSelector {
            metric: metric.into(),
            matchers: Vec::new(),
        };
        // Sum series of one process at each sample time (descriptors by type).
        let mut summed: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
        for s in store.query(&selector, window_ms, now_ms) {
            let Some((_, process)) = s.labels.iter().find(|(k, _)| k == "process") else {
                continue;
            };
            let at = summed.entry(process.clone()).or_default();
            for p in &s.samples {
                *at.entry(p.at_ms).or_default() += p.value;
            }
        }
        for (process, points) in summed {
            by_process
                .entry(process)
                .or_default()
                .insert(name, points.into_values().collect());
        }
    }
    let processes = by_process
        .into_iter()
        .map(|(process, m)| ProcessProfile {
            process,
            usage: m
                .into_iter()
                .filter_map(|(k, v)| UsageStats::of(&v).map(|s| (k, s)))
                .collect(),
        })
        .collect();
    let idle_cutoff = now_ms.saturating_sub(i64::try_from(idle_ms).unwrap_or(i64::MAX));
    let views = registry.views(&ResourceFilter::default(), None);
    let resource_kinds = ResourceKind::ALL
        .iter()
        .filter_map(|kind| {
            let of_kind: Vec<_> = views.iter().filter(|v| v.kind == kind.name()).collect();
            if of_kind.is_empty() {
                return None;
            }
            let idle: Vec<_> = of_kind
                .iter()
                .filter(|v| v.accessed_ms < idle_cutoff)
                .collect();
            let bytes: u64 = of_kind.iter().map(|v| v.size_bytes).sum();
            let idle_bytes: u64 = idle.iter().map(|v| v.size_bytes).sum();
            let efficiency = if bytes > 0 {
                1.0 - idle_bytes as f64 / bytes as f64
            } else {
                1.0 - idle.len() as f64 / of_kind.len() as f64
            };
            Some(KindProfile {
                kind: kind.name(),
                count: of_kind.len(),
                bytes,
                idle: idle.len(),
                idle_bytes,
                efficiency,
                waste_pct: 100.0 * (1.0 - efficiency),
            })
        })
        .collect();
    Profiles {
        window_ms,
        processes,
        resource_kinds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_say_how_much_of_a_peak_sized_provision_is_used() {
        let s = UsageStats::of(&[1.0, 1.0, 1.0, 5.0]).unwrap();
        assert_eq!((s.avg, s.peak, s.peak_to_avg), (2.0, 5.0, 2.5));
        assert!((s.efficiency - 0.4).abs() < 1e-12);
        assert!((s.waste_pct - 60.0).abs() < 1e-9);
        assert!((s.stddev - 3f64.sqrt()).abs() < 1e-12);
        assert!(UsageStats::of(&[f64::NAN]).is_none());
    }
}
