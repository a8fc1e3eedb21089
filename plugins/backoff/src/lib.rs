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
//!   max_attempts: 5      # give up after this many
//!   open_circuit_after: 10   # consecutive failures in history; optional
//!   open_for: 30s
//!   give_up_on: [invalid-input, permission, authentication]
//! ```

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
        if failure.attempt >= c.max_attempts {
            return Ok(Decision::GiveUp(format!(
                "gave up after {} attempts",
                failure.attempt
            )));
        }
        let exp = failure.attempt.saturating_sub(1).min(64) as i32;
        let raw = c.base.as_millis() as f64 * c.multiplier.powi(exp);
        let capped = raw.min(c.max.as_millis() as f64);
        let spread = (unit(failure.seed) * 2.0 - 1.0) * c.jitter;
        let delay = (capped * (1.0 + spread)).clamp(0.0, c.max.as_millis() as f64);
        Ok(Decision::RetryAfter(delay.round() as u64))
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
    }
}
