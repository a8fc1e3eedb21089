//! Durable state: a snapshot of usage, states and violations, keyed by each
//! quota's name and carrying its definition, so that state survives a
//! restart or a reload with changed definitions.
//!
//! What a restore keeps, quota by quota (name to name):
//! - a quota no longer defined: dropped, with its violation history;
//! - a different `measure` or `scope` (matchers or `per_owner`): usage and
//!   states dropped — they counted other things, or in another unit; its
//!   closed violations stay, as history;
//! - a different `period`: rate buckets and burst time dropped (their keys
//!   mean other windows); levels, states and violations kept;
//! - different limits or actions only: everything kept. The next
//!   evaluation judges the kept state against the new limits, with the usual
//!   hysteresis, and reports what follows (a raised hard limit clears a
//!   `hard` state with `deny-off` and `resolved`).
//!
//! Levels of registered resources are restored as they were saved. A host
//! that recounts them from its registry on start should [`Quotas::set`] the
//! recount after restoring, not charge it on top.

use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

use crate::engine::Quotas;
use crate::limits::QuotaDef;
use crate::report::Violation;
use crate::state::{Open, State};
use crate::{Error, TimestampMs};

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything a restart needs; serialise with [`Snapshot::to_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    taken_ms: TimestampMs,
    quotas: Vec<QuotaSnapshot>,
    /// Closed violations, oldest first.
    violations: Vec<Violation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QuotaSnapshot {
    def: QuotaDef,
    owners: Vec<OwnerSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OwnerSnapshot {
    owner: String,
    level: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rate: Vec<(i64, u64)>,
    state: State,
    since_ms: TimestampMs,
    soft_since_ms: Option<TimestampMs>,
    last_eval_ms: Option<TimestampMs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    burst_used: Vec<(i64, u64)>,
    open: Option<Open>,
}

/// What a restore did with one saved quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// Kept whole; the definition is unchanged.
    Kept,
    /// Kept; the limits or actions changed and apply from the next evaluation.
    LimitsChanged,
    /// Levels and states kept; rate buckets and burst time dropped.
    PeriodChanged,
    /// Usage and states dropped: the measure or scope changed.
    UsageDropped,
    /// Dropped: no quota has this name any more.
    Removed,
}

impl Snapshot {
    /// Returns the snapshot as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot is plain data")
    }

    /// Reads a snapshot written by [`Snapshot::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Snapshot, Error> {
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| Error::Snapshot {
            reason: e.to_string(),
        })?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(Error::Snapshot {
                reason: format!(
                    "it is format version {}; this build reads version {SNAPSHOT_VERSION}",
                    snap.version
                ),
            });
        }
        Ok(snap)
    }

    /// Returns when it was taken.
    pub fn taken_ms(&self) -> TimestampMs {
        self.taken_ms
    }
}

impl Quotas {
    /// Returns the usage, states and violations of every quota at `now`.
    pub fn snapshot(&self, now: TimestampMs) -> Snapshot {
        let quotas = self
            .quotas
            .iter()
            .map(|q| {
                let key = q.key(now);
                let mut owners = Vec::new();
                q.ledger.for_each(|owner, slot| {
                    let t = slot.tracker();
                    owners.push(OwnerSnapshot {
                        owner: owner.to_owned(),
                        level: slot.level.load(Ordering::Relaxed),
                        rate: slot.rate().map_or_else(Vec::new, |r| r.export(key)),
                        state: t.state,
                        since_ms: t.since_ms,
                        soft_since_ms: t.soft_since,
                        last_eval_ms: t.last_eval,
                        burst_used: t.burst_used.export(key),
                        open: t.open.clone(),
                    });
                });
                // Sorted so that equal states give equal files.
                owners.sort_by(|a, b| a.owner.cmp(&b.owner));
                QuotaSnapshot {
                    def: q.def.clone(),
                    owners,
                }
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            taken_ms: now,
            quotas,
            violations: self.history().iter().cloned().collect(),
        }
    }

    /// Restores `snap` into this engine, by the rules in the [module
    /// docs](crate::persist), and returns what became of each saved quota.
    /// Meant for a fresh engine: restored owners replace what it holds.
    pub fn restore(&self, snap: &Snapshot, now: TimestampMs) -> Vec<(String, Restored)> {
        let mut report = Vec::new();
        for saved in &snap.quotas {
            let name = saved.def.name.clone();
            let Some(id) = self.id(&name) else {
                report.push((name, Restored::Removed));
                continue;
            };
            let q = &self.quotas[id.0];
            let (old, new) = (&saved.def, &q.def);
            let outcome = if old.measure != new.measure || old.scope != new.scope {
                Restored::UsageDropped
            } else if old.period != new.period {
                Restored::PeriodChanged
            } else if old != new {
                Restored::LimitsChanged
            } else {
                Restored::Kept
            };
            if outcome != Restored::UsageDropped {
                let windows = outcome != Restored::PeriodChanged;
                let key = q.key(now);
                for o in &saved.owners {
                    q.ledger.with_new(&o.owner, |slot| {
                        slot.level.store(o.level, Ordering::Relaxed);
                        let mut t = slot.tracker();
                        if windows {
                            slot.import_rate(&o.rate);
                            t.burst_used.import(&o.burst_used);
                        }
                        t.state = o.state;
                        t.since_ms = o.since_ms;
                        t.soft_since = o.soft_since_ms;
                        t.last_eval = o.last_eval_ms;
                        t.open.clone_from(&o.open);
                        slot.publish(&t, &q.th, key);
                    });
                }
            }
            report.push((name, outcome));
        }
        let history = snap
            .violations
            .iter()
            .filter(|v| self.id(&v.quota).is_some())
            .cloned()
            .collect();
        self.record(history);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Action, Amount, Limits, Measure, Unit};
    use crate::period::Period;
    use crate::scope::{Scope, Subject};
    use crate::state::EventKind;

    fn defs() -> Vec<QuotaDef> {
        let limits = Limits {
            hard: Some(10),
            hysteresis: 0.0,
            ..Limits::default()
        };
        let per_owner = Scope {
            matchers: vec![],
            per_owner: true,
        };
        let held = QuotaDef {
            scope: per_owner.clone(),
            actions: vec![Action::Deny],
            ..QuotaDef::new("held", Measure::Level(Unit::Count), limits.clone())
        };
        let rate = QuotaDef {
            scope: per_owner,
            actions: vec![Action::Deny],
            period: Some(Period::Daily),
            ..QuotaDef::new("rate", Measure::Rate(Unit::Bytes), limits)
        };
        vec![held, rate]
    }

    /// An engine with `a` over both quotas (`hard`), `b` within them, and
    /// one violation of `c` closed.
    fn busy() -> Quotas {
        let q = Quotas::new(defs()).unwrap();
        let (a, b) = (Subject::new("a", "k"), Subject::new("b", "k"));
        q.charge(
            &a,
            Amount {
                count: 20,
                bytes: 20,
            },
            0,
        );
        q.charge(&b, Amount { count: 3, bytes: 4 }, 0);
        q.evaluate(0);
        let held = q.id("held").unwrap();
        q.set(held, "c", 20);
        q.evaluate(1);
        q.set(held, "c", 0);
        q.evaluate(2);
        q
    }

    fn through_json(q: &Quotas, now: TimestampMs) -> Snapshot {
        Snapshot::from_json(&q.snapshot(now).to_json()).unwrap()
    }

    #[test]
    fn usage_states_and_violations_survive_a_restart() {
        let before = busy();
        let snap = through_json(&before, 5);
        let after = Quotas::new(defs()).unwrap();
        let report = after.restore(&snap, 5);
        assert_eq!(
            report,
            vec![
                ("held".into(), Restored::Kept),
                ("rate".into(), Restored::Kept)
            ]
        );
        assert_eq!(after.status(5), before.status(5));
        assert_eq!(after.violations(), before.violations());
        assert_eq!(after.snapshot(5), before.snapshot(5));
        // The state was kept, so `a` staying over does not deny "on" twice.
        assert!(after.evaluate(6).is_empty());
        let id = after.id("rate").unwrap();
        assert!(!after.check_quota(id, "a", Amount::bytes(1), 6).is_allow());
    }

    #[test]
    fn changed_limits_keep_state_and_apply_at_the_next_evaluation() {
        let snap = through_json(&busy(), 5);
        let mut d = defs();
        d[0].limits.hard = Some(100);
        let after = Quotas::new(d).unwrap();
        assert_eq!(after.restore(&snap, 5)[0].1, Restored::LimitsChanged);
        let events = after.evaluate(6);
        let held: Vec<_> = events
            .iter()
            .filter(|e| e.quota == "held")
            .map(|e| &e.kind)
            .collect();
        assert_eq!(held, vec![&EventKind::DenyOff, &EventKind::Resolved]);
    }

    #[test]
    fn a_changed_scope_or_measure_drops_usage_but_keeps_history() {
        let snap = through_json(&busy(), 5);
        let mut d = defs();
        d[0].scope.per_owner = false;
        d[1].measure = Measure::Rate(Unit::Count);
        let after = Quotas::new(d).unwrap();
        let outcomes: Vec<_> = after.restore(&snap, 5).into_iter().map(|r| r.1).collect();
        assert_eq!(
            outcomes,
            vec![Restored::UsageDropped, Restored::UsageDropped]
        );
        assert!(after.status(5).iter().all(|s| s.usage == 0));
        let v = after.violations();
        assert_eq!((v.len(), v[0].owner.as_str()), (1, "c"));
    }

    #[test]
    fn a_changed_period_drops_rate_buckets_but_keeps_levels() {
        let snap = through_json(&busy(), 5);
        let mut d = defs();
        d[1].period = Some(Period::Hourly);
        let after = Quotas::new(d).unwrap();
        assert_eq!(after.restore(&snap, 5)[1].1, Restored::PeriodChanged);
        assert_eq!(after.usage(after.id("rate").unwrap(), "a", 5), 0);
        assert_eq!(after.usage(after.id("held").unwrap(), "a", 5), 20);
        assert_eq!(after.usage(after.id("held").unwrap(), "b", 5), 3);
    }

    #[test]
    fn a_removed_quota_is_dropped_with_its_history() {
        let snap = through_json(&busy(), 5);
        let after = Quotas::new(defs().split_off(1)).unwrap();
        let report = after.restore(&snap, 5);
        assert_eq!(report[0], ("held".into(), Restored::Removed));
        assert!(after.violations().iter().all(|v| v.quota == "rate"));
    }

    #[test]
    fn unreadable_snapshots_say_why() {
        let e = Snapshot::from_json(b"{").unwrap_err();
        assert!(matches!(e, Error::Snapshot { .. }));
        let mut json: serde_json::Value =
            serde_json::from_slice(&busy().snapshot(0).to_json()).unwrap();
        json["version"] = 2.into();
        let e = Snapshot::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(
            e.to_string()
                .contains("format version 2; this build reads version 1"),
            "{e}"
        );
    }
}
