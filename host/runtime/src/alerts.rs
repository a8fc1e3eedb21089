//! The alert state machine the host keeps for alert-rule policies: a plugin
//! only says which conditions hold now; the host turns that into
//! inactive → pending → firing → resolved, per alert identity (policy file,
//! policy name, alert name and labels).
//!
//! - A firing condition starts *pending*; it fires once it has held for the
//!   alert's `for` (the rule's own, else the policy's, else at once).
//! - A *holding* condition (between the firing and the clearing threshold)
//!   keeps an active alert as it is and never starts an inactive one.
//! - When the condition stops holding, a pending alert is dropped without ever
//!   notifying; a firing one stays firing for `keep_firing_for`, then resolves.
//!
//! What a reload changes: state belongs to the alert's identity, so editing the
//! policy keeps it. A new `for` applies from the next evaluation to the time
//! already held — an alert pending for 3 minutes fires at once under a new
//! `for: 2m`, and waits until 10 minutes have passed under `for: 10m`. A new
//! threshold is judged at the next evaluation — if the condition no longer
//! holds, a pending alert is dropped and a firing one starts to resolve.
//! Removing or renaming the policy drops its alerts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use warden_core::records::{Alert, AlertCondition};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Its condition holds, but not yet for long enough.
    Pending,
    /// Firing.
    Firing,
    /// It fired and has stopped.
    Resolved,
}

/// The state of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// The alert's name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// Where it is.
    pub phase: Phase,
    /// When its condition started to hold, ms since the epoch.
    pub active_since_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When its condition was last seen holding.
    pub last_seen_ms: i64,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// The latest value (`null` in JSON when not a finite number).
    #[serde(with = "finite_or_null")]
    pub value: f64,
    /// Its severity, as the rule last said.
    #[serde(default)]
    pub severity: String,
    /// Its annotations, as the rule last said.
    #[serde(default)]
    pub annotations: Vec<(String, String)>,
    /// Whether receivers were last told it fires (and so must hear that it
    /// resolved).
    #[serde(default)]
    pub told_firing: bool,
    /// When receivers were last told anything about it.
    #[serde(default)]
    pub last_notified_ms: Option<i64>,
}

/// An `f64` that may be NaN or infinite (a plugin's alert value) as JSON:
/// `null` for those, which JSON has no number for, read back as NaN. Written
/// as a plain number, a NaN would make `serde_json` write `null` and then
/// refuse to read it back into an `f64`: the whole state file unreadable.
pub mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `v`, or `null` if it is not finite.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Reads a number, or `null` as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// What receivers are to be told about one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The alert as it is now.
    pub alert: AlertState,
    /// Firing or resolved.
    pub resolved: bool,
    /// True for a repeat of what receivers were already told, which only
    /// receivers that expire alerts by themselves (Alertmanager) need.
    pub refresh: bool,
}

/// Decides what receivers hear at `now_ms` and marks it as told.
///
/// - A newly firing alert is announced, unless the same alert was announced
///   less than `cooldown_ms` ago (it flapped): then the announcement waits
///   until the cooldown has passed, if it still fires by then.
/// - Resolving is announced once to every receiver told it fired, at once: a
///   receiver must never be left believing an alert fires.
/// - Every `refresh_ms`, firing alerts are repeated, and resolved ones too
///   while they are remembered, as refreshes.
/// - A pending alert is never announced.
pub fn due(
    states: &mut HashMap<AlertId, AlertState>,
    now_ms: i64,
    cooldown_ms: u64,
    refresh_ms: u64,
) -> Vec<Due> {
    due_at_least(states, now_ms, cooldown_ms, refresh_ms, None)
}

/// [`due`], leaving out alerts below `min_severity` (the policy's
/// `min_severity`) unless receivers were told they fire: those always hear
/// that they resolved.
pub fn due_at_least(
    states: &mut HashMap<AlertId, AlertState>,
    now_ms: i64,
    cooldown_ms: u64,
    refresh_ms: u64,
    min_severity: Option<warden_policy::schema::Severity>,
) -> Vec<Due> {
    let cooldown = i64::try_from(cooldown_ms).unwrap_or(i64::MAX);
    let refresh = i64::try_from(refresh_ms).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for s in states.values_mut() {
        if let Some(min) = min_severity
            && !s.told_firing
            && rank(&s.severity) < min
        {
            continue;
        }
        let since = s.last_notified_ms.map(|t| now_ms.saturating_sub(t));
        let (resolved, is_refresh) = match (s.phase, s.told_firing) {
            (Phase::Pending, _) => continue,
            (Phase::Firing, false) if since.is_none_or(|d| d >= cooldown) => (false, false),
            (Phase::Firing, true) if since.is_some_and(|d| d >= refresh) => (false, true),
            (Phase::Resolved, true) => (true, false),
            // Told it resolved (or never told it fired, which sends nothing).
            (Phase::Resolved, false)
                if s.last_notified_ms.is_some() && since.is_some_and(|d| d >= refresh) =>
            {
                (true, true)
            }
            _ => continue,
        };
        s.told_firing = !resolved;
        s.last_notified_ms = Some(now_ms);
        out.push(Due {
            alert: s.clone(),
            resolved,
            refresh: is_refresh,
        });
    }
    out.sort_by(|a, b| (&a.alert.name, &a.alert.labels).cmp(&(&b.alert.name, &b.alert.labels)));
    out
}

/// The severity an alert state records, as the policy schema ranks it.
fn rank(severity: &str) -> warden_policy::schema::Severity {
    use warden_policy::schema::Severity;
    match severity {
        "critical" => Severity::Critical,
        "warning" => Severity::Warning,
        _ => Severity::Info,
    }
}

/// How long resolved alerts are remembered (for status and for re-sending
/// resolutions to receivers that missed them).
pub const KEEP_RESOLVED_MS: i64 = 15 * 60 * 1000;

/// The timings of one alert policy, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// The policy's `for` (a rule's own wins).
    pub default_for_ms: u64,
    /// The policy's `keep_firing_for`.
    pub keep_firing_for_ms: u64,
    /// The policy's `cooldown`: least time between two announcements of one alert.
    pub cooldown_ms: u64,
    /// How often firing alerts are repeated to receivers that expire them.
    pub refresh_ms: u64,
    /// The policy's `min_severity`: alerts below it are never announced.
    pub min_severity: Option<warden_policy::schema::Severity>,
}

/// How often firing alerts are repeated to Alertmanager unless configured:
/// Prometheus' `rules.alert.resend-delay`.
pub const DEFAULT_REFRESH_MS: u64 = 60_000;

/// Identity of an alert within its policy: name and sorted labels.
pub type AlertId = (String, Vec<(String, String)>);

/// The most alerts (of any phase, resolved ones included while remembered)
/// the host keeps for one policy. A plugin that raises alerts under ever new
/// labels gets the rest refused and counted, never the daemon's memory.
pub const MAX_ALERTS_PER_POLICY: usize = 1000;

/// Applies one evaluation's `alerts` at `now_ms` to `states`, with the policy's
/// default `for` and `keep_firing_for`. Returns the alerts that changed phase.
pub fn step(
    states: &mut HashMap<AlertId, AlertState>,
    alerts: &[Alert],
    now_ms: i64,
    default_for_ms: u64,
    keep_firing_for_ms: u64,
) -> Vec<AlertState> {
    step_bounded(
        states,
        alerts,
        now_ms,
        default_for_ms,
        keep_firing_for_ms,
        MAX_ALERTS_PER_POLICY,
    )
    .0
}

/// [`step`] holding at most `max` alerts; also returns how many new alerts
/// were refused because the policy holds `max` already.
pub fn step_bounded(
    states: &mut HashMap<AlertId, AlertState>,
    alerts: &[Alert],
    now_ms: i64,
    default_for_ms: u64,
    keep_firing_for_ms: u64,
    max: usize,
) -> (Vec<AlertState>, usize) {
    let mut changed = Vec::new();
    let mut refused = 0;
    for a in alerts {
        let mut labels = a.labels.clone();
        labels.sort();
        let id = (a.name.clone(), labels.clone());
        let hold_for = i64::try_from(a.for_ms.unwrap_or(default_for_ms)).unwrap_or(i64::MAX);
        if a.condition == AlertCondition::Firing && states.len() >= max && !states.contains_key(&id)
        {
            refused += 1;
            continue;
        }
        let entry = states.get_mut(&id);
        match (entry, a.condition) {
            // Active (or resolved and back) and the condition holds or is holding.
            (Some(s), cond) if s.phase != Phase::Resolved => {
                s.last_seen_ms = now_ms;
                s.value = a.value;
                s.severity = a.severity.to_string();
                s.annotations.clone_from(&a.annotations);
                if s.phase == Phase::Pending
                    && cond == AlertCondition::Firing
                    && now_ms - s.active_since_ms >= hold_for
                {
                    s.phase = Phase::Firing;
                    s.fired_at_ms = Some(now_ms);
                    changed.push(s.clone());
                }
            }
            // Holding never starts an alert.
            (_, AlertCondition::Holding) => {}
            (previous, AlertCondition::Firing) => {
                // A resolved alert that fires again keeps what receivers were
                // told, so the cooldown can hold back a flapping one.
                let told = previous.and_then(|p| p.last_notified_ms);
                let firing = hold_for <= 0;
                let s = AlertState {
                    name: a.name.clone(),
                    labels,
                    phase: if firing {
                        Phase::Firing
                    } else {
                        Phase::Pending
                    },
                    active_since_ms: now_ms,
                    fired_at_ms: firing.then_some(now_ms),
                    last_seen_ms: now_ms,
                    resolved_at_ms: None,
                    value: a.value,
                    severity: a.severity.to_string(),
                    annotations: a.annotations.clone(),
                    told_firing: false,
                    last_notified_ms: told,
                };
                changed.push(s.clone());
                states.insert(id, s);
            }
        }
    }
    let keep = i64::try_from(keep_firing_for_ms).unwrap_or(i64::MAX);
    states.retain(|_, s| {
        // Seen in this evaluation (every alert seen holding gets `now_ms`);
        // comparing times instead of keeping a set of ids keeps a step
        // linear in the number of alerts.
        if s.last_seen_ms == now_ms && s.phase != Phase::Resolved {
            return true;
        }
        match s.phase {
            // Pending never notifies: it just goes away.
            Phase::Pending => false,
            Phase::Firing if now_ms - s.last_seen_ms >= keep => {
                s.phase = Phase::Resolved;
                s.resolved_at_ms = Some(now_ms);
                changed.push(s.clone());
                true
            }
            Phase::Firing => true,
            Phase::Resolved => s
                .resolved_at_ms
                .is_some_and(|t| now_ms - t < KEEP_RESOLVED_MS),
        }
    });
    (changed, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::records::Severity;

    fn alert(condition: AlertCondition, for_ms: Option<u64>) -> Alert {
        Alert {
            name: "Hot".into(),
            condition,
            severity: Severity::Warning,
            labels: vec![("host".into(), "a".into())],
            annotations: vec![],
            value: 1.0,
            for_ms,
        }
    }

    fn phase(states: &HashMap<AlertId, AlertState>) -> Option<Phase> {
        states.values().next().map(|s| s.phase)
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_after_keep_firing_for() {
        let mut st = HashMap::new();
        let firing = [alert(AlertCondition::Firing, None)];
        step(&mut st, &firing, 0, 100, 50);
        assert_eq!(phase(&st), Some(Phase::Pending));
        step(&mut st, &firing, 99, 100, 50);
        assert_eq!(phase(&st), Some(Phase::Pending));
        let changed = step(&mut st, &firing, 100, 100, 50);
        assert_eq!((phase(&st), changed.len()), (Some(Phase::Firing), 1));
        step(&mut st, &[], 120, 100, 50);
        assert_eq!(
            phase(&st),
            Some(Phase::Firing),
            "kept firing for keep_firing_for"
        );
        step(&mut st, &[], 150, 100, 50);
        assert_eq!(phase(&st), Some(Phase::Resolved));
        step(&mut st, &[], 150 + KEEP_RESOLVED_MS, 100, 50);
        assert_eq!(phase(&st), None);
    }

    #[test]
    fn pending_that_stops_holding_is_dropped_silently() {
        let mut st = HashMap::new();
        step(
            &mut st,
            &[alert(AlertCondition::Firing, Some(1000))],
            0,
            0,
            0,
        );
        let changed = step(&mut st, &[], 10, 0, 0);
        assert!(changed.is_empty() && st.is_empty());
    }

    #[test]
    fn holding_keeps_an_active_alert_and_never_starts_one() {
        let mut st = HashMap::new();
        step(&mut st, &[alert(AlertCondition::Holding, None)], 0, 0, 0);
        assert!(st.is_empty());
        step(&mut st, &[alert(AlertCondition::Firing, None)], 0, 0, 0);
        assert_eq!(phase(&st), Some(Phase::Firing));
        step(&mut st, &[alert(AlertCondition::Holding, None)], 10, 0, 0);
        assert_eq!(phase(&st), Some(Phase::Firing));
    }

    fn told(st: &mut HashMap<AlertId, AlertState>, now: i64, cooldown: u64) -> Vec<(bool, bool)> {
        due(st, now, cooldown, 100)
            .into_iter()
            .map(|d| (d.resolved, d.refresh))
            .collect()
    }

    #[test]
    fn receivers_hear_firing_once_refreshes_on_schedule_and_resolved_once() {
        let mut st = HashMap::new();
        let firing = [alert(AlertCondition::Firing, None)];
        step(&mut st, &firing, 0, 0, 0);
        assert_eq!(told(&mut st, 0, 0), [(false, false)], "announced");
        step(&mut st, &firing, 50, 0, 0);
        assert!(
            told(&mut st, 50, 0).is_empty(),
            "nothing new before the refresh"
        );
        step(&mut st, &firing, 100, 0, 0);
        assert_eq!(told(&mut st, 100, 0), [(false, true)], "a refresh");
        step(&mut st, &[], 120, 0, 0);
        assert_eq!(told(&mut st, 120, 0), [(true, false)], "resolved at once");
        assert!(told(&mut st, 150, 0).is_empty());
        assert_eq!(
            told(&mut st, 220, 0),
            [(true, true)],
            "resolved, repeated as a refresh"
        );
    }

    #[test]
    fn pending_alerts_are_never_announced() {
        let mut st = HashMap::new();
        for t in [0, 100, 200] {
            step(
                &mut st,
                &[alert(AlertCondition::Firing, Some(1000))],
                t,
                0,
                0,
            );
            assert!(told(&mut st, t, 0).is_empty());
        }
        step(&mut st, &[], 300, 0, 0);
        assert!(told(&mut st, 300, 0).is_empty() && st.is_empty());
    }

    #[test]
    fn cooldown_holds_back_a_flapping_alert() {
        let mut st = HashMap::new();
        let firing = [alert(AlertCondition::Firing, None)];
        step(&mut st, &firing, 0, 0, 0);
        assert_eq!(told(&mut st, 0, 1000), [(false, false)]);
        step(&mut st, &[], 10, 0, 0);
        assert_eq!(
            told(&mut st, 10, 1000),
            [(true, false)],
            "resolved is never held back"
        );
        step(&mut st, &firing, 20, 0, 0);
        assert!(
            told(&mut st, 20, 1000).is_empty(),
            "fired again within the cooldown"
        );
        step(&mut st, &firing, 1010, 0, 0);
        assert_eq!(
            told(&mut st, 1010, 1000),
            [(false, false)],
            "announced once it has passed"
        );
        let mut st2 = HashMap::new();
        step(&mut st2, &firing, 0, 0, 0);
        told(&mut st2, 0, 1000);
        step(&mut st2, &[], 10, 0, 0);
        told(&mut st2, 10, 1000);
        step(&mut st2, &firing, 20, 0, 0);
        step(&mut st2, &[], 30, 0, 0);
        assert!(
            told(&mut st2, 30, 1000)
                .iter()
                .all(|(resolved, refresh)| *resolved && *refresh),
            "a firing never announced is not announced as resolved either"
        );
    }

    #[test]
    fn a_new_for_applies_to_the_time_already_held() {
        let mut st = HashMap::new();
        step(
            &mut st,
            &[alert(AlertCondition::Firing, Some(180_000))],
            0,
            0,
            0,
        );
        // Reloaded with `for: 2m`: held 3 minutes already, so it fires now.
        step(
            &mut st,
            &[alert(AlertCondition::Firing, Some(120_000))],
            180_000,
            0,
            0,
        );
        assert_eq!(phase(&st), Some(Phase::Firing));
        let mut st = HashMap::new();
        step(
            &mut st,
            &[alert(AlertCondition::Firing, Some(60_000))],
            0,
            0,
            0,
        );
        // Reloaded with `for: 10m`: keeps pending until 10 minutes have passed.
        step(
            &mut st,
            &[alert(AlertCondition::Firing, Some(600_000))],
            180_000,
            0,
            0,
        );
        assert_eq!(phase(&st), Some(Phase::Pending));
        step(
            &mut st,
            &[alert(AlertCondition::Firing, Some(600_000))],
            600_000,
            0,
            0,
        );
        assert_eq!(phase(&st), Some(Phase::Firing));
    }

    #[test]
    fn a_policy_holds_at_most_its_bound_of_alerts() {
        let mut st = HashMap::new();
        let many: Vec<Alert> = (0..50)
            .map(|i| Alert {
                labels: vec![("n".into(), i.to_string())],
                ..alert(AlertCondition::Firing, None)
            })
            .collect();
        let (changed, refused) = step_bounded(&mut st, &many, 0, 0, 0, 20);
        assert_eq!((changed.len(), refused, st.len()), (20, 30, 20));
        // The ones held keep being updated; new ones stay refused.
        let (_, refused) = step_bounded(&mut st, &many, 10, 0, 0, 20);
        assert_eq!((refused, st.len()), (30, 20));
    }

    #[test]
    fn a_nan_value_reads_back() {
        let mut st = HashMap::new();
        let a = Alert {
            value: f64::NAN,
            ..alert(AlertCondition::Firing, None)
        };
        step(&mut st, &[a], 0, 0, 0);
        let json = serde_json::to_string(&st.values().collect::<Vec<_>>()).unwrap();
        let back: Vec<AlertState> = serde_json::from_str(&json).unwrap();
        assert!(back[0].value.is_nan());
    }
}
