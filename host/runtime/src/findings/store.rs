//! The findings of every detector policy, their history, and where they are
//! kept across restarts: `findings.json` in the state directory, written
//! whole (temporary file, fsync, rename, fsync of the directory), so a crash
//! leaves the old state or the new one, never half of either.
//!
//! A save follows every evaluation that raised, resolved or announced
//! something; in between, what only refreshes findings (last seen, times
//! seen, evidence) is saved at most every [`SAVE_EVERY_MS`].

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::lifecycle::{self, Due, FindingId, FindingState, Phase, Rules};
use warden_core::records::Finding;
use warden_policy::schema::Severity;

/// How many raised/resolved events the history keeps.
pub const FINDING_HISTORY: usize = 1000;

/// Refreshes that change no phase are saved at most this often.
pub const SAVE_EVERY_MS: i64 = 60_000;

/// The file findings are kept in, inside the state directory.
const FILE: &str = "findings.json";
/// The largest findings file read (and written): the bound per policy
/// times a thousand policies is far less.
const MAX_FILE: u64 = 64 << 20;

/// What happened to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Happened {
    /// It became active.
    Raised,
    /// It stopped being reported.
    Resolved,
}

impl Happened {
    /// Returns what a change to `phase` is.
    pub fn of(phase: Phase) -> Happened {
        if phase == Phase::Resolved {
            Happened::Resolved
        } else {
            Happened::Raised
        }
    }
}

/// A finding raised or resolved, as `/api/v1/findings/history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingEvent {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The policy file.
    pub file: PathBuf,
    /// The detector policy.
    pub policy: String,
    /// What happened.
    pub event: Happened,
    /// The pattern.
    pub pattern: String,
    /// The subject.
    pub subject: String,
    /// Its labels.
    pub labels: Vec<(String, String)>,
    /// Its severity then.
    pub severity: Severity,
    /// Its confidence then.
    pub confidence: f64,
    /// Predicted ms until exhaustion then.
    pub exhaustion_in_ms: Option<u64>,
    /// The recommendation then.
    pub recommendation: String,
}

/// What one evaluation of a detector policy did to its findings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Findings raised or resolved; the phase says which.
    pub changes: Vec<FindingState>,
    /// What receivers are to hear.
    pub due: Vec<Due>,
    /// Active findings of the policy now.
    pub active: usize,
    /// Pending findings of the policy now.
    pub pending: usize,
    /// Findings dropped to stay within the policy's `max_findings`.
    pub evicted: usize,
}

/// Findings of one policy, by identity.
type PolicyFindings = HashMap<FindingId, FindingState>;

#[derive(Debug, Default)]
struct Inner {
    by_policy: HashMap<(PathBuf, String), PolicyFindings>,
    history: VecDeque<FindingEvent>,
    /// When the state was last written, ms since the epoch (wall clock).
    saved_at_ms: i64,
    /// True if something is in memory that is not on disk.
    dirty: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    policies: Vec<SavedPolicy>,
    history: Vec<FindingEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedPolicy {
    file: PathBuf,
    policy: String,
    findings: Vec<FindingState>,
}

/// Every policy's findings.
#[derive(Debug, Default)]
pub struct FindingStore {
    inner: Mutex<Inner>,
    /// Where they are kept; nowhere when `None`.
    dir: Option<PathBuf>,
}

/// Which findings [`FindingStore::list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// Only this policy's.
    pub policy: Option<&'a str>,
    /// Only this pattern.
    pub pattern: Option<&'a str>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this severity or above.
    pub min_severity: Option<Severity>,
    /// Only in this phase.
    pub phase: Option<Phase>,
}

/// One finding as listed: its policy and its state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// The policy file.
    pub file: PathBuf,
    /// The detector policy.
    pub policy: String,
    /// The finding.
    #[serde(flatten)]
    pub finding: FindingState,
}

impl FindingStore {
    /// A store that keeps findings in `dir` (which must exist) and starts
    /// from what an earlier run left there. A file that cannot be read is
    /// moved aside, named in the log, and the store starts empty.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE);
        let mut inner = Inner::default();
        match warden_core::files::read_regular(&path, MAX_FILE) {
            Err(e) if e.is_not_found() => {}
            read => match read.map_err(|e| format!("the file {e}")).and_then(|bytes| {
                serde_json::from_slice::<Saved>(&bytes).map_err(|e| e.to_string())
            }) {
                Ok(saved) => {
                    for p in saved.policies {
                        let findings = p.findings.into_iter().map(|f| (f.id(), f)).collect();
                        inner.by_policy.insert((p.file, p.policy), findings);
                    }
                    inner.history = saved.history.into_iter().take(FINDING_HISTORY).collect();
                }
                Err(e) => {
                    let aside = path.with_extension(format!(
                        "json.unreadable-{}",
                        warden_core::clock::now_ms()
                    ));
                    std::fs::rename(&path, &aside)?;
                    tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e, "the saved findings are unreadable; starting without them");
                }
            },
        }
        inner.saved_at_ms = warden_core::clock::now_ms();
        Ok(FindingStore {
            inner: Mutex::new(inner),
            dir: Some(dir.to_path_buf()),
        })
    }

    /// Applies a detector policy's evaluation at `now_ms` (see
    /// [`lifecycle`] for the rules), records raised and resolved findings in
    /// the history, decides what receivers hear, and saves.
    pub fn apply(
        &self,
        file: &Path,
        policy: &str,
        found: &[Finding],
        now_ms: i64,
        rules: &Rules,
    ) -> Applied {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *inner;
        let states = inner
            .by_policy
            .entry((file.to_path_buf(), policy.to_owned()))
            .or_default();
        let stepped = lifecycle::step(states, found, now_ms, rules);
        let due = lifecycle::due(states, now_ms, rules);
        let count = |p| states.values().filter(|f| f.phase == p).count();
        let (active, pending) = (count(Phase::Active), count(Phase::Pending));
        for f in &stepped.changes {
            if inner.history.len() == FINDING_HISTORY {
                inner.history.pop_back();
            }
            inner.history.push_front(FindingEvent {
                at_ms: now_ms,
                file: file.to_path_buf(),
                policy: policy.to_owned(),
                event: Happened::of(f.phase),
                pattern: f.pattern.clone(),
                subject: f.subject.clone(),
                labels: f.labels.clone(),
                severity: f.severity,
                confidence: f.confidence,
                exhaustion_in_ms: f.exhaustion_in_ms,
                recommendation: f.recommendation.clone(),
            });
        }
        inner.dirty |= !found.is_empty() || stepped.evicted > 0 || !stepped.changes.is_empty();
        let wall = warden_core::clock::now_ms();
        if !stepped.changes.is_empty()
            || !due.is_empty()
            || stepped.evicted > 0
            || (inner.dirty && wall - inner.saved_at_ms >= SAVE_EVERY_MS)
        {
            self.save(inner, wall);
        }
        Applied {
            changes: stepped.changes,
            due,
            active,
            pending,
            evicted: stepped.evicted,
        }
    }

    /// Findings matching `filter`, by policy, pattern, subject, labels.
    pub fn list(&self, filter: &Filter<'_>) -> Vec<Listed> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Listed> = inner
            .by_policy
            .iter()
            .filter(|((_, p), _)| filter.policy.is_none_or(|w| w == p))
            .flat_map(|((file, policy), m)| {
                m.values()
                    .filter(|f| {
                        filter.pattern.is_none_or(|w| w == f.pattern)
                            && filter.severity.is_none_or(|s| s == f.severity)
                            && filter.min_severity.is_none_or(|s| f.severity >= s)
                            && filter.phase.is_none_or(|ph| ph == f.phase)
                    })
                    .map(move |f| Listed {
                        file: file.clone(),
                        policy: policy.clone(),
                        finding: f.clone(),
                    })
            })
            .collect();
        v.sort_by(|a, b| (&a.policy, a.finding.id()).cmp(&(&b.policy, b.finding.id())));
        v
    }

    /// Raised and resolved events, newest first, of one policy or all.
    pub fn history(&self, policy: Option<&str>, limit: usize) -> Vec<FindingEvent> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .history
            .iter()
            .filter(|e| policy.is_none_or(|p| e.policy == p))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Drops the findings of every policy for which `keep(file, policy)` is false.
    pub fn retain(&self, keep: impl Fn(&Path, &str) -> bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let before = inner.by_policy.len();
        inner
            .by_policy
            .retain(|(file, policy), _| keep(file, policy));
        if inner.by_policy.len() != before {
            self.save(&mut inner, warden_core::clock::now_ms());
        }
    }

    /// Writes everything now if something is not on disk yet (at shutdown).
    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.dirty {
            self.save(&mut inner, warden_core::clock::now_ms());
        }
    }

    /// Calls `f` with every policy's findings, for `/metrics`.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &FindingState)) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&(PathBuf, String)> = inner.by_policy.keys().collect();
        keys.sort();
        for key in keys {
            let mut findings: Vec<&FindingState> = inner.by_policy[key].values().collect();
            findings.sort_by(|a, b| {
                (&a.pattern, &a.subject, &a.labels).cmp(&(&b.pattern, &b.subject, &b.labels))
            });
            for finding in findings {
                f(&key.1, finding);
            }
        }
    }

    fn save(&self, inner: &mut Inner, wall_ms: i64) {
        let Some(dir) = &self.dir else {
            inner.dirty = false;
            return;
        };
        let saved = Saved {
            policies: inner
                .by_policy
                .iter()
                .map(|((file, policy), m)| SavedPolicy {
                    file: file.clone(),
                    policy: policy.clone(),
                    findings: m.values().cloned().collect(),
                })
                .collect(),
            history: inner.history.iter().cloned().collect(),
        };
        match write_atomically(dir, FILE, &saved) {
            Ok(()) => {
                inner.dirty = false;
                inner.saved_at_ms = wall_ms;
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "failed to save the findings; the latest changes will be lost on restart");
            }
        }
    }
}

/// Writes `saved` as JSON to `dir/name`, whole or not at all (0600,
/// [`warden_core::fsx::write_atomic`]). The bytes are read back first: a
/// state that would not load at the next start is never written.
fn write_atomically(dir: &Path, name: &str, saved: &Saved) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "the findings take {} bytes, more than the {MAX_FILE} read back at start; not written",
            bytes.len()
        )));
    }
    serde_json::from_slice::<Saved>(&bytes).map_err(|e| {
        std::io::Error::other(format!(
            "the findings would not read back ({e}); not written"
        ))
    })?;
    warden_core::fsx::write_atomic(dir, name, &bytes)
}

#[cfg(test)]
#[path = "tests/store.rs"]
mod tests;
