//! A circuit: what the host keeps per (policy, operation, key labels) — the
//! breaker, the retry budget and the attempt history — and its stable id,
//! which names it in the API across restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::Entry;
use super::breaker::{Breaker, Transition, View};
use super::budget::{Budget, BudgetView};
use super::history::History;
use super::persist::SavedCircuit;

/// A policy's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Its file.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
}

/// What a circuit keeps besides its breaker.
#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) budget: Budget,
    pub(crate) history: History,
}

/// One circuit.
#[derive(Debug)]
pub(crate) struct Circuit {
    pub(crate) id: String,
    pub(crate) policy: PolicyRef,
    pub(crate) operation: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) breaker: Breaker,
    /// The policy as last synced (settings change on reload).
    pub(crate) entry: RwLock<Arc<Entry>>,
    /// The slow-call duration, for the guard's lock-free success path.
    pub(crate) slow_ms: AtomicU64,
    pub(crate) side: Mutex<Side>,
}

/// A circuit as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitView {
    /// Its id, stable across restarts.
    pub id: String,
    /// The policy that keeps it.
    pub policy: String,
    /// The operation.
    pub operation: String,
    /// The key labels' values.
    pub labels: BTreeMap<String, String>,
    /// The breaker.
    #[serde(flatten)]
    pub breaker: View,
    /// The retry budget.
    pub retry_budget: BudgetView,
    /// When the current run of failures began.
    pub failing_since_ms: Option<i64>,
}

/// Returns the key of a circuit and its id (FNV-1a of the key, hex): the
/// same policy, operation and key labels give the same id in every run.
pub(crate) fn key(
    policy: &PolicyRef,
    operation: &str,
    labels: &[(String, String)],
) -> (String, String) {
    let mut k = String::with_capacity(64 + operation.len());
    k.push_str(&policy.file.to_string_lossy());
    k.push('\0');
    k.push_str(&policy.name);
    k.push('\0');
    k.push_str(operation);
    for (n, v) in labels {
        k.push('\0');
        k.push_str(n);
        k.push('=');
        k.push_str(v);
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in k.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (k, format!("{h:016x}"))
}

/// The key labels of a report: the values of the policy's `key_labels`
/// that the report carries, in the policy's order.
pub(crate) fn key_labels(e: &Entry, labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    e.opts
        .breaker
        .key_labels
        .iter()
        .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
        .collect()
}

impl Circuit {
    pub(crate) fn new(
        e: &Arc<Entry>,
        id: String,
        operation: &str,
        labels: Vec<(String, String)>,
        now_ms: i64,
    ) -> Circuit {
        Circuit {
            id,
            policy: PolicyRef {
                file: e.file.clone(),
                name: e.name.clone(),
            },
            operation: operation.to_owned(),
            labels,
            breaker: Breaker::new(&e.opts.breaker, now_ms),
            entry: RwLock::new(Arc::clone(e)),
            slow_ms: AtomicU64::new(e.opts.breaker.slow_call_ms),
            side: Mutex::new(Side {
                budget: Budget::new(&e.opts.budget),
                history: History::default(),
            }),
        }
    }

    pub(crate) fn restore(e: &Arc<Entry>, s: SavedCircuit, _now_ms: i64) -> Circuit {
        let mut budget = s.budget;
        budget.reconfigure(&e.opts.budget);
        let mut history = s.history;
        history.trim(e.opts.history);
        Circuit {
            id: s.id,
            policy: s.policy,
            operation: s.operation,
            labels: s.labels,
            breaker: Breaker::restore(&e.opts.breaker, s.breaker),
            entry: RwLock::new(Arc::clone(e)),
            slow_ms: AtomicU64::new(e.opts.breaker.slow_call_ms),
            side: Mutex::new(Side { budget, history }),
        }
    }

    /// Takes a reloaded policy's settings; state stays.
    pub(crate) fn adopt(&self, e: &Arc<Entry>) {
        self.breaker.reconfigure(&e.opts.breaker);
        self.slow_ms
            .store(e.opts.breaker.slow_call_ms, Ordering::Relaxed);
        {
            let mut side = self.side();
            side.budget.reconfigure(&e.opts.budget);
            side.history.trim(e.opts.history);
        }
        *self.entry.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(e);
    }

    pub(crate) fn entry(&self) -> Arc<Entry> {
        Arc::clone(&self.entry.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn side(&self) -> std::sync::MutexGuard<'_, Side> {
        self.side.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn save(&self) -> SavedCircuit {
        let side = self.side();
        SavedCircuit {
            id: self.id.clone(),
            policy: self.policy.clone(),
            operation: self.operation.clone(),
            labels: self.labels.clone(),
            breaker: self.breaker.save(),
            budget: side.budget.clone(),
            history: side.history.clone(),
        }
    }

    pub(crate) fn view(&self, now_ms: i64) -> (CircuitView, Option<Transition>) {
        let (breaker, t) = self.breaker.view(now_ms);
        let entry = self.entry();
        let mut side = self.side();
        let budget = side.budget.view(now_ms, &entry.opts.budget);
        (
            CircuitView {
                id: self.id.clone(),
                policy: self.policy.name.clone(),
                operation: self.operation.clone(),
                labels: self.labels.iter().cloned().collect(),
                breaker,
                retry_budget: budget,
                failing_since_ms: side.history.failing_since_ms,
            },
            t,
        )
    }
}
