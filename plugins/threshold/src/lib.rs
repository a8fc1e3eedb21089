//! `threshold`: the alert rule shipped with Warden. Each rule compares a metric
//! with a threshold, for every series of the metric (so one rule alerts per
//! disk, per core, per service). Many rules share one policy and one call.
//!
//! ```yaml
//! config:
//!   rules:
//!     - alert: HighMemory
//!       metric: memory_used_ratio
//!       matchers: { host: web-1 }   # optional
//!       condition: gt               # gt, lt, ge, le, eq, ne
//!       threshold: 0.9
//!       clear_threshold: 0.8        # optional hysteresis
//!       for: 5m                     # optional; the policy's `for` otherwise
//!       over: latest                # latest (default), avg, min, max over `window`
//!       window: 5m
//!       severity: critical          # info, warning (default), critical
//!       summary: "memory above 90%"
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use warden_sdk::alert::{Alert, AlertRule};
use warden_sdk::config::HumanDuration;
use warden_sdk::series::Series;
use warden_sdk::{Invocation, Severity};

/// How the value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater than or equal.
    Ge,
    /// Less than or equal.
    Le,
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
}

impl Op {
    /// Returns true if and only if `value op threshold` holds.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Lt => value < threshold,
            Op::Ge => value >= threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }
}

/// How a window of samples becomes one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Over {
    /// The newest sample.
    #[default]
    Latest,
    /// The mean.
    Avg,
    /// The smallest.
    Min,
    /// The largest.
    Max,
}

/// Severity as written in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Info.
    Info,
    /// Warning.
    #[default]
    Warning,
    /// Critical.
    Critical,
}

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The alert's name.
    pub alert: String,
    /// The metric to watch.
    pub metric: String,
    /// Labels a series must carry to be watched.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// The comparison.
    pub condition: Op,
    /// The value compared against.
    pub threshold: f64,
    /// Once firing, the alert stays until the value passes this instead.
    #[serde(default)]
    pub clear_threshold: Option<f64>,
    /// How long the condition must hold.
    #[serde(default, rename = "for")]
    pub hold_for: Option<HumanDuration>,
    /// How the window becomes one value.
    #[serde(default)]
    pub over: Over,
    /// The window read from the store.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// The alert's severity.
    #[serde(default)]
    pub severity: Level,
    /// A one-line summary for people.
    #[serde(default)]
    pub summary: Option<String>,
}

fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// The rule set.
pub struct Threshold(Config);

impl Threshold {
    /// Returns the alerts `rule` raises over `series`: the pure heart of the
    /// plugin, shared by the export and the tests.
    pub fn check(rule: &Rule, series: &[Series]) -> Vec<Alert> {
        let severity = match rule.severity {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Critical => Severity::Critical,
        };
        let mut out = Vec::new();
        for s in series {
            let Some(value) = reduce(rule.over, s) else {
                continue;
            };
            let alert = if rule.condition.holds(value, rule.threshold) {
                Alert::firing(&rule.alert, severity, value)
            } else if rule
                .clear_threshold
                .is_some_and(|c| rule.condition.holds(value, c))
            {
                Alert::holding(&rule.alert, severity, value)
            } else {
                continue;
            };
            let mut alert = alert.labels(&s.labels);
            if let Some(d) = rule.hold_for {
                alert = alert.hold_for(d.0);
            }
            if let Some(summary) = &rule.summary {
                alert = alert.annotation("summary", summary);
            }
            out.push(alert.annotation("threshold", rule.threshold.to_string()));
        }
        out
    }
}

fn reduce(over: Over, s: &Series) -> Option<f64> {
    let values = s.values.iter().copied().filter(|v| v.is_finite());
    match over {
        Over::Latest => s.values.last().copied().filter(|v| v.is_finite()),
        Over::Min => values.reduce(f64::min),
        Over::Max => values.reduce(f64::max),
        Over::Avg => {
            let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / n as f64)
        }
    }
}

impl AlertRule for Threshold {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        for (i, r) in config.rules.iter().enumerate() {
            if r.alert.is_empty() || r.metric.is_empty() {
                return Err(format!("rules[{i}]: `alert` and `metric` must not be empty").into());
            }
            if !r.threshold.is_finite() {
                return Err(format!(
                    "rules[{i}] (`{}`): `threshold` must be a finite number",
                    r.alert
                )
                .into());
            }
            if let Some(c) = r.clear_threshold {
                // The clear threshold must sit on the non-firing side of the threshold.
                if r.condition.holds(c, r.threshold) || matches!(r.condition, Op::Eq | Op::Ne) {
                    return Err(format!(
                        "rules[{i}] (`{}`): `clear_threshold` {c} must lie where the condition does not hold, and needs gt/lt/ge/le",
                        r.alert
                    )
                    .into());
                }
            }
        }
        Ok(Threshold(config))
    }

    fn evaluate(&self, _: &Invocation) -> warden_sdk::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        for rule in &self.0.rules {
            let matchers: Vec<(&str, &str)> = rule
                .matchers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let series = warden_sdk::series::query(&rule.metric, &matchers, rule.window.0)?;
            alerts.extend(Self::check(rule, &series));
        }
        Ok(alerts)
    }
}

warden_sdk::register_alert_rule!(Threshold);

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sdk::alert::Condition;

    fn series(disk: &str, values: &[f64]) -> Series {
        let samples: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, *v))
            .collect();
        Series::new("disk_used_ratio", &[("disk", disk)], &samples)
    }

    fn rule(json: &str) -> Rule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_condition_compares_as_named() {
        let cases = [
            (Op::Gt, 2.0, false),
            (Op::Ge, 1.0, true),
            (Op::Lt, 2.0, true),
            (Op::Le, 0.5, false),
            (Op::Eq, 1.0, true),
            (Op::Ne, 1.0, false),
        ];
        for (op, threshold, expect) in cases {
            assert_eq!(op.holds(1.0, threshold), expect, "{op:?} {threshold}");
        }
    }

    #[test]
    fn alerts_once_per_matching_series_with_its_labels() {
        let r = rule(
            r#"{"alert": "DiskFull", "metric": "disk_used_ratio", "condition": "gt", "threshold": 0.9, "severity": "critical", "for": "5m"}"#,
        );
        let alerts = Threshold::check(
            &r,
            &[series("sda", &[0.5, 0.95]), series("sdb", &[0.99, 0.2])],
        );
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.name.as_str(), a.condition, a.severity, a.value),
            ("DiskFull", Condition::Firing, Severity::Critical, 0.95)
        );
        assert_eq!(warden_sdk::label(&a.labels, "disk"), Some("sda"));
        assert_eq!(a.for_ms, Some(300_000));
    }

    #[test]
    fn window_reductions() {
        let s = [series("sda", &[0.2, 0.95, 0.5])];
        let over = |o: &str| {
            Threshold::check(&rule(&format!(r#"{{"alert": "A", "metric": "m", "condition": "gt", "threshold": 0.6, "over": "{o}"}}"#)), &s).len()
        };
        assert_eq!(
            (over("latest"), over("max"), over("avg"), over("min")),
            (0, 1, 0, 0)
        );
    }

    #[test]
    fn hysteresis_reports_holding_between_the_thresholds() {
        let r = rule(
            r#"{"alert": "Hot", "metric": "m", "condition": "gt", "threshold": 0.9, "clear_threshold": 0.8}"#,
        );
        assert_eq!(
            Threshold::check(&r, &[series("a", &[0.85])])[0].condition,
            Condition::Holding
        );
        assert!(Threshold::check(&r, &[series("a", &[0.75])]).is_empty());
    }

    #[test]
    fn nan_and_empty_windows_never_alert() {
        let r = rule(r#"{"alert": "A", "metric": "m", "condition": "ne", "threshold": 1}"#);
        assert!(Threshold::check(&r, &[series("a", &[f64::NAN]), series("b", &[])]).is_empty());
    }

    #[test]
    fn a_clear_threshold_on_the_firing_side_is_refused() {
        let c: Config = serde_json::from_str(r#"{"rules": [{"alert": "A", "metric": "m", "condition": "gt", "threshold": 0.8, "clear_threshold": 0.9}]}"#).unwrap();
        let e = Threshold::new(c).err().unwrap().to_string();
        assert!(e.contains("clear_threshold"), "{e}");
    }
}
