//! The life of a finding, as a pure function of what a detector reports at
//! each evaluation: pending → active (raised) → resolved, per identity
//! (pattern, subject, sorted labels) within a policy.
//!
//! - A finding reported for the first time is *pending*; it is *raised*
//!   (becomes active) once it has been reported for the policy's `for`
//!   (at once without one).
//! - Each report refreshes what is known of it: last seen, times seen,
//!   confidence, severity, predicted exhaustion, recommendation, evidence.
//! - A finding not reported by `resolve_after` evaluations in a row is
//!   dropped if pending, and resolved if active — but an active one is kept
//!   at least `keep_firing_for` after it was last seen.
//! - Resolved findings are remembered for [`KEEP_RESOLVED_MS`], then dropped;
//!   one reported again starts a new episode (first seen anew).
//!
//! Receivers hear about findings as they hear about alerts ([`due`]): once
//! raised (unless the same finding was announced less than `cooldown` ago),
//! repeated every refresh to receivers that expire alerts, and once resolved.
//! Findings below the policy's `min_severity` are kept and listed but never
//! announced.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use warden_core::records::Finding;
use warden_policy::schema::Severity;

/// Where a finding is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Reported, but not yet for the policy's `for`.
    Pending,
    /// Raised: reported for long enough, not yet resolved.
    Active,
    /// Raised, then not reported for `resolve_after` evaluations.
    Resolved,
}

impl Phase {
    /// Returns its name, as the API and `/metrics` write it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Active => "active",
            Phase::Resolved => "resolved",
        }
    }
}

/// Identity of a finding within its policy: pattern, subject, sorted labels.
pub type FindingId = (String, String, Vec<(String, String)>);

/// What is known of one finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingState {
    /// What was found, such as `linear-growth` or `anomaly`.
    pub pattern: String,
    /// Where: a series or resource name.
    pub subject: String,
    /// The subject's labels, sorted.
    pub labels: Vec<(String, String)>,
    /// Where it is.
    pub phase: Phase,
    /// When this episode was first reported, ms since the epoch.
    pub first_seen_ms: i64,
    /// When it was last reported.
    pub last_seen_ms: i64,
    /// How many evaluations reported it in this episode.
    pub times_seen: u64,
    /// Evaluations in a row that have not reported it.
    pub missed: u32,
    /// When it was raised.
    pub raised_at_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// How sure the detector was, last time, from 0 to 1.
    pub confidence: f64,
    /// How urgent, last time.
    pub severity: Severity,
    /// Predicted ms until exhaustion, as of `last_seen_ms`.
    pub exhaustion_in_ms: Option<u64>,
    /// The predicted time of exhaustion, ms since the epoch.
    pub exhaustion_at_ms: Option<i64>,
    /// What a person should do.
    pub recommendation: String,
    /// Numbers the detector attached, last time.
    pub evidence: BTreeMap<String, f64>,
    /// Whether receivers were last told it is active.
    #[serde(default)]
    pub told_active: bool,
    /// When receivers were last told anything about it.
    #[serde(default)]
    pub last_notified_ms: Option<i64>,
}

impl FindingState {
    /// Returns its identity.
    pub fn id(&self) -> FindingId {
        (
            self.pattern.clone(),
            self.subject.clone(),
            self.labels.clone(),
        )
    }
}

/// The options of one detector policy that shape its findings' lives, in ms
/// and evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// How long a finding must be reported before it is raised.
    pub for_ms: u64,
    /// How long an active finding stays active after it was last reported.
    pub keep_firing_for_ms: u64,
    /// Evaluations in a row without a finding that resolve it (at least 1).
    pub resolve_after: u32,
    /// Least time between two announcements of one finding.
    pub cooldown_ms: u64,
    /// How often active findings are repeated to receivers that expire them.
    pub refresh_ms: u64,
    /// Findings below this are never announced.
    pub min_severity: Severity,
    /// The most findings the policy keeps (at least 1).
    pub max_findings: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            for_ms: 0,
            keep_firing_for_ms: 0,
            resolve_after: warden_policy::raises::DEFAULT_RESOLVE_AFTER,
            cooldown_ms: 0,
            refresh_ms: crate::alerts::DEFAULT_REFRESH_MS,
            min_severity: Severity::Info,
            max_findings: warden_policy::raises::DEFAULT_MAX_FINDINGS,
        }
    }
}

/// How long resolved findings are remembered.
pub const KEEP_RESOLVED_MS: i64 = 15 * 60 * 1000;

/// A finding that was raised or resolved by one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The finding as it is now; its phase says which change it was.
    pub finding: FindingState,
}

/// What one step did besides changing phases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stepped {
    /// Findings raised or resolved, in the order they changed.
    pub changes: Vec<FindingState>,
    /// Findings dropped to stay within `max_findings`.
    pub evicted: usize,
}

/// Converts a plugin's severity.
pub fn severity(s: warden_core::records::Severity) -> Severity {
    match s {
        warden_core::records::Severity::Info => Severity::Info,
        warden_core::records::Severity::Warning => Severity::Warning,
        warden_core::records::Severity::Critical => Severity::Critical,
    }
}

/// Applies one evaluation's `found` at `now_ms` to `states`.
pub fn step(
    states: &mut HashMap<FindingId, FindingState>,
    found: &[Finding],
    now_ms: i64,
    rules: &Rules,
) -> Stepped {
    let mut out = Stepped::default();
    let hold_for = i64::try_from(rules.for_ms).unwrap_or(i64::MAX);
    for f in found {
        let mut labels = f.labels.clone();
        labels.sort();
        labels.dedup();
        let id = (f.pattern.clone(), f.subject.clone(), labels);
        let exhaustion_at_ms = f
            .exhaustion_in_ms
            .map(|ms| now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
        match states.get_mut(&id) {
            // The same identity twice in one evaluation counts once.
            Some(s) if s.phase != Phase::Resolved && s.last_seen_ms == now_ms && s.missed == 0 => {
                refresh(s, f, exhaustion_at_ms);
            }
            Some(s) if s.phase != Phase::Resolved => {
                s.last_seen_ms = now_ms;
                s.times_seen += 1;
                s.missed = 0;
                refresh(s, f, exhaustion_at_ms);
                if s.phase == Phase::Pending && now_ms - s.first_seen_ms >= hold_for {
                    s.phase = Phase::Active;
                    s.raised_at_ms = Some(now_ms);
                    out.changes.push(s.clone());
                }
            }
            previous => {
                // One resolved and back keeps what receivers were told, so
                // the cooldown can hold back a flapping one.
                let told = previous.and_then(|p| p.last_notified_ms);
                let raised = hold_for <= 0;
                let mut s = FindingState {
                    pattern: id.0.clone(),
                    subject: id.1.clone(),
                    labels: id.2.clone(),
                    phase: if raised {
                        Phase::Active
                    } else {
                        Phase::Pending
                    },
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    times_seen: 1,
                    missed: 0,
                    raised_at_ms: raised.then_some(now_ms),
                    resolved_at_ms: None,
                    confidence: 0.0,
                    severity: Severity::Info,
                    exhaustion_in_ms: None,
                    exhaustion_at_ms: None,
                    recommendation: String::new(),
                    evidence: BTreeMap::new(),
                    told_active: false,
                    last_notified_ms: told,
                };
                refresh(&mut s, f, exhaustion_at_ms);
                if raised {
                    out.changes.push(s.clone());
                }
                states.insert(id, s);
            }
        }
    }
    let keep = i64::try_from(rules.keep_firing_for_ms).unwrap_or(i64::MAX);
    let resolve_after = rules.resolve_after.max(1);
    states.retain(|_, s| {
        if s.last_seen_ms == now_ms && s.phase != Phase::Resolved {
            return true;
        }
        if s.phase != Phase::Resolved {
            s.missed = s.missed.saturating_add(1);
        }
        match s.phase {
            Phase::Pending => s.missed < resolve_after,
            Phase::Active if s.missed >= resolve_after && now_ms - s.last_seen_ms >= keep => {
                s.phase = Phase::Resolved;
                s.resolved_at_ms = Some(now_ms);
                out.changes.push(s.clone());
                true
            }
            Phase::Active => true,
            Phase::Resolved => s
                .resolved_at_ms
                .is_some_and(|t| now_ms - t < KEEP_RESOLVED_MS),
        }
    });
    out.evicted = evict(states, rules.max_findings.max(1));
    out
}

fn refresh(s: &mut FindingState, f: &Finding, exhaustion_at_ms: Option<i64>) {
    s.confidence = f.confidence;
    s.severity = severity(f.severity);
    s.exhaustion_in_ms = f.exhaustion_in_ms;
    s.exhaustion_at_ms = exhaustion_at_ms;
    s.recommendation.clone_from(&f.recommendation);
    s.evidence = f.evidence.iter().cloned().collect();
}

/// Drops findings beyond `max`: resolved ones first, then pending ones, then
/// active ones receivers were never told of, then the rest; the least severe
/// and least recently seen first within each. Returns how many went.
fn evict(states: &mut HashMap<FindingId, FindingState>, max: usize) -> usize {
    if states.len() <= max {
        return 0;
    }
    let rank = |s: &FindingState| {
        let group = match (s.phase, s.told_active) {
            (Phase::Resolved, _) => 0,
            (Phase::Pending, _) => 1,
            (Phase::Active, false) => 2,
            (Phase::Active, true) => 3,
        };
        (group, s.severity, s.last_seen_ms)
    };
    let mut order: Vec<(FindingId, (u8, Severity, i64))> =
        states.iter().map(|(id, s)| (id.clone(), rank(s))).collect();
    order.sort_by_key(|a| a.1);
    let excess = states.len() - max;
    for (id, _) in order.into_iter().take(excess) {
        states.remove(&id);
    }
    excess
}

/// What receivers are to be told about one finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The finding as it is now.
    pub finding: FindingState,
    /// Active or resolved.
    pub resolved: bool,
    /// True for a repeat of what receivers were already told.
    pub refresh: bool,
}

/// Decides what receivers hear at `now_ms` and marks it as told; the same
/// rules as alerts ([`crate::alerts::due`]), and nothing below
/// `min_severity`.
pub fn due(states: &mut HashMap<FindingId, FindingState>, now_ms: i64, rules: &Rules) -> Vec<Due> {
    let cooldown = i64::try_from(rules.cooldown_ms).unwrap_or(i64::MAX);
    let refresh = i64::try_from(rules.refresh_ms).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for s in states.values_mut() {
        // A finding receivers were told is active always hears it resolved,
        // even if its severity has dropped below the minimum since.
        if s.severity < rules.min_severity && !s.told_active {
            continue;
        }
        let since = s.last_notified_ms.map(|t| now_ms.saturating_sub(t));
        let (resolved, is_refresh) = match (s.phase, s.told_active) {
            (Phase::Pending, _) => continue,
            (Phase::Active, false) if since.is_none_or(|d| d >= cooldown) => (false, false),
            (Phase::Active, true) if since.is_some_and(|d| d >= refresh) => (false, true),
            (Phase::Resolved, true) => (true, false),
            (Phase::Resolved, false)
                if s.last_notified_ms.is_some() && since.is_some_and(|d| d >= refresh) =>
            {
                (true, true)
            }
            _ => continue,
        };
        s.told_active = !resolved;
        s.last_notified_ms = Some(now_ms);
        out.push(Due {
            finding: s.clone(),
            resolved,
            refresh: is_refresh,
        });
    }
    out.sort_by_key(|a| a.finding.id());
    out
}

#[cfg(test)]
#[path = "tests/lifecycle.rs"]
mod tests;
