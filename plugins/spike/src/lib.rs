//! `spike`: the periodic-spike detector shipped with Warden. For each series
//! of a metric it finds the spikes in a window — runs of samples far above
//! the series' median, in robust units (median absolute deviations) — and
//! reports a finding (`periodic-spike`) when they recur at a regular period:
//! a cron job, a batch, a cache expiring on the hour. The finding says the
//! period, how high the spikes go and when the next one is due.
//!
//! ```yaml
//! config:
//!   metric: cpu_usage_ratio
//!   matchers: {}            # optional
//!   window: 24h             # where spikes are looked for
//!   threshold: 5            # a spike is this many robust deviations above the median
//!   min_occurrences: 3      # spikes needed to call them periodic
//!   jitter: 0.15            # how far (share of the period) a spike may stray
//!   min_period: 2m
//!   severity: info          # info (default), warning, critical
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
    /// The metric to watch.
    pub metric: String,
    /// Labels a series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// Where spikes are looked for.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Robust deviations above the median that make a spike.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Spikes needed to call them periodic.
    #[serde(default = "default_min_occurrences")]
    pub min_occurrences: usize,
    /// How far from the period an interval may stray, as a share of it.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Spikes closer than this are one spike.
    #[serde(default = "default_min_period")]
    pub min_period: HumanDuration,
    /// The findings' severity.
    #[serde(default)]
    pub severity: Level,
}

fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(24 * 3600))
}
fn default_threshold() -> f64 {
    5.0
}
fn default_min_occurrences() -> usize {
    3
}
fn default_jitter() -> f64 {
    0.15
}
fn default_min_period() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(120))
}

/// One spike: when it peaked and how high, in robust deviations and as a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    /// When it peaked.
    pub at_ms: i64,
    /// Its peak value.
    pub value: f64,
    /// Its peak, in robust deviations above the median.
    pub height: f64,
}

/// A regular recurrence of spikes.
#[derive(Debug, Clone, PartialEq)]
pub struct Periodic {
    /// The spikes.
    pub spikes: Vec<Spike>,
    /// The period, ms.
    pub period_ms: i64,
    /// Share of intervals that fit the period (or a multiple, for a spike
    /// that did not happen).
    pub regularity: f64,
    /// The series' median.
    pub median: f64,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

/// The detector.
pub struct Spikes(Config);

impl Spikes {
    /// Finds the spikes of one series: runs of samples at least `threshold`
    /// robust deviations above the median, each counted at its peak; runs
    /// closer than `min_period` are one spike.
    pub fn spikes(&self, times: &[i64], values: &[f64]) -> (Vec<Spike>, f64) {
        let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let Some(m) = median(&mut finite) else {
            return (Vec::new(), 0.0);
        };
        let mut dev: Vec<f64> = finite.iter().map(|v| (v - m).abs()).collect();
        let mad = median(&mut dev).unwrap_or(0.0);
        let scale = (1.4826 * mad).max(m.abs() * 1e-3).max(1e-9);
        let gap = i64::try_from(self.0.min_period.as_millis()).unwrap_or(i64::MAX);
        let mut out: Vec<Spike> = Vec::new();
        for (&t, &v) in times.iter().zip(values) {
            let height = (v - m) / scale;
            if !v.is_finite() || height < self.0.threshold {
                continue;
            }
            match out.last_mut() {
                Some(last) if t - last.at_ms < gap => {
                    if height > last.height {
                        *last = Spike {
                            at_ms: t,
                            value: v,
                            height,
                        };
                    }
                }
                _ => out.push(Spike {
                    at_ms: t,
                    value: v,
                    height,
                }),
            }
        }
        (out, m)
    }

    /// Returns the regular recurrence in one series, if its spikes have one.
    pub fn periodic(&self, times: &[i64], values: &[f64]) -> Option<Periodic> {
        let (spikes, median_value) = self.spikes(times, values);
        if spikes.len() < self.0.min_occurrences.max(2) {
            return None;
        }
        let mut gaps: Vec<f64> = spikes
            .windows(2)
            .map(|w| (w[1].at_ms - w[0].at_ms) as f64)
            .collect();
        let mut sorted = gaps.clone();
        let period = median(&mut sorted)?;
        if period < self.0.min_period.as_millis() as f64 {
            return None;
        }
        let fits = gaps
            .iter_mut()
            .filter(|g| {
                let k = (**g / period).round().max(1.0);
                ((**g - k * period) / period).abs() <= self.0.jitter
            })
            .count();
        let regularity = fits as f64 / gaps.len() as f64;
        // Most intervals fit, and the spikes cover the window rather than
        // bunching in one part of it.
        let span = (spikes.last()?.at_ms - spikes.first()?.at_ms) as f64;
        if regularity < 0.8 || span < period * (self.0.min_occurrences - 1) as f64 * 0.9 {
            return None;
        }
        Some(Periodic {
            spikes,
            period_ms: period.round() as i64,
            regularity,
            median: median_value,
        })
    }

    /// Returns the findings for `series`: the pure heart of the plugin.
    pub fn check(&self, series: &[Series]) -> Vec<Finding> {
        series
            .iter()
            .filter_map(|s| {
                let p = self.periodic(&s.times, &s.values)?;
                Some(self.finding(s, &p))
            })
            .collect()
    }

    fn finding(&self, s: &Series, p: &Periodic) -> Finding {
        let mut heights: Vec<f64> = p.spikes.iter().map(|x| x.height).collect();
        let mut peaks: Vec<f64> = p.spikes.iter().map(|x| x.value).collect();
        let height = median(&mut heights).unwrap_or(0.0);
        let peak = median(&mut peaks).unwrap_or(0.0);
        let last = p.spikes.last().map_or(0, |x| x.at_ms);
        let next = last + p.period_ms;
        let period = HumanDuration(std::time::Duration::from_millis(p.period_ms.max(0) as u64));
        let severity = match self.0.severity {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        };
        let n = p.spikes.len() as f64;
        Finding::new("periodic-spike", s.metric.clone())
            .labels(&s.labels)
            .severity(severity)
            .confidence(p.regularity * (1.0 - 1.0 / n))
            .recommend(format!(
                "`{}` spikes every {period} ({} times; to about {peak:.4} against {:.4} usually); if a scheduled job causes it, spread or throttle the job, or keep headroom for it",
                s.metric,
                p.spikes.len(),
                p.median
            ))
            .evidence("period_s", p.period_ms as f64 / 1000.0)
            .evidence("occurrences", n)
            .evidence("height", height)
            .evidence("peak", peak)
            .evidence("median", p.median)
            .evidence("regularity", p.regularity)
            .evidence("next_at_ms", next as f64)
    }
}

impl Detector for Spikes {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        use warden_sdk::Error;
        if !(config.threshold.is_finite() && config.threshold > 0.0) {
            return Err(Error::at("threshold", "must be a number above 0"));
        }
        if config.min_occurrences < 3 {
            return Err(Error::at(
                "min_occurrences",
                "must be at least 3: two spikes make one interval, which cannot show a period",
            ));
        }
        if !(0.0..0.5).contains(&config.jitter) {
            return Err(Error::at("jitter", "must be at least 0 and below 0.5"));
        }
        Ok(Spikes(config))
    }

    fn detect(&self, _: &Invocation) -> warden_sdk::Result<Vec<Finding>> {
        let matchers: Vec<(&str, &str)> = self
            .0
            .matchers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let series = warden_sdk::series::query(&self.0.metric, &matchers, self.0.window.0)?;
        Ok(self.check(&series))
    }
}

warden_sdk::register_detector!(Spikes);

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn detector(json: &str) -> Spikes {
        Spikes::new(serde_json::from_str(json).unwrap()).unwrap()
    }

    /// A day of one-minute samples: a small wobble around 10, and `spike`
    /// added at the minutes it names.
    fn day(spike: impl Fn(i64) -> f64) -> Series {
        let samples: Vec<(i64, f64)> = (0..1440)
            .map(|m| (m * MIN, 10.0 + ((m * 7919) % 13) as f64 * 0.1 + spike(m)))
            .collect();
        Series::new("cpu", &[("host", "a")], &samples)
    }

    #[test]
    fn hourly_spikes_are_found_with_their_period_and_next_one() {
        let d = detector(r#"{"metric": "cpu"}"#);
        // At minute 5 of every hour; one hour skipped.
        let s = day(|m| {
            if m % 60 == 5 && m / 60 != 10 {
                20.0
            } else {
                0.0
            }
        });
        let found = d.check(&[s]);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.pattern, "periodic-spike");
        assert_eq!(f.evidence_of("period_s"), Some(3600.0));
        assert_eq!(f.evidence_of("occurrences"), Some(23.0));
        assert_eq!(
            f.evidence_of("next_at_ms"),
            Some((1440 + 5) as f64 * MIN as f64)
        );
        assert!(f.confidence > 0.9, "{}", f.confidence);
        assert_eq!(warden_sdk::label(&f.labels, "host"), Some("a"));
    }

    #[test]
    fn irregular_or_too_few_spikes_and_plain_noise_are_not_periodic() {
        let d = detector(r#"{"metric": "cpu"}"#);
        let irregular = [3, 50, 61, 300, 302, 700, 1100, 1111];
        let s = day(|m| if irregular.contains(&m) { 20.0 } else { 0.0 });
        assert!(d.check(&[s]).is_empty());
        let two = day(|m| if m == 100 || m == 160 { 20.0 } else { 0.0 });
        assert!(d.check(&[two]).is_empty());
        assert!(d.check(&[day(|_| 0.0)]).is_empty());
    }

    #[test]
    fn a_config_that_cannot_find_a_period_is_refused() {
        let e =
            Spikes::new(serde_json::from_str(r#"{"metric": "m", "min_occurrences": 2}"#).unwrap())
                .err()
                .unwrap();
        assert_eq!(e.path(), Some("min_occurrences"), "{e}");
    }
}
