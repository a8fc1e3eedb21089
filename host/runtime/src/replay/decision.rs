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
