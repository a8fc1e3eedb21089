//! Warm instances (WIT 0.2.0): one instance per policy, initialized once with
//! the policy's config and kept across evaluations, and when it is replaced.
//!
//! What a plugin may assume across evaluations of a warm instance: its linear
//! memory, globals and statics persist (what `init` built, caches it keeps),
//! and `init` ran exactly once before the first call with the config it is
//! evaluated under. What it may not assume: that it is the same instance as
//! last time (it is replaced after a trap, timeout or memory-limit hit, when
//! the policy's config or plugin changes, and after `recycle_after`
//! evaluations), that evaluations alternate with nothing else (two evaluations
//! of one policy at once run in two instances), or that anything in memory
//! survives a reload or a restart. What must survive goes through the `state`
//! import, which the host keeps.
//!
//! What that costs in isolation: an evaluation can observe what earlier
//! evaluations of the same policy left in memory — the inputs it was shown
//! (candidates, series, failures) and anything derived from them — and a
//! plugin bug that corrupts memory without trapping carries over to later
//! calls. It never sees another policy's memory: each policy has its own
//! instance. Recycling bounds the carry-over to `recycle_after` evaluations;
//! `isolation: fresh` removes it, at the price of an instantiation and an
//! `init` per evaluation.

use wasmtime::Store;

use super::store::StoreState;
use super::wit;

/// Evaluations a warm instance serves before it is replaced, unless the
/// policy says otherwise: at a 30 s interval, about eight hours, so whatever
/// a plugin accumulates in memory is bounded, while the cost of the fresh
/// `init` is paid once in a thousand evaluations.
pub const DEFAULT_RECYCLE_AFTER: u32 = 1000;

/// How evaluations of a policy get their instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// One instance kept across evaluations, replaced after a trap, a
    /// timeout, a memory-limit hit, or `recycle_after` evaluations. Plugins
    /// built against WIT 0.1.0 are always evaluated fresh: that contract
    /// promised a fresh instance per call.
    Warm {
        /// Evaluations one instance serves before it is replaced.
        recycle_after: u32,
    },
    /// A fresh store and instance, and `init`, for every evaluation.
    Fresh,
}

impl Default for Isolation {
    fn default() -> Self {
        Isolation::Warm {
            recycle_after: DEFAULT_RECYCLE_AFTER,
        }
    }
}

/// An initialized instance and its store.
pub(crate) struct Warm {
    pub(crate) store: Store<StoreState>,
    pub(crate) instance: wit::Instance,
    /// Evaluations it has served.
    pub(crate) served: u32,
}

/// Why an instance is not kept after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recycle {
    /// The call trapped, timed out or failed inside wasmtime: the store is
    /// poisoned.
    Trapped,
    /// The plugin hit its memory limit.
    MemoryLimit,
    /// It served its `recycle_after` evaluations.
    Served,
    /// The policy is evaluated fresh, or its plugin's contract asks for it.
    Fresh,
}

impl Recycle {
    /// Returns a short stable name for logs.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Recycle::Trapped => "trapped",
            Recycle::MemoryLimit => "memory_limit",
            Recycle::Served => "served_recycle_after",
            Recycle::Fresh => "fresh",
        }
    }
}
