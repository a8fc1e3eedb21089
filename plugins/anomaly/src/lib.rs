//! `anomaly`: the unsupervised anomaly detector shipped with Warden. For
//! each series of a metric it learns what is normal — the level, the
//! spread of the noise and its tail, a daily and a weekly cycle where the
//! data has them — with no labels and no training step, and reports a
//! finding (`anomaly`) for each series whose newest samples do not fit:
//! a spike, a shift of the level, more noise than usual, or a drift away
//! from where the series has been over the last day. It works from the
//! first hour of data (level and spread) and improves as it sees whole
//! days and weeks (cycles, tails).
//!
//! ```yaml
//! config:
//!   metric: requests_per_second
//!   matchers: { service: api }  # optional
//!   window: 26h                 # the history learned at each evaluation
//!   recent: 1m                  # samples this new are scored (the newest always)
//!   counter: false              # true: watch a counter's per-second rate
//!   critical_at: 3              # findings this many times past a threshold are critical
//!   sensitivity: { spike: 6, shift_allowance: 0.75, shift_threshold: 8, variance: 4, drift: 4 }
//! ```
//!
//! The model of a series ([`model::Model`]) is a serializable value built
//! one sample at a time, kept between evaluations as the policy's plugin
//! state ([`Learned`]): each evaluation feeds it only the samples it has not
//! seen, so it learns from all the history it has watched, not only the
//! `window` the store still holds. A series it has no model for (the first
//! evaluation, a new series, a state that no longer reads) is learned from
//! the `window`. When the models outgrow the policy's `state_limit`, the
//! state is dropped and every evaluation learns from the `window` again,
//! which needs the store to keep that much history
//! (`metrics.store.retention`, `max_samples`). The `window` is also how far
//! back a model catches up: evaluations further apart than it skip what
//! lies between.

pub mod model;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_sdk::config::HumanDuration;
use warden_sdk::detector::{Detector, Finding};
use warden_sdk::series::Series;
use warden_sdk::{Invocation, Severity};

pub use model::{Kind, Model, Score, Sensitivity};

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The metric to watch.
    pub metric: String,
    /// Labels a series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// The history learned at each evaluation.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// Samples newer than this before now are scored; the newest always is.
    #[serde(default)]
    pub recent: HumanDuration,
    /// The series are counters: watch their per-second rate, a drop being a
    /// reset.
    #[serde(default)]
    pub counter: bool,
    /// Findings at least this many times past their test's threshold are
    /// critical; weaker ones are warnings.
    #[serde(default = "default_critical_at")]
    pub critical_at: f64,
    /// The tests' thresholds.
    #[serde(default)]
    pub sensitivity: Sensitivity,
}

fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(26 * 3600))
}

fn default_critical_at() -> f64 {
    3.0
}

/// An anomalous sample of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// When it was taken.
    pub at_ms: i64,
    /// Its value (a counter's rate).
    pub value: f64,
    /// What the model said of it.
    pub score: Score,
    /// The spread the model had learned.
    pub spread: f64,
}

/// What the detector keeps between evaluations: a model per series.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Learned {
    /// By series, keyed by its label set ([`series_key`]).
    pub series: BTreeMap<String, Track>,
}

/// One series' model and the newest sample it has learned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Track {
    /// The model.
    pub model: Model,
    /// The newest sample learned, as stored (a counter's value, not its
    /// rate): later samples are new, and a counter's next rate starts here.
    pub last: (i64, f64),
}

/// A series' key in [`Learned`]: its labels, sorted, `k=v` joined by `,`.
pub fn series_key(s: &Series) -> String {
    let mut labels: Vec<(&str, &str)> = s
        .labels
        .iter()
        .map(|l| (l.key.as_str(), l.value.as_str()))
        .collect();
    labels.sort_unstable();
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How [`Anomaly::evaluate`] reads series: the metric's series carrying
/// the matchers, over the window (the host's `query-series` in a plugin).
pub type Query<'a> =
    dyn FnMut(&[(&str, &str)], std::time::Duration) -> warden_sdk::Result<Vec<Series>> + 'a;

/// The detector.
pub struct Anomaly(Config);

/// A counter's per-second rate from `(t0, v0)` to `(t1, v1)`; a drop is a
/// reset, after which the counter counted from 0. `None` unless time moved.
pub fn rate((t0, v0): (i64, f64), (t1, v1): (i64, f64)) -> Option<f64> {
    let dt = (t1 - t0) as f64 / 1000.0;
    (dt > 0.0).then(|| (if v1 >= v0 { v1 - v0 } else { v1 }) / dt)
}

/// A counter's per-second rate between consecutive samples ([`rate`]).
pub fn rates(times: &[i64], values: &[f64]) -> (Vec<i64>, Vec<f64>) {
    let mut t = Vec::with_capacity(times.len());
    let mut r = Vec::with_capacity(times.len());
    for i in 1..times.len().min(values.len()) {
        let (a, b) = (values[i - 1], values[i]);
        if !a.is_finite() || !b.is_finite() {
            continue;
        }
        if let Some(x) = rate((times[i - 1], a), (times[i], b)) {
            t.push(times[i]);
            r.push(x);
        }
    }
    (t, r)
}

impl Anomaly {
    /// Learns one series and returns its strongest anomalous sample among
    /// those scored at `now` (the newest, and those within `recent`).
    pub fn scan(&self, times: &[i64], values: &[f64], now: i64) -> Option<Found> {
        self.learn(None, times, values, now).1
    }

    /// Feeds `track` (a fresh model if `None`) the samples of `times` and
    /// `values` newer than it has learned, and returns it with the strongest
    /// anomalous sample among those scored at `now` (the newest, and those
    /// within `recent`).
    pub fn learn(
        &self,
        track: Option<Track>,
        times: &[i64],
        values: &[f64],
        now: i64,
    ) -> (Option<Track>, Option<Found>) {
        let c = &self.0;
        let n = times.len().min(values.len());
        let from = now.saturating_sub(i64::try_from(c.recent.as_millis()).unwrap_or(i64::MAX));
        let Some(newest) = (0..n).rev().find(|&i| values[i].is_finite()) else {
            return (track, None);
        };
        let (mut model, mut previous) = match track {
            Some(t) => (t.model, Some(t.last)),
            None => (Model::new(), None),
        };
        let mut best: Option<Found> = None;
        for i in 0..n {
            let (t, raw) = (times[i], values[i]);
            if !raw.is_finite() || previous.is_some_and(|(pt, _)| t <= pt) {
                continue;
            }
            // A counter is watched by its rate since the previous sample; a
            // drop is a reset, after which it counted from 0.
            let v = if c.counter {
                let before = previous.replace((t, raw));
                match before.and_then(|p| rate(p, (t, raw))) {
                    Some(x) => x,
                    None => continue,
                }
            } else {
                previous = Some((t, raw));
                raw
            };
            let spread = model.spread();
            let score = model.observe(t, v, &c.sensitivity);
            let scored = i == newest || t > from;
            if scored
                && score.anomaly.is_some()
                && best.is_none_or(|b| score.strength > b.score.strength)
            {
                best = Some(Found {
                    at_ms: t,
                    value: v,
                    score,
                    spread,
                });
            }
        }
        let track = previous.map(|last| Track { model, last });
        (track, best)
    }

    /// One evaluation over the plugin state `learned`: the series are
    /// queried as far back as the stalest model needs (the whole `window`
    /// for series without one), each model fed what it has not seen, and
    /// the models of series gone for longer than the `window` dropped.
    pub fn evaluate(
        &self,
        learned: &mut Learned,
        now: i64,
        query: &mut Query<'_>,
    ) -> warden_sdk::Result<Vec<Finding>> {
        let window = self.0.window.0;
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let matchers: Vec<(&str, &str)> = self
            .0
            .matchers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let stalest = learned.series.values().map(|t| t.last.0).min();
        let since = match stalest {
            Some(t) if now.saturating_sub(t) < window_ms => {
                std::time::Duration::from_millis(u64::try_from(now - t).unwrap_or(0) + 1)
            }
            _ => window,
        };
        let mut kept = BTreeMap::new();
        let mut found = Vec::new();
        for s in query(&matchers, since)? {
            let key = series_key(&s);
            let track = learned.series.remove(&key);
            // New to the detector, and only recent samples at hand: learn
            // this one from the whole window.
            let whole;
            let s = if track.is_none() && since < window {
                let mut exact = matchers.clone();
                exact.extend(s.labels.iter().map(|l| (l.key.as_str(), l.value.as_str())));
                whole = query(&exact, window)?
                    .into_iter()
                    .find(|w| series_key(w) == key);
                whole.as_ref().unwrap_or(&s)
            } else {
                &s
            };
            let (track, hit) = self.learn(track, &s.times, &s.values, now);
            if let Some(f) = hit {
                found.push(self.finding(s, &f));
            }
            if let Some(t) = track {
                kept.insert(key, t);
            }
        }
        // Series not reported this time keep their model for a window.
        kept.extend(
            std::mem::take(&mut learned.series)
                .into_iter()
                .filter(|(_, t)| now.saturating_sub(t.last.0) <= window_ms),
        );
        learned.series = kept;
        Ok(found)
    }

    fn finding(&self, s: &Series, f: &Found) -> Finding {
        let kind = f.score.anomaly.unwrap_or(Kind::Spike);
        let severity = if f.score.strength >= self.0.critical_at {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let what = if self.0.counter {
            format!("the rate of `{}`", s.metric)
        } else {
            format!("`{}`", s.metric)
        };
        Finding::new("anomaly", s.metric.clone())
            .labels(&s.labels)
            .severity(severity)
            .confidence(1.0 - (-f.score.strength).exp())
            .recommend(format!(
                "{what} shows {}: {:.4} where about {:.4} ± {:.4} was expected ({:+.1} spreads); check what changed",
                kind.describe(),
                f.value,
                f.score.expected,
                f.spread,
                f.score.z
            ))
            .evidence("value", f.value)
            .evidence("expected", f.score.expected)
            .evidence("spread", f.spread)
            .evidence("score", f.score.z)
            .evidence("strength", f.score.strength)
            .evidence("at_ms", f.at_ms as f64)
    }
}

impl Detector for Anomaly {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        use warden_sdk::Error;
        let s = &config.sensitivity;
        let positive = [
            ("sensitivity.spike", s.spike),
            ("sensitivity.shift_allowance", s.shift_allowance),
            ("sensitivity.shift_threshold", s.shift_threshold),
            ("sensitivity.variance", s.variance),
            ("sensitivity.drift", s.drift),
            ("critical_at", config.critical_at),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::at(
                    field,
                    format!("must be a number above 0, not {v}"),
                ));
            }
        }
        if config.window.0 < std::time::Duration::from_secs(3600) {
            return Err(Error::at(
                "window",
                "must be at least 1h: the model needs an hour to learn a series' spread",
            ));
        }
        Ok(Anomaly(config))
    }

    fn detect(&self, invocation: &Invocation) -> warden_sdk::Result<Vec<Finding>> {
        // A state written by another version, or not at all: start afresh.
        let mut learned: Learned = warden_sdk::state::load().ok().flatten().unwrap_or_default();
        let metric = self.0.metric.as_str();
        let found = self.evaluate(&mut learned, invocation.now_ms, &mut |m, w| {
            warden_sdk::series::query(metric, m, w)
        })?;
        if let Err(e) = warden_sdk::state::save(&learned) {
            // Too many series for `state_limit`: learn from the window at
            // each evaluation instead (what the store holds of it).
            warden_sdk::state::clear();
            warden_sdk::warn!(
                "the models of {} series do not fit the policy's plugin state ({e}); each evaluation learns from the window instead: raise `state_limit` to keep them",
                learned.series.len()
            );
        }
        Ok(found)
    }
}

warden_sdk::register_detector!(Anomaly);

#[cfg(test)]
mod tests;
