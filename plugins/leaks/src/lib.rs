//! `leaks`: the leak detector shipped with Warden. It looks at two things.
//!
//! **What watched processes hold**, from the collector's series: open
//! descriptors (by type), sockets left in CLOSE_WAIT, threads and resident
//! memory. A series leaks when it grows steadily — a significant
//! Mann–Kendall trend, a Theil–Sen slope that adds up to at least
//! `min_growth` over the window, rising through each half of its last
//! `min_rise`, and a floor that rises with it — so a garbage collector's sawtooth, bursts
//! that come back down, a single step and a warm-up that levelled off are
//! not leaks (see `growth.rs`).
//!
//! **What applications registered**: resources unused past their TTL,
//! orphans (their owner process is gone) and dependency cycles, one finding
//! per owner (per cycle for cycles).
//!
//! ```yaml
//! config:
//!   window: 30m            # history judged; longer sees slower leaks, later
//!   min_duration: 15m      # less history is not judged (a few collector cycles)
//!   min_rise: 10m          # growth must have lasted this long: shorter swells,
//!                          # bursts and warm-ups are not leaks
//!   min_score: 3           # Mann–Kendall score (about p < 0.0015, one-sided)
//!   watch:                 # default: the four below
//!     - metric: process_open_fds
//!       pattern: fd-leak
//!       min_growth: 16
//!     - metric: process_tcp_connections
//!       matchers: {state: close_wait}
//!       pattern: close-wait-pileup
//!       min_growth: 8
//!     - metric: process_threads
//!       pattern: thread-leak
//!       min_growth: 8
//!     - metric: process_resident_memory_bytes
//!       pattern: memory-leak
//!       min_growth: 33554432  # 32 MiB
//!       capacity: 4294967296  # optional: predict exhaustion of this
//!   registered: true       # expired, orphaned and cyclic registered resources
//! ```

pub mod growth;
pub mod registered;
pub mod stats;

use std::collections::BTreeMap;

use serde::Deserialize;
use warden_sdk::config::HumanDuration;
use warden_sdk::detector::{Detector, Finding};
use warden_sdk::series::Series;
use warden_sdk::{Error, Invocation, Severity};

use growth::{Growth, Rules};

/// One metric watched for growth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// The metric.
    pub metric: String,
    /// Labels a series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// The finding's pattern, such as `fd-leak`.
    pub pattern: String,
    /// The least robust growth over the window that is reported.
    pub min_growth: f64,
    /// The value at which the resource is exhausted; findings then predict when.
    #[serde(default)]
    pub capacity: Option<f64>,
}

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The history judged.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Less history than this is not judged.
    #[serde(default = "default_min_duration")]
    pub min_duration: HumanDuration,
    /// How long growth must have lasted.
    #[serde(default = "default_min_rise")]
    pub min_rise: HumanDuration,
    /// The Mann–Kendall score a window must reach.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
    /// Fewer samples than this are not judged.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// The metrics watched for growth.
    #[serde(default = "default_watch")]
    pub watch: Vec<Watch>,
    /// Whether registered resources are checked.
    #[serde(default = "yes")]
    pub registered: bool,
}

fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30 * 60))
}
fn default_min_duration() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15 * 60))
}
fn default_min_rise() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10 * 60))
}
fn default_min_score() -> f64 {
    3.0
}
fn default_min_samples() -> usize {
    12
}
fn yes() -> bool {
    true
}

/// The four inventories the collector keeps per watched process.
pub fn default_watch() -> Vec<Watch> {
    let w = |metric: &str, matchers: &[(&str, &str)], pattern: &str, min_growth: f64| Watch {
        metric: metric.into(),
        matchers: matchers
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        pattern: pattern.into(),
        min_growth,
        capacity: None,
    };
    vec![
        w("process_open_fds", &[], "fd-leak", 16.0),
        w(
            "process_tcp_connections",
            &[("state", "close_wait")],
            "close-wait-pileup",
            8.0,
        ),
        w("process_threads", &[], "thread-leak", 8.0),
        w(
            "process_resident_memory_bytes",
            &[],
            "memory-leak",
            32.0 * 1024.0 * 1024.0,
        ),
    ]
}

/// The detector.
pub struct Leaks(Config);

impl Leaks {
    fn rules(&self, w: &Watch) -> Rules {
        Rules {
            min_samples: self.0.min_samples,
            min_duration_ms: i64::try_from(self.0.min_duration.0.as_millis()).unwrap_or(i64::MAX),
            min_rise_ms: i64::try_from(self.0.min_rise.0.as_millis()).unwrap_or(i64::MAX),
            min_growth: w.min_growth,
            min_score: self.0.min_score,
        }
    }

    /// Returns the findings for `series` of `watch`: the pure heart of the
    /// series half of the plugin.
    pub fn check(&self, watch: &Watch, series: &[Series]) -> Vec<Finding> {
        let rules = self.rules(watch);
        series
            .iter()
            .filter_map(|s| {
                let points: Vec<(i64, f64)> = s.samples().map(|p| (p.at_ms, p.value)).collect();
                growth::judge(&points, &rules)
                    .ok()
                    .map(|g| finding(watch, s, &g))
            })
            .collect()
    }
}

fn finding(w: &Watch, s: &Series, g: &Growth) -> Finding {
    let per_min = g.slope * 60_000.0;
    let minutes = g.duration_ms as f64 / 60_000.0;
    let who = s
        .label("process")
        .map_or_else(String::new, |p| format!("`{p}` "));
    let what = match w.pattern.as_str() {
        "fd-leak" => "descriptors opened and never closed (`ls -l /proc/PID/fd`)",
        "close-wait-pileup" => "connections whose peer hung up and which the process never closes",
        "thread-leak" => "threads started and never joined",
        "memory-leak" => "memory allocated and kept (a heap profile of the process)",
        _ => "what is acquired and never given back",
    };
    let exhaustion = w
        .capacity
        .and_then(|cap| (g.latest < cap).then(|| ((cap - g.latest) / g.slope).max(0.0) as u64));
    let severity = match exhaustion {
        Some(ms) if ms < 3_600_000 => Severity::Critical,
        _ => Severity::Warning,
    };
    let mut f = Finding::new(w.pattern.clone(), s.metric.clone())
        .labels(&s.labels)
        // The trend's one-sided significance.
        .confidence(stats::normal_cdf(g.score))
        .severity(severity)
        .recommend(format!(
            "{who}{} grew by {:.0} over {minutes:.0} min ({per_min:+.2}/min) and is still growing; look for {what}",
            s.metric, g.growth
        ))
        .evidence("slope_per_min", per_min)
        .evidence("growth", g.growth)
        .evidence("duration_s", g.duration_ms as f64 / 1000.0)
        .evidence("count", g.latest)
        .evidence("floor_rise", g.floor_rise)
        .evidence("trend_score", g.score);
    if let Some(ms) = exhaustion {
        f = f.exhaustion_in(std::time::Duration::from_millis(ms));
    }
    f
}

impl Detector for Leaks {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        if config.window.0.is_zero() {
            return Err(Error::at("window", "must be longer than 0"));
        }
        if config.min_duration.0 > config.window.0 {
            return Err(Error::at(
                "min_duration",
                "must not be longer than `window`, which would never hold enough history",
            ));
        }
        if config.min_rise.0 > config.window.0 || config.min_rise.0.is_zero() {
            return Err(Error::at(
                "min_rise",
                "must be longer than 0 and not longer than `window`",
            ));
        }
        if !(config.min_score.is_finite() && config.min_score >= 0.0) {
            return Err(Error::at("min_score", "must be a number of 0 or more"));
        }
        if config.min_samples < 8 {
            return Err(Error::at(
                "min_samples",
                "must be at least 8: fewer cannot tell a trend from noise",
            ));
        }
        if config.watch.is_empty() && !config.registered {
            return Err(Error::at(
                "watch",
                "watches nothing: name a metric, or leave `registered` on",
            ));
        }
        for (i, w) in config.watch.iter().enumerate() {
            if w.metric.is_empty() {
                return Err(Error::at(format!("watch[{i}].metric"), "must not be empty"));
            }
            if w.pattern.is_empty() {
                return Err(Error::at(
                    format!("watch[{i}].pattern"),
                    "must not be empty",
                ));
            }
            if !(w.min_growth.is_finite() && w.min_growth > 0.0) {
                return Err(Error::at(
                    format!("watch[{i}].min_growth"),
                    "must be a number above 0",
                ));
            }
            if w.capacity.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                return Err(Error::at(
                    format!("watch[{i}].capacity"),
                    "must be a number above 0",
                ));
            }
        }
        Ok(Leaks(config))
    }

    fn detect(&self, invocation: &Invocation) -> warden_sdk::Result<Vec<Finding>> {
        let mut out = Vec::new();
        for w in &self.0.watch {
            let matchers: Vec<(&str, &str)> = w
                .matchers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let series = warden_sdk::series::query(&w.metric, &matchers, self.0.window.0)?;
            out.extend(self.check(w, &series));
        }
        if self.0.registered {
            // Kinds left empty: registered resources only, none discovered.
            let set = warden_sdk::resources::list(warden_sdk::resources::Filter::default())?;
            out.extend(registered::check(&set, invocation.now_ms));
        }
        Ok(out)
    }
}

warden_sdk::register_detector!(Leaks);

#[cfg(test)]
mod tests;
