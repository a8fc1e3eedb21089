//! The quota engine: the compiled set of quotas, checks on the hot path,
//! charges and releases that keep usage, and the evaluation that runs every
//! (quota, owner) through the state machine.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use crate::ledger::{Ledger, Shape};
use crate::limits::{Amount, Measure, QuotaDef, Unit};
use crate::report::{Decision, QuotaEvent, QuotaStatus, QuotaSummary, Violation};
use crate::scope::Subject;
use crate::state::{self, EventKind, Open, State, Thresholds, Tracker};
use crate::{Error, TimestampMs};

/// How many closed violations are kept when none is said: enough for the
/// API's history at 1 KB or less each.
pub const DEFAULT_HISTORY: usize = 1_000;

/// A quota's place in the engine, for checks by name without hashing it on
/// every call ([`Quotas::id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaId(pub(crate) usize);

/// A definition made ready to enforce.
pub(crate) struct Compiled {
    pub(crate) def: QuotaDef,
    pub(crate) unit: Unit,
    pub(crate) th: Thresholds,
    pub(crate) ledger: Ledger,
    denies: bool,
}

impl Compiled {
    fn new(def: QuotaDef) -> Compiled {
        let th = Thresholds::new(&def.limits);
        let span = def.period.map_or(0, |p| p.span());
        let shape = Shape {
            rate_span: if matches!(def.measure, Measure::Rate(_)) {
                span
            } else {
                0
            },
            burst_span: if def.limits.burst.is_some() { span } else { 0 },
            ceiling: th.first_ceiling(),
        };
        Compiled {
            unit: def.measure.unit(),
            denies: def.denies(),
            ledger: Ledger::new(shape),
            th,
            def,
        }
    }

    /// Returns the bucket key of `now` in the quota's period.
    #[inline]
    pub(crate) fn key(&self, now: TimestampMs) -> i64 {
        self.def.period.map_or(0, |p| p.key(now))
    }

    /// Returns the slot name of `owner`: itself, or the one shared slot.
    #[inline]
    fn owner<'a>(&self, owner: &'a str) -> &'a str {
        if self.def.scope.per_owner { owner } else { "" }
    }

    #[inline]
    fn check(&self, owner: &str, amount: Amount, now: TimestampMs) -> Decision<'_> {
        let requested = amount.of(self.unit);
        let span = self.ledger.rate_span();
        let (usage, limit) = self
            .ledger
            .with(self.owner(owner), |s| {
                let limit = s.ceiling.load(Ordering::Relaxed);
                // Exact only when over what fits: an allowance needs no
                // more than a bound, which a rate keeps in the slot itself.
                let fits = limit.saturating_sub(requested);
                (s.usage_within(self.key(now), span, fits), limit)
            })
            .unwrap_or((0, self.th.first_ceiling()));
        if usage.saturating_add(requested) > limit {
            Decision::Deny {
                quota: &self.def.name,
                limit,
                usage,
                requested,
            }
        } else {
            Decision::Allow
        }
    }

    pub(crate) fn violation(
        &self,
        owner: &str,
        open: &Open,
        ended_ms: Option<TimestampMs>,
    ) -> Violation {
        Violation {
            quota: self.def.name.clone(),
            owner: owner.to_owned(),
            worst: open.worst,
            limit: self.th.limit_of(open.worst),
            peak: open.peak,
            started_ms: open.started_ms,
            ended_ms,
        }
    }

    fn event(
        &self,
        owner: &str,
        now: TimestampMs,
        from: State,
        to: State,
        usage: u64,
        kind: EventKind,
    ) -> QuotaEvent {
        QuotaEvent {
            quota: self.def.name.clone(),
            owner: owner.to_owned(),
            at_ms: now,
            from,
            to,
            usage,
            kind,
        }
    }
}

/// The quotas in force, their usage and their state. Shared between
/// threads behind an `Arc`: every method takes `&self`.
pub struct Quotas {
    pub(crate) quotas: Vec<Compiled>,
    by_name: HashMap<String, usize>,
    /// Quotas with a `deny` action: the only ones a check reads.
    denying: Vec<usize>,
    history: Mutex<VecDeque<Violation>>,
    history_cap: usize,
}

const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Quotas>();
};

impl Quotas {
    /// Returns an engine enforcing `defs`, after validating each.
    pub fn new(defs: Vec<QuotaDef>) -> Result<Quotas, Error> {
        let mut by_name = HashMap::new();
        for (i, d) in defs.iter().enumerate() {
            d.validate()?;
            if by_name.insert(d.name.clone(), i).is_some() {
                return Err(Error::Duplicate {
                    quota: d.name.clone(),
                });
            }
        }
        let quotas: Vec<Compiled> = defs.into_iter().map(Compiled::new).collect();
        let denying = (0..quotas.len()).filter(|&i| quotas[i].denies).collect();
        Ok(Quotas {
            quotas,
            by_name,
            denying,
            history: Mutex::new(VecDeque::new()),
            history_cap: DEFAULT_HISTORY,
        })
    }

    /// Returns the engine keeping at most `cap` closed violations.
    pub fn with_history(mut self, cap: usize) -> Quotas {
        self.history_cap = cap;
        self
    }

    /// Returns the id of the quota named `name`.
    pub fn id(&self, name: &str) -> Option<QuotaId> {
        self.by_name.get(name).copied().map(QuotaId)
    }

    /// Returns the definitions, in the order given.
    pub fn defs(&self) -> impl Iterator<Item = &QuotaDef> {
        self.quotas.iter().map(|q| &q.def)
    }

    /// Returns whether `amount` more for `owner` fits quota `id`: deny only
    /// if the quota has a `deny` action and usage plus the amount would
    /// exceed the limit in force. For `POST /api/v1/quotas/check`.
    #[inline]
    pub fn check_quota(
        &self,
        id: QuotaId,
        owner: &str,
        amount: Amount,
        now: TimestampMs,
    ) -> Decision<'_> {
        let q = &self.quotas[id.0];
        if q.denies {
            q.check(owner, amount, now)
        } else {
            Decision::Allow
        }
    }

    /// Returns whether `amount` more for `subject` fits every quota whose
    /// scope selects it; a denial names the first, in definition order.
    #[inline]
    pub fn check(&self, subject: &Subject<'_>, amount: Amount, now: TimestampMs) -> Decision<'_> {
        for &i in &self.denying {
            let q = &self.quotas[i];
            if q.def.scope.matches(subject) {
                let d = q.check(subject.owner, amount, now);
                if !d.is_allow() {
                    return d;
                }
            }
        }
        Decision::Allow
    }

    /// Checks, and charges when allowed: a registration's path. Two
    /// admissions racing may both pass the check, so usage can go over by
    /// what is in flight at once; evaluation then reports it.
    pub fn admit(&self, subject: &Subject<'_>, amount: Amount, now: TimestampMs) -> Decision<'_> {
        let d = self.check(subject, amount, now);
        if d.is_allow() {
            self.charge(subject, amount, now);
        }
        d
    }

    /// Adds `amount` to every level and rate quota whose scope selects
    /// `subject`; observed quotas are left to [`Quotas::set`].
    pub fn charge(&self, subject: &Subject<'_>, amount: Amount, now: TimestampMs) {
        self.add_where(subject, amount, now, |m| !matches!(m, Measure::Observed(_)));
    }

    /// Adds `amount` to every quota whose measure passes `counts` and whose
    /// scope selects `subject`.
    fn add_where(
        &self,
        subject: &Subject<'_>,
        amount: Amount,
        now: TimestampMs,
        counts: impl Fn(&Measure) -> bool,
    ) {
        for q in &self.quotas {
            let n = amount.of(q.unit);
            if n == 0 || !counts(&q.def.measure) || !q.def.scope.matches(subject) {
                continue;
            }
            let key = q.key(now);
            q.ledger.with_new(q.owner(subject.owner), |s| s.add(key, n));
        }
    }

    /// Takes `amount` off every level quota whose scope selects `subject`;
    /// a rate keeps what was added within its period.
    pub fn release(&self, subject: &Subject<'_>, amount: Amount) {
        for q in &self.quotas {
            let n = amount.of(q.unit);
            if n == 0
                || !matches!(q.def.measure, Measure::Level(_))
                || !q.def.scope.matches(subject)
            {
                continue;
            }
            q.ledger.with(q.owner(subject.owner), |s| s.sub(n));
        }
    }

    /// Sets `owner`'s usage of quota `id` to `value`: what the host
    /// measured for an observed quota, or a recount of a level from the
    /// registry (after a restart, say). A rate's usage is what was charged,
    /// so setting it has no effect.
    pub fn set(&self, id: QuotaId, owner: &str, value: u64) {
        let q = &self.quotas[id.0];
        if !matches!(q.def.measure, Measure::Rate(_)) {
            q.ledger
                .with_new(q.owner(owner), |s| s.level.store(value, Ordering::Relaxed));
        }
    }

    /// Sets the usage of observed quota `id` to what was just measured:
    /// each owner in `values` to its value, and every other owner it holds
    /// to zero (what it measured stopped reporting), so that their states
    /// resolve. A rate keeps what was charged, as with [`Quotas::set`].
    pub fn observe(&self, id: QuotaId, values: &HashMap<String, u64>) {
        let q = &self.quotas[id.0];
        if matches!(q.def.measure, Measure::Rate(_)) {
            return;
        }
        q.ledger.for_each(|owner, slot| {
            if !values.contains_key(owner) {
                slot.level.store(0, Ordering::Relaxed);
            }
        });
        for (owner, &value) in values {
            q.ledger
                .with_new(q.owner(owner), |s| s.level.store(value, Ordering::Relaxed));
        }
    }

    /// Returns `owner`'s usage of quota `id` at `now`.
    pub fn usage(&self, id: QuotaId, owner: &str, now: TimestampMs) -> u64 {
        let q = &self.quotas[id.0];
        q.ledger
            .with(q.owner(owner), |s| s.usage(q.key(now)))
            .unwrap_or(0)
    }

    /// Runs every (quota, owner) through the state machine at `now`,
    /// updates the limits checks hold usage to, records violations, drops
    /// owners that hold nothing, and returns what changed.
    pub fn evaluate(&self, now: TimestampMs) -> Vec<QuotaEvent> {
        let mut events = Vec::new();
        let mut closed = Vec::new();
        for q in &self.quotas {
            Self::step(q, now, &mut events, &mut closed);
        }
        self.record(closed);
        events
    }

    /// [`Quotas::evaluate`] for quota `id` alone: each quota policy runs on
    /// its own trigger.
    pub fn evaluate_quota(&self, id: QuotaId, now: TimestampMs) -> Vec<QuotaEvent> {
        let mut events = Vec::new();
        let mut closed = Vec::new();
        Self::step(&self.quotas[id.0], now, &mut events, &mut closed);
        self.record(closed);
        events
    }

    fn step(
        q: &Compiled,
        now: TimestampMs,
        events: &mut Vec<QuotaEvent>,
        closed: &mut Vec<Violation>,
    ) {
        let key = q.key(now);
        let quiet = q.th.quiet();
        let span = q.ledger.rate_span();
        let mut idle = false;
        q.ledger.for_each(|owner, slot| {
            // Most owners sit calmly under every limit: nothing can
            // change for them, so neither their tracker nor a rate's ring
            // is read (the bound is in the entry itself).
            let bound = slot.bound(key, span);
            if slot.calm.load(Ordering::Relaxed) && bound <= quiet {
                idle |= bound == 0 && slot.level.load(Ordering::Relaxed) == 0;
                return;
            }
            let usage = slot.usage(key);
            let mut t = slot.tracker();
            let step = t.step(usage, now, &q.th, key);
            slot.publish(&t, &q.th, key);
            for kind in state::events(step.from, step.to, &q.def.actions, usage, &q.th) {
                events.push(q.event(owner, now, step.from, step.to, usage, kind));
            }
            if let Some(open) = step.closed {
                closed.push(q.violation(owner, &open, Some(now)));
            }
            idle |= slot.idle(key);
        });
        // Pruning takes each shard's write lock, so only when it has
        // something to drop.
        if idle {
            q.ledger.prune(key);
        }
    }

    /// Sets every level quota's usage to zero: the start of a recount of
    /// what the registry holds ([`Quotas::add_level`] for each resource),
    /// after a restore (whose levels may be stale) or a reload. Rates and
    /// observed quotas are left alone.
    pub fn zero_levels(&self) {
        for q in &self.quotas {
            if matches!(q.def.measure, Measure::Level(_)) {
                q.ledger
                    .for_each(|_, slot| slot.level.store(0, Ordering::Relaxed));
            }
        }
    }

    /// Adds `amount` to every level quota whose scope selects `subject`,
    /// without a check: one resource of a recount.
    pub fn add_level(&self, subject: &Subject<'_>, amount: Amount, now: TimestampMs) {
        self.add_where(subject, amount, now, |m| matches!(m, Measure::Level(_)));
    }

    /// Starts quota `name` afresh at `now`: rates and burst time go back to
    /// zero and every state to `ok`, closing open violations. Levels and
    /// observed values stay: they are what is held, not what was counted.
    pub fn reset(&self, name: &str, now: TimestampMs) -> Result<Vec<QuotaEvent>, Error> {
        let Some(q) = self.id(name).map(|id| &self.quotas[id.0]) else {
            return Err(Error::Unknown {
                quota: name.to_owned(),
            });
        };
        let mut events = Vec::new();
        let mut closed = Vec::new();
        q.ledger.for_each(|owner, slot| {
            slot.clear_rate();
            let mut t = slot.tracker();
            let from = t.state;
            let usage = slot.usage(q.key(now));
            for kind in state::events(from, State::Ok, &q.def.actions, usage, &q.th) {
                events.push(q.event(owner, now, from, State::Ok, usage, kind));
            }
            if let Some(open) = t.open.take() {
                closed.push(q.violation(owner, &open, Some(now)));
            }
            *t = Tracker::new(q.def.limits.burst.and(q.def.period).map_or(0, |p| p.span()));
            t.since_ms = now;
            slot.publish(&t, &q.th, q.key(now));
        });
        self.record(closed);
        Ok(events)
    }

    /// Returns usage against limits for every (quota, owner) with a slot,
    /// and a zero row for a shared quota nobody has used yet.
    pub fn status(&self, now: TimestampMs) -> Vec<QuotaStatus> {
        let mut out = Vec::new();
        for q in &self.quotas {
            let key = q.key(now);
            let row = |owner: &str, usage: u64, t: &Tracker, ceiling: u64| QuotaStatus {
                quota: q.def.name.clone(),
                owner: owner.to_owned(),
                usage,
                soft: q.th.soft,
                hard: q.th.hard,
                burst: q.th.burst,
                limit_in_force: (q.denies && ceiling != u64::MAX).then_some(ceiling),
                state: t.state,
                since_ms: t.since_ms,
                next_reset_ms: q.def.period.and_then(|p| p.next_reset(now)),
            };
            let before = out.len();
            q.ledger.for_each(|owner, slot| {
                let ceiling = slot.ceiling.load(Ordering::Relaxed);
                out.push(row(owner, slot.usage(key), &slot.tracker(), ceiling));
            });
            // Owner order, whatever the shards' order: stable for people and diffs.
            out[before..].sort_unstable_by(|a, b| a.owner.cmp(&b.owner));
            if out.len() == before && !q.def.scope.per_owner {
                out.push(row("", 0, &Tracker::new(0), q.th.first_ceiling()));
            }
        }
        out
    }

    /// Returns quota `id`'s aggregates at `now` (owners, total and largest
    /// usage, owners per state) and its `top` owners by usage, largest
    /// first: what the runtime reports and exposes as gauges, bounded
    /// whatever the number of owners.
    pub fn summary(&self, id: QuotaId, now: TimestampMs, top: usize) -> QuotaSummary {
        let q = &self.quotas[id.0];
        let key = q.key(now);
        let mut s = QuotaSummary {
            quota: q.def.name.clone(),
            ..QuotaSummary::default()
        };
        // A min-heap of the `top` largest, so the cost stays n·log(top).
        let mut heap = std::collections::BinaryHeap::new();
        q.ledger.for_each(|owner, slot| {
            let usage = slot.usage(key);
            s.owners += 1;
            s.total = s.total.saturating_add(usage);
            s.max = s.max.max(usage);
            let state = if slot.calm.load(Ordering::Relaxed) {
                State::Ok
            } else {
                slot.tracker().state
            };
            s.by_state[state as usize] += 1;
            if top > 0 {
                if heap.len() < top {
                    heap.push(std::cmp::Reverse((usage, owner.to_owned())));
                } else if heap.peek().is_some_and(|m| m.0.0 < usage) {
                    heap.pop();
                    heap.push(std::cmp::Reverse((usage, owner.to_owned())));
                }
            }
        });
        let mut top: Vec<(String, u64)> = heap.into_iter().map(|r| (r.0.1, r.0.0)).collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        s.top = top;
        s
    }

    /// Returns one page of quota `id`'s owners in name order: at most
    /// `limit` rows of owners after `after`, and whether more follow. Costs
    /// one pass over the owners, whatever the page.
    pub fn status_page(
        &self,
        id: QuotaId,
        now: TimestampMs,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<QuotaStatus>, bool) {
        let q = &self.quotas[id.0];
        let mut names: Vec<String> = Vec::new();
        q.ledger.for_each(|owner, _| {
            if after.is_none_or(|a| owner > a) {
                names.push(owner.to_owned());
            }
        });
        let more = names.len() > limit;
        if more {
            names.select_nth_unstable(limit);
            names.truncate(limit);
        }
        names.sort_unstable();
        let key = q.key(now);
        let rows = names
            .iter()
            .filter_map(|owner| {
                q.ledger.with(owner, |slot| {
                    let t = slot.tracker();
                    QuotaStatus {
                        quota: q.def.name.clone(),
                        owner: owner.clone(),
                        usage: slot.usage(key),
                        soft: q.th.soft,
                        hard: q.th.hard,
                        burst: q.th.burst,
                        limit_in_force: {
                            let c = slot.ceiling.load(Ordering::Relaxed);
                            (q.denies && c != u64::MAX).then_some(c)
                        },
                        state: t.state,
                        since_ms: t.since_ms,
                        next_reset_ms: q.def.period.and_then(|p| p.next_reset(now)),
                    }
                })
            })
            .collect();
        (rows, more)
    }

    /// Returns the violations kept, oldest first, then those still open.
    pub fn violations(&self) -> Vec<Violation> {
        let mut out: Vec<Violation> = self.history().iter().cloned().collect();
        for q in &self.quotas {
            let before = out.len();
            q.ledger.for_each(|owner, slot| {
                if let Some(open) = &slot.tracker().open {
                    out.push(q.violation(owner, open, None));
                }
            });
            out[before..].sort_unstable_by(|a, b| a.owner.cmp(&b.owner));
        }
        out
    }

    pub(crate) fn history(&self) -> MutexGuard<'_, VecDeque<Violation>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends closed violations, dropping the oldest beyond the cap.
    pub(crate) fn record(&self, closed: Vec<Violation>) {
        if closed.is_empty() {
            return;
        }
        let mut h = self.history();
        h.extend(closed);
        let excess = h.len().saturating_sub(self.history_cap);
        h.drain(..excess);
    }
}

#[cfg(test)]
mod tests;
