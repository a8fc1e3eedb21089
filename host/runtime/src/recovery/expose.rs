//! Recovery on `/metrics` and in `/health`: each circuit's state (one
//! series per state, 1 for the current one, as Resilience4j's Micrometer
//! binding does), transitions, decisions by kind and by what decided,
//! failures by class, outcomes, refused calls.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use warden_core::records::ErrorClass;

use super::Recovery;
use super::breaker::State;
use super::decide::DecidedBy;

/// Counters kept since start.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    transitions: Mutex<HashMap<(String, String, State, State), u64>>,
    decisions: Mutex<HashMap<(String, &'static str, DecidedBy), u64>>,
    failures: Mutex<HashMap<(String, ErrorClass), u64>>,
    pub(crate) outcomes: AtomicU64,
}

impl Counters {
    pub(crate) fn transition(&self, policy: &str, operation: &str, from: State, to: State) {
        *self
            .transitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((policy.to_owned(), operation.to_owned(), from, to))
            .or_default() += 1;
    }

    pub(crate) fn decision(
        &self,
        policy: &str,
        kind: &'static str,
        by: DecidedBy,
        class: ErrorClass,
    ) {
        let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        match d.get_mut(&(policy.to_owned(), kind, by)) {
            Some(n) => *n += 1,
            None => {
                d.insert((policy.to_owned(), kind, by), 1);
            }
        }
        drop(d);
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match f.get_mut(&(policy.to_owned(), class)) {
            Some(n) => *n += 1,
            None => {
                f.insert((policy.to_owned(), class), 1);
            }
        }
    }
}

/// The `recovery` subsystem of `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSummary {
    /// 0–100: 100 with every circuit closed; open circuits take it down.
    pub score: f64,
    /// Why.
    pub detail: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn by(d: DecidedBy) -> &'static str {
    match d {
        DecidedBy::Breaker => "breaker",
        DecidedBy::Plugin => "plugin",
        DecidedBy::RetryBudget => "retry-budget",
        DecidedBy::OnFailure => "on-failure",
    }
}

impl Recovery {
    /// Writes the recovery metrics in OpenMetrics text.
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        let now = self.clock.now_ms();
        let circuits = self.circuits(None, None);
        writeln!(out, "# TYPE warden_recovery_circuit_state gauge")?;
        writeln!(
            out,
            "# HELP warden_recovery_circuit_state The state of each circuit breaker: 1 for its current state"
        )?;
        for c in &circuits {
            for s in State::ALL {
                writeln!(
                    out,
                    "warden_recovery_circuit_state{{policy=\"{}\",operation=\"{}\",circuit=\"{}\",state=\"{}\"}} {}",
                    escape(&c.policy),
                    escape(&c.operation),
                    c.id,
                    s.name(),
                    u8::from(c.breaker.state == s)
                )?;
            }
        }
        writeln!(out, "# TYPE warden_recovery_circuit_failure_rate gauge")?;
        writeln!(
            out,
            "# HELP warden_recovery_circuit_failure_rate Percent of failed calls in each breaker's window, once it holds minimum_calls"
        )?;
        for c in &circuits {
            if let Some(r) = c.breaker.failure_rate {
                writeln!(
                    out,
                    "warden_recovery_circuit_failure_rate{{policy=\"{}\",operation=\"{}\",circuit=\"{}\"}} {r}",
                    escape(&c.policy),
                    escape(&c.operation),
                    c.id
                )?;
            }
        }
        writeln!(out, "# TYPE warden_recovery_circuit_refused counter")?;
        writeln!(
            out,
            "# HELP warden_recovery_circuit_refused Calls a breaker refused"
        )?;
        for c in &circuits {
            writeln!(
                out,
                "warden_recovery_circuit_refused_total{{policy=\"{}\",operation=\"{}\",circuit=\"{}\"}} {}",
                escape(&c.policy),
                escape(&c.operation),
                c.id,
                c.breaker.refused
            )?;
        }
        writeln!(out, "# TYPE warden_recovery_circuit_transitions counter")?;
        writeln!(
            out,
            "# HELP warden_recovery_circuit_transitions Breaker state changes since start"
        )?;
        for ((policy, op, from, to), n) in self
            .counters
            .transitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            writeln!(
                out,
                "warden_recovery_circuit_transitions_total{{policy=\"{}\",operation=\"{}\",from=\"{}\",to=\"{}\"}} {n}",
                escape(policy),
                escape(op),
                from.name(),
                to.name()
            )?;
        }
        writeln!(out, "# TYPE warden_recovery_decisions counter")?;
        writeln!(
            out,
            "# HELP warden_recovery_decisions Decisions answered to failure reports, by kind and by what decided"
        )?;
        for ((policy, kind, d), n) in self
            .counters
            .decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            writeln!(
                out,
                "warden_recovery_decisions_total{{policy=\"{}\",decision=\"{kind}\",decided_by=\"{}\"}} {n}",
                escape(policy),
                by(*d)
            )?;
        }
        writeln!(out, "# TYPE warden_recovery_failures counter")?;
        writeln!(
            out,
            "# HELP warden_recovery_failures Failures reported, by class"
        )?;
        for ((policy, class), n) in self
            .counters
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            writeln!(
                out,
                "warden_recovery_failures_total{{policy=\"{}\",class=\"{class}\"}} {n}",
                escape(policy)
            )?;
        }
        writeln!(out, "# TYPE warden_recovery_outcomes counter")?;
        writeln!(out, "# HELP warden_recovery_outcomes Outcomes reported")?;
        writeln!(
            out,
            "warden_recovery_outcomes_total {}",
            self.counters.outcomes.load(Ordering::Relaxed)
        )?;
        let _ = now;
        Ok(())
    }

    /// The `recovery` subsystem of `/health`: open circuits (by the
    /// breakers or forced) take the score down, half as much for half-open.
    pub fn health(&self) -> HealthSummary {
        let circuits = self.circuits(None, None);
        let count =
            |f: &dyn Fn(State) -> bool| circuits.iter().filter(|c| f(c.breaker.state)).count();
        let open = count(&|s| s.refuses());
        let half = count(&|s| s == State::HalfOpen);
        let forced =
            count(&|s| matches!(s, State::ForcedOpen | State::Disabled | State::MetricsOnly));
        let total = circuits.len();
        let score = if total == 0 {
            100.0
        } else {
            100.0 - 100.0 * (open as f64 + 0.5 * half as f64) / total as f64
        };
        let policies = self
            .policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        HealthSummary {
            score,
            detail: format!(
                "{policies} recovery policies; {total} circuits: {open} open, {half} half-open, {forced} in a state set by an operator"
            ),
        }
    }
}
