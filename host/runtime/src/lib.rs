//! # warden-runtime
//!
//! Running policies: the scheduler that evaluates each live policy on its
//! trigger, the runtime state that outlives reloads (alert states among it),
//! the candidates a cleanup policy is shown and the executor that carries out
//! its plan, the dispatcher that hands alerts to receivers, and memory
//! pressure.
//!
//! Layering: the decisions-to-effects layer. It depends on every layer below
//! (`warden-core`, `-plugin-host`, `-metrics`, `-resources`, `-notify`,
//! `-policy`) and must never depend on the API or the binary, which drive it.

#![deny(missing_docs)]

pub mod alerts;
pub mod cleanup;
pub mod dispatch;
pub mod gate;
mod history;
pub mod pressure;
pub mod scheduler;
pub mod sources;
pub mod state;

pub use scheduler::Scheduler;
pub use state::{PolicyState, StateKey, StateStore};
