//! Runtime state of policies — evaluation counts, the last evaluation and its
//! outcome, schedule ticks, cooldowns — keyed by (file, policy name, labels).
//!
//! State belongs to a policy's identity, not its content: a reload that changes
//! a policy's config, trigger or plugin keeps its state; removing the policy,
//! renaming it or moving it to another file drops it. Counters therefore run
//! on across edits, and a cooldown set before an edit still holds after it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

/// Who a piece of state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StateKey {
    /// The policy file.
    pub file: PathBuf,
    /// The policy.
    pub policy: String,
    /// Labels (an alert's identity); empty for the policy itself.
    pub labels: Vec<(String, String)>,
}

impl StateKey {
    /// Returns the key of a policy's own state.
    pub fn policy(file: &std::path::Path, policy: &str) -> Self {
        StateKey {
            file: file.to_path_buf(),
            policy: policy.to_owned(),
            labels: Vec::new(),
        }
    }
}

/// One evaluation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvalRecord {
    /// When it started, ms since the epoch.
    pub at_ms: i64,
    /// How long it took.
    pub micros: u64,
    /// `ok` with a summary, or the failure.
    pub ok: bool,
    /// What it returned or why it failed.
    pub detail: String,
}

/// The state of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyState {
    /// Evaluations run.
    pub evaluations: u64,
    /// Evaluations that failed.
    pub failures: u64,
    /// The latest evaluation.
    pub last: Option<EvalRecord>,
    /// The schedule tick of the latest evaluation (ticks count from when the
    /// policy's current schedule started).
    pub last_tick: Option<u64>,
    /// Ticks that passed with no evaluation.
    pub missed_ticks: u64,
    /// No acting before this time, ms since the epoch.
    pub cooldown_until_ms: Option<i64>,
}

/// Alert states of one policy, by alert identity.
type PolicyAlerts = HashMap<super::alerts::AlertId, super::alerts::AlertState>;

/// All runtime state.
#[derive(Debug, Default)]
pub struct StateStore {
    map: Mutex<HashMap<StateKey, PolicyState>>,
    alerts: Mutex<HashMap<(PathBuf, String), PolicyAlerts>>,
    cleanup_runs: Mutex<std::collections::VecDeque<super::cleanup::Run>>,
}

/// How many cleanup runs the history keeps, newest first.
pub const CLEANUP_HISTORY: usize = 500;

impl StateStore {
    /// Adds a cleanup run to the history, dropping the oldest beyond
    /// [`CLEANUP_HISTORY`].
    pub fn record_cleanup(&self, run: super::cleanup::Run) {
        let mut h = self.cleanup_runs.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == CLEANUP_HISTORY {
            h.pop_back();
        }
        h.push_front(run);
    }

    /// The cleanup history, newest first, of one policy or all.
    pub fn cleanup_history(&self, policy: Option<&str>) -> Vec<super::cleanup::Run> {
        let h = self.cleanup_runs.lock().unwrap_or_else(|p| p.into_inner());
        h.iter()
            .filter(|r| policy.is_none_or(|p| r.policy == p))
            .cloned()
            .collect()
    }

    /// Records an evaluation of `key` on schedule tick `tick`.
    pub fn record(&self, key: &StateKey, tick: Option<u64>, record: EvalRecord) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let s = map.entry(key.clone()).or_default();
        s.evaluations += 1;
        if !record.ok {
            s.failures += 1;
        }
        if let Some(t) = tick {
            if let Some(prev) = s.last_tick
                && t > prev + 1
            {
                s.missed_ticks += t - prev - 1;
            }
            s.last_tick = Some(t);
        }
        s.last = Some(record);
    }

    /// Restarts tick counting for `key` (its schedule was replaced).
    pub fn restart_schedule(&self, key: &StateKey) {
        if let Some(s) = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(key)
        {
            s.last_tick = None;
        }
    }

    /// Sets a cooldown on `key`.
    pub fn set_cooldown(&self, key: &StateKey, until_ms: i64) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .cooldown_until_ms = Some(until_ms);
    }

    /// Returns the state of `key`.
    pub fn get(&self, key: &StateKey) -> Option<PolicyState> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Applies an alert policy's evaluation at `now_ms` and returns the alerts
    /// that changed phase (see [`alerts`](super::alerts) for the rules).
    pub fn apply_alerts(
        &self,
        file: &std::path::Path,
        policy: &str,
        alerts: &[crate::plugin::records::Alert],
        now_ms: i64,
        default_for_ms: u64,
        keep_firing_for_ms: u64,
    ) -> Vec<super::alerts::AlertState> {
        let mut all = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let states = all
            .entry((file.to_path_buf(), policy.to_owned()))
            .or_default();
        super::alerts::step(states, alerts, now_ms, default_for_ms, keep_firing_for_ms)
    }

    /// Returns the alerts of a policy, by name then labels.
    pub fn alerts(&self, file: &std::path::Path, policy: &str) -> Vec<super::alerts::AlertState> {
        let all = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = all
            .get(&(file.to_path_buf(), policy.to_owned()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        v
    }

    /// Drops the state of every policy for which `keep(file, policy)` is false.
    pub fn retain(&self, keep: impl Fn(&std::path::Path, &str) -> bool) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(&k.file, &k.policy));
        self.alerts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(file, policy), _| keep(file, policy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ok: bool) -> EvalRecord {
        EvalRecord {
            at_ms: 0,
            micros: 1,
            ok,
            detail: String::new(),
        }
    }

    #[test]
    fn counts_evaluations_failures_and_missed_ticks() {
        let s = StateStore::default();
        let k = StateKey::policy("a.yaml".as_ref(), "p");
        for (tick, ok) in [(0, true), (1, false), (2, true), (5, true)] {
            s.record(&k, Some(tick), rec(ok));
        }
        let st = s.get(&k).unwrap();
        assert_eq!(
            (st.evaluations, st.failures, st.missed_ticks, st.last_tick),
            (4, 1, 2, Some(5))
        );
        s.restart_schedule(&k);
        s.record(&k, Some(0), rec(true));
        assert_eq!(s.get(&k).unwrap().missed_ticks, 2);
        s.retain(|_, p| p != "p");
        assert!(s.get(&k).is_none());
    }
}
