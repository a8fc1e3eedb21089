//! `backoff`: the recovery strategy shipped with Warden — exponential backoff
//! with jitter, a circuit that opens after repeated failures, and no retries for
//! errors that retrying cannot fix.
//!
//! ```yaml
//! config:
//!   base: 100ms          # first delay
//!   max: 30s             # cap on any delay
//!   multiplier: 2.0
//!   jitter: 0.2          # ± fraction of the delay, drawn from the host's seed
//!   jitter_mode: proportional   # or `full` or `decorrelated` (see below)
//!   max_attempts: 5      # give up after this many
//!   fallback:            # optional: use a fallback instead of retrying
//!     name: cached       #   the fallback the service knows by this name
//!     classes: [dependency-unavailable]   # for these classes (all when empty)
//!     after: 2           #   from this attempt on (1: at once)
//!   open_circuit_after: 10   # consecutive failures in history; optional
//!   open_for: 30s
//!   give_up_on: [invalid-input, permission, authentication]
//! ```

//!
//! Jitter (as in "Exponential Backoff And Jitter", AWS Architecture Blog):
//! - `proportional`: the exponential delay ± `jitter` × itself;
//! - `full`: uniform between 0 and the exponential delay;
//! - `decorrelated`: each delay uniform between `base` and three times the
//!   previous one, capped at `max`. The previous delays of the run are
//!   drawn again from the seed, so the strategy stays a pure function and the
//!   delay of attempt n has decorrelated jitter's distribution.

use serde::Deserialize;
use warden_sdk::Invocation;
use warden_sdk::config::HumanDuration;
use warden_sdk::recovery::{Attempt, Decision, ErrorClass, Failure, Outcome, RecoveryStrategy};

/// The plugin's `config:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The first delay.
    #[serde(default = "default_base")]
    pub base: HumanDuration,
    /// The largest delay.
    #[serde(default = "default_max")]
    pub max: HumanDuration,
    /// Growth factor per attempt.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Fraction of the delay to add or remove at random, 0 to 1.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Attempts after which to give up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Consecutive failures (newest first in history) that open the circuit.
    #[serde(default)]
    pub open_circuit_after: Option<u32>,
    /// How long an opened circuit stays open.
    #[serde(default = "default_open_for")]
    pub open_for: HumanDuration,
    /// Error classes that are never retried.
    #[serde(default = "default_give_up_on")]
    pub give_up_on: Vec<String>,
    /// How the delay is spread.
    #[serde(default)]
    pub jitter_mode: JitterMode,
    /// A fallback to use instead of retrying.
    #[serde(default)]
    pub fallback: Option<Fallback>,
}

/// How delays are spread so that clients failing together do not retry together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JitterMode {
    /// ± `jitter` × the delay.
    #[default]
    Proportional,
    /// Uniform in [0, delay].
    Full,
    /// Uniform in [base, 3 × previous delay], capped.
    Decorrelated,
}

/// When to fall back instead of retrying.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// The fallback's name, as the service knows it.
    pub name: String,
    /// Classes that fall back; every class when empty.
    #[serde(default)]
    pub classes: Vec<String>,
    /// The first attempt that falls back.
    #[serde(default = "one")]
    pub after: u32,
}

fn one() -> u32 {
    1
}

fn default_base() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(100))
}
fn default_max() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_jitter() -> f64 {
    0.2
}
fn default_max_attempts() -> u32 {
    5
}
fn default_open_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_give_up_on() -> Vec<String> {
    vec![
        "invalid-input".into(),
        "permission".into(),
        "authentication".into(),
    ]
}

fn class_name(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::RateLimited => "rate-limited",
        ErrorClass::Timeout => "timeout",
        ErrorClass::Connection => "connection",
        ErrorClass::Authentication => "authentication",
        ErrorClass::Permission => "permission",
        ErrorClass::Database => "database",
        ErrorClass::ResourceExhausted => "resource-exhausted",
        ErrorClass::DependencyUnavailable => "dependency-unavailable",
        ErrorClass::InvalidInput => "invalid-input",
        ErrorClass::Internal => "internal",
        ErrorClass::Unknown => "unknown",
    }
}

const CLASSES: [&str; 11] = [
    "rate-limited",
    "timeout",
    "connection",
    "authentication",
    "permission",
    "database",
    "resource-exhausted",
    "dependency-unavailable",
    "invalid-input",
    "internal",
    "unknown",
];

/// Maps the host's seed to a uniform value in [0, 1) (splitmix64), so the same
/// failure always gets the same jitter and the strategy stays a pure function.
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The strategy.
pub struct Backoff(Config);

impl RecoveryStrategy for Backoff {
    type Config = Config;

    fn new(c: Config) -> warden_sdk::Result<Self> {
        use warden_sdk::Error;
        if !(c.multiplier >= 1.0 && c.multiplier.is_finite()) {
            return Err(Error::at(
                "multiplier",
                format!("must be at least 1, got {}", c.multiplier),
            ));
        }
        if !(0.0..=1.0).contains(&c.jitter) {
            return Err(Error::at(
                "jitter",
                format!("must be between 0 and 1, got {}", c.jitter),
            ));
        }
        if c.base > c.max {
            return Err(Error::at(
                "base",
                format!("{} is larger than `max` ({})", c.base, c.max),
            ));
        }
        if let Some(f) = &c.fallback {
            if f.name.is_empty() {
                return Err(Error::at(
                    "fallback.name",
                    "is empty; name the fallback the service uses",
                ));
            }
            if let Some((i, bad)) = f
                .classes
                .iter()
                .enumerate()
                .find(|(_, n)| !CLASSES.contains(&n.as_str()))
            {
                return Err(Error::at(
                    format!("fallback.classes[{i}]"),
                    format!("unknown class `{bad}`; known: {}", CLASSES.join(", ")),
                ));
            }
        }
        if let Some((i, bad)) = c
            .give_up_on
            .iter()
            .enumerate()
            .find(|(_, n)| !CLASSES.contains(&n.as_str()))
        {
            return Err(Error::at(
                format!("give_up_on[{i}]"),
                format!("unknown class `{bad}`; known: {}", CLASSES.join(", ")),
            ));
        }
        Ok(Backoff(c))
    }

    fn decide(
        &self,
        _: &Invocation,
        failure: &Failure,
        history: &[Attempt],
    ) -> warden_sdk::Result<Decision> {
        let c = &self.0;
        let class = class_name(failure.class);
        if c.give_up_on.iter().any(|n| n == class) {
            return Ok(Decision::GiveUp(format!(
                "`{class}` errors are not retried"
            )));
        }
        if let Some(limit) = c.open_circuit_after {
            let streak = history
                .iter()
                .rev()
                .take_while(|a| a.outcome != Outcome::Success)
                .count();
            if streak >= limit as usize {
                return Ok(Decision::OpenCircuit(c.open_for.as_millis()));
            }
        }
        if let Some(f) = &c.fallback
            && failure.attempt >= f.after
            && (f.classes.is_empty() || f.classes.iter().any(|n| n == class))
        {
            return Ok(Decision::Fallback(f.name.clone()));
        }
        if failure.attempt >= c.max_attempts {
            return Ok(Decision::GiveUp(format!(
                "gave up after {} attempts",
                failure.attempt
            )));
        }
        Ok(Decision::RetryAfter(
            self.delay(failure.attempt, failure.seed),
        ))
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (from 1), drawn from `seed`.
    fn delay(&self, attempt: u32, seed: u64) -> u64 {
        let c = &self.0;
        let base = c.base.as_millis() as f64;
        let max = c.max.as_millis() as f64;
        let exp = |n: u32| (base * c.multiplier.powi(n.saturating_sub(1).min(64) as i32)).min(max);
        let delay = match c.jitter_mode {
            JitterMode::Proportional => {
                let spread = (unit(seed) * 2.0 - 1.0) * c.jitter;
                exp(attempt) * (1.0 + spread)
            }
            JitterMode::Full => exp(attempt) * unit(seed),
            JitterMode::Decorrelated => {
                // sleep = min(max, uniform(base, 3 × previous)), from `base`.
                let mut sleep = base;
                for step in 1..=attempt.min(64) {
                    let u = unit(seed ^ u64::from(step).wrapping_mul(0xD1B5_4A32_D192_ED03));
                    sleep = (base + u * (sleep * 3.0 - base)).min(max);
                }
                sleep
            }
        };
        delay.clamp(0.0, max).round() as u64
    }
}

warden_sdk::register_recovery!(Backoff);

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Invocation {
        Invocation {
            policy: "t".into(),
            now_ms: 0,
            dry_run: false,
        }
    }

    fn failure(attempt: u32, class: ErrorClass, seed: u64) -> Failure {
        Failure {
            operation: "db.query".into(),
            class,
            message: "boom".into(),
            attempt,
            first_failed_ms: 0,
            seed,
        }
    }

    fn strategy(json: &str) -> Backoff {
        Backoff::new(serde_json::from_str(json).unwrap()).unwrap()
    }

    fn delay(d: Decision) -> u64 {
        match d {
            Decision::RetryAfter(ms) => ms,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_without_jitter() {
        let s = strategy(r#"{"base": "100ms", "max": "1s", "jitter": 0, "max_attempts": 10}"#);
        let got: Vec<u64> = (1..=6)
            .map(|a| {
                delay(
                    s.decide(&inv(), &failure(a, ErrorClass::Timeout, 7), &[])
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_in_bounds_and_is_a_function_of_the_seed() {
        let s = strategy(r#"{"base": "1s", "max": "10s", "jitter": 0.5}"#);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..500 {
            let d = delay(
                s.decide(&inv(), &failure(1, ErrorClass::Connection, seed), &[])
                    .unwrap(),
            );
            assert!((500..=1500).contains(&d), "{d}");
            seen.insert(d);
        }
        assert!(
            seen.len() > 100,
            "jitter should spread delays, got {} distinct",
            seen.len()
        );
        let a = s
            .decide(&inv(), &failure(1, ErrorClass::Connection, 42), &[])
            .unwrap();
        let b = s
            .decide(&inv(), &failure(1, ErrorClass::Connection, 42), &[])
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn gives_up_on_unfixable_classes_and_after_max_attempts() {
        let s = strategy(r#"{"max_attempts": 3}"#);
        assert!(matches!(
            s.decide(&inv(), &failure(1, ErrorClass::InvalidInput, 0), &[])
                .unwrap(),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            s.decide(&inv(), &failure(3, ErrorClass::Timeout, 0), &[])
                .unwrap(),
            Decision::GiveUp(_)
        ));
        assert!(matches!(
            s.decide(&inv(), &failure(2, ErrorClass::Timeout, 0), &[])
                .unwrap(),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn opens_the_circuit_after_a_streak_of_failures() {
        let s = strategy(r#"{"open_circuit_after": 3, "open_for": "45s", "max_attempts": 100}"#);
        let a = |outcome| Attempt {
            at_ms: 0,
            outcome,
            duration_ms: 1,
        };
        let streak = [
            a(Outcome::Success),
            a(Outcome::Failure),
            a(Outcome::Timeout),
            a(Outcome::Failure),
        ];
        assert_eq!(
            s.decide(&inv(), &failure(4, ErrorClass::Timeout, 0), &streak)
                .unwrap(),
            Decision::OpenCircuit(45_000)
        );
        let broken = [
            a(Outcome::Failure),
            a(Outcome::Failure),
            a(Outcome::Success),
        ];
        assert!(matches!(
            s.decide(&inv(), &failure(1, ErrorClass::Timeout, 0), &broken)
                .unwrap(),
            Decision::RetryAfter(_)
        ));
    }

    #[test]
    fn full_jitter_spreads_over_zero_to_the_exponential_delay() {
        let s = strategy(
            r#"{"base": "100ms", "max": "10s", "jitter_mode": "full", "max_attempts": 10}"#,
        );
        let delays: Vec<u64> = (0..1000)
            .map(|seed| {
                delay(
                    s.decide(&inv(), &failure(3, ErrorClass::Timeout, seed), &[])
                        .unwrap(),
                )
            })
            .collect();
        assert!(
            delays.iter().all(|d| *d <= 400),
            "attempt 3: at most 100ms × 2²"
        );
        let low = delays.iter().filter(|d| **d < 100).count();
        assert!(
            (150..350).contains(&low),
            "about a quarter below 100ms, got {low}"
        );
    }

    #[test]
    fn decorrelated_jitter_stays_between_base_and_the_cap_and_grows() {
        let s = strategy(
            r#"{"base": "100ms", "max": "5s", "jitter_mode": "decorrelated", "max_attempts": 50}"#,
        );
        let mean = |attempt| {
            let v: Vec<u64> = (0..500)
                .map(|seed| {
                    delay(
                        s.decide(&inv(), &failure(attempt, ErrorClass::Timeout, seed), &[])
                            .unwrap(),
                    )
                })
                .collect();
            assert!(v.iter().all(|d| (100..=5000).contains(d)), "{v:?}");
            v.iter().sum::<u64>() as f64 / v.len() as f64
        };
        let (m1, m4) = (mean(1), mean(4));
        assert!(
            m4 > 2.0 * m1,
            "delays grow with the attempt: {m1} then {m4}"
        );
    }

    #[test]
    fn falls_back_for_its_classes_from_its_attempt() {
        let s = strategy(
            r#"{"fallback": {"name": "cached", "classes": ["dependency-unavailable"], "after": 2}}"#,
        );
        let d = |attempt, class| s.decide(&inv(), &failure(attempt, class, 1), &[]).unwrap();
        assert!(matches!(
            d(1, ErrorClass::DependencyUnavailable),
            Decision::RetryAfter(_)
        ));
        assert_eq!(
            d(2, ErrorClass::DependencyUnavailable),
            Decision::Fallback("cached".into())
        );
        assert!(matches!(d(2, ErrorClass::Timeout), Decision::RetryAfter(_)));
    }

    #[test]
    fn invalid_config_is_explained() {
        let bad = |json: &str| {
            Backoff::new(serde_json::from_str(json).unwrap())
                .err()
                .unwrap()
                .to_string()
        };
        assert!(bad(r#"{"multiplier": 0.5}"#).contains("multiplier"));
        assert!(bad(r#"{"jitter": 2}"#).contains("jitter"));
        assert!(bad(r#"{"base": "1m", "max": "1s"}"#).contains("larger than"));
        assert!(bad(r#"{"give_up_on": ["nope"]}"#).contains("`nope`"));
        assert!(bad(r#"{"fallback": {"name": "x", "classes": ["odd"]}}"#).contains("`odd`"));
    }
}
