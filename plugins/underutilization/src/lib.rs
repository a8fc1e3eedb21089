//! `underutilization`: the detector shipped with Warden for resources
//! provisioned far above what they use. For each series of a usage metric
//! it compares a high percentile of the usage over a window (the peak that
//! matters, not a single outlier) with the capacity — a fixed number, or a
//! capacity metric paired by labels — and reports a finding
//! (`underutilization`) when even that peak stays below a share of the
//! capacity. The finding says what size would do, with headroom, and how
//! much that frees: the waste.
//!
//! ```yaml
//! config:
//!   metric: process_resident_memory_bytes
//!   capacity: 4294967296         # or capacity_metric: memory_limit_bytes
//!   on: [process]                # labels pairing usage with capacity (default: all)
//!   window: 24h
//!   percentile: 0.95             # the usage peak that counts
//!   below: 0.3                   # report when the peak stays below 30% of capacity
//!   headroom: 0.25               # recommend the peak plus 25%
//!   min_coverage: 0.5            # the samples must span half the window at least
//!   severity: info
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use warden_sdk::config::HumanDuration;
use warden_sdk::detector::{Detector, Finding};
use warden_sdk::series::Series;
use warden_sdk::{Invocation, Severity};

/// Severity as written in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Info.
    #[default]
    Info,
    /// Warning.
    Warning,
    /// Critical.
    Critical,
}

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The usage metric.
    pub metric: String,
    /// Labels a series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// A fixed capacity, for every series.
    #[serde(default)]
    pub capacity: Option<f64>,
    /// A capacity metric, paired with the usage by the `on` labels.
    #[serde(default)]
    pub capacity_metric: Option<String>,
    /// The labels pairing usage and capacity series (default: every label of
    /// the capacity series).
    #[serde(default)]
    pub on: Option<Vec<String>>,
    /// How far back usage is looked at.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// The percentile of usage that counts as its peak.
    #[serde(default = "default_percentile")]
    pub percentile: f64,
    /// Report when the peak stays below this share of the capacity.
    #[serde(default = "default_below")]
    pub below: f64,
    /// The headroom recommended above the peak, as a share of it.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// The share of the window the samples must span.
    #[serde(default = "default_min_coverage")]
    pub min_coverage: f64,
    /// The findings' severity.
    #[serde(default)]
    pub severity: Level,
}

fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}
fn default_percentile() -> f64 {
    0.95
}
fn default_below() -> f64 {
    0.3
}
fn default_headroom() -> f64 {
    0.25
}
fn default_min_coverage() -> f64 {
    0.5
}

/// How one series uses its capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// The capacity.
    pub capacity: f64,
    /// The mean usage.
    pub avg: f64,
    /// The usage at the configured percentile.
    pub peak: f64,
    /// The largest usage.
    pub max: f64,
    /// The share of the window the samples span.
    pub coverage: f64,
}

impl Usage {
    /// The size recommended: the peak plus headroom, never above capacity.
    pub fn recommended(&self, headroom: f64) -> f64 {
        (self.peak * (1.0 + headroom)).min(self.capacity)
    }
}

/// The detector.
pub struct Underutilization(Config);

fn percentile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let rank = q * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (rank - lo as f64))
}

impl Underutilization {
    fn key(&self, s: &Series, capacity: &Series) -> bool {
        capacity.labels.iter().all(|l| {
            let wanted = self.0.on.as_ref().is_none_or(|on| on.contains(&l.key));
            !wanted || s.label(&l.key) == Some(l.value.as_str())
        }) && self
            .0
            .on
            .as_ref()
            .is_none_or(|on| on.iter().all(|k| s.label(k) == capacity.label(k)))
    }

    /// How `s` uses its capacity (`None` when the capacity is unknown or not
    /// above 0, or the series says too little).
    pub fn usage(&self, s: &Series, capacities: &[Series]) -> Option<Usage> {
        let capacity = match self.0.capacity {
            Some(c) => c,
            None => capacities
                .iter()
                .find(|c| self.key(s, c))
                .and_then(|c| c.values.iter().rev().copied().find(|v| v.is_finite()))?,
        };
        if !(capacity.is_finite() && capacity > 0.0) {
            return None;
        }
        let mut v: Vec<f64> = s.values.iter().copied().filter(|v| v.is_finite()).collect();
        let span = match (s.times.first(), s.times.last()) {
            (Some(a), Some(b)) => (b - a) as f64,
            _ => return None,
        };
        let coverage = span / self.0.window.as_millis().max(1) as f64;
        if coverage < self.0.min_coverage || v.len() < 2 {
            return None;
        }
        let avg = v.iter().sum::<f64>() / v.len() as f64;
        let peak = percentile(&mut v, self.0.percentile)?;
        let max = *v.last()?;
        Some(Usage {
            capacity,
            avg,
            peak,
            max,
            coverage: coverage.min(1.0),
        })
    }

    /// Returns the findings for `series` (and, with `capacity_metric`, the
    /// capacity series): the pure heart of the plugin.
    pub fn check(&self, series: &[Series], capacities: &[Series]) -> Vec<Finding> {
        series
            .iter()
            .filter_map(|s| {
                let u = self.usage(s, capacities)?;
                (u.peak < self.0.below * u.capacity).then(|| self.finding(s, &u))
            })
            .collect()
    }

    fn finding(&self, s: &Series, u: &Usage) -> Finding {
        let c = &self.0;
        let recommended = u.recommended(c.headroom);
        let waste = u.capacity - recommended;
        let severity = match c.severity {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        };
        Finding::new("underutilization", s.metric.clone())
            .labels(&s.labels)
            .severity(severity)
            .confidence(u.coverage)
            .recommend(format!(
                "`{}` peaks at {:.4} (p{}) against a capacity of {:.4}, {:.1}% of it, over {}; {:.4} would leave {:.0}% headroom and free {:.4} ({:.1}%)",
                s.metric,
                u.peak,
                c.percentile * 100.0,
                u.capacity,
                100.0 * u.peak / u.capacity,
                c.window,
                recommended,
                c.headroom * 100.0,
                waste,
                100.0 * waste / u.capacity
            ))
            .evidence("capacity", u.capacity)
            .evidence("avg", u.avg)
            .evidence("peak", u.peak)
            .evidence("max", u.max)
            .evidence("utilization", u.peak / u.capacity)
            .evidence("avg_utilization", u.avg / u.capacity)
            .evidence("recommended", recommended)
            .evidence("waste", waste)
            .evidence("waste_ratio", waste / u.capacity)
    }
}

impl Detector for Underutilization {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        use warden_sdk::Error;
        const ONE_OF: &str = "give exactly one of `capacity` (a number) and `capacity_metric` (a metric paired with the usage)";
        match (&config.capacity, &config.capacity_metric) {
            (Some(c), None) if c.is_finite() && *c > 0.0 => {}
            (Some(_), None) => return Err(Error::at("capacity", "must be a number above 0")),
            (None, Some(m)) if !m.is_empty() => {}
            (None, Some(_)) => {
                return Err(Error::at("capacity_metric", "must not be empty"));
            }
            // Both given: the second is the one too many. Neither: the
            // config as a whole lacks it.
            (Some(_), Some(_)) => return Err(Error::at("capacity_metric", ONE_OF)),
            (None, None) => return Err(Error::msg(ONE_OF)),
        }
        if config.on.is_some() && config.capacity_metric.is_none() {
            return Err(Error::at(
                "on",
                "pairs usage with `capacity_metric`; this config has none",
            ));
        }
        let shares = [
            ("percentile", config.percentile, 0.0, 1.0),
            ("below", config.below, 0.0, 1.0),
            ("min_coverage", config.min_coverage, 0.0, 1.0),
            ("headroom", config.headroom, 0.0, 10.0),
        ];
        for (field, v, lo, hi) in shares {
            if !(lo..=hi).contains(&v) {
                return Err(Error::at(
                    field,
                    format!("is {v}; it must be between {lo} and {hi}"),
                ));
            }
        }
        Ok(Underutilization(config))
    }

    fn detect(&self, _: &Invocation) -> warden_sdk::Result<Vec<Finding>> {
        let matchers: Vec<(&str, &str)> = self
            .0
            .matchers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let series = warden_sdk::series::query(&self.0.metric, &matchers, self.0.window.0)?;
        let capacities = match &self.0.capacity_metric {
            Some(m) => warden_sdk::series::query(m, &[], self.0.window.0)?,
            None => Vec::new(),
        };
        Ok(self.check(&series, &capacities))
    }
}

warden_sdk::register_detector!(Underutilization);

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn detector(json: &str) -> Underutilization {
        Underutilization::new(serde_json::from_str(json).unwrap()).unwrap()
    }

    fn usage(process: &str, f: impl Fn(i64) -> f64) -> Series {
        let samples: Vec<(i64, f64)> = (0..=1440).map(|m| (m * MIN, f(m))).collect();
        Series::new("mem_used", &[("process", process)], &samples)
    }

    #[test]
    fn a_resource_whose_peak_stays_low_is_reported_with_its_waste() {
        let d = detector(r#"{"metric": "mem_used", "capacity": 1000, "headroom": 0.25}"#);
        // 100 most of the time, 200 for an hour a day: p95 is 100.
        let low = usage("a", |m| if m < 60 { 200.0 } else { 100.0 });
        let busy = usage("b", |m| 500.0 + (m % 100) as f64);
        let found = d.check(&[low, busy], &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.pattern, "underutilization");
        assert_eq!(warden_sdk::label(&f.labels, "process"), Some("a"));
        assert_eq!(f.evidence_of("peak"), Some(100.0));
        assert_eq!(f.evidence_of("max"), Some(200.0));
        assert_eq!(f.evidence_of("recommended"), Some(125.0));
        assert_eq!(f.evidence_of("waste"), Some(875.0));
        assert_eq!(f.evidence_of("waste_ratio"), Some(0.875));
        assert_eq!(f.confidence, 1.0);
    }

    #[test]
    fn capacity_comes_from_a_metric_paired_by_labels() {
        let d = detector(
            r#"{"metric": "mem_used", "capacity_metric": "mem_limit", "on": ["process"]}"#,
        );
        let limit = |p: &str, v: f64| Series::new("mem_limit", &[("process", p)], &[(0, v)]);
        let a = usage("a", |_| 100.0);
        let b = usage("b", |_| 100.0);
        let found = d.check(&[a, b], &[limit("a", 1000.0), limit("b", 200.0)]);
        assert_eq!(found.len(), 1);
        assert_eq!(warden_sdk::label(&found[0].labels, "process"), Some("a"));
        assert_eq!(found[0].evidence_of("capacity"), Some(1000.0));
        let unpaired = usage("c", |_| 1.0);
        assert!(
            d.check(&[unpaired], &[limit("a", 1000.0)]).is_empty(),
            "no capacity, no finding"
        );
    }

    #[test]
    fn too_short_a_history_says_nothing() {
        let d = detector(r#"{"metric": "mem_used", "capacity": 1000}"#);
        let samples: Vec<(i64, f64)> = (0..60).map(|m| (m * MIN, 1.0)).collect();
        assert!(
            d.check(&[Series::new("mem_used", &[], &samples)], &[])
                .is_empty()
        );
    }

    #[test]
    fn a_config_without_one_capacity_is_refused() {
        for json in [
            r#"{"metric": "m"}"#,
            r#"{"metric": "m", "capacity": 1, "capacity_metric": "c"}"#,
            r#"{"metric": "m", "capacity": 0}"#,
            r#"{"metric": "m", "capacity": 1, "on": ["x"]}"#,
            r#"{"metric": "m", "capacity": 1, "below": 2}"#,
        ] {
            assert!(
                Underutilization::new(serde_json::from_str(json).unwrap()).is_err(),
                "{json}"
            );
        }
    }
}
