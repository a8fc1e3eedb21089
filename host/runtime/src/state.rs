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

use serde::{Deserialize, Serialize};

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

/// One change of phase of one alert, as `/api/v1/alerts/history` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The policy file.
    pub file: PathBuf,
    /// The policy.
    pub policy: String,
    /// The alert.
    pub name: String,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// The phase it entered.
    pub phase: super::alerts::Phase,
    /// Its value then (`null` in JSON when not a finite number).
    #[serde(with = "super::alerts::finite_or_null")]
    pub value: f64,
    /// Its severity.
    pub severity: String,
}

/// What one evaluation of an alert policy did to its alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The alerts that changed phase.
    pub changed: Vec<super::alerts::AlertState>,
    /// What receivers are to hear.
    pub due: Vec<super::alerts::Due>,
    /// How many of the policy's alerts fire now.
    pub firing: usize,
    /// How many are pending.
    pub pending: usize,
    /// New alerts refused because the policy holds
    /// [`MAX_ALERTS_PER_POLICY`](super::alerts::MAX_ALERTS_PER_POLICY).
    pub refused: usize,
}

/// How many alert phase changes the history keeps.
pub const ALERT_HISTORY: usize = 1000;

/// What `alerts.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedAlerts {
    policies: Vec<SavedPolicy>,
    history: Vec<AlertEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedPolicy {
    file: PathBuf,
    policy: String,
    alerts: Vec<super::alerts::AlertState>,
}

/// All runtime state.
#[derive(Debug, Default)]
pub struct StateStore {
    map: Mutex<HashMap<StateKey, PolicyState>>,
    alerts: Mutex<Alerts>,
    history: crate::history::History,
    /// Detector policies' findings, kept in the same directory.
    findings: super::findings::FindingStore,
    /// Plugins' own state, by policy (saved in `plugins/` of `dir`).
    plugins: super::plugin_state::PluginStates,
    /// Where alert state and cleanup history are kept across restarts;
    /// nowhere when `None`.
    dir: Option<PathBuf>,
    /// The latest failure to save, cleared by the next success.
    save_failure: Mutex<Option<SaveFailure>>,
}

/// Why state is not being saved (a full disk, a read-only filesystem).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SaveFailure {
    /// The file.
    pub file: String,
    /// The error.
    pub error: String,
    /// When saving it started failing, ms since the epoch.
    pub since_ms: i64,
    /// Saves that failed since.
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Alerts {
    by_policy: HashMap<(PathBuf, String), PolicyAlerts>,
    history: std::collections::VecDeque<AlertEvent>,
}

/// The file alert state is kept in, inside the state directory.
const ALERTS_FILE: &str = "alerts.json";
/// The largest alert state file read: a thousand policies with a thousand
/// alerts each is far less.
const MAX_ALERTS_FILE: u64 = 64 << 20;

impl StateStore {
    /// A store that keeps alert state and the cleanup history in `dir`
    /// (created if missing) and starts from what an earlier run left there.
    /// A file that cannot be used (unreadable, too large, damaged) is moved
    /// aside and named in the log, and the store starts without it: a bad
    /// file never keeps the daemon from starting.
    pub fn open(dir: &std::path::Path) -> std::io::Result<Self> {
        warden_core::fsx::ensure_private_dir(dir, "state directory")?;
        // Temporary files of a save that died half-way held nothing needed.
        for name in [ALERTS_FILE, crate::history::FILE] {
            let _ = std::fs::remove_file(dir.join(format!(".{name}.tmp")));
        }
        let path = dir.join(ALERTS_FILE);
        let mut alerts = Alerts::default();
        match warden_core::files::read_regular(&path, MAX_ALERTS_FILE) {
            Err(e) if e.is_not_found() => {}
            read => match read.map_err(|e| format!("the file {e}")).and_then(|bytes| {
                serde_json::from_slice::<SavedAlerts>(&bytes).map_err(|e| e.to_string())
            }) {
                Ok(saved) => {
                    for p in saved.policies {
                        let states = p
                            .alerts
                            .into_iter()
                            .map(|a| ((a.name.clone(), a.labels.clone()), a))
                            .collect();
                        alerts.by_policy.insert((p.file, p.policy), states);
                    }
                    alerts.history = saved.history.into();
                }
                Err(e) => {
                    let aside = path.with_extension(format!(
                        "json.unreadable-{}",
                        warden_core::clock::now_ms()
                    ));
                    match std::fs::rename(&path, &aside) {
                        Ok(()) => {
                            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e, "the saved alert state cannot be used; moved aside, starting without it")
                        }
                        Err(r) => {
                            tracing::error!(file = %path.display(), error = %e, rename = %r, "the saved alert state cannot be used nor moved aside; starting without it, it will be overwritten")
                        }
                    }
                }
            },
        }
        Ok(StateStore {
            alerts: Mutex::new(alerts),
            history: crate::history::History::open(dir),
            findings: super::findings::FindingStore::open(dir)?,
            plugins: super::plugin_state::PluginStates::open(dir)?,
            dir: Some(dir.to_path_buf()),
            ..StateStore::default()
        })
    }

    /// Notes how a save went, for [`StateStore::save_failure`].
    fn saved(&self, file: &str, result: std::io::Result<()>) {
        let mut f = self.save_failure.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                if f.as_ref().is_some_and(|x| x.file == file) {
                    tracing::info!(file, "state is saved again");
                    *f = None;
                }
            }
            Err(e) => {
                let x = f.get_or_insert_with(|| SaveFailure {
                    file: file.to_owned(),
                    error: String::new(),
                    since_ms: warden_core::clock::now_ms(),
                    failures: 0,
                });
                x.file = file.to_owned();
                x.error = e.to_string();
                x.failures += 1;
            }
        }
    }

    /// Why state is not being saved, if it is not.
    pub fn save_failure(&self) -> Option<SaveFailure> {
        self.save_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes the alert state: a temporary file, fsync, rename, fsync of the
    /// directory, so a crash leaves the old state or the new one, never half
    /// of either. The bytes are read back before they are written: a state
    /// that would not load is never saved (the previous one stays).
    fn save_alerts(&self, alerts: &Alerts) {
        let Some(dir) = &self.dir else { return };
        let saved = SavedAlerts {
            policies: alerts
                .by_policy
                .iter()
                .map(|((file, policy), states)| SavedPolicy {
                    file: file.clone(),
                    policy: policy.clone(),
                    alerts: states.values().cloned().collect(),
                })
                .collect(),
            history: alerts.history.iter().cloned().collect(),
        };
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
            serde_json::from_slice::<SavedAlerts>(&bytes).map_err(|e| {
                std::io::Error::other(format!(
                    "the alert state would not read back ({e}); not written"
                ))
            })?;
            warden_core::fsx::write_atomic(dir, ALERTS_FILE, &bytes)
        };
        let result = write();
        if let Err(e) = &result {
            tracing::error!(dir = %dir.display(), error = %e, "cannot save the alert state; it will be lost on restart");
        }
        self.saved(ALERTS_FILE, result);
    }
}

pub use crate::history::{CLEANUP_HISTORY, CLEANUP_ITEMS};

impl StateStore {
    /// Adds a cleanup run to the history, bounded (its first items, cut to fit
    /// one line of the history file),
    /// dropping the oldest beyond [`CLEANUP_HISTORY`].
    pub fn record_cleanup(&self, run: super::cleanup::Run) {
        if let Some(result) = self.history.record(run) {
            self.saved(crate::history::FILE, result);
        }
    }

    /// The newest `limit` runs of the cleanup history, newest first, of one
    /// policy or all. Only those are copied: a run may hold 1,000 items.
    pub fn cleanup_history(&self, policy: Option<&str>, limit: usize) -> Vec<super::cleanup::Run> {
        self.history.recent(policy, limit)
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

    /// Applies an alert policy's evaluation at `now_ms`: moves its alerts
    /// through their phases (see [`alerts`](super::alerts) for the rules),
    /// records the changes in the history, and decides what receivers are to
    /// hear. Returns the changes, what is due and the policy's counts; saves
    /// the state if the changes or what is due are not empty.
    pub fn apply_alerts(
        &self,
        file: &std::path::Path,
        policy: &str,
        alerts: &[warden_core::records::Alert],
        now_ms: i64,
        timing: super::alerts::Timing,
    ) -> Applied {
        let mut all = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let states = all
            .by_policy
            .entry((file.to_path_buf(), policy.to_owned()))
            .or_default();
        let (changed, refused) = super::alerts::step_bounded(
            states,
            alerts,
            now_ms,
            timing.default_for_ms,
            timing.keep_firing_for_ms,
            super::alerts::MAX_ALERTS_PER_POLICY,
        );
        if refused > 0 {
            tracing::warn!(
                policy,
                refused,
                max = super::alerts::MAX_ALERTS_PER_POLICY,
                "the policy holds as many alerts as it may; new ones were refused"
            );
        }
        let due = super::alerts::due_at_least(
            states,
            now_ms,
            timing.cooldown_ms,
            timing.refresh_ms,
            timing.min_severity,
        );
        let count = |p| states.values().filter(|a| a.phase == p).count();
        let (firing, pending) = (
            count(super::alerts::Phase::Firing),
            count(super::alerts::Phase::Pending),
        );
        for c in &changed {
            if all.history.len() == ALERT_HISTORY {
                all.history.pop_back();
            }
            all.history.push_front(AlertEvent {
                at_ms: now_ms,
                file: file.to_path_buf(),
                policy: policy.to_owned(),
                name: c.name.clone(),
                labels: c.labels.clone(),
                phase: c.phase,
                value: c.value,
                severity: c.severity.clone(),
            });
        }
        if !changed.is_empty() || !due.is_empty() {
            self.save_alerts(&all);
        }
        Applied {
            changed,
            due,
            firing,
            pending,
            refused,
        }
    }

    /// Returns the alerts of a policy, by name then labels.
    pub fn alerts(&self, file: &std::path::Path, policy: &str) -> Vec<super::alerts::AlertState> {
        let all = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = all
            .by_policy
            .get(&(file.to_path_buf(), policy.to_owned()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        v
    }

    /// Every alert of every policy: (file, policy, alert), by policy then alert.
    pub fn all_alerts(&self) -> Vec<(PathBuf, String, super::alerts::AlertState)> {
        let all = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = all
            .by_policy
            .iter()
            .flat_map(|((file, policy), m)| {
                m.values()
                    .map(move |a| (file.clone(), policy.clone(), a.clone()))
            })
            .collect();
        v.sort_by(|a, b| (&a.1, &a.2.name, &a.2.labels).cmp(&(&b.1, &b.2.name, &b.2.labels)));
        v
    }

    /// Alert phase changes, newest first, of one policy or all.
    pub fn alert_history(&self, policy: Option<&str>) -> Vec<AlertEvent> {
        let all = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        all.history
            .iter()
            .filter(|e| policy.is_none_or(|p| e.policy == p))
            .cloned()
            .collect()
    }

    /// Detector policies' findings.
    pub fn findings(&self) -> &super::findings::FindingStore {
        &self.findings
    }

    /// Drops the plugin state of every policy for which `keep(file, policy)`
    /// is false.
    pub fn retain_plugin_states(&self, keep: impl Fn(&std::path::Path, &str) -> bool) {
        self.plugins.retain(keep);
    }

    /// Drops the state of every policy for which `keep(file, policy)` is false.
    pub fn retain(&self, keep: impl Fn(&std::path::Path, &str) -> bool) {
        self.findings.retain(&keep);
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep(&k.file, &k.policy));
        let mut alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let before = alerts.by_policy.len();
        alerts
            .by_policy
            .retain(|(file, policy), _| keep(file, policy));
        if alerts.by_policy.len() != before {
            self.save_alerts(&alerts);
        }
    }
}

/// Plugins' own state (the `state` import), persisted with the rest.
impl warden_plugin_host::PluginStateStore for StateStore {
    fn load(&self, id: &warden_plugin_host::PolicyId) -> Option<std::sync::Arc<[u8]>> {
        self.plugins.load(id)
    }

    fn save(&self, id: &warden_plugin_host::PolicyId, blob: Option<std::sync::Arc<[u8]>>) {
        self.plugins.save(id, blob);
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

    use crate::history::tests::run;

    #[test]
    fn alerts_and_cleanup_history_survive_reopening() {
        use warden_core::records::{Alert, AlertCondition, Severity};
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let alert = Alert {
            name: "Hot".into(),
            condition: AlertCondition::Firing,
            severity: Severity::Critical,
            labels: vec![("host".into(), "a".into())],
            annotations: vec![],
            value: 3.0,
            for_ms: None,
        };
        let applied = s.apply_alerts(
            "p.yaml".as_ref(),
            "p",
            &[alert],
            1000,
            super::super::alerts::Timing::default(),
        );
        assert_eq!(
            (applied.changed.len(), applied.due.len(), applied.firing),
            (1, 1, 1)
        );
        for i in 0..(2 * CLEANUP_HISTORY + 3) {
            s.record_cleanup(run(&format!("c{i}")));
        }
        drop(s);
        let s = StateStore::open(dir.path()).unwrap();
        let a = s.alerts("p.yaml".as_ref(), "p");
        assert_eq!(a.len(), 1);
        assert!(a[0].told_firing && a[0].fired_at_ms == Some(1000));
        assert_eq!(s.alert_history(None).len(), 1);
        let h = s.cleanup_history(None, usize::MAX);
        assert_eq!(h.len(), CLEANUP_HISTORY);
        assert_eq!(
            h[0].policy,
            format!("c{}", 2 * CLEANUP_HISTORY + 2),
            "newest first"
        );
        let lines = std::fs::read_to_string(dir.path().join(crate::history::FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 2 * CLEANUP_HISTORY, "compacted: {lines} lines");

        // A damaged alert file is moved aside, not lost, and the store starts empty.
        std::fs::write(dir.path().join(ALERTS_FILE), "{not json").unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        assert!(s.all_alerts().is_empty());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("unreadable"))
            .count();
        assert_eq!(aside, 1);
    }

    /// A NaN (or infinite) alert value is saved as `null` and read back: it
    /// never makes the state file unreadable (before, it lost all alert
    /// state at the next start).
    #[test]
    fn a_nan_alert_value_never_makes_the_state_unreadable() {
        use std::os::unix::fs::PermissionsExt;
        use warden_core::records::{Alert, AlertCondition, Severity};
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        for (name, value) in [("Nan", f64::NAN), ("Inf", f64::INFINITY), ("Fine", 2.5)] {
            let alert = Alert {
                name: name.into(),
                condition: AlertCondition::Firing,
                severity: Severity::Warning,
                labels: vec![],
                annotations: vec![],
                value,
                for_ms: None,
            };
            s.apply_alerts("p.yaml".as_ref(), name, &[alert], 1000, Default::default());
        }
        drop(s);
        let s = StateStore::open(dir.path()).unwrap();
        let all = s.all_alerts();
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(
            all.iter()
                .any(|(_, _, a)| a.name == "Nan" && a.value.is_nan())
        );
        assert!(
            all.iter()
                .any(|(_, _, a)| a.name == "Fine" && a.value == 2.5)
        );
        assert_eq!(s.alert_history(None).len(), 3);
        let unreadable = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("unreadable"))
            .count();
        assert_eq!(unreadable, 0);
        let mode = std::fs::metadata(dir.path().join(ALERTS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_history_keeps_the_first_items_of_a_big_run_and_counts_all() {
        use crate::cleanup::{Item, Outcome};
        let s = StateStore::default();
        let mut r = run("big");
        r.items = (0..CLEANUP_ITEMS + 500)
            .map(|i| Item {
                action: "delete".into(),
                target: Some(format!("/t/{i}")),
                reason: "old".into(),
                outcome: if i % 2 == 0 {
                    Outcome::Deleted { bytes: 1 }
                } else {
                    Outcome::Failed {
                        error: "EIO".into(),
                    }
                },
                attempts: 1,
            })
            .collect();
        s.record_cleanup(r);
        let kept = &s.cleanup_history(Some("big"), 1)[0];
        assert_eq!(kept.items.len(), CLEANUP_ITEMS);
        assert_eq!(kept.counts(), [750, 0, 0, 0, 750]);
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
