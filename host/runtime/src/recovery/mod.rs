//! Recovery: services report failed operations and outcomes; the host
//! classifies each failure, chooses the recovery policy that covers the
//! operation, keeps a circuit breaker, a retry budget and the recent
//! attempts per (policy, operation, key labels), asks the policy's plugin
//! what to do, and answers with the decision and the breaker's state.
//!
//! - [`classify`]: raw errors to classes, policy rules first.
//! - [`breaker`]: one breaker (Resilience4j's states and knobs).
//! - [`budget`]: one operation's retry budget.
//! - [`history`]: one operation's recent attempts.
//! - [`decide`]: the decision as a pure function of its inputs.
//! - [`report`]: reading what services send, every refusal by field.
//! - `circuit`, `service`, `persist`, [`guard`], `expose`: the circuits,
//!   reporting, the state file, the in-process guard, `/metrics` and health.
//!
//! Which policy decides: among enabled recovery policies triggered by
//! `failure-reported`, those whose `scope.operations` globs match the
//! operation and whose `scope.labels` the report carries; the most specific
//! wins (operations named before none, then more label matchers, then the
//! longer glob, then file and name order). A policy with no operations is a
//! default, for operations no other covers.

pub mod breaker;
pub mod budget;
mod circuit;
pub mod classify;
pub mod clock;
pub mod decide;
mod expose;
pub mod guard;
pub mod history;
mod inspect;
mod persist;
pub mod report;
mod service;
mod window;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use warden_metrics::validate::PiiKeys;
use warden_plugin_host::Evaluator;
use warden_policy::live::{LivePolicy, LiveSet};
use warden_policy::recovery::RecoveryOptions;
use warden_policy::schema::{EventKind, OnFailure, PolicyKind, Trigger};

pub use circuit::{CircuitView, PolicyRef};
pub use clock::{Clock, SystemClock, TestClock};
pub use expose::HealthSummary;
pub use guard::{Guard, GuardError, IntoRawError};
pub use persist::SAVE_EVERY;
pub use service::{
    CircuitBrief, DecisionRecord, DecisionView, FailureAnswer, OutcomesAnswer, ReportError,
};

use circuit::Circuit;

/// The most circuits kept; a report that would create one more is refused,
/// so a client inventing operation names cannot grow the daemon's memory.
pub const MAX_CIRCUITS: usize = 10_000;
/// How many decisions the history keeps, newest first.
pub const DECISIONS_KEPT: usize = 1_000;

/// A recovery policy as the service runs it.
#[derive(Debug)]
pub struct Entry {
    /// The policy's file and name: its identity.
    pub file: PathBuf,
    /// The policy's name.
    pub name: String,
    /// Its settings.
    pub opts: RecoveryOptions,
    rules: classify::Rules,
    ops: Vec<globset::GlobMatcher>,
    /// The plugin bound to the policy.
    pub evaluator: Option<Evaluator>,
    /// What a failing strategy answers.
    pub on_failure: OnFailure,
    /// Decide, act on nothing.
    pub dry_run: bool,
    /// `trigger: manual`: never chosen for a report.
    manual: bool,
}

impl Entry {
    /// Builds the entry of a live recovery policy; `None` for other kinds.
    pub fn of(p: &LivePolicy) -> Option<Entry> {
        if p.policy.kind() != PolicyKind::Recovery {
            return None;
        }
        let opts = p.policy.recovery.clone().unwrap_or_default();
        let ops = opts
            .operations
            .iter()
            .filter_map(|g| globset::Glob::new(g).ok())
            .map(|g| g.compile_matcher())
            .collect();
        Some(Entry {
            file: p.file.clone(),
            name: p.name().to_owned(),
            rules: classify::Rules::new(&opts.classify),
            ops,
            opts,
            evaluator: p.evaluator.clone(),
            on_failure: p.policy.spec.on_failure.unwrap_or_default(),
            dry_run: p.policy.spec.dry_run,
            manual: matches!(p.policy.trigger, Trigger::Manual),
        })
    }

    /// Returns how specifically the entry covers `operation` with `labels`,
    /// or `None` if it does not cover it.
    fn covers(
        &self,
        operation: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<(bool, usize, usize)> {
        if !self
            .opts
            .labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            return None;
        }
        if self.ops.is_empty() {
            return Some((false, self.opts.labels.len(), 0));
        }
        let longest = self
            .ops
            .iter()
            .filter(|m| m.is_match(operation))
            .map(|m| {
                m.glob()
                    .glob()
                    .chars()
                    .filter(|c| !"*?[]{}".contains(*c))
                    .count()
            })
            .max()?;
        Some((true, self.opts.labels.len(), longest))
    }
}

/// Where the service keeps state and whom it tells.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The state directory (`recovery.json`); in memory only when `None`.
    pub state_dir: Option<PathBuf>,
    /// The clock; the system's when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Where `failure-reported` events go.
    pub events: Option<tokio::sync::broadcast::Sender<crate::scheduler::Event>>,
    /// Where evaluations of recovery policies are counted, as other policies'.
    pub state: Option<Arc<crate::StateStore>>,
    /// Warden's own metrics.
    pub telemetry: Option<Arc<warden_core::telemetry::Telemetry>>,
    /// Label names refused as personal data (the metrics default when `None`).
    pub pii: Option<PiiKeys>,
    /// The first jitter seed handed to plugins; from the time and pid when
    /// `None`. A replay fixes it, so two replays of one recording agree.
    pub seed: Option<u64>,
    /// Where each breaker change is sent as it happens (a replay prints
    /// them; a batch of outcomes can move a breaker more than once).
    pub transitions: Option<std::sync::mpsc::Sender<BreakerChange>>,
}

/// A breaker's change of state, and whose breaker it is.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerChange {
    /// The policy.
    pub policy: String,
    /// The operation.
    pub operation: String,
    /// The circuit.
    pub circuit: String,
    /// The change.
    pub transition: breaker::Transition,
}

/// The recovery service: policies, circuits, decisions.
#[derive(Debug)]
pub struct Recovery {
    clock: Arc<dyn Clock>,
    policies: RwLock<Arc<Vec<Arc<Entry>>>>,
    circuits: RwLock<HashMap<String, Arc<Circuit>>>,
    /// Saved circuits waiting for their policy to be loaded (at start).
    restored: Mutex<HashMap<String, persist::SavedCircuit>>,
    decisions: Mutex<std::collections::VecDeque<DecisionRecord>>,
    /// Guards of `Recovery::call`, by operation (foldhash: the lookup is
    /// on every call).
    by_name: RwLock<HashMap<String, Arc<Guard>, foldhash::fast::RandomState>>,
    opts: Options,
    pii: PiiKeys,
    dirty: AtomicBool,
    counters: expose::Counters,
    seed: AtomicU64,
    /// Bumped by each `sync`, so guards cached by threads are made again.
    generation: AtomicU64,
}

impl Recovery {
    /// A service with `opts`, starting from what `state_dir` holds. A state
    /// file that cannot be read is moved aside and named in the log.
    pub fn new(opts: Options) -> Recovery {
        let clock = opts
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock) as Arc<dyn Clock>);
        let (restored, decisions) = match &opts.state_dir {
            Some(dir) => persist::load(dir),
            None => Default::default(),
        };
        let seed = opts.seed.unwrap_or_else(|| {
            warden_core::clock::now_ms() as u64 ^ u64::from(std::process::id()) << 32
        });
        Recovery {
            clock,
            policies: RwLock::default(),
            circuits: RwLock::default(),
            restored: Mutex::new(restored),
            decisions: Mutex::new(decisions),
            by_name: RwLock::default(),
            pii: opts.pii.clone().unwrap_or_default(),
            opts,
            dirty: AtomicBool::new(false),
            counters: expose::Counters::default(),
            seed: AtomicU64::new(seed),
            generation: AtomicU64::new(0),
        }
    }

    /// Returns the label names refused as personal data.
    pub fn pii(&self) -> &PiiKeys {
        &self.pii
    }

    /// Returns the clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Takes the recovery policies of `set`. Circuits of a policy that keeps
    /// its identity (file and name) keep their state under its new settings;
    /// those of a policy that is gone are dropped.
    pub fn sync(&self, set: &LiveSet) {
        let mut entries: Vec<Arc<Entry>> = set
            .policies()
            .filter(|p| p.policy.spec.enabled)
            .filter_map(|p| Entry::of(p).map(Arc::new))
            .collect();
        entries.sort_by(|a, b| (&a.file, &a.name).cmp(&(&b.file, &b.name)));
        let defaults: Vec<&str> = entries
            .iter()
            .filter(|e| e.ops.is_empty() && e.opts.labels.is_empty() && !e.manual)
            .map(|e| e.name.as_str())
            .collect();
        if defaults.len() > 1 {
            tracing::warn!(
                chosen = defaults[0],
                shadowed = ?&defaults[1..],
                "more than one default recovery policy (no `scope.operations`); the first by file and name decides"
            );
        }
        let now = self.clock.now_ms();
        {
            let mut circuits = self.circuits.write().unwrap_or_else(|p| p.into_inner());
            circuits.retain(|_, c| {
                match entries
                    .iter()
                    .find(|e| e.file == c.policy.file && e.name == c.policy.name)
                {
                    Some(e) => {
                        c.adopt(e);
                        true
                    }
                    None => false,
                }
            });
            let mut restored = self.restored.lock().unwrap_or_else(|p| p.into_inner());
            for (key, saved) in restored.drain() {
                if let Some(e) = entries
                    .iter()
                    .find(|e| e.file == saved.policy.file && e.name == saved.policy.name)
                    && circuits.len() < MAX_CIRCUITS
                {
                    circuits.insert(key, Arc::new(Circuit::restore(e, saved, now)));
                }
            }
        }
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(entries);
        // After the swap, and under the map's lock: a guard resolved against
        // the old policies is then never kept (see `Recovery::call`).
        let mut by_name = self.by_name.write().unwrap_or_else(|p| p.into_inner());
        by_name.clear();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        drop(by_name);
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns the policy that decides for `operation` with `labels`.
    pub fn select(
        &self,
        operation: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<Arc<Entry>> {
        let policies = Arc::clone(&self.policies.read().unwrap_or_else(|p| p.into_inner()));
        type Scored<'a> = ((bool, usize, usize), &'a Arc<Entry>);
        let mut best: Option<Scored<'_>> = None;
        for e in policies.iter().filter(|e| !e.manual) {
            if let Some(score) = e.covers(operation, labels)
                && best.as_ref().is_none_or(|(b, _)| score > *b)
            {
                best = Some((score, e));
            }
        }
        best.map(|(_, e)| Arc::clone(e))
    }

    /// Returns the recovery policy called `name`, if loaded and enabled.
    pub fn policy(&self, name: &str) -> Option<Arc<Entry>> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| e.name == name)
            .cloned()
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn next_seed(&self) -> u64 {
        self.seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed)
    }
}

/// Returns true if and only if the event-triggered policy `p` is to run for
/// this failure: its `scope.operations`, `scope.labels` and `scope.classes`
/// (each empty: any) all match.
pub fn failure_matches(p: &LivePolicy, f: &crate::scheduler::FailureEvent) -> bool {
    let scope = &p.policy.spec.scope;
    let ops = scope.operations.is_empty()
        || scope.operations.iter().any(|g| {
            globset::Glob::new(g)
                .map(|g| g.compile_matcher().is_match(&f.operation))
                .unwrap_or(false)
        });
    let classes = scope.classes.is_empty() || scope.classes.contains(&f.class);
    let labels = scope.labels.iter().all(|(k, v)| f.labels.get(k) == Some(v));
    ops && classes
        && labels
        && matches!(p.policy.trigger, Trigger::Event(EventKind::FailureReported))
}

#[cfg(test)]
mod tests;
