//! # warden-runtime
//!
//! Running policies: the scheduler that evaluates each live policy on its
//! trigger, the runtime state that outlives reloads (alert states among it),
//! plugins' own state (the `state` import, persisted per policy),
//! the candidates a cleanup policy is shown and the executor that carries out
//! its plan, the findings detector policies report, the dispatcher that hands
//! alerts and findings to receivers, memory pressure, recovery (circuit
//! breakers, retry budgets and decisions for the failures services report),
//! and `replay`: policies run over recorded series in simulated time.
//!
//! Layering: the decisions-to-effects layer. It depends on every layer below
//! (`warden-core`, `-plugin-host`, `-metrics`, `-resources`, `-notify`,
//! `-policy`, `-quotas`) and must never depend on the API or the binary, which drive it.

#![deny(missing_docs)]

pub mod alerts;
pub mod analytics;
pub mod cleanup;
mod crossing;
pub mod dispatch;
pub mod findings;
pub mod gate;
mod history;
mod plugin_state;
pub mod pressure;
pub mod quotas;
pub mod recovery;
pub mod replay;
pub mod scheduler;
pub mod sources;
pub mod state;

pub use scheduler::Scheduler;
pub use state::{PolicyState, StateKey, StateStore};
