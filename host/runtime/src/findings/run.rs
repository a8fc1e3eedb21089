//! What the scheduler does with one evaluation of a detector policy: moves
//! its findings through their lives, logs what was raised and resolved,
//! hands what is due to the receivers, and publishes `finding-raised`.

use super::lifecycle::{Phase, Rules};
use crate::scheduler::{Context, Event};
use warden_core::records::Finding;
use warden_policy::raises::{DEFAULT_MAX_FINDINGS, DEFAULT_RESOLVE_AFTER};
use warden_policy::schema::{EventKind, PolicySpec, Severity};

/// The rules of a detector policy's findings, from its options.
pub fn rules(spec: &PolicySpec, refresh_ms: u64) -> Rules {
    let ms = |d: Option<warden_core::values::HumanDuration>| {
        d.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
    };
    Rules {
        for_ms: ms(spec.hold_for),
        keep_firing_for_ms: ms(spec.keep_firing_for),
        resolve_after: spec.resolve_after.unwrap_or(DEFAULT_RESOLVE_AFTER),
        cooldown_ms: ms(spec.cooldown),
        refresh_ms,
        min_severity: spec.min_severity.unwrap_or(Severity::Info),
        max_findings: spec
            .max_findings
            .map_or(DEFAULT_MAX_FINDINGS, |n| n as usize),
    }
}

/// Applies `found` for `policy` at `now_ms` and returns the evaluation's
/// summary.
pub(crate) fn apply(
    policy: &warden_policy::LivePolicy,
    cx: &Context,
    found: &[Finding],
    now_ms: i64,
) -> String {
    let spec = &policy.policy.spec;
    let rules = rules(spec, cx.refresh_ms);
    let applied = cx
        .state
        .findings()
        .apply(&policy.file, policy.name(), found, now_ms, &rules);
    let mut raised = false;
    for f in &applied.changes {
        let loud = f.severity >= rules.min_severity;
        raised |= loud && f.phase == Phase::Active;
        tracing::warn!(policy = policy.name(), pattern = %f.pattern, subject = %f.subject, labels = ?f.labels, severity = ?f.severity, confidence = f.confidence, exhaustion_in_ms = ?f.exhaustion_in_ms, phase = f.phase.name(), "finding {}: {}", if f.phase == Phase::Active { "raised" } else { "resolved" }, f.recommendation);
    }
    if applied.evicted > 0 {
        tracing::warn!(
            policy = policy.name(),
            dropped = applied.evicted,
            max = rules.max_findings,
            "the policy reports more findings than `max_findings`; the least important were dropped"
        );
    }
    cx.dispatcher.dispatch_findings(
        policy.name(),
        &spec.labels,
        spec.notify.as_deref(),
        &applied.due,
        now_ms,
    );
    if raised {
        cx.publish(Event {
            kind: EventKind::FindingRaised,
            pressure: None,
            failure: None,
        });
    }
    format!(
        "{} findings reported: {} active, {} pending",
        found.len(),
        applied.active,
        applied.pending
    )
}
