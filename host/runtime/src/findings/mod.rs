//! Findings: what detector policies report, kept as first-class results.
//!
//! A detector plugin says what it finds now; the host keeps each finding's
//! life ([`lifecycle`]: pending → active → resolved, per pattern, subject and
//! labels), its history and its place on disk ([`store`]), tells receivers
//! through the alerts' dispatcher ([`notify`]), publishes `finding-raised`
//! for policies triggered by it (the scheduler does), and shows active
//! findings and predicted exhaustion on `/metrics` ([`expose`]).

pub mod expose;
pub mod lifecycle;
pub mod notify;
pub mod run;
pub mod store;

pub use lifecycle::{Due, FindingId, FindingState, Phase, Rules};
pub use store::{Applied, Filter, FindingEvent, FindingStore, Happened, Listed};
