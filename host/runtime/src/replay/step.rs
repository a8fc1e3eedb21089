//! One evaluation of one policy in simulated time, and what the host makes
//! of it: the daemon's alert state machine or findings lifecycle, run on
//! state that lives only as long as the replay.

use std::collections::HashMap;

use super::decision::Decision;
use crate::alerts::{self, AlertId, AlertState, Timing};
use crate::findings::{self, FindingId, FindingState, Rules};
use warden_plugin_host::{Clock, Evaluator};
use warden_policy::schema::{PolicyKind, PolicySpec};

/// The state a policy's decisions move, by kind.
pub(super) enum Stepper {
    /// An alert policy's alerts.
    Alert {
        states: HashMap<AlertId, AlertState>,
        timing: Timing,
        spec: PolicySpec,
    },
    /// A detector policy's findings.
    Detector {
        states: HashMap<FindingId, FindingState>,
        rules: Rules,
        spec: PolicySpec,
    },
    // Recovery replay plugs in here: see the module docs of `replay`.
}

impl Stepper {
    /// The stepper of an alert or detector policy.
    pub(super) fn new(spec: &PolicySpec) -> Stepper {
        let ms = |d: Option<warden_core::values::HumanDuration>| {
            d.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
        };
        match spec.kind {
            PolicyKind::Detector => Stepper::Detector {
                states: HashMap::new(),
                rules: findings::run::rules(spec, alerts::DEFAULT_REFRESH_MS),
                spec: spec.clone(),
            },
            _ => Stepper::Alert {
                states: HashMap::new(),
                timing: Timing {
                    default_for_ms: ms(spec.hold_for),
                    keep_firing_for_ms: ms(spec.keep_firing_for),
                    cooldown_ms: ms(spec.cooldown),
                    refresh_ms: alerts::DEFAULT_REFRESH_MS,
                    min_severity: spec.min_severity,
                },
                spec: spec.clone(),
            },
        }
    }

    /// Evaluates at `at`, moves the state and appends the decisions to
    /// `out`. Returns false if the evaluation failed (its error is a
    /// decision too).
    pub(super) fn step(
        &mut self,
        evaluator: &Evaluator,
        policy: &str,
        at: i64,
        out: &mut Vec<Decision>,
    ) -> bool {
        match self {
            Stepper::Alert {
                states,
                timing,
                spec,
            } => {
                let found = match evaluator.evaluate_alerts_at(Clock::Simulated(at)) {
                    Ok(a) => a,
                    Err(e) => {
                        out.push(Decision::error(at, policy, e.to_string()));
                        return false;
                    }
                };
                let changed = alerts::step(
                    states,
                    &found,
                    at,
                    timing.default_for_ms,
                    timing.keep_firing_for_ms,
                );
                out.extend(changed.iter().map(|c| Decision::alert(at, policy, c)));
                let due = alerts::due_at_least(
                    states,
                    at,
                    timing.cooldown_ms,
                    timing.refresh_ms,
                    timing.min_severity,
                );
                out.extend(due.iter().filter(|d| !d.refresh).map(|d| {
                    Decision::notify(
                        at,
                        policy,
                        crate::dispatch::notification(policy, &spec.labels, d),
                    )
                }));
            }
            Stepper::Detector {
                states,
                rules,
                spec,
            } => {
                let found = match evaluator.detect_at(Clock::Simulated(at)) {
                    Ok(f) => f,
                    Err(e) => {
                        out.push(Decision::error(at, policy, e.to_string()));
                        return false;
                    }
                };
                let stepped = findings::lifecycle::step(states, &found, at, rules);
                out.extend(
                    stepped
                        .changes
                        .iter()
                        .map(|f| Decision::finding(at, policy, f)),
                );
                let due = findings::lifecycle::due(states, at, rules);
                out.extend(due.iter().filter(|d| !d.refresh).map(|d| {
                    Decision::notify(
                        at,
                        policy,
                        findings::notify::notification(policy, &spec.labels, d),
                    )
                }));
            }
        }
        true
    }
}
