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
use serde::de::{self, Deserializer, Visitor};
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
    #[serde(default, rename = "for", deserialize_with = "optional_duration")]
    pub hold_for: Option<HumanDuration>,
    /// How the window becomes one value.
    #[serde(default)]
    pub over: Over,
    /// The window read from the store.
    #[serde(default = "default_window", deserialize_with = "duration")]
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

/// Reads a duration as [`HumanDuration`] does (`5m`, or a number of
/// milliseconds) without its untagged enum, which buffers every value first:
/// with `for` on 10,000 rules that was 40% of reading the config.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HumanDuration>, D::Error> {
    d.deserialize_option(OptionalDuration)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as `30s`, `5m` or `1h30m`, or a number of milliseconds")
    }

    fn visit_u64<E: de::Error>(self, ms: u64) -> Result<HumanDuration, E> {
        Ok(HumanDuration(std::time::Duration::from_millis(ms)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
        s.parse().map_err(E::custom)
    }
}

struct OptionalDuration;

impl<'de> Visitor<'de> for OptionalDuration {
    type Value = Option<HumanDuration>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        DurationVisitor.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        duration(d).map(Some)
    }
}

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// The rule set, and how its rules share queries.
pub struct Threshold {
    config: Config,
    /// Per rule, the batch whose one query answers it, if any.
    batch_of: Vec<Option<usize>>,
    batches: Vec<Batch>,
}

/// From this many rules on the same metric and window, one query serves them
/// all and each rule's matchers are applied here. The host answers a query by
/// scanning every series of the metric, so a query per rule costs rules ×
/// series (10,000 rules over 10,000 series: most of a second); below this,
/// a query per rule only moves the series each rule asks for.
const BATCH_FROM: usize = 16;

/// Rules answered by one query.
struct Batch {
    metric: String,
    window: HumanDuration,
    /// Matchers every rule of the batch has: the host filters by these.
    common: Vec<(String, String)>,
    /// Label keys the rules match on beyond `common`: the ones to index.
    keys: Vec<String>,
    /// How many rules it answers.
    rules: usize,
}

impl Threshold {
    /// Returns the alerts `rule` raises over `series`: the pure heart of the
    /// plugin, shared by the export and the tests.
    pub fn check(rule: &Rule, series: &[Series]) -> Vec<Alert> {
        series.iter().filter_map(|s| check_one(rule, s)).collect()
    }

    /// Groups rules by metric and window (as the host sees the window: whole
    /// milliseconds), and makes a batch of every group large enough.
    fn plan(config: Config) -> Self {
        // A BTreeMap: a HashMap would seed itself from WASI's randomness,
        // which an evaluation otherwise never sets up.
        let mut groups: BTreeMap<(&str, u64), Vec<usize>> = BTreeMap::new();
        for (i, r) in config.rules.iter().enumerate() {
            groups
                .entry((r.metric.as_str(), r.window.as_millis()))
                .or_default()
                .push(i);
        }
        let mut batch_of = vec![None; config.rules.len()];
        let mut batches = Vec::new();
        // Rule order, so batches are numbered as they are first met.
        let mut firsts: Vec<&Vec<usize>> =
            groups.values().filter(|g| g.len() >= BATCH_FROM).collect();
        firsts.sort_by_key(|g| g[0]);
        for group in firsts {
            let rules: Vec<&Rule> = group.iter().map(|i| &config.rules[*i]).collect();
            let common: Vec<(String, String)> = rules[0]
                .matchers
                .iter()
                .filter(|(k, v)| rules.iter().all(|r| r.matchers.get(*k) == Some(*v)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let mut keys: Vec<String> = rules
                .iter()
                .flat_map(|r| r.matchers.iter())
                .filter(|(k, _)| !common.iter().any(|(c, _)| c == *k))
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for i in group {
                batch_of[*i] = Some(batches.len());
            }
            batches.push(Batch {
                metric: rules[0].metric.clone(),
                window: rules[0].window,
                common,
                keys,
                rules: group.len(),
            });
        }
        Threshold {
            config,
            batch_of,
            batches,
        }
    }
}

/// Returns the alert `rule` raises over one series, if any.
fn check_one(rule: &Rule, s: &Series) -> Option<Alert> {
    let severity = match rule.severity {
        Level::Info => Severity::Info,
        Level::Warning => Severity::Warning,
        Level::Critical => Severity::Critical,
    };
    let value = reduce(rule.over, s)?;
    let alert = if rule.condition.holds(value, rule.threshold) {
        Alert::firing(&rule.alert, severity, value)
    } else if rule
        .clear_threshold
        .is_some_and(|c| rule.condition.holds(value, c))
    {
        Alert::holding(&rule.alert, severity, value)
    } else {
        return None;
    };
    let mut alert = alert.labels(&s.labels);
    if let Some(d) = rule.hold_for {
        alert = alert.hold_for(d.0);
    }
    if let Some(summary) = &rule.summary {
        alert = alert.annotation("summary", summary);
    }
    Some(alert.annotation("threshold", rule.threshold.to_string()))
}

/// A batch's series, indexed by the labels its rules match on.
struct Fetched {
    series: Vec<Series>,
    /// (hash of a label's key and value, index of a series carrying it),
    /// sorted: each label's series are one run, in the host's order.
    postings: Vec<(u64, u32)>,
}

impl Fetched {
    fn new(series: Vec<Series>, keys: &[String]) -> Self {
        let mut postings = Vec::with_capacity(series.len() * keys.len());
        for (i, s) in series.iter().enumerate() {
            for l in &s.labels {
                if keys.contains(&l.key) {
                    postings.push((label_hash(&l.key, &l.value), i as u32));
                }
            }
        }
        postings.sort_unstable();
        // A label repeated within one series must not visit it twice.
        postings.dedup();
        Fetched { series, postings }
    }

    /// Calls `f` with every series whose labels include all of `matchers`, in
    /// the host's order, as the host's own matching would have chosen them.
    fn matching(&self, matchers: &[(&str, &str)], mut f: impl FnMut(&Series)) {
        let has_all = |s: &Series| {
            matchers
                .iter()
                .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
        };
        // The rarest matcher's run holds every match; the others, and a hash
        // collision, are checked on each of its series.
        let Some(run) = matchers
            .iter()
            .map(|(k, v)| self.run(label_hash(k, v)))
            .min_by_key(|r| r.len())
        else {
            self.series.iter().for_each(f);
            return;
        };
        for (_, i) in run {
            let s = &self.series[*i as usize];
            if has_all(s) {
                f(s);
            }
        }
    }

    fn run(&self, hash: u64) -> &[(u64, u32)] {
        let start = self.postings.partition_point(|p| p.0 < hash);
        let len = self.postings[start..].partition_point(|p| p.0 == hash);
        &self.postings[start..start + len]
    }
}

/// FNV-1a of `key`, a separator no UTF-8 text contains, and `value`.
fn label_hash(key: &str, value: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in key.bytes().chain([0xff]).chain(value.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        use warden_sdk::Error;
        for (i, r) in config.rules.iter().enumerate() {
            if r.alert.is_empty() {
                return Err(Error::at(format!("rules[{i}].alert"), "must not be empty"));
            }
            if r.metric.is_empty() {
                return Err(Error::at(format!("rules[{i}].metric"), "must not be empty"));
            }
            if !r.threshold.is_finite() {
                return Err(Error::at(
                    format!("rules[{i}].threshold"),
                    format!("`{}`: must be a finite number", r.alert),
                ));
            }
            if let Some(c) = r.clear_threshold {
                // The clear threshold must sit on the non-firing side of the threshold.
                if r.condition.holds(c, r.threshold) || matches!(r.condition, Op::Eq | Op::Ne) {
                    return Err(Error::at(
                        format!("rules[{i}].clear_threshold"),
                        format!(
                            "`{}`: {c} must lie where the condition does not hold, and needs gt/lt/ge/le",
                            r.alert
                        ),
                    ));
                }
            }
        }
        Ok(Threshold::plan(config))
    }

    fn evaluate(&self, _: &Invocation) -> warden_sdk::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        // A batch is queried when its first rule comes up (so a failing query
        // fails at the same rule as before) and freed after its last.
        let mut fetched: Vec<Option<Fetched>> = self.batches.iter().map(|_| None).collect();
        let mut left: Vec<usize> = self.batches.iter().map(|b| b.rules).collect();
        // The matchers a batched rule still needs checked, reused across rules.
        let mut rest: Vec<(&str, &str)> = Vec::new();
        for (rule, batch) in self.config.rules.iter().zip(&self.batch_of) {
            let Some(b) = *batch else {
                let matchers = pairs(rule.matchers.iter());
                let series = warden_sdk::series::query(&rule.metric, &matchers, rule.window.0)?;
                alerts.extend(series.iter().filter_map(|s| check_one(rule, s)));
                continue;
            };
            let batch = &self.batches[b];
            if fetched[b].is_none() {
                let common = pairs(batch.common.iter().map(|(k, v)| (k, v)));
                let series = warden_sdk::series::query(&batch.metric, &common, batch.window.0)?;
                fetched[b] = Some(Fetched::new(series, &batch.keys));
            }
            rest.clear();
            rest.extend(
                rule.matchers
                    .iter()
                    .filter(|(k, _)| !batch.common.iter().any(|(c, _)| c == *k))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            if let Some(f) = &fetched[b] {
                f.matching(&rest, |s| alerts.extend(check_one(rule, s)));
            }
            left[b] -= 1;
            if left[b] == 0 {
                fetched[b] = None;
            }
        }
        Ok(alerts)
    }
}

fn pairs<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<(&'a str, &'a str)> {
    labels.map(|(k, v)| (k.as_str(), v.as_str())).collect()
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
    fn durations_read_as_text_or_milliseconds() {
        let r = |extra: &str| {
            rule(&format!(
                r#"{{"alert": "A", "metric": "m", "condition": "gt", "threshold": 1{extra}}}"#
            ))
        };
        let (a, b) = (r(r#", "for": "5m""#), r(r#", "for": 300000"#));
        assert_eq!(a.hold_for, b.hold_for);
        assert_eq!(a.hold_for.map(|d| d.as_millis()), Some(300_000));
        assert_eq!(r(r#", "for": null"#).hold_for, None);
        assert_eq!(r("").hold_for, None);
        assert_eq!(r("").window.as_millis(), 300_000);
        assert_eq!(r(r#", "window": "1m""#).window.as_millis(), 60_000);
        let bad = |extra: &str| {
            serde_json::from_str::<Rule>(&format!(
                r#"{{"alert": "A", "metric": "m", "condition": "gt", "threshold": 1{extra}}}"#
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(bad(r#", "for": "soon""#).contains("is not a duration"));
        assert!(bad(r#", "window": -1"#).contains("expected a duration"));
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

    fn config(rules: &[String]) -> Config {
        serde_json::from_str(&format!(r#"{{"rules": [{}]}}"#, rules.join(","))).unwrap()
    }

    fn per_id(n: usize, extra: &str) -> Vec<String> {
        (0..n)
            .map(|i| format!(r#"{{"alert": "A{i}", "metric": "m", "matchers": {{"id": "{i}"{extra}}}, "condition": "gt", "threshold": 0.5}}"#))
            .collect()
    }

    #[test]
    fn many_rules_on_one_metric_share_a_query_filtered_by_their_common_matchers() {
        let mut rules = per_id(BATCH_FROM, r#", "env": "prod""#);
        // Another window is another query; few rules keep a query each.
        rules.push(
            r#"{"alert": "W", "metric": "m", "condition": "gt", "threshold": 0.5, "window": "1m"}"#
                .into(),
        );
        let t = Threshold::new(config(&rules)).unwrap();
        assert_eq!(t.batches.len(), 1);
        let b = &t.batches[0];
        assert_eq!(
            (b.common.clone(), b.keys.clone(), b.rules),
            (
                vec![("env".to_string(), "prod".to_string())],
                vec!["id".to_string()],
                BATCH_FROM
            )
        );
        assert!(t.batch_of[..BATCH_FROM].iter().all(|b| *b == Some(0)));
        assert_eq!(t.batch_of[BATCH_FROM], None);

        let few = Threshold::new(config(&per_id(BATCH_FROM - 1, ""))).unwrap();
        assert!(few.batches.is_empty() && few.batch_of.iter().all(Option::is_none));
    }

    #[test]
    fn batched_matching_picks_what_the_host_would_in_its_order() {
        let s = |labels: &[(&str, &str)]| Series::new("m", labels, &[(0, 1.0)]);
        let all = vec![
            s(&[("id", "1"), ("zone", "a")]),
            s(&[("id", "2"), ("zone", "a")]),
            s(&[("id", "1"), ("zone", "b")]),
            // A repeated label must not make its series count twice.
            s(&[("id", "3"), ("id", "3")]),
            s(&[("zone", "a")]),
        ];
        let f = Fetched::new(all.clone(), &["id".into(), "zone".into()]);
        let picked = |m: &[(&str, &str)]| {
            let mut got = Vec::new();
            f.matching(m, |s| got.push(s.clone()));
            got
        };
        let host = |m: &[(&str, &str)]| -> Vec<Series> {
            all.iter()
                .filter(|s| {
                    m.iter()
                        .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
                })
                .cloned()
                .collect()
        };
        for m in [
            &[][..],
            &[("id", "1")],
            &[("zone", "a")],
            &[("id", "1"), ("zone", "b")],
            &[("id", "3")],
            &[("id", "9")],
            &[("zone", "a"), ("id", "2")],
        ] {
            assert_eq!(picked(m), host(m), "{m:?}");
        }
    }

    #[test]
    fn a_clear_threshold_on_the_firing_side_is_refused() {
        let c: Config = serde_json::from_str(r#"{"rules": [{"alert": "A", "metric": "m", "condition": "gt", "threshold": 0.8, "clear_threshold": 0.9}]}"#).unwrap();
        let e = Threshold::new(c).err().unwrap().to_string();
        assert!(e.contains("clear_threshold"), "{e}");
    }
}
