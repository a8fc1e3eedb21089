//! What a cleanup run did: one item per planned action with its outcome, as
//! the API answers and the history keeps it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use warden_core::records::{CleanupAction, CleanupPlan};

use super::Cap;

/// What happened to one planned action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Deleted; its size is freed.
    Deleted {
        /// Bytes freed.
        bytes: u64,
    },
    /// Dry run: it would have been deleted.
    WouldDelete {
        /// Bytes it would free.
        bytes: u64,
    },
    /// A registered resource released (or evicted): its owner is told on
    /// its next call.
    Released {
        /// Its `size_bytes`, with those of dependents released with it.
        bytes: u64,
    },
    /// Dry run: it would have been released.
    WouldRelease {
        /// Its `size_bytes`, with its dependents'.
        bytes: u64,
    },
    /// A process sent a signal.
    Signalled {
        /// The signal (`SIGTERM`).
        signal: String,
    },
    /// Dry run: it would have been sent a signal.
    WouldSignal {
        /// The signal.
        signal: String,
    },
    /// Outside what the scope grants; never touched.
    Refused {
        /// Why.
        why: String,
    },
    /// In scope, but left alone by a safety rule (locked, a socket, gone…).
    Skipped {
        /// Why.
        why: String,
    },
    /// The deletion failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// One planned action and its outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// The action, as text.
    pub action: Cow<'static, str>,
    /// Its target, if it has one.
    pub target: Option<String>,
    /// The plugin's reason, shared with every item of the plan that gives it
    /// (never copied per item).
    #[serde(serialize_with = "shared_out", deserialize_with = "shared_in")]
    pub reason: Arc<str>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How many times the filesystem was acted on for it: 0 if it never got
    /// that far (refused, excluded, a notice, or not started before the
    /// run's timeout), more than 1 if it was retried. (Absent from history
    /// saved before it was recorded: 0.)
    #[serde(default)]
    pub attempts: u32,
}

fn shared_out<S: Serializer>(s: &Arc<str>, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(s)
}

fn shared_in<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    String::deserialize(d).map(Arc::from)
}

/// What a run acts on, which says what acting is: files are deleted,
/// registered resources released, processes signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActsOn {
    /// Files and directories under the scope's paths.
    #[default]
    Files,
    /// Resources applications registered.
    Registered,
    /// Processes `scope.processes` selects.
    Processes,
}

impl ActsOn {
    /// The verb of acting and of a dry run's plan, for summaries.
    pub fn verbs(self) -> (&'static str, &'static str) {
        match self {
            ActsOn::Files => ("deleted", "would delete"),
            ActsOn::Registered => ("released", "would release"),
            ActsOn::Processes => ("signalled", "would signal"),
        }
    }
}

/// One run of a cleanup policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// The policy.
    pub policy: String,
    /// What it acts on. (Absent from history saved before it was recorded:
    /// files, the only kind then.)
    #[serde(default)]
    pub acts_on: ActsOn,
    /// When it started and ended (ms since the epoch).
    pub started_ms: i64,
    /// When it ended.
    pub finished_ms: i64,
    /// How long it took, by the monotonic clock (the wall clock may jump).
    #[serde(default)]
    pub duration_ms: u64,
    /// Nothing was acted on by design.
    pub dry_run: bool,
    /// Candidates shown to the plugin.
    pub candidates: usize,
    /// Actions the plugin planned.
    pub planned: usize,
    /// Set if the run acted on nothing because the plan exceeded the cap.
    pub cap_exceeded: Option<String>,
    /// Set if the run's timeout passed before every action was started; the
    /// ones left are skipped and say so.
    #[serde(default)]
    pub timed_out: bool,
    /// Every planned action with its outcome, in plan order.
    pub items: Vec<Item>,
    /// Bytes freed (or that would be, in a dry run).
    pub bytes_freed: u64,
    /// Items left out of `items` to bound the history ([`Run::trim`]),
    /// counted by outcome as [`Run::counts`] orders them.
    #[serde(default)]
    pub omitted: [usize; 5],
}

/// The outcome's place in [`Run::counts`]: acted on (deleted, released or
/// signalled), would be, refused, skipped, failed.
fn slot(o: &Outcome) -> usize {
    match o {
        Outcome::Deleted { .. } | Outcome::Released { .. } | Outcome::Signalled { .. } => 0,
        Outcome::WouldDelete { .. }
        | Outcome::WouldRelease { .. }
        | Outcome::WouldSignal { .. } => 1,
        Outcome::Refused { .. } => 2,
        Outcome::Skipped { .. } => 3,
        Outcome::Failed { .. } => 4,
    }
}

impl Run {
    /// How many actions ended in each outcome: acted on (deleted, released
    /// or signalled, as [`Run::acts_on`] says), would be, refused, skipped,
    /// failed.
    pub fn counts(&self) -> [usize; 5] {
        let mut c = self.omitted;
        for i in &self.items {
            c[slot(&i.outcome)] += 1;
        }
        c
    }

    /// Keeps the first `keep` items and counts the rest in `omitted`, so a
    /// run over 100,000 files does not keep 100,000 items in the history.
    pub fn trim(&mut self, keep: usize) {
        for i in self.items.iter().skip(keep) {
            self.omitted[slot(&i.outcome)] += 1;
        }
        self.items.truncate(keep);
    }

    /// Makes the run fit in `max_bytes` of JSON, as the history keeps it:
    /// first every text longer than 512 bytes (a plugin's reason, a path, an
    /// error) is cut, then items are left out (and counted) until it fits.
    /// Returns its JSON.
    pub fn fit(&mut self, max_bytes: usize) -> Vec<u8> {
        let json = |r: &Run| serde_json::to_vec(r).unwrap_or_default();
        // The texts alone are a lower bound of the JSON: when they are over,
        // cut them before serializing anything, or a shared 14 MiB reason
        // would be written out once per item (gigabytes) only to be cut.
        if self.text_bytes() > max_bytes {
            self.shorten(512);
        }
        let mut line = json(self);
        if line.len() <= max_bytes {
            return line;
        }
        self.shorten(512);
        line = json(self);
        while line.len() > max_bytes && !self.items.is_empty() {
            // The share of items that fits, a little less to converge.
            let keep = (self.items.len() as u128 * max_bytes as u128 * 9
                / (line.len() as u128 * 10)) as usize;
            self.trim(keep.min(self.items.len() - 1));
            line = json(self);
        }
        line
    }

    /// What the items' texts take, as the JSON of the run will hold them.
    fn text_bytes(&self) -> usize {
        self.items
            .iter()
            .map(|i| {
                let why = match &i.outcome {
                    Outcome::Refused { why } | Outcome::Skipped { why } => why.len(),
                    Outcome::Failed { error } => error.len(),
                    Outcome::Signalled { signal } | Outcome::WouldSignal { signal } => signal.len(),
                    Outcome::Deleted { .. }
                    | Outcome::WouldDelete { .. }
                    | Outcome::Released { .. }
                    | Outcome::WouldRelease { .. } => 0,
                };
                i.reason.len() + i.target.as_deref().map_or(0, str::len) + why
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Cuts every text of the run to at most `max` bytes.
    fn shorten(&mut self, max: usize) {
        fn cut(s: &str, max: usize) -> Option<String> {
            (s.len() > max).then(|| format!("{}…", super::clip(s, max)))
        }
        for i in &mut self.items {
            if let Some(r) = cut(&i.reason, max) {
                i.reason = r.into();
            }
            if let Some(t) = i.target.as_deref().and_then(|t| cut(t, max)) {
                i.target = Some(t);
            }
            match &mut i.outcome {
                Outcome::Refused { why } | Outcome::Skipped { why } => {
                    if let Some(w) = cut(why, max) {
                        *why = w;
                    }
                }
                Outcome::Failed { error } => {
                    if let Some(e) = cut(error, max) {
                        *error = e;
                    }
                }
                Outcome::Deleted { .. }
                | Outcome::WouldDelete { .. }
                | Outcome::Released { .. }
                | Outcome::WouldRelease { .. }
                | Outcome::Signalled { .. }
                | Outcome::WouldSignal { .. } => {}
            }
        }
        if let Some(c) = self.cap_exceeded.as_deref().and_then(|c| cut(c, max)) {
            self.cap_exceeded = Some(c);
        }
    }
}

impl Run {
    /// A run starting now, with nothing done yet.
    pub fn begin(
        policy: &str,
        acts_on: ActsOn,
        dry_run: bool,
        candidates: usize,
        planned: usize,
    ) -> Run {
        let started_ms = warden_core::clock::now_ms();
        Run {
            policy: policy.to_owned(),
            acts_on,
            started_ms,
            finished_ms: started_ms,
            duration_ms: 0,
            dry_run,
            candidates,
            planned,
            cap_exceeded: None,
            timed_out: false,
            items: Vec::with_capacity(planned),
            bytes_freed: 0,
            omitted: [0; 5],
        }
    }

    /// The run, ended now; `started` is when it began by the monotonic clock.
    pub fn end(mut self, started: Instant) -> Run {
        self.finished_ms = warden_core::clock::now_ms();
        self.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// Why `plan` may not run under `cap` over `candidates`, if it asks for
/// more actions (notices aside) than the cap allows; logged with the policy.
pub fn over_cap(
    policy: &str,
    cap: Option<Cap>,
    plan: &CleanupPlan,
    candidates: usize,
) -> Option<String> {
    let cap = cap?;
    let acting = plan
        .actions
        .iter()
        .filter(|(a, _)| !matches!(a, CleanupAction::Notify(_)))
        .count() as u64;
    let allowed = cap.allowed(candidates);
    if acting <= allowed {
        return None;
    }
    tracing::warn!(
        policy,
        planned = acting,
        allowed,
        "cleanup plan exceeds its cap; nothing done"
    );
    Some(format!(
        "the plan asks for {acting} actions over {candidates} candidates; the cap `{cap}` allows {allowed}, so nothing was done"
    ))
}
