//! # warden-runtime
//!
//! Running policies: the scheduler that evaluates each live policy on its
//! trigger, the runtime state that outlives reloads (alert states among it),
//! plugins' own state (the `state` import, persisted per policy),
//! the candidates a cleanup policy is shown and the executor that carries out
//! its plan, the dispatcher that hands alerts to receivers, memory
//! pressure, and recovery (circuit breakers, retry budgets and decisions
//! for the failures services report).
//!
//! Layering: the decisions-to-effects layer. It depends on every layer below
//! (`warden-core`, `-plugin-host`, `-metrics`, `-resources`, `-notify`,
//! `-policy`) and must never depend on the API or the binary, which drive it.

#![deny(missing_docs)]

pub mod alerts;
pub mod cleanup;
mod crossing;
pub mod dispatch;
pub mod gate;
mod history;
mod plugin_state;
pub mod pressure;
pub mod recovery;
pub mod scheduler;
pub mod sources;
pub mod state;

pub use scheduler::Scheduler;
pub use state::{PolicyState, StateKey, StateStore};
