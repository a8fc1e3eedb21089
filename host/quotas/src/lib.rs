//! # warden-quotas
//!
//! Quotas the host enforces (issue 17): usage measured per quota and owner,
//! soft, hard and burst limits with grace and hysteresis, rolling and
//! calendar periods, the actions crossing a limit sets off (warn, deny,
//! cleanup), a violation history, and a snapshot that carries all of it
//! across restarts and reloads.
//!
//! ```
//! use warden_quotas::{Action, Amount, Decision, Limits, Measure, QuotaDef, Quotas, Subject, Unit};
//!
//! let mut files = QuotaDef::new(
//!     "temp-files",
//!     Measure::Level(Unit::Count),
//!     Limits { soft: Some(80), hard: Some(100), ..Limits::default() },
//! );
//! files.scope.per_owner = true;
//! files.actions = vec![Action::Deny];
//! let quotas = Quotas::new(vec![files]).unwrap();
//!
//! let alice = Subject::new("alice", "temp-file");
//! let now = 0;
//! assert!(quotas.admit(&alice, Amount::one(4096), now).is_allow());
//! assert!(matches!(
//!     quotas.check(&alice, Amount::count(100), now),
//!     Decision::Deny { quota: "temp-files", limit: 100, usage: 1, requested: 100 }
//! ));
//! // The daemon evaluates on an interval and acts on the events.
//! assert!(quotas.evaluate(now).is_empty());
//! ```
//!
//! Key types:
//! - [`QuotaDef`] with its [`Scope`], [`Measure`], [`Limits`], [`Period`]
//!   and [`Action`]s; [`QuotaDef::validate`] names the field at fault.
//! - [`Quotas`], the engine: [`Quotas::check`] and [`Quotas::check_quota`]
//!   on the hot path (no allocation, sharded read locks, atomics),
//!   [`Quotas::charge`] / [`Quotas::release`] / [`Quotas::set`] to keep
//!   usage, [`Quotas::evaluate`] for the state machine ([`State`]) and its
//!   [`QuotaEvent`]s, [`Quotas::reset`], [`Quotas::status`],
//!   [`Quotas::violations`].
//! - [`Snapshot`]: [`Quotas::snapshot`] and [`Quotas::restore`], whose rules
//!   for changed definitions are in [`persist`].
//!
//! Times are milliseconds since the Unix epoch, as
//! `warden_core::clock::now_ms` gives them; every call takes the time, so
//! tests drive a clock of their own. Layering: depends on no other Warden
//! crate; the runtime owns the engine, the API and registry call it.
//!
//! No Cargo features.

#![deny(missing_docs)]

mod engine;
mod error;
mod ledger;
mod limits;
mod period;
pub mod persist;
mod report;
mod scope;
mod state;
mod window;

pub use engine::{DEFAULT_HISTORY, QuotaId, Quotas};
pub use error::Error;
pub use limits::{Action, Amount, DEFAULT_HYSTERESIS, Limits, Measure, QuotaDef, Unit};
pub use period::{Period, ROLLING_BUCKETS};
pub use persist::{Restored, SNAPSHOT_VERSION, Snapshot};
pub use report::{Decision, Denial, QuotaEvent, QuotaStatus, QuotaSummary, Violation};
pub use scope::{Field, Labels, Matcher, Op, Scope, Subject};
pub use state::{EventKind, State};

/// Milliseconds since the Unix epoch (the unit of `warden_core`'s
/// `TimestampMs`).
pub type TimestampMs = i64;
