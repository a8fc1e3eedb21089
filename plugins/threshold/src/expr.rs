//! What a rule computes before it compares: a window reduced to one value
//! per series (latest, avg, min, max, sum, count, rate, increase, a
//! quantile), optionally grouped by labels (`by` + `aggregate`), optionally
//! divided by another metric computed the same way (`divide_by`), or the
//! series that stopped reporting (`absent`). The results are compared with
//! the rule's threshold in [`alerts`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use warden_sdk::alert::Alert;
use warden_sdk::series::{Reduce, Reduced, Series};
use warden_sdk::{LabelPair, Severity};

use crate::rule::{Aggregate, Level, Over, Rule};

/// One computed value and the labels it stands for. A series' labels are
/// borrowed: most values raise nothing, and copying every series' labels
/// was most of an evaluation's allocations.
#[derive(Debug, Clone, PartialEq)]
pub struct Valued<'a> {
    /// The series' labels, or a group's.
    pub labels: Cow<'a, [LabelPair]>,
    /// The value.
    pub value: f64,
}

/// What a rule asks of one metric's window: the reduction per series and the
/// grouping, in the SDK's terms.
pub(crate) fn how<'a>(
    over: Over,
    quantile: Option<f64>,
    by: Option<&'a [String]>,
    aggregate: Aggregate,
) -> Reduce<'a> {
    Reduce {
        over,
        quantile,
        by,
        aggregate,
    }
}

/// Values as computed, borrowing their labels.
pub(crate) fn valued(values: &[Reduced]) -> Vec<Valued<'_>> {
    values
        .iter()
        .map(|r| Valued {
            labels: Cow::Borrowed(&r.labels),
            value: r.value,
        })
        .collect()
}

/// The labels of `labels` named in `on` (all of them when `on` is `None`),
/// sorted: what pairs a numerator with its denominator.
fn key<'a>(labels: &'a [LabelPair], on: Option<&[String]>) -> Vec<(&'a str, &'a str)> {
    let mut k: Vec<(&str, &str)> = labels
        .iter()
        .filter(|l| on.is_none_or(|on| on.contains(&l.key)))
        .map(|l| (l.key.as_str(), l.value.as_str()))
        .collect();
    k.sort();
    k
}

/// Divides each numerator by the denominator with the same `on` labels.
/// A numerator without a denominator, or with one of 0, has no ratio; two
/// denominators for one numerator is an error that says how to fix the rule.
pub(crate) fn ratio<'a>(
    numerators: Vec<Valued<'a>>,
    denominators: &[Valued<'_>],
    on: Option<&[String]>,
) -> Result<Vec<Valued<'a>>, String> {
    let mut by_key: BTreeMap<Vec<(&str, &str)>, f64> = BTreeMap::new();
    for d in denominators {
        let k = key(&d.labels, on);
        if by_key.insert(k.clone(), d.value).is_some() {
            let shown: Vec<String> = k.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(format!(
                "`divide_by` has several series for {{{}}}; group them with `by` or pair with `on`",
                shown.join(",")
            ));
        }
    }
    Ok(numerators
        .into_iter()
        .filter_map(|n| {
            let d = *by_key.get(&key(&n.labels, on))?;
            (d != 0.0).then(|| Valued {
                labels: n.labels,
                value: n.value / d,
            })
        })
        .collect())
}

/// The series with no sample in their last `absent_ms` at `now_ms`, valued
/// by the seconds since their newest sample; or, if no series has a sample
/// at all, one value with the rule's matchers as labels (the window's length
/// in seconds, as nothing is known closer).
pub(crate) fn absent<'a>(
    rule: &Rule,
    absent_ms: u64,
    series: &'a [Series],
    now_ms: i64,
) -> Vec<Valued<'a>> {
    let newest: Vec<(&Series, i64)> = series
        .iter()
        .filter_map(|s| Some((s, *s.times.last()?)))
        .collect();
    if newest.is_empty() {
        return vec![Valued {
            labels: rule
                .matchers
                .iter()
                .map(|(k, v)| LabelPair::new(k, v))
                .collect::<Vec<_>>()
                .into(),
            value: rule.window.as_millis() as f64 / 1000.0,
        }];
    }
    let limit = i64::try_from(absent_ms).unwrap_or(i64::MAX);
    newest
        .into_iter()
        .filter(|(_, t)| now_ms.saturating_sub(*t) >= limit)
        .map(|(s, t)| Valued {
            labels: Cow::Borrowed(&s.labels),
            value: (now_ms - t) as f64 / 1000.0,
        })
        .collect()
}

fn severity(l: Level) -> Severity {
    match l {
        Level::Info => Severity::Info,
        Level::Warning => Severity::Warning,
        Level::Critical => Severity::Critical,
    }
}

/// The alert `rule` raises for one value, if its condition (or, between the
/// thresholds, its clearing condition) holds; an `absent` rule's values all
/// fire.
pub(crate) fn alert(rule: &Rule, v: &Valued) -> Option<Alert> {
    let sev = severity(rule.severity);
    let alert = match (rule.condition, rule.threshold) {
        (Some(op), Some(t)) if op.holds(v.value, t) => Alert::firing(&rule.alert, sev, v.value),
        (Some(op), Some(_)) if rule.clear_threshold.is_some_and(|c| op.holds(v.value, c)) => {
            Alert::holding(&rule.alert, sev, v.value)
        }
        (Some(_), Some(_)) => return None,
        _ if rule.absent.is_some() => Alert::firing(&rule.alert, sev, v.value),
        _ => return None,
    };
    let mut alert = alert.labels(&v.labels);
    if let Some(d) = rule.hold_for {
        alert = alert.hold_for(d.0);
    }
    if let Some(summary) = &rule.summary {
        alert = alert.annotation("summary", summary);
    }
    Some(match rule.threshold {
        Some(t) => alert.annotation("threshold", t.to_string()),
        None => alert,
    })
}
