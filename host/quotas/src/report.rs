//! What the engine reports: decisions, events, violations and status.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::TimestampMs;
use crate::state::{EventKind, State};

/// The answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'q> {
    /// Within every quota that applies.
    Allow,
    /// `requested` on top of `usage` would exceed `limit` of `quota`.
    Deny {
        /// The quota's name.
        quota: &'q str,
        /// The limit in force: `burst` while the burst allowance lasts,
        /// else `hard`.
        limit: u64,
        /// Usage now.
        usage: u64,
        /// The amount asked for, in the quota's unit.
        requested: u64,
    },
}

impl Decision<'_> {
    /// Returns true if and only if the decision allows.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl Decision<'_> {
    /// Returns the denial as an owned value, to travel in an error.
    pub fn denial(&self) -> Option<Denial> {
        match *self {
            Decision::Allow => None,
            Decision::Deny {
                quota,
                limit,
                usage,
                requested,
            } => Some(Denial {
                quota: quota.to_owned(),
                limit,
                usage,
                requested,
            }),
        }
    }
}

/// A denial that outlives the engine it came from: what a refused
/// registration's error carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The quota's name.
    pub quota: String,
    /// The limit in force.
    pub limit: u64,
    /// Usage now.
    pub usage: u64,
    /// The amount asked for, in the quota's unit.
    pub requested: u64,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Decision::Deny {
            quota: &self.quota,
            limit: self.limit,
            usage: self.usage,
            requested: self.requested,
        }
        .fmt(f)
    }
}

/// Reads as the reason of a refusal, for a 429 body or a log line.
impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allowed"),
            Decision::Deny {
                quota,
                limit,
                usage,
                requested,
            } => write!(
                f,
                "quota `{quota}` is full: {usage} used + {requested} requested would exceed its limit of {limit}"
            ),
        }
    }
}

/// A change of state and what it sets off, for the runtime to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaEvent {
    /// The quota's name.
    pub quota: String,
    /// The owner; empty when the quota is shared by all it covers.
    pub owner: String,
    /// When it was evaluated.
    pub at_ms: TimestampMs,
    /// The state before.
    pub from: State,
    /// The state now.
    pub to: State,
    /// Usage that caused it.
    pub usage: u64,
    /// What to do.
    pub kind: EventKind,
}

/// A time usage spent warned or worse, from the first warning to the
/// evaluation that found it back within limits (or a reset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The quota's name.
    pub quota: String,
    /// The owner; empty when the quota is shared.
    pub owner: String,
    /// The worst state reached: `soft`, `burst` or `hard`.
    pub worst: State,
    /// The limit whose crossing made it that worst state.
    pub limit: u64,
    /// The highest usage seen by an evaluation.
    pub peak: u64,
    /// When it began.
    pub started_ms: TimestampMs,
    /// When it ended; open while absent.
    pub ended_ms: Option<TimestampMs>,
}

/// Usage against limits for one (quota, owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// The quota's name.
    pub quota: String,
    /// The owner; empty when the quota is shared.
    pub owner: String,
    /// Usage now.
    pub usage: u64,
    /// The soft limit.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
    /// The burst limit.
    pub burst: Option<u64>,
    /// The limit checks hold usage to now (absent when nothing is denied
    /// or there is no hard limit).
    pub limit_in_force: Option<u64>,
    /// The state at the last evaluation.
    pub state: State,
    /// Since when.
    pub since_ms: TimestampMs,
    /// When a calendar period next starts again.
    pub next_reset_ms: Option<TimestampMs>,
}

/// One quota's aggregates, for reports and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSummary {
    /// The quota's name.
    pub quota: String,
    /// Owners with a slot (1 for a shared quota once used).
    pub owners: u64,
    /// Usage summed over owners.
    pub total: u64,
    /// The largest usage of one owner.
    pub max: u64,
    /// Owners in each [`State`], in its order (`ok` first).
    pub by_state: [u64; 5],
    /// The owners with the most usage, largest first.
    pub top: Vec<(String, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_reads_with_its_quota_limit_and_usage() {
        let d = Decision::Deny {
            quota: "uploads",
            limit: 100,
            usage: 95,
            requested: 10,
        };
        assert_eq!(
            d.to_string(),
            "quota `uploads` is full: 95 used + 10 requested would exceed its limit of 100"
        );
        assert!(!d.is_allow());
        assert!(Decision::Allow.is_allow());
    }
}
