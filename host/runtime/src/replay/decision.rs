//! What a replay prints: every decision the host made, one per line, as
//! JSON (`--format json`) or text for people (`--format text`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::alerts::{AlertState, Phase as AlertPhase};
use crate::findings::FindingState;
use warden_notify::{AlertStatus, Notification};

/// One decision, at one simulated time, of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The simulated time, RFC 3339.
    pub at: String,
    /// The same, ms since the epoch.
    pub at_ms: i64,
    /// The policy.
    pub policy: String,
    /// What was decided.
    #[serde(flatten)]
    pub what: What,
}

/// The kinds of decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum What {
    /// An alert changed phase.
    Alert {
        /// Its name.
        alert: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
        /// The phase it entered: pending, firing or resolved.
        phase: AlertPhase,
        /// The value that made it hold.
        value: f64,
        /// Its severity.
        severity: String,
    },
    /// A finding was raised or resolved.
    Finding {
        /// `raised` or `resolved`.
        event: crate::findings::Happened,
        /// The pattern.
        pattern: String,
        /// The subject.
        subject: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
        /// Its severity.
        severity: warden_policy::schema::Severity,
        /// How sure the detector is.
        confidence: f64,
        /// Predicted ms until exhaustion.
        exhaustion_in_ms: Option<u64>,
        /// The numbers the detector attached.
        evidence: BTreeMap<String, f64>,
        /// What to do.
        recommendation: String,
    },
    /// Receivers would be told this (first announcements and resolutions;
    /// refreshes are left out).
    Notify {
        /// `firing` or `resolved`.
        status: AlertStatus,
        /// The notification's labels (`alertname` among them).
        labels: BTreeMap<String, String>,
    },
    /// A recovery policy decided about a recorded failure.
    Recovery {
        /// The operation that failed.
        operation: String,
        /// The circuit's key labels.
        labels: BTreeMap<String, String>,
        /// The circuit.
        circuit: String,
        /// The failure's class, and what gave it.
        class: warden_core::records::ErrorClass,
        /// What gave the class: `given`, `errno ETIMEDOUT`, `policy rule 0`, …
        classified_by: String,
        /// The attempt that failed.
        attempt: u32,
        /// The decision: `action` and its field.
        #[serde(flatten)]
        action: crate::recovery::DecisionView,
        /// Who decided.
        decided_by: crate::recovery::decide::DecidedBy,
        /// The breaker's state after the decision.
        breaker: crate::recovery::breaker::State,
    },
    /// A circuit breaker changed state.
    Breaker {
        /// The operation.
        operation: String,
        /// The circuit.
        circuit: String,
        /// Its state before.
        from: crate::recovery::breaker::State,
        /// Its state now.
        to: crate::recovery::breaker::State,
        /// Why.
        reason: String,
    },
    /// The evaluation failed; the replay goes on.
    Error {
        /// Why.
        error: String,
    },
}

impl Decision {
    /// Returns the decision for an alert's change of phase.
    pub fn alert(at_ms: i64, policy: &str, a: &AlertState) -> Decision {
        Decision::at(
            at_ms,
            policy,
            What::Alert {
                alert: a.name.clone(),
                labels: a.labels.iter().cloned().collect(),
                phase: a.phase,
                value: a.value,
                severity: a.severity.clone(),
            },
        )
    }

    /// Returns the decision for a finding raised or resolved.
    pub fn finding(at_ms: i64, policy: &str, f: &FindingState) -> Decision {
        Decision::at(
            at_ms,
            policy,
            What::Finding {
                event: crate::findings::Happened::of(f.phase),
                pattern: f.pattern.clone(),
                subject: f.subject.clone(),
                labels: f.labels.iter().cloned().collect(),
                severity: f.severity,
                confidence: f.confidence,
                exhaustion_in_ms: f.exhaustion_in_ms,
                evidence: f.evidence.clone(),
                recommendation: f.recommendation.clone(),
            },
        )
    }

    /// Returns the decision to tell receivers `n`.
    pub fn notify(at_ms: i64, policy: &str, n: Notification) -> Decision {
        Decision::at(
            at_ms,
            policy,
            What::Notify {
                status: n.status,
                labels: n.labels,
            },
        )
    }

    /// Returns a recovery policy's decision about a recorded failure.
    pub fn recovery(at_ms: i64, r: &crate::recovery::DecisionRecord) -> Decision {
        Decision::at(
            at_ms,
            &r.policy,
            What::Recovery {
                operation: r.operation.clone(),
                labels: r.labels.clone(),
                circuit: r.circuit.clone(),
                class: r.class,
                classified_by: r.classified_by.clone(),
                attempt: r.attempt,
                action: r.decision.clone(),
                decided_by: r.decided_by,
                breaker: r.breaker,
            },
        )
    }

    /// Returns the decision for a breaker's change of state.
    pub fn breaker(c: &crate::recovery::BreakerChange) -> Decision {
        Decision::at(
            c.transition.at_ms,
            &c.policy,
            What::Breaker {
                operation: c.operation.clone(),
                circuit: c.circuit.clone(),
                from: c.transition.from,
                to: c.transition.to,
                reason: c.transition.reason.clone(),
            },
        )
    }

    /// Returns the decision for a failed evaluation.
    pub fn error(at_ms: i64, policy: &str, error: String) -> Decision {
        Decision::at(at_ms, policy, What::Error { error })
    }

    fn at(at_ms: i64, policy: &str, what: What) -> Decision {
        Decision {
            at: rfc3339(at_ms),
            at_ms,
            policy: policy.to_owned(),
            what,
        }
    }

    /// Returns the decision as one line of text for people.
    pub fn text(&self) -> String {
        let labels = |l: &BTreeMap<String, String>| {
            let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{{{}}}", inner.join(","))
        };
        let what = match &self.what {
            What::Alert {
                alert,
                labels: l,
                phase,
                value,
                severity,
            } => format!(
                "alert {alert}{} {} value={value} severity={severity}",
                labels(l),
                match phase {
                    AlertPhase::Pending => "pending",
                    AlertPhase::Firing => "firing",
                    AlertPhase::Resolved => "resolved",
                }
            ),
            What::Finding {
                event,
                pattern,
                subject,
                labels: l,
                severity,
                confidence,
                exhaustion_in_ms,
                recommendation,
                ..
            } => {
                let eta = exhaustion_in_ms
                    .map(|ms| {
                        format!(
                            " exhaustion in {}",
                            humantime::format_duration(std::time::Duration::from_secs(ms / 1000))
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "finding {} {pattern} in {subject}{} severity={} confidence={confidence:.2}{eta}: {recommendation}",
                    match event {
                        crate::findings::Happened::Raised => "raised",
                        crate::findings::Happened::Resolved => "resolved",
                    },
                    labels(l),
                    crate::findings::notify::severity_name(*severity),
                )
            }
            What::Notify { status, labels: l } => format!(
                "notify {} {}",
                match status {
                    AlertStatus::Firing => "firing",
                    AlertStatus::Resolved => "resolved",
                },
                labels(l)
            ),
            What::Recovery {
                operation,
                labels: l,
                class,
                attempt,
                action,
                decided_by,
                breaker,
                ..
            } => {
                let action = match action {
                    crate::recovery::DecisionView::RetryAfter { after_ms } => {
                        format!("retry after {after_ms} ms")
                    }
                    crate::recovery::DecisionView::Fallback { fallback } => {
                        format!("fall back to {fallback}")
                    }
                    crate::recovery::DecisionView::OpenCircuit { for_ms } => {
                        format!("open the circuit for {for_ms} ms")
                    }
                    crate::recovery::DecisionView::GiveUp { reason } => {
                        format!("give up: {reason}")
                    }
                };
                format!(
                    "recovery {operation}{} attempt {attempt} class={} {action} (by {}, breaker {})",
                    labels(l),
                    serde_json::to_value(class)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    serde_json::to_value(decided_by)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    breaker.name()
                )
            }
            What::Breaker {
                operation,
                circuit,
                from,
                to,
                reason,
            } => format!(
                "breaker {operation} ({circuit}) {} -> {}: {reason}",
                from.name(),
                to.name()
            ),
            What::Error { error } => format!("error: {error}"),
        };
        format!("{}  {}  {what}", self.at, self.policy)
    }
}

/// Returns `ms` as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}
