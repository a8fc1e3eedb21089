//! The decision for one failure as a pure function of the policy's
//! settings, the failure, the operation's history, the breaker's state, the
//! retry budget's room and the time: the host's rules around the plugin.
//! `warden replay` drives it in simulated time; the live service calls it
//! with the breaker and budget it keeps.
//!
//! - A breaker that refuses calls answers by itself (`open-circuit` for the
//!   rest of the wait; `give-up` when forced open): the plugin is not asked.
//! - Otherwise the plugin decides. A retry needs room in the retry budget,
//!   else the answer is `give-up`. An `open-circuit` opens the breaker.
//! - A strategy that fails answers per `on_failure`: `fail-open` retries
//!   after the host's own backoff (exponential, full jitter; within the
//!   budget), `fail-closed` gives up.
//! - A dry-run policy's breaker is never opened by the plugin and never
//!   refuses: the answer is what the policy would decide.

use serde::Serialize;

use warden_core::records::{Attempt, Failure, RecoveryDecision};
use warden_policy::schema::OnFailure;

use super::breaker::State;

/// What decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// The breaker refuses calls; the plugin was not asked.
    Breaker,
    /// The plugin.
    Plugin,
    /// The plugin asked for a retry; the retry budget had no room.
    RetryBudget,
    /// The plugin failed; the policy's `on_failure` answered.
    OnFailure,
}

/// What the host does with the decision, besides answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Count a retry against the budget.
    SpendRetry,
    /// Open the breaker for this many ms.
    OpenFor(u64),
}

/// Everything the decision depends on besides the plugin.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// What the policy answers when its strategy fails.
    pub on_failure: OnFailure,
    /// The policy decides but the host acts on nothing.
    pub dry_run: bool,
    /// The failure, classified.
    pub failure: &'a Failure,
    /// The operation's earlier attempts, oldest first.
    pub history: &'a [Attempt],
    /// The breaker's state after this failure was recorded.
    pub breaker: State,
    /// Open: ms until it lets calls through again.
    pub open_for_ms: Option<u64>,
    /// True if and only if the retry budget has room for one more retry.
    pub budget_room: bool,
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

/// The decision and what follows from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The answer.
    pub decision: RecoveryDecision,
    /// Who decided.
    pub by: DecidedBy,
    /// What the host does.
    pub effect: Effect,
    /// The plugin's failure, when `on_failure` answered.
    pub plugin_error: Option<String>,
}

/// Decides, asking `strategy` (the plugin) unless the breaker answers.
pub fn decide(
    i: &Inputs<'_>,
    strategy: impl FnOnce(&Failure, &[Attempt]) -> Result<RecoveryDecision, String>,
) -> Decided {
    let done = |decision, by, effect| Decided {
        decision,
        by,
        effect,
        plugin_error: None,
    };
    if !i.dry_run {
        match i.breaker {
            State::Open => {
                return done(
                    RecoveryDecision::OpenCircuit(i.open_for_ms.unwrap_or(0)),
                    DecidedBy::Breaker,
                    Effect::None,
                );
            }
            State::ForcedOpen => {
                return done(
                    RecoveryDecision::GiveUp(
                        "the circuit is forced open; an operator must reset it".into(),
                    ),
                    DecidedBy::Breaker,
                    Effect::None,
                );
            }
            _ => {}
        }
    }
    let (decision, by, plugin_error) = match strategy(i.failure, i.history) {
        Ok(d) => (d, DecidedBy::Plugin, None),
        Err(e) => {
            let d = match i.on_failure {
                OnFailure::FailOpen => {
                    RecoveryDecision::RetryAfter(host_backoff(i.failure.attempt, i.failure.seed))
                }
                OnFailure::FailClosed => RecoveryDecision::GiveUp(format!(
                    "the recovery strategy failed and the policy is fail-closed: {e}"
                )),
            };
            (d, DecidedBy::OnFailure, Some(e))
        }
    };
    let mut out = match decision {
        RecoveryDecision::RetryAfter(_) if !i.budget_room => done(
            RecoveryDecision::GiveUp(
                "the retry budget of this operation is spent: too many retries for its calls; retry later or fall back".into(),
            ),
            DecidedBy::RetryBudget,
            Effect::None,
        ),
        RecoveryDecision::RetryAfter(ms) => done(
            RecoveryDecision::RetryAfter(ms),
            by,
            if i.dry_run {
                Effect::None
            } else {
                Effect::SpendRetry
            },
        ),
        RecoveryDecision::OpenCircuit(ms) => done(
            RecoveryDecision::OpenCircuit(ms),
            by,
            if i.dry_run {
                Effect::None
            } else {
                Effect::OpenFor(ms)
            },
        ),
        other => done(other, by, Effect::None),
    };
    out.plugin_error = plugin_error;
    out
}

/// The host's backoff when a fail-open strategy fails: 100 ms doubled per
/// attempt, capped at 30 s, with full jitter from the failure's seed.
pub fn host_backoff(attempt: u32, seed: u64) -> u64 {
    let cap = 100f64 * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
    (cap.min(30_000.0) * unit(seed)).round() as u64
}

/// Maps a seed to [0, 1) (splitmix64).
pub fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::records::ErrorClass;

    fn failure() -> Failure {
        Failure {
            operation: "db.query".into(),
            class: ErrorClass::Timeout,
            message: "slow".into(),
            attempt: 2,
            first_failed_ms: 0,
            seed: 9,
        }
    }

    fn inputs(f: &Failure, breaker: State, budget_room: bool) -> Inputs<'_> {
        Inputs {
            on_failure: OnFailure::FailClosed,
            dry_run: false,
            failure: f,
            history: &[],
            breaker,
            open_for_ms: Some(700),
            budget_room,
            now_ms: 0,
        }
    }

    #[test]
    fn an_open_breaker_answers_without_the_plugin() {
        let f = failure();
        let d = decide(&inputs(&f, State::Open, true), |_, _| panic!("not asked"));
        assert_eq!(
            (d.decision, d.by),
            (RecoveryDecision::OpenCircuit(700), DecidedBy::Breaker)
        );
        let d = decide(&inputs(&f, State::ForcedOpen, true), |_, _| {
            panic!("not asked")
        });
        assert!(matches!(d.decision, RecoveryDecision::GiveUp(_)));
    }

    #[test]
    fn retries_spend_the_budget_or_give_up_when_it_is_spent() {
        let f = failure();
        let retry = |_: &Failure, _: &[Attempt]| Ok(RecoveryDecision::RetryAfter(50));
        let d = decide(&inputs(&f, State::Closed, true), retry);
        assert_eq!(d.effect, Effect::SpendRetry);
        let d = decide(&inputs(&f, State::HalfOpen, false), retry);
        assert_eq!(d.by, DecidedBy::RetryBudget);
        assert!(matches!(d.decision, RecoveryDecision::GiveUp(r) if r.contains("retry budget")));
    }

    #[test]
    fn a_failing_strategy_answers_per_on_failure() {
        let f = failure();
        let broken = |_: &Failure, _: &[Attempt]| Err("trap".to_owned());
        let d = decide(&inputs(&f, State::Closed, true), broken);
        assert_eq!(d.by, DecidedBy::OnFailure);
        assert!(
            matches!(&d.decision, RecoveryDecision::GiveUp(r) if r.contains("fail-closed: trap"))
        );
        let mut open = inputs(&f, State::Closed, true);
        open.on_failure = OnFailure::FailOpen;
        let d = decide(&open, broken);
        let RecoveryDecision::RetryAfter(ms) = d.decision else {
            panic!("{d:?}")
        };
        assert!(ms <= 200, "{ms}");
        assert_eq!(d.plugin_error.as_deref(), Some("trap"));
    }

    #[test]
    fn dry_run_acts_on_nothing() {
        let f = failure();
        let mut i = inputs(&f, State::Open, true);
        i.dry_run = true;
        let d = decide(&i, |_, _| Ok(RecoveryDecision::OpenCircuit(5)));
        assert_eq!((d.by, d.effect), (DecidedBy::Plugin, Effect::None));
    }
}
