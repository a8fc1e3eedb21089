//! The `config:` block of the threshold plugin: its rules, as operators
//! write them, and the checks that refuse a rule that cannot mean anything.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use warden_sdk::config::HumanDuration;
// How a window becomes one value and how a group's values become one: the
// SDK's, which the host's `query-reduced` computes with.
pub use warden_sdk::series::{Aggregate, Over};

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

/// The denominator of a ratio rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denominator {
    /// Its metric.
    pub metric: String,
    /// Labels its series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// How its window becomes one value; the rule's `over` when absent.
    #[serde(default)]
    pub over: Option<Over>,
    /// Its quantile, for `over: quantile`; the rule's when absent.
    #[serde(default)]
    pub quantile: Option<f64>,
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
    /// The comparison; every rule but an `absent` one has one.
    #[serde(default)]
    pub condition: Option<Op>,
    /// The value compared against.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Once firing, the alert stays until the value passes this instead.
    #[serde(default)]
    pub clear_threshold: Option<f64>,
    /// How long the condition must hold.
    #[serde(default, rename = "for", deserialize_with = "optional_duration")]
    pub hold_for: Option<HumanDuration>,
    /// How the window becomes one value.
    #[serde(default)]
    pub over: Over,
    /// The quantile `over: quantile` takes, from 0 to 1.
    #[serde(default)]
    pub quantile: Option<f64>,
    /// The window read from the store.
    #[serde(default = "default_window", deserialize_with = "duration")]
    pub window: HumanDuration,
    /// Group the series by these labels (`[]`: all together) and compare
    /// each group's `aggregate` instead of each series.
    #[serde(default)]
    pub by: Option<Vec<String>>,
    /// How a group's values become one (default `sum`); needs `by`.
    #[serde(default)]
    pub aggregate: Option<Aggregate>,
    /// Compare the ratio of this rule's value to the denominator's.
    #[serde(default)]
    pub divide_by: Option<Denominator>,
    /// The labels that pair a series with its denominator (default: the
    /// groups' labels with `by`, else every label).
    #[serde(default)]
    pub on: Option<Vec<String>>,
    /// Fire for each series with no sample for this long (and once, with
    /// the rule's matchers as labels, if no series has any sample in the
    /// window): a series that stopped reporting.
    #[serde(default, deserialize_with = "optional_duration")]
    pub absent: Option<HumanDuration>,
    /// The alert's severity.
    #[serde(default)]
    pub severity: Level,
    /// A one-line summary for people.
    #[serde(default)]
    pub summary: Option<String>,
}

impl Rule {
    /// Returns true if and only if the rule alerts per series on its own
    /// metric alone, so that rules like it can share one query.
    pub fn per_series(&self) -> bool {
        self.by.is_none() && self.divide_by.is_none() && self.absent.is_none()
    }

    /// Returns why the rule cannot work, if it cannot: the field at fault
    /// (relative to the rule, `divide_by.metric`) and what is wrong with it.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let bad = |field: &'static str, message: &str| Some((field, message.to_owned()));
        if self.alert.is_empty() {
            return bad("alert", "must not be empty");
        }
        if self.metric.is_empty() {
            return bad("metric", "must not be empty");
        }
        if let Some(a) = self.absent {
            let set = [
                ("condition", self.condition.is_some()),
                ("threshold", self.threshold.is_some()),
                ("clear_threshold", self.clear_threshold.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, is_set)| *is_set) {
                return bad(
                    field,
                    "an `absent` rule fires when series stop reporting; drop `condition`, `threshold` and `clear_threshold`",
                );
            }
            if self.by.is_some() {
                return bad("by", "an `absent` rule takes no `by` or `divide_by`");
            }
            if self.divide_by.is_some() {
                return bad("divide_by", "an `absent` rule takes no `by` or `divide_by`");
            }
            if a.0 >= self.window.0 || a.0.is_zero() {
                return Some((
                    "absent",
                    format!(
                        "{a} must be longer than 0 and shorter than `window` ({}), which is how far back a series must have been seen",
                        self.window
                    ),
                ));
            }
            return None;
        }
        let (Some(op), Some(threshold)) = (self.condition, self.threshold) else {
            let field = if self.condition.is_none() {
                "condition"
            } else {
                "threshold"
            };
            return bad(
                field,
                "give a `condition` (gt, lt, ge, le, eq, ne) and a `threshold`, or `absent: DURATION`",
            );
        };
        if !threshold.is_finite() {
            return bad("threshold", "must be a finite number");
        }
        if let Some(c) = self.clear_threshold {
            // The clear threshold must sit on the non-firing side of the threshold.
            if op.holds(c, threshold) || matches!(op, Op::Eq | Op::Ne) {
                return Some((
                    "clear_threshold",
                    format!(
                        "{c} must lie where the condition does not hold, and needs gt/lt/ge/le"
                    ),
                ));
            }
        }
        let quantile_ok = |q: Option<f64>, field: &'static str| match q {
            Some(q) if (0.0..=1.0).contains(&q) => None,
            Some(q) => Some((
                field,
                format!("is {q}; it must be between 0 and 1 (0.99 for a p99)"),
            )),
            None => Some((
                field,
                format!("`over: quantile` needs `{field}` (0.99 for a p99)"),
            )),
        };
        if self.over == Over::Quantile
            && let Some(p) = quantile_ok(self.quantile, "quantile")
        {
            return Some(p);
        }
        if self.over != Over::Quantile && self.quantile.is_some() {
            return bad("quantile", "needs `over: quantile`");
        }
        if self.aggregate.is_some() && self.by.is_none() {
            return bad(
                "aggregate",
                "needs `by` (the labels to group by; `[]` for all series together)",
            );
        }
        if let Some(d) = &self.divide_by {
            if d.metric.is_empty() {
                return bad("divide_by.metric", "must not be empty");
            }
            if d.over.unwrap_or(self.over) == Over::Quantile
                && let Some(p) = quantile_ok(d.quantile.or(self.quantile), "divide_by.quantile")
            {
                return Some(p);
            }
        } else if self.on.is_some() {
            return bad(
                "on",
                "pairs series with their `divide_by`; this rule has none",
            );
        }
        None
    }
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
