//! The `recovery:` block of recovery policies: the circuit breaker's knobs
//! (Resilience4j's names and defaults), the retry budget (Finagle's), the
//! classification rules a policy adds before the built-in ones, and how many
//! attempts of each operation the plugin is shown. [`check`] turns the block
//! as written into [`RecoveryOptions`], every value in range, or says which
//! field is wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use warden_core::records::ErrorClass;
use warden_core::values::HumanDuration;

/// A recovery policy's host-side settings. Every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverySpec {
    /// The circuit breaker kept per (policy, operation, `breaker.key_labels`).
    #[serde(default)]
    pub breaker: BreakerSpec,
    /// The share of calls that may be retries.
    #[serde(default)]
    pub retry_budget: BudgetSpec,
    /// Rules tried, in order, before the built-in classification of raw
    /// errors (errno names, HTTP statuses, exception types, messages).
    #[serde(default)]
    pub classify: Vec<ClassifyRule>,
    /// Attempts of each operation kept and shown to the plugin (default 20,
    /// at most 200).
    #[serde(default)]
    pub history: Option<u32>,
}

/// Circuit breaker settings, named and defaulted as Resilience4j's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Report labels whose values get a breaker of their own (`[region]`: one
    /// breaker per region of each operation). Default: none.
    #[serde(default)]
    pub key_labels: Vec<String>,
    /// `count` (the last `window_size` calls) or `time` (the calls of the
    /// last `window_size` seconds). Default `count`.
    #[serde(default)]
    pub sliding_window: Option<WindowKind>,
    /// Calls (count) or seconds (time) in the window. Default 100.
    #[serde(default)]
    pub window_size: Option<u32>,
    /// Calls the window needs before rates count. Default 100.
    #[serde(default)]
    pub minimum_calls: Option<u32>,
    /// Percent of failed calls that opens the breaker. Default 50.
    #[serde(default)]
    pub failure_rate: Option<f64>,
    /// Percent of slow calls that opens the breaker. Default 100.
    #[serde(default)]
    pub slow_call_rate: Option<f64>,
    /// A call taking longer is slow. Default 60s.
    #[serde(default)]
    pub slow_call_duration: Option<HumanDuration>,
    /// How long the breaker stays open. Default 60s.
    #[serde(default)]
    pub wait_in_open: Option<HumanDuration>,
    /// Each consecutive opening waits this much longer (× per opening).
    /// Default 1 (no growth).
    #[serde(default)]
    pub wait_multiplier: Option<f64>,
    /// The longest a growing wait gets. Default: `wait_in_open` × 32.
    #[serde(default)]
    pub max_wait_in_open: Option<HumanDuration>,
    /// Calls let through in half-open to test the operation. Default 10.
    #[serde(default)]
    pub half_open_calls: Option<u32>,
    /// Moves open → half-open when the wait is over even with no call
    /// asking. Default false (the next call moves it).
    #[serde(default)]
    pub automatic_half_open: Option<bool>,
    /// Half-open for longer than this opens again; 0s waits for the calls.
    /// Default 0s.
    #[serde(default)]
    pub max_wait_in_half_open: Option<HumanDuration>,
    /// Only these classes count as failures; other failures count as
    /// successes. Default: every class.
    #[serde(default)]
    pub record_classes: Vec<ErrorClass>,
    /// Failures of these classes are not counted at all. Default: none.
    #[serde(default)]
    pub ignore_classes: Vec<ErrorClass>,
}

/// How a breaker's window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    /// The last `window_size` calls.
    #[default]
    Count,
    /// The calls of the last `window_size` seconds.
    Time,
}

/// The retry budget of each operation: over `window`, retries may be at
/// most `min_per_second` × the window's seconds plus `ratio` × the calls.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Retries allowed per call, 0 to 1. Default 0.2.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// Retries always allowed per second, whatever the calls. Default 10.
    #[serde(default)]
    pub min_per_second: Option<f64>,
    /// How far back calls and retries count. Default 10s, at most 1h.
    #[serde(default)]
    pub window: Option<HumanDuration>,
}

/// One classification rule: every matcher given must match; at least one
/// must be given.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRule {
    /// An errno name, such as `EAGAIN`.
    #[serde(default)]
    pub errno: Option<String>,
    /// An HTTP status.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// A glob over the exception type, such as `*.DeadlockException`.
    #[serde(default)]
    pub exception: Option<String>,
    /// A glob over the message, case-insensitive, such as `*quota exceeded*`.
    #[serde(default)]
    pub message: Option<String>,
    /// The class a match gets.
    pub class: ErrorClass,
}

/// The breaker's settings with defaults filled, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerOptions {
    /// Labels that split breakers.
    pub key_labels: Vec<String>,
    /// Count- or time-based.
    pub window: WindowKind,
    /// Calls or seconds.
    pub window_size: u32,
    /// Calls before rates count.
    pub minimum_calls: u32,
    /// Percent.
    pub failure_rate: f64,
    /// Percent.
    pub slow_call_rate: f64,
    /// In ms.
    pub slow_call_ms: u64,
    /// In ms.
    pub wait_in_open_ms: u64,
    /// Growth per consecutive opening.
    pub wait_multiplier: f64,
    /// Cap on the wait, ms.
    pub max_wait_in_open_ms: u64,
    /// Calls in half-open.
    pub half_open_calls: u32,
    /// Open → half-open by itself.
    pub automatic_half_open: bool,
    /// 0: no limit.
    pub max_wait_in_half_open_ms: u64,
    /// Empty: every class.
    pub record_classes: Vec<ErrorClass>,
    /// Not counted.
    pub ignore_classes: Vec<ErrorClass>,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            key_labels: Vec::new(),
            window: WindowKind::Count,
            window_size: 100,
            minimum_calls: 100,
            failure_rate: 50.0,
            slow_call_rate: 100.0,
            slow_call_ms: 60_000,
            wait_in_open_ms: 60_000,
            wait_multiplier: 1.0,
            max_wait_in_open_ms: 60_000 * 32,
            half_open_calls: 10,
            automatic_half_open: false,
            max_wait_in_half_open_ms: 0,
            record_classes: Vec::new(),
            ignore_classes: Vec::new(),
        }
    }
}

/// The retry budget's settings, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetOptions {
    /// Retries per call.
    pub ratio: f64,
    /// Retries per second always allowed.
    pub min_per_second: f64,
    /// Seconds counted.
    pub window_secs: u32,
}

impl Default for BudgetOptions {
    fn default() -> Self {
        BudgetOptions {
            ratio: 0.2,
            min_per_second: 10.0,
            window_secs: 10,
        }
    }
}

/// Everything the host needs to run a recovery policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecoveryOptions {
    /// The breaker.
    pub breaker: BreakerOptions,
    /// The retry budget.
    pub budget: BudgetOptions,
    /// Extra classification rules, first match wins.
    pub classify: Vec<ClassifyRule>,
    /// Attempts kept per operation.
    pub history: usize,
    /// Operation globs of the scope; empty: every operation.
    pub operations: Vec<String>,
    /// Label matchers of the scope (exact values).
    pub labels: BTreeMap<String, String>,
}

/// Attempts kept per operation when the policy does not say.
pub const DEFAULT_HISTORY: usize = 20;
const MAX_HISTORY: u32 = 200;
const MAX_WINDOW_CALLS: u32 = 10_000;
const MAX_WINDOW_SECS: u32 = 3_600;
const MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Checks `spec` (absent: all defaults), reporting each bad field through
/// `fail(field, message)` with its path under `recovery.`.
pub fn check(
    spec: Option<&RecoverySpec>,
    scope: &crate::schema::Scope,
    fail: &mut impl FnMut(&str, String),
) -> RecoveryOptions {
    let default = RecoverySpec::default();
    let spec = spec.unwrap_or(&default);
    let b = &spec.breaker;
    let d = BreakerOptions::default();
    let mut count = |field: &str, v: Option<u32>, def: u32, lo: u32, hi: u32| match v {
        None => def,
        Some(n) if (lo..=hi).contains(&n) => n,
        Some(n) => {
            fail(
                &format!("recovery.breaker.{field}"),
                format!("`{field}` is {n}; it must be between {lo} and {hi}"),
            );
            def
        }
    };
    let window = b.sliding_window.unwrap_or_default();
    let max_size = match window {
        WindowKind::Count => MAX_WINDOW_CALLS,
        WindowKind::Time => MAX_WINDOW_SECS,
    };
    let window_size = count("window_size", b.window_size, d.window_size, 1, max_size);
    let minimum_calls = count(
        "minimum_calls",
        b.minimum_calls,
        d.minimum_calls,
        1,
        MAX_WINDOW_CALLS,
    );
    let half_open_calls = count(
        "half_open_calls",
        b.half_open_calls,
        d.half_open_calls,
        1,
        1_000,
    );
    let history = count_history(spec.history, fail);
    let mut percent = |field: &str, v: Option<f64>, def: f64| match v {
        None => def,
        Some(p) if p > 0.0 && p <= 100.0 => p,
        Some(p) => {
            fail(
                &format!("recovery.breaker.{field}"),
                format!("`{field}` is {p}; it is a percentage, more than 0 and at most 100"),
            );
            def
        }
    };
    let failure_rate = percent("failure_rate", b.failure_rate, d.failure_rate);
    let slow_call_rate = percent("slow_call_rate", b.slow_call_rate, d.slow_call_rate);
    let mut ms = |field: &str, v: Option<HumanDuration>, def: u64, zero_ok: bool| match v {
        None => def,
        Some(t) if (zero_ok || !t.0.is_zero()) && t.0 <= MAX_WAIT => t.0.as_millis() as u64,
        Some(t) => {
            fail(
                &format!("recovery.breaker.{field}"),
                format!(
                    "`{field}` is {t}; it must be {} and at most 7 days",
                    if zero_ok {
                        "0s or more"
                    } else {
                        "more than 0s"
                    }
                ),
            );
            def
        }
    };
    let slow_call_ms = ms(
        "slow_call_duration",
        b.slow_call_duration,
        d.slow_call_ms,
        false,
    );
    let wait_in_open_ms = ms("wait_in_open", b.wait_in_open, d.wait_in_open_ms, false);
    let max_wait_in_open_ms = ms(
        "max_wait_in_open",
        b.max_wait_in_open,
        wait_in_open_ms.saturating_mul(32),
        false,
    );
    let max_wait_in_half_open_ms = ms(
        "max_wait_in_half_open",
        b.max_wait_in_half_open,
        d.max_wait_in_half_open_ms,
        true,
    );
    if max_wait_in_open_ms < wait_in_open_ms {
        fail(
            "recovery.breaker.max_wait_in_open",
            format!(
                "`max_wait_in_open` ({max_wait_in_open_ms}ms) is shorter than `wait_in_open` ({wait_in_open_ms}ms)"
            ),
        );
    }
    let wait_multiplier = match b.wait_multiplier {
        None => 1.0,
        Some(m) if m.is_finite() && (1.0..=10.0).contains(&m) => m,
        Some(m) => {
            fail(
                "recovery.breaker.wait_multiplier",
                format!("`wait_multiplier` is {m}; it must be between 1 and 10"),
            );
            1.0
        }
    };
    for (i, l) in b.key_labels.iter().enumerate() {
        if let Err(e) = check_label_name(l) {
            fail(&format!("recovery.breaker.key_labels[{i}]"), e);
        }
    }
    if let Some(c) = b
        .record_classes
        .iter()
        .find(|c| b.ignore_classes.contains(c))
    {
        fail(
            "recovery.breaker.ignore_classes",
            format!("`{c}` is both recorded and ignored; name it in one of the two lists"),
        );
    }
    let budget = check_budget(&spec.retry_budget, fail);
    for (i, r) in spec.classify.iter().enumerate() {
        check_rule(r, &format!("recovery.classify[{i}]"), fail);
    }
    for (i, g) in scope.operations.iter().enumerate() {
        if let Err(e) = globset::Glob::new(g) {
            fail(
                &format!("scope.operations[{i}]"),
                format!("`{g}` is not a glob: {e}"),
            );
        }
    }
    for name in scope.labels.keys() {
        if let Err(e) = check_label_name(name) {
            fail(&format!("scope.labels.{name}"), e);
        }
    }
    RecoveryOptions {
        breaker: BreakerOptions {
            key_labels: b.key_labels.clone(),
            window,
            window_size,
            minimum_calls,
            failure_rate,
            slow_call_rate,
            slow_call_ms,
            wait_in_open_ms,
            wait_multiplier,
            max_wait_in_open_ms,
            half_open_calls,
            automatic_half_open: b.automatic_half_open.unwrap_or(false),
            max_wait_in_half_open_ms,
            record_classes: b.record_classes.clone(),
            ignore_classes: b.ignore_classes.clone(),
        },
        budget,
        classify: spec.classify.clone(),
        history,
        operations: scope.operations.clone(),
        labels: scope.labels.clone(),
    }
}

fn count_history(v: Option<u32>, fail: &mut impl FnMut(&str, String)) -> usize {
    match v {
        None => DEFAULT_HISTORY,
        Some(n) if (1..=MAX_HISTORY).contains(&n) => n as usize,
        Some(n) => {
            fail(
                "recovery.history",
                format!("`history` is {n}; it must be between 1 and {MAX_HISTORY}"),
            );
            DEFAULT_HISTORY
        }
    }
}

fn check_budget(b: &BudgetSpec, fail: &mut impl FnMut(&str, String)) -> BudgetOptions {
    let d = BudgetOptions::default();
    let ratio = match b.ratio {
        None => d.ratio,
        Some(r) if (0.0..=1.0).contains(&r) => r,
        Some(r) => {
            fail(
                "recovery.retry_budget.ratio",
                format!("`ratio` is {r}; it must be between 0 and 1 (retries per call)"),
            );
            d.ratio
        }
    };
    let min_per_second = match b.min_per_second {
        None => d.min_per_second,
        Some(r) if r.is_finite() && (0.0..=100_000.0).contains(&r) => r,
        Some(r) => {
            fail(
                "recovery.retry_budget.min_per_second",
                format!("`min_per_second` is {r}; it must be between 0 and 100000"),
            );
            d.min_per_second
        }
    };
    let window_secs = match b.window {
        None => d.window_secs,
        Some(w) if w.0 >= Duration::from_secs(1) && w.0 <= Duration::from_secs(3600) => {
            w.0.as_secs() as u32
        }
        Some(w) => {
            fail(
                "recovery.retry_budget.window",
                format!("`window` is {w}; it must be between 1s and 1h"),
            );
            d.window_secs
        }
    };
    BudgetOptions {
        ratio,
        min_per_second,
        window_secs,
    }
}

fn check_rule(r: &ClassifyRule, at: &str, fail: &mut impl FnMut(&str, String)) {
    if r.errno.is_none() && r.http_status.is_none() && r.exception.is_none() && r.message.is_none()
    {
        fail(
            at,
            "a classification rule needs at least one of `errno`, `http_status`, `exception`, `message`".into(),
        );
    }
    if let Some(e) = &r.errno
        && !valid_errno(e)
    {
        fail(
            &format!("{at}.errno"),
            format!("`{e}` is not an errno name; write it like `EAGAIN`"),
        );
    }
    if let Some(s) = r.http_status
        && !(100..=599).contains(&s)
    {
        fail(
            &format!("{at}.http_status"),
            format!("{s} is not an HTTP status (100 to 599)"),
        );
    }
    for (field, g) in [("exception", &r.exception), ("message", &r.message)] {
        if let Some(g) = g
            && let Err(e) = globset::Glob::new(g)
        {
            fail(
                &format!("{at}.{field}"),
                format!("`{g}` is not a glob: {e}"),
            );
        }
    }
}

/// Returns true if and only if `name` looks like an errno name (`E` and
/// capitals or digits, at most 32 long).
pub fn valid_errno(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= 32
        && name.starts_with('E')
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Checks a label name as Prometheus writes them.
pub fn check_label_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid label name; use letters, digits and `_`, not starting with a digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<(String, String)> {
        let spec: RecoverySpec = serde_norway::from_str(yaml).unwrap();
        let mut out = Vec::new();
        check(
            Some(&spec),
            &crate::schema::Scope::default(),
            &mut |f: &str, m: String| out.push((f.to_owned(), m)),
        );
        out
    }

    #[test]
    fn defaults_are_resilience4j_and_finagle() {
        let o = check(None, &crate::schema::Scope::default(), &mut |_: &str, _| {
            panic!("no errors")
        });
        assert_eq!(o.breaker, BreakerOptions::default());
        assert_eq!(
            (
                o.breaker.window_size,
                o.breaker.minimum_calls,
                o.breaker.failure_rate
            ),
            (100, 100, 50.0)
        );
        assert_eq!(o.budget, BudgetOptions::default());
        assert_eq!(o.history, DEFAULT_HISTORY);
    }

    #[test]
    fn every_bad_knob_names_its_field() {
        let e = errors(
            "breaker: {window_size: 0, failure_rate: 150, wait_in_open: 0s, wait_multiplier: 0.5, key_labels: [\"9x\"], record_classes: [timeout], ignore_classes: [timeout]}\nretry_budget: {ratio: 2, window: 0s}\nclassify: [{class: timeout}, {errno: nope, class: timeout}, {http_status: 999, class: internal}]\nhistory: 0\n",
        );
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        for want in [
            "recovery.breaker.window_size",
            "recovery.breaker.failure_rate",
            "recovery.breaker.wait_in_open",
            "recovery.breaker.wait_multiplier",
            "recovery.breaker.key_labels[0]",
            "recovery.breaker.ignore_classes",
            "recovery.retry_budget.ratio",
            "recovery.retry_budget.window",
            "recovery.classify[0]",
            "recovery.classify[1].errno",
            "recovery.classify[2].http_status",
            "recovery.history",
        ] {
            assert!(fields.contains(&want), "no `{want}` in {e:#?}");
        }
    }
}
