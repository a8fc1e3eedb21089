//! Findings as notifications, so they reach the receivers alerts reach
//! (log, webhook, Alertmanager) through the same dispatcher.
//!
//! A finding's notification is an alert named after its pattern: its labels
//! are the policy's labels, the finding's labels, `subject`, `alertname`
//! (the pattern) and `severity`, later ones winning, so Alertmanager groups
//! findings by pattern and tells two subjects apart. Its annotations say
//! what to do (`description`), how sure the detector is, when exhaustion is
//! predicted, and every number of evidence (`evidence_<name>`).

use std::collections::BTreeMap;

use super::lifecycle::Due;
use warden_notify::{AlertStatus, Notification};

/// The notification for one finding.
pub fn notification(
    policy: &str,
    policy_labels: &BTreeMap<String, String>,
    d: &Due,
) -> Notification {
    let f = &d.finding;
    let mut labels = policy_labels.clone();
    labels.extend(f.labels.iter().cloned());
    labels.insert("subject".into(), f.subject.clone());
    labels.insert("alertname".into(), f.pattern.clone());
    labels.insert("severity".into(), severity_name(f.severity).into());
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), format!("{} in {}", f.pattern, f.subject));
    if !f.recommendation.is_empty() {
        annotations.insert("description".into(), f.recommendation.clone());
    }
    annotations.insert("confidence".into(), format!("{:.3}", f.confidence));
    annotations.insert("times_seen".into(), f.times_seen.to_string());
    if let Some(at) = f.exhaustion_at_ms
        && let Some(t) = chrono::DateTime::from_timestamp_millis(at)
    {
        annotations.insert(
            "exhaustion_at".into(),
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    if let Some(ms) = f.exhaustion_in_ms {
        annotations.insert(
            "exhaustion_in".into(),
            humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string(),
        );
    }
    for (name, value) in &f.evidence {
        annotations.insert(format!("evidence_{name}"), value.to_string());
    }
    Notification {
        status: if d.resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        labels,
        annotations,
        starts_at_ms: f.raised_at_ms.unwrap_or(f.first_seen_ms),
        ends_at_ms: if d.resolved { f.resolved_at_ms } else { None },
        policy: policy.to_owned(),
    }
}

/// Returns a severity as policy files write it.
pub fn severity_name(s: warden_policy::schema::Severity) -> &'static str {
    match s {
        warden_policy::schema::Severity::Info => "info",
        warden_policy::schema::Severity::Warning => "warning",
        warden_policy::schema::Severity::Critical => "critical",
    }
}
