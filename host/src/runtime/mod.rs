//! Running policies: the scheduler that evaluates each live policy on its
//! trigger, the runtime state that outlives reloads (alert states among it),
//! and the candidates a cleanup policy is shown.

pub mod alerts;
pub mod candidates;
pub mod cleanup;
pub mod notify;
pub mod pressure;
pub mod registered;
pub mod scheduler;
pub mod state;

pub use scheduler::Scheduler;
pub use state::{PolicyState, StateKey, StateStore};
