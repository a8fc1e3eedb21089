//! What operators and manual runs see: circuits as the API lists them,
//! forced states, the decision history, and a manual run of a recovery
//! policy (its plugin asked about the latest failure, nothing acted on).

use std::sync::Arc;

use warden_core::records::{ErrorClass, Failure};

use super::breaker::State;
use super::circuit::{Circuit, CircuitView};
use super::service::{DecisionRecord, DecisionView};
use super::{Entry, Recovery};

impl Recovery {
    /// Every circuit, by policy, operation and labels; `policy` and
    /// `operation` narrow the list.
    pub fn circuits(&self, policy: Option<&str>, operation: Option<&str>) -> Vec<CircuitView> {
        let now = self.clock.now_ms();
        let all: Vec<Arc<Circuit>> = self
            .circuits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| policy.is_none_or(|p| c.policy.name == p))
            .filter(|c| operation.is_none_or(|o| c.operation == o))
            .cloned()
            .collect();
        let mut v: Vec<CircuitView> = all
            .iter()
            .map(|c| {
                let (view, t) = c.view(now);
                self.transitioned(c, t);
                view
            })
            .collect();
        v.sort_by(|a, b| {
            (&a.policy, &a.operation, &a.labels).cmp(&(&b.policy, &b.operation, &b.labels))
        });
        v
    }

    fn by_id(&self, id: &str) -> Option<Arc<Circuit>> {
        self.circuits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|c| c.id == id)
            .cloned()
    }

    /// Returns one circuit.
    pub fn circuit(&self, id: &str) -> Option<CircuitView> {
        let c = self.by_id(id)?;
        let (v, t) = c.view(self.clock.now_ms());
        self.transitioned(&c, t);
        Some(v)
    }

    /// Forces circuit `id` into `state` (`Closed` resets it). `None` if
    /// there is no such circuit.
    pub fn force(&self, id: &str, state: State) -> Option<CircuitView> {
        let c = self.by_id(id)?;
        let now = self.clock.now_ms();
        let reason = match state {
            State::Closed => "reset through the API".to_owned(),
            s => format!("{} through the API", s.name()),
        };
        let t = c.breaker.force(now, state, reason);
        self.transitioned(&c, t);
        self.mark_dirty();
        Some(c.view(now).0)
    }

    /// The newest `limit` decisions, newest first, narrowed by policy and
    /// operation.
    pub fn decisions(
        &self,
        policy: Option<&str>,
        operation: Option<&str>,
        limit: usize,
    ) -> Vec<DecisionRecord> {
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| policy.is_none_or(|p| d.policy == p))
            .filter(|d| operation.is_none_or(|o| d.operation == o))
            .take(limit)
            .cloned()
            .collect()
    }

    /// A manual run of recovery policy `p`: asks its plugin about the
    /// policy's latest failure again (with the operation's history), or
    /// about a made-up `warden.manual-run` failure if it has seen none.
    /// Acts on nothing: no breaker, budget or history changes.
    pub fn probe(
        &self,
        p: &warden_policy::live::LivePolicy,
    ) -> Result<String, (&'static str, String)> {
        let Some(e) = Entry::of(p) else {
            return Err(("not_recovery", "not a recovery policy".into()));
        };
        let Some(ev) = &e.evaluator else {
            return Err(("no_plugin", "the policy has no plugin".into()));
        };
        let now = self.clock.now_ms();
        let latest = self.decisions(Some(&e.name), None, 1).pop();
        let (failure, history, what) = match &latest {
            Some(d) => {
                let history = self
                    .by_id(&d.circuit)
                    .map(|c| c.side().history.attempts())
                    .unwrap_or_default();
                (
                    Failure {
                        operation: d.operation.clone(),
                        class: d.class,
                        message: "replayed by a manual run".into(),
                        attempt: d.attempt,
                        first_failed_ms: d.at_ms,
                        seed: self.next_seed(),
                    },
                    history,
                    "the latest failure replayed",
                )
            }
            None => (
                Failure {
                    operation: "warden.manual-run".into(),
                    class: ErrorClass::Unknown,
                    message: "a manual run of the policy".into(),
                    attempt: 1,
                    first_failed_ms: now,
                    seed: self.next_seed(),
                },
                Vec::new(),
                "no failure reported yet, a made-up one",
            ),
        };
        let d = ev
            .decide(&failure, &history)
            .map_err(|err| (err.failure.label(), err.to_string()))?;
        let shown = match DecisionView::from(&d) {
            DecisionView::RetryAfter { after_ms } => format!("retry-after {after_ms}ms"),
            DecisionView::Fallback { fallback } => format!("fallback `{fallback}`"),
            DecisionView::OpenCircuit { for_ms } => format!("open-circuit {for_ms}ms"),
            DecisionView::GiveUp { reason } => format!("give-up ({reason})"),
        };
        Ok(format!(
            "decided {shown} for `{}` attempt {} ({}; {what}, {} earlier attempts); nothing acted on",
            failure.operation,
            failure.attempt,
            failure.class,
            history.len()
        ))
    }
}
