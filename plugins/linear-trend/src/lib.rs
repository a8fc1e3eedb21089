//! `linear-trend`: the detector shipped with Warden. Fits a least-squares line
//! to each series of a metric over a window and predicts when it reaches a
//! capacity, as Prometheus' `predict_linear` does; reports the series that get
//! there within the horizon.
//!
//! ```yaml
//! config:
//!   metric: disk_used_bytes
//!   capacity: 1.0e12          # the value that means "exhausted"
//!   window: 1h                # samples used for the fit
//!   horizon: 24h              # report exhaustion predicted within this
//!   critical_within: 2h       # critical when closer than this (default horizon/6)
//!   min_samples: 6
//!   slope_margin: 2           # standard errors taken off the slope before predicting
//!   min_confidence: 0         # R² of the fit (0: not checked)
//! ```
//!
//! The prediction uses the slope the data supports, not the fitted one: the
//! slope minus `slope_margin` standard errors of it. On a noisy series the
//! fitted slope over an hour can be a fifth off either way, so a resource
//! growing too slowly to matter would often be predicted to fill within the
//! horizon and flap in and out; with the margin it is reported once its
//! growth is clear, however noisy (a low R² alone does not silence it). A
//! series already at or past its capacity and still rising is reported
//! whatever the margin.

use std::collections::BTreeMap;

use serde::Deserialize;
use warden_sdk::config::HumanDuration;
use warden_sdk::detector::{Detector, Finding};
use warden_sdk::series::Series;
use warden_sdk::{Invocation, Severity};

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The metric to watch.
    pub metric: String,
    /// Labels a series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// The value at which the resource is exhausted.
    pub capacity: f64,
    /// The window of samples to fit.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Exhaustion predicted within this is reported.
    #[serde(default = "default_horizon")]
    pub horizon: HumanDuration,
    /// Exhaustion predicted within this is critical.
    #[serde(default)]
    pub critical_within: Option<HumanDuration>,
    /// Fewer samples than this are not fitted.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// Standard errors of the slope taken off it before predicting.
    #[serde(default = "default_slope_margin")]
    pub slope_margin: f64,
    /// Fits with a lower R² are not trusted (0: any fit).
    #[serde(default)]
    pub min_confidence: f64,
    /// Advice attached to each finding.
    #[serde(default)]
    pub recommendation: Option<String>,
}

fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}
fn default_horizon() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}
fn default_min_samples() -> usize {
    6
}
fn default_slope_margin() -> f64 {
    // About a one-sided 97.5% bound on a window of tens of samples.
    2.0
}

/// A least-squares line through a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Change per millisecond.
    pub slope: f64,
    /// Fitted value at `now`.
    pub at_now: f64,
    /// Coefficient of determination, 0 to 1.
    pub r2: f64,
    /// Standard error of `slope` (0 with two samples or an exact line).
    pub slope_se: f64,
}

/// Fits `samples` (time in ms, value) and evaluates the line at `now`. Times are
/// shifted to `now` first so large epoch values do not cost precision.
pub fn fit(samples: &[(i64, f64)], now: i64) -> Option<Fit> {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return None;
    }
    let (mut sx, mut sy) = (0.0, 0.0);
    for &(t, v) in samples {
        sx += (t - now) as f64;
        sy += v;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(t, v) in samples {
        let dx = (t - now) as f64 - mx;
        let dy = v - my;
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    // A flat series fits perfectly but predicts nothing.
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    // Residual variance over n - 2 degrees of freedom.
    let slope_se = if samples.len() > 2 {
        ((syy - slope * sxy).max(0.0) / (n - 2.0) / sxx).sqrt()
    } else {
        0.0
    };
    Some(Fit {
        slope,
        at_now: my - slope * mx,
        r2,
        slope_se,
    })
}

/// Whether the slopes of the two halves of `points` each agree with the
/// whole fit `f`: within `k` standard errors of a half (at least 3, a
/// half's own slope being the noisier), and the later half not flat. A ramp
/// passes; a step between two flat stretches, whose halves are flat and
/// whose whole is steep, does not.
pub fn halves_agree(points: &[(i64, f64)], now: i64, f: &Fit, k: f64) -> bool {
    let mid = points.len() / 2;
    if mid < 3 {
        return true;
    }
    let k = k.max(3.0);
    [&points[..mid], &points[mid..]].iter().all(|half| {
        fit(half, now).is_some_and(|h| (h.slope - f.slope).abs() <= k * h.slope_se.max(f.slope_se))
    })
}

/// The detector.
pub struct LinearTrend(Config);

impl LinearTrend {
    /// Returns the findings for `series` at `now`: the pure heart of the plugin.
    pub fn check(&self, series: &[Series], now: i64) -> Vec<Finding> {
        let c = &self.0;
        let mut out = Vec::new();
        for s in series {
            let points: Vec<(i64, f64)> = s
                .samples()
                .filter(|p| p.value.is_finite())
                .map(|p| (p.at_ms, p.value))
                .collect();
            if points.len() < c.min_samples {
                continue;
            }
            let Some(f) = fit(&points, now) else { continue };
            if f.slope <= 0.0 || f.r2 < c.min_confidence {
                continue;
            }
            // A step (a restore, a new batch landing) is not a trend: the
            // two halves of the window must each rise as the whole does,
            // within their own errors, or the line is fitted to a jump.
            if f.at_now < c.capacity && !halves_agree(&points, now, &f, c.slope_margin.max(1.0)) {
                continue;
            }
            let supported = f.slope - c.slope_margin * f.slope_se;
            let remaining = if f.at_now >= c.capacity {
                0.0
            } else if supported <= 0.0 {
                continue;
            } else {
                (c.capacity - f.at_now) / supported
            };
            if remaining > c.horizon.as_millis() as f64 {
                continue;
            }
            let critical_within = c
                .critical_within
                .map_or(c.horizon.as_millis() / 6, |d| d.as_millis());
            let severity = if remaining <= critical_within as f64 {
                Severity::Critical
            } else {
                Severity::Warning
            };
            let eta = remaining.round() as u64;
            let recommendation = c.recommendation.clone().unwrap_or_else(|| {
                format!(
                    "`{}` grows {:.3}/min and reaches {} in about {}; free space or raise the limit before then",
                    s.metric,
                    f.slope * 60_000.0,
                    c.capacity,
                    HumanDuration(std::time::Duration::from_secs(eta / 1000))
                )
            });
            out.push(
                Finding::new("linear-growth", s.metric.clone())
                    .labels(&s.labels)
                    // The share of the fitted slope the data supports.
                    .confidence(if f.at_now >= c.capacity {
                        1.0
                    } else {
                        (supported / f.slope).clamp(0.0, 1.0)
                    })
                    .severity(severity)
                    .exhaustion_in(std::time::Duration::from_millis(eta))
                    .recommend(recommendation)
                    .evidence("slope_per_s", f.slope * 1000.0)
                    .evidence("value_now", f.at_now)
                    .evidence("capacity", c.capacity)
                    .evidence("r2", f.r2)
                    .evidence("slope_se_per_s", f.slope_se * 1000.0),
            );
        }
        out
    }
}

impl Detector for LinearTrend {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        use warden_sdk::Error;
        if !config.capacity.is_finite() {
            return Err(Error::at("capacity", "must be a finite number"));
        }
        if config.min_samples < 2 {
            return Err(Error::at("min_samples", "must be at least 2 to fit a line"));
        }
        if !(config.slope_margin.is_finite() && config.slope_margin >= 0.0) {
            return Err(Error::at("slope_margin", "must be a number of 0 or more"));
        }
        if !(0.0..=1.0).contains(&config.min_confidence) {
            return Err(Error::at("min_confidence", "must be between 0 and 1"));
        }
        Ok(LinearTrend(config))
    }

    fn detect(&self, invocation: &Invocation) -> warden_sdk::Result<Vec<Finding>> {
        let matchers: Vec<(&str, &str)> = self
            .0
            .matchers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let series = warden_sdk::series::query(&self.0.metric, &matchers, self.0.window.0)?;
        Ok(self.check(&series, invocation.now_ms))
    }
}

warden_sdk::register_detector!(LinearTrend);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const MIN: i64 = 60_000;

    fn series(values: impl Iterator<Item = (i64, f64)>) -> Series {
        Series::new("disk_used", &[], &values.collect::<Vec<_>>())
    }

    fn detector(json: &str) -> LinearTrend {
        LinearTrend::new(serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn detect_reads_the_window_from_the_host() {
        use warden_sdk::mock::{MockHost, invocation};
        // Half a unit per minute over the last hour, at 90 now, capacity 100.
        let pts: Vec<(i64, f64)> = (0..60)
            .map(|i| (NOW - (59 - i) * MIN, 60.5 + 0.5 * i as f64))
            .collect();
        MockHost::new()
            .now_ms(NOW)
            .series(Series::new("disk_used", &[("mount", "/")], &pts))
            .series(Series::new("other", &[], &pts))
            .install();
        let d = warden_sdk::config::build(
            r#"{"metric": "disk_used", "capacity": 100, "window": "1h"}"#,
            LinearTrend::new,
        )
        .unwrap();
        let found = d.detect(&invocation("disk")).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].labels[0].value, "/");
        let eta_min = found[0].exhaustion_in_ms.unwrap() as f64 / MIN as f64;
        assert!((eta_min - 20.0).abs() < 0.5, "{eta_min}");
        // A config that does not fit names its field, as `warden check` shows it.
        let e = warden_sdk::config::build(
            r#"{"metric": "m", "capacity": 1, "min_samples": 1}"#,
            LinearTrend::new,
        )
        .err()
        .unwrap();
        assert_eq!(e[0].path, "min_samples");
    }

    #[test]
    fn fit_recovers_an_exact_line() {
        let pts: Vec<(i64, f64)> = (0..10)
            .map(|i| (NOW - (9 - i) * MIN, 100.0 + 2.0 * i as f64))
            .collect();
        let f = fit(&pts, NOW).unwrap();
        assert!((f.slope * MIN as f64 - 2.0).abs() < 1e-9);
        assert!((f.at_now - 118.0).abs() < 1e-6);
        assert!((f.r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn predicts_time_to_exhaustion_like_predict_linear() {
        // 1 unit per minute, at 50 now, capacity 110: 60 minutes left.
        let d = detector(
            r#"{"metric": "disk_used", "capacity": 110, "horizon": "2h", "critical_within": "30m"}"#,
        );
        let s = series((0..30).map(|i| (NOW - (29 - i) * MIN, 21.0 + i as f64)));
        let found = d.check(&[s], NOW);
        assert_eq!(found.len(), 1);
        let eta = found[0].exhaustion_in_ms.unwrap() as i64;
        assert!((eta - 60 * MIN).abs() < 1000, "{eta}");
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(found[0].pattern, "linear-growth");
        assert_eq!(found[0].evidence_of("capacity"), Some(110.0));
        assert!((found[0].evidence_of("slope_per_s").unwrap() - 1.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn beyond_the_horizon_flat_falling_noisy_or_sparse_series_are_quiet() {
        let d = detector(r#"{"metric": "disk_used", "capacity": 1000, "horizon": "1h"}"#);
        let rising_slowly = series((0..30).map(|i| (NOW - (29 - i) * MIN, i as f64)));
        let flat = series((0..30).map(|i| (NOW - (29 - i) * MIN, 5.0)));
        let falling = series((0..30).map(|i| (NOW - (29 - i) * MIN, 900.0 - i as f64)));
        let noisy = series((0..30).map(|i| {
            (
                NOW - (29 - i) * MIN,
                if i % 2 == 0 { 0.0 } else { 990.0 } + i as f64 * 0.01,
            )
        }));
        let sparse = series((0..3).map(|i| (NOW - (2 - i) * MIN, 990.0 + i as f64)));
        assert!(
            d.check(&[rising_slowly, flat, falling, noisy, sparse], NOW)
                .is_empty()
        );
    }

    /// A fixed pseudo-random noise in [-1, 1), so the tests need no crate.
    fn noise(i: i64) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    #[test]
    fn a_step_is_not_a_trend() {
        // Flat at 30 for half an hour, then flat at 60 (a restore landed):
        // the line through it would fill 100 within the hour.
        let d = detector(r#"{"metric": "disk_used", "capacity": 100, "horizon": "6h"}"#);
        let step = series((0..60).map(|i| {
            (
                NOW - (59 - i) * MIN,
                if i < 30 { 30.0 } else { 60.0 } + noise(i) * 0.2,
            )
        }));
        assert!(d.check(&[step], NOW).is_empty());
        // The same rise spread over the hour is a trend.
        let ramp =
            series((0..60).map(|i| (NOW - (59 - i) * MIN, 30.0 + i as f64 * 0.5 + noise(i) * 0.2)));
        assert_eq!(d.check(&[ramp], NOW).len(), 1);
    }

    #[test]
    fn a_noisy_real_rise_is_reported_from_the_slope_the_data_supports() {
        let d = detector(r#"{"metric": "disk_used", "capacity": 100, "horizon": "6h"}"#);
        let bare = detector(
            r#"{"metric": "disk_used", "capacity": 100, "horizon": "6h", "slope_margin": 0}"#,
        );
        // 0.25/min towards 100 from 50 (about 3 h 20 m left) under noise of
        // ±8: R² is below 0.5, which silenced it before; the rise is clear.
        let clear = || {
            series((0..60).map(|i| {
                (
                    NOW - (59 - i) * MIN,
                    35.0 + 0.25 * i as f64 + 8.0 * noise(i),
                )
            }))
        };
        let found = d.check(&[clear()], NOW);
        assert_eq!(found.len(), 1);
        assert!(found[0].evidence_of("r2").unwrap() < 0.5, "{:?}", found[0]);
        // The prediction is from the slope less two standard errors: later
        // than the fitted line's, by the slope's own uncertainty.
        let eta = |f: &Finding| f.exhaustion_in_ms.unwrap() as f64 / MIN as f64;
        let (supported, fitted) = (eta(&found[0]), eta(&bare.check(&[clear()], NOW)[0]));
        let slope = found[0].evidence_of("slope_per_s").unwrap() * 60.0;
        let se = found[0].evidence_of("slope_se_per_s").unwrap() * 60.0;
        assert!(
            (supported / fitted - slope / (slope - 2.0 * se)).abs() < 1e-6,
            "{supported} vs {fitted}"
        );
        assert!(supported < 360.0, "{supported}");
    }

    #[test]
    fn a_negative_margin_is_refused_naming_the_field() {
        let e = warden_sdk::config::build(
            r#"{"metric": "m", "capacity": 1, "slope_margin": -1}"#,
            LinearTrend::new,
        )
        .err()
        .unwrap();
        assert!(format!("{e:?}").contains("slope_margin"), "{e:?}");
    }

    #[test]
    fn already_past_capacity_is_critical_now() {
        let d = detector(r#"{"metric": "disk_used", "capacity": 10, "horizon": "1h"}"#);
        let s = series((0..10).map(|i| (NOW - (9 - i) * MIN, 20.0 + i as f64)));
        let f = &d.check(&[s], NOW)[0];
        assert_eq!(
            (f.exhaustion_in_ms, f.severity),
            (Some(0), Severity::Critical)
        );
    }
}
