//! Reporting: a failure gets a decision, outcomes feed the breakers; the
//! circuits and decisions as the API lists them; forced states; a manual
//! run of a recovery policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use warden_core::records::{Attempt, ErrorClass, Failure, Outcome, RecoveryDecision};

use super::breaker::{Call, State, Transition};
use super::circuit::{self, Circuit};
use super::decide::{self, DecidedBy, Effect, Inputs};
use super::report::{Ended, FailureReport, OutcomeReport, Refused};
use super::{DECISIONS_KEPT, Entry, MAX_CIRCUITS, Recovery};
use crate::state::{EvalRecord, StateKey};

/// Why a report was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The report itself is wrong; each problem names its field.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// No recovery policy covers the operation.
    #[error(
        "no recovery policy covers the operation `{0}`; add a recovery policy whose `scope.operations` matches it, or one with no `scope.operations` as the default"
    )]
    NoPolicy(String),
    /// The circuit cap is reached.
    #[error(
        "{MAX_CIRCUITS} circuits are kept already; this report would start another (operation `{0}`). Operation names and key labels should name a few operations, not requests"
    )]
    TooManyCircuits(String),
}

/// A decision as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum DecisionView {
    /// Try again after `after_ms`.
    RetryAfter {
        /// Milliseconds.
        after_ms: u64,
    },
    /// Use the named fallback.
    Fallback {
        /// Its name.
        fallback: String,
    },
    /// The circuit is open; do not call for `for_ms`.
    OpenCircuit {
        /// Milliseconds.
        for_ms: u64,
    },
    /// Stop.
    GiveUp {
        /// Why.
        reason: String,
    },
}

impl From<&RecoveryDecision> for DecisionView {
    fn from(d: &RecoveryDecision) -> Self {
        match d {
            RecoveryDecision::RetryAfter(ms) => DecisionView::RetryAfter { after_ms: *ms },
            RecoveryDecision::Fallback(f) => DecisionView::Fallback {
                fallback: f.clone(),
            },
            RecoveryDecision::OpenCircuit(ms) => DecisionView::OpenCircuit { for_ms: *ms },
            RecoveryDecision::GiveUp(r) => DecisionView::GiveUp { reason: r.clone() },
        }
    }
}

impl DecisionView {
    /// Returns the action's name: `retry-after`, `fallback`, `open-circuit`, `give-up`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecisionView::RetryAfter { .. } => "retry-after",
            DecisionView::Fallback { .. } => "fallback",
            DecisionView::OpenCircuit { .. } => "open-circuit",
            DecisionView::GiveUp { .. } => "give-up",
        }
    }
}

/// One decision, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The policy.
    pub policy: String,
    /// The operation.
    pub operation: String,
    /// The circuit's key labels.
    pub labels: BTreeMap<String, String>,
    /// The circuit.
    pub circuit: String,
    /// The failure's class.
    pub class: ErrorClass,
    /// What gave the class: `given`, `errno ETIMEDOUT`, `policy rule 0`, …
    pub classified_by: String,
    /// The attempt that failed.
    pub attempt: u32,
    /// The decision: `action` and its field (`after_ms`, `fallback`,
    /// `for_ms` or `reason`).
    #[serde(flatten)]
    pub decision: DecisionView,
    /// Who decided.
    pub decided_by: DecidedBy,
    /// The plugin's failure, when `on_failure` answered.
    #[serde(default)]
    pub plugin_error: Option<String>,
    /// The breaker's state after the decision.
    pub breaker: State,
    /// True if and only if the policy is in dry-run.
    pub dry_run: bool,
}

/// A circuit in short, as a report's answer carries it.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitBrief {
    /// Its id.
    pub id: String,
    /// Its state.
    pub state: State,
    /// Open: ms until calls may go through.
    pub open_for_ms: Option<u64>,
}

/// The answer to a failure report.
#[derive(Debug, Clone, Serialize)]
pub struct FailureAnswer {
    /// The decision and what it rests on.
    #[serde(flatten)]
    pub record: DecisionRecord,
    /// The breaker.
    pub circuit: CircuitBrief,
    /// Retries the budget allows in its window now, and used.
    pub retry_budget: super::budget::BudgetView,
    /// The decision, as the plugin's record.
    #[serde(skip)]
    pub decision: RecoveryDecision,
}

/// The answer to a batch of outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomesAnswer {
    /// Outcomes recorded.
    pub accepted: usize,
    /// The circuits they went to, after recording.
    pub circuits: Vec<CircuitBrief>,
}

impl Recovery {
    /// Returns the circuit of (policy, operation, key labels), creating it.
    pub(crate) fn circuit_for(
        &self,
        e: &Arc<Entry>,
        operation: &str,
        labels: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Arc<Circuit>, ReportError> {
        let key_labels = circuit::key_labels(e, labels);
        let policy = super::PolicyRef {
            file: e.file.clone(),
            name: e.name.clone(),
        };
        let (key, id) = circuit::key(&policy, operation, &key_labels);
        if let Some(c) = self
            .circuits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(c));
        }
        let mut all = self.circuits.write().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = all.get(&key) {
            return Ok(Arc::clone(c));
        }
        if all.len() >= MAX_CIRCUITS {
            return Err(ReportError::TooManyCircuits(operation.to_owned()));
        }
        let c = Arc::new(Circuit::new(e, id, operation, key_labels, now_ms));
        all.insert(key, Arc::clone(&c));
        self.mark_dirty();
        Ok(c)
    }

    pub(crate) fn transitioned(&self, c: &Circuit, t: Option<Transition>) {
        let Some(t) = t else { return };
        tracing::warn!(policy = %c.policy.name, operation = %c.operation, circuit = %c.id, from = t.from.name(), to = t.to.name(), reason = %t.reason, "circuit breaker changed state");
        self.counters
            .transition(&c.policy.name, &c.operation, t.from, t.to);
        if let Some(tx) = &self.opts.transitions {
            let _ = tx.send(super::BreakerChange {
                policy: c.policy.name.clone(),
                operation: c.operation.clone(),
                circuit: c.id.clone(),
                transition: t,
            });
        }
        self.mark_dirty();
    }

    /// Counts a failure of `class` lasting `duration_ms` as the breaker of
    /// `e` does: `None` when the class is ignored.
    fn as_call(e: &Entry, class: ErrorClass, duration_ms: Option<u64>) -> Option<Call> {
        let b = &e.opts.breaker;
        if b.ignore_classes.contains(&class) {
            return None;
        }
        Some(Call {
            failed: b.record_classes.is_empty() || b.record_classes.contains(&class),
            slow: duration_ms.is_some_and(|d| d > b.slow_call_ms),
        })
    }

    /// Takes a failure report: classifies it, records it, asks the policy
    /// and answers with the decision and the breaker's state.
    pub fn report_failure(&self, r: FailureReport) -> Result<FailureAnswer, ReportError> {
        let e = self
            .select(&r.operation, &r.labels)
            .ok_or_else(|| ReportError::NoPolicy(r.operation.clone()))?;
        let (class, classified_by) = match r.class {
            Some(c) => (c, "given".to_owned()),
            None if r.timed_out && r.error.is_empty() => (ErrorClass::Timeout, "timed_out".into()),
            None => e.rules.classify(&r.error),
        };
        let now = self.clock.now_ms();
        let c = self.circuit_for(&e, &r.operation, &r.labels, now)?;
        if let Some(call) = Self::as_call(&e, class, r.duration_ms) {
            self.transitioned(&c, c.breaker.record(now, call));
        }
        let (state, open_for_ms, t) = c.breaker.status(now);
        self.transitioned(&c, t);
        let (history, first_failed_ms, budget_room) = {
            let mut side = c.side();
            if r.attempt == 1 {
                side.budget.call(now);
            }
            let history = side.history.attempts();
            side.history.push(
                e.opts.history,
                Attempt {
                    at_ms: now,
                    outcome: if r.timed_out || class == ErrorClass::Timeout {
                        Outcome::Timeout
                    } else {
                        Outcome::Failure
                    },
                    duration_ms: r
                        .duration_ms
                        .map_or(0, |d| d.min(u64::from(u32::MAX)) as u32),
                },
            );
            let first = side.history.failing_since_ms.unwrap_or(now);
            (history, first, side.budget.has_room(now, &e.opts.budget))
        };
        let failure = Failure {
            operation: r.operation.clone(),
            class,
            message: r.error.message.clone().unwrap_or_default(),
            attempt: r.attempt,
            first_failed_ms,
            seed: self.next_seed(),
        };
        let inputs = Inputs {
            on_failure: e.on_failure,
            dry_run: e.dry_run,
            failure: &failure,
            history: &history,
            breaker: state,
            open_for_ms,
            budget_room,
            now_ms: now,
        };
        let mut asked = None;
        let mut decided = decide::decide(&inputs, |f, h| {
            let started = std::time::Instant::now();
            let clock = if self.clock.is_wall() {
                warden_plugin_host::Clock::Wall
            } else {
                warden_plugin_host::Clock::Simulated(now)
            };
            let result = match &e.evaluator {
                Some(ev) => ev
                    .decide_at(clock, f, h)
                    .map_err(|err| (err.failure.label(), err.to_string())),
                None => Err(("no_plugin", "the policy has no plugin".to_owned())),
            };
            asked = Some((started.elapsed(), result.clone().err()));
            result.map_err(|(_, m)| m)
        });
        match decided.effect {
            Effect::SpendRetry => {
                let granted = c.side().budget.try_retry(now, &e.opts.budget);
                if !granted {
                    decided.decision = RecoveryDecision::GiveUp(
                        "the retry budget of this operation is spent: too many retries for its calls; retry later or fall back".into(),
                    );
                    decided.by = DecidedBy::RetryBudget;
                }
            }
            Effect::OpenFor(ms) => {
                let t =
                    c.breaker
                        .open_for(now, ms, format!("the policy decided open-circuit({ms}ms)"));
                self.transitioned(&c, t);
            }
            Effect::None if decided.by == DecidedBy::RetryBudget => {
                c.side().budget.refused += 1;
            }
            Effect::None => {}
        }
        if let Some((took, error)) = asked {
            self.count_evaluation(&e, now, took, &decided.decision, error);
        }
        let (state, open_for_ms, _) = c.breaker.status(now);
        let budget = c.side().budget.view(now, &e.opts.budget);
        let record = DecisionRecord {
            at_ms: now,
            policy: e.name.clone(),
            operation: r.operation.clone(),
            labels: c.labels.iter().cloned().collect(),
            circuit: c.id.clone(),
            class,
            classified_by,
            attempt: r.attempt,
            decision: DecisionView::from(&decided.decision),
            decided_by: decided.by,
            plugin_error: decided.plugin_error,
            breaker: state,
            dry_run: e.dry_run,
        };
        self.counters
            .decision(&e.name, record.decision.kind(), record.decided_by, class);
        self.remember(record.clone());
        if let Some(events) = &self.opts.events {
            let _ = events.send(crate::scheduler::Event {
                kind: warden_policy::schema::EventKind::FailureReported,
                pressure: None,
                failure: Some(crate::scheduler::FailureEvent {
                    operation: r.operation,
                    class,
                    labels: r.labels,
                }),
            });
        }
        Ok(FailureAnswer {
            record,
            circuit: CircuitBrief {
                id: c.id.clone(),
                state,
                open_for_ms,
            },
            retry_budget: budget,
            decision: decided.decision,
        })
    }

    /// Records a plugin call as an evaluation of the policy, as scheduled
    /// evaluations are, so `warden status` and `/health` count them.
    fn count_evaluation(
        &self,
        e: &Entry,
        now: i64,
        took: std::time::Duration,
        d: &RecoveryDecision,
        error: Option<(&'static str, String)>,
    ) {
        if let Some(t) = &self.opts.telemetry {
            let labels = warden_core::telemetry::PolicyLabels {
                policy: e.name.clone(),
                kind: "recovery",
            };
            t.evaluations.get_or_create(&labels).inc();
            if let Some((cause, _)) = &error {
                t.failures
                    .get_or_create(&warden_core::telemetry::FailureLabels {
                        policy: labels.policy,
                        kind: "recovery",
                        cause,
                    })
                    .inc();
            }
        }
        if let Some(state) = &self.opts.state {
            let (ok, detail) = match error {
                None => (true, format!("decided {}", DecisionView::from(d).kind())),
                Some((_, m)) => (false, m),
            };
            state.record(
                &StateKey::policy(&e.file, &e.name),
                None,
                EvalRecord {
                    at_ms: now,
                    micros: took.as_micros() as u64,
                    ok,
                    detail,
                },
            );
        }
    }

    fn remember(&self, record: DecisionRecord) {
        let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        if d.len() == DECISIONS_KEPT {
            d.pop_back();
        }
        d.push_front(record);
        self.mark_dirty();
    }

    /// Takes a batch of outcomes, all or nothing: every operation must be
    /// covered by a policy before any is recorded.
    pub fn report_outcomes(&self, batch: &[OutcomeReport]) -> Result<OutcomesAnswer, ReportError> {
        let mut chosen = Vec::with_capacity(batch.len());
        let mut problems = Vec::new();
        for (i, o) in batch.iter().enumerate() {
            match self.select(&o.operation, &o.labels) {
                Some(e) => chosen.push(e),
                None => problems.push(warden_metrics::validate::Invalid::new(
                    format!("outcomes[{i}].operation"),
                    format!(
                        "no recovery policy covers `{}`; add one whose `scope.operations` matches it, or a default",
                        o.operation
                    ),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(ReportError::Refused(Refused(problems)));
        }
        let now = self.clock.now_ms();
        let mut touched: Vec<Arc<Circuit>> = Vec::new();
        for (o, e) in batch.iter().zip(&chosen) {
            let c = self.circuit_for(e, &o.operation, &o.labels, now)?;
            let slow_ms = e.opts.breaker.slow_call_ms;
            let call = match o.outcome {
                Ended::Success => Some(Call {
                    failed: false,
                    slow: o.duration_ms.is_some_and(|d| d > slow_ms),
                }),
                Ended::Slow => Some(Call {
                    failed: false,
                    slow: true,
                }),
                Ended::Failure => {
                    Self::as_call(e, o.class.unwrap_or(ErrorClass::Unknown), o.duration_ms)
                }
                Ended::Timeout => {
                    Self::as_call(e, o.class.unwrap_or(ErrorClass::Timeout), o.duration_ms)
                }
            };
            if let Some(call) = call {
                self.transitioned(&c, c.breaker.record(now, call));
            }
            {
                let mut side = c.side();
                side.budget.call(now);
                side.history.push(
                    e.opts.history,
                    Attempt {
                        at_ms: now,
                        outcome: match o.outcome {
                            Ended::Success | Ended::Slow => Outcome::Success,
                            Ended::Failure => Outcome::Failure,
                            Ended::Timeout => Outcome::Timeout,
                        },
                        duration_ms: o
                            .duration_ms
                            .map_or(0, |d| d.min(u64::from(u32::MAX)) as u32),
                    },
                );
            }
            if !touched.iter().any(|t| Arc::ptr_eq(t, &c)) {
                touched.push(c);
            }
        }
        self.counters
            .outcomes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.mark_dirty();
        let circuits = touched
            .iter()
            .map(|c| {
                let (state, open_for_ms, t) = c.breaker.status(now);
                self.transitioned(c, t);
                CircuitBrief {
                    id: c.id.clone(),
                    state,
                    open_for_ms,
                }
            })
            .collect();
        Ok(OutcomesAnswer {
            accepted: batch.len(),
            circuits,
        })
    }
}
