//! Usage accounting for one quota: a slot per owner (one shared slot when
//! the quota is not per owner), in shards so that checks on different
//! owners never wait on each other.
//!
//! A slot holds the level (what is held now, or what the host measured),
//! the rate ring when the quota measures a rate, the limit checks are held
//! to (set by each evaluation), and the state machine's tracker.
//!
//! Hot path: a check hashes the owner, takes its shard's read lock, and
//! reads atomics; it never allocates. Writes to a slot also happen under the
//! read lock; only the first charge of a new owner and pruning take the
//! write lock, which is why pruning an idle slot can never lose a charge.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::fast::RandomState;

use crate::state::{State, Tracker};
use crate::window::AtomicRing;

/// Shards per quota: enough that 2–16 cores rarely meet on one lock.
const SHARDS: usize = 16;

type Map = HashMap<Box<str>, Slot, RandomState>;

/// What a new slot is made with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Rate ring cells; 0 when the quota is not a rate.
    pub(crate) rate_span: usize,
    /// Burst-time ring cells; 0 without a burst allowance.
    pub(crate) burst_span: usize,
    /// The limit checks start at.
    pub(crate) ceiling: u64,
}

/// One owner's usage and state.
pub(crate) struct Slot {
    pub(crate) level: AtomicU64,
    pub(crate) ceiling: AtomicU64,
    pub(crate) rate: Option<AtomicRing>,
    tracker: Mutex<Tracker>,
}

impl Slot {
    fn new(shape: Shape) -> Slot {
        Slot {
            level: AtomicU64::new(0),
            ceiling: AtomicU64::new(shape.ceiling),
            rate: (shape.rate_span > 0).then(|| AtomicRing::new(shape.rate_span)),
            tracker: Mutex::new(Tracker::new(shape.burst_span)),
        }
    }

    /// Returns usage at bucket `key`: the rate's sum, else the level.
    #[inline]
    pub(crate) fn usage(&self, key: i64) -> u64 {
        match &self.rate {
            Some(r) => r.sum(key),
            None => self.level.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(&self, key: i64, amount: u64) {
        match &self.rate {
            Some(r) => r.add(key, amount),
            None => {
                self.level.fetch_add(amount, Ordering::Relaxed);
            }
        }
    }

    /// Takes `amount` off the level, never below zero.
    pub(crate) fn sub(&self, amount: u64) {
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .level
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(amount))
            });
    }

    pub(crate) fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns true if and only if the slot holds nothing worth keeping.
    fn idle(&self, key: i64) -> bool {
        let t = self.tracker();
        self.level.load(Ordering::Relaxed) == 0
            && self.rate.as_ref().is_none_or(|r| r.sum(key) == 0)
            && t.state == State::Ok
            && t.burst_used.sum(key) == 0
    }
}

/// The slots of one quota.
pub(crate) struct Ledger {
    shards: Box<[RwLock<Map>]>,
    hasher: RandomState,
    shape: Shape,
}

impl Ledger {
    pub(crate) fn new(shape: Shape) -> Ledger {
        Ledger {
            shards: (0..SHARDS).map(|_| RwLock::new(Map::default())).collect(),
            hasher: RandomState::default(),
            shape,
        }
    }

    #[inline]
    fn shard(&self, owner: &str) -> &RwLock<Map> {
        // Seeded per process, as the maps are: owners are names applications
        // choose, so fixed seeds would let one crowd a single shard.
        let h = self.hasher.hash_one(owner);
        &self.shards[(h >> 60) as usize % SHARDS]
    }

    fn read(lock: &RwLock<Map>) -> RwLockReadGuard<'_, Map> {
        lock.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(lock: &RwLock<Map>) -> RwLockWriteGuard<'_, Map> {
        lock.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on `owner`'s slot, if it has one.
    #[inline]
    pub(crate) fn with<R>(&self, owner: &str, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        Self::read(self.shard(owner)).get(owner).map(f)
    }

    /// Runs `f` on `owner`'s slot, making it first if need be.
    pub(crate) fn with_new<R>(&self, owner: &str, f: impl FnOnce(&Slot) -> R) -> R {
        let shard = self.shard(owner);
        if let Some(slot) = Self::read(shard).get(owner) {
            return f(slot);
        }
        let mut map = Self::write(shard);
        let slot = map
            .entry(owner.into())
            .or_insert_with(|| Slot::new(self.shape));
        f(slot)
    }

    /// Runs `f` on every slot, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &Slot)) {
        for shard in self.shards.iter() {
            for (owner, slot) in Self::read(shard).iter() {
                f(owner, slot);
            }
        }
    }

    /// Drops the slots that hold nothing at bucket `key`, so owners that
    /// come and go do not accumulate.
    pub(crate) fn prune(&self, key: i64) {
        for shard in self.shards.iter() {
            Self::write(shard).retain(|_, s| !s.idle(key));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::read(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(rate_span: usize) -> Shape {
        Shape {
            rate_span,
            burst_span: 0,
            ceiling: 10,
        }
    }

    #[test]
    fn levels_add_and_subtract_per_owner_never_below_zero() {
        let l = Ledger::new(shape(0));
        l.with_new("a", |s| s.add(0, 5));
        l.with_new("a", |s| s.add(0, 2));
        l.with_new("b", |s| s.add(0, 1));
        l.with_new("a", |s| s.sub(3));
        assert_eq!(l.with("a", |s| s.usage(0)), Some(4));
        l.with_new("b", |s| s.sub(9));
        assert_eq!(l.with("b", |s| s.usage(0)), Some(0));
        assert_eq!(l.with("c", |s| s.usage(0)), None);
        assert_eq!(l.with("a", |s| s.ceiling.load(Ordering::Relaxed)), Some(10));
    }

    #[test]
    fn rates_count_what_was_added_within_the_window() {
        let l = Ledger::new(shape(4));
        l.with_new("a", |s| s.add(0, 5));
        l.with_new("a", |s| s.add(2, 1));
        assert_eq!(l.with("a", |s| s.usage(3)), Some(6));
        assert_eq!(l.with("a", |s| s.usage(4)), Some(1));
    }

    #[test]
    fn pruning_drops_only_idle_slots() {
        let l = Ledger::new(shape(0));
        for i in 0..100 {
            l.with_new(&format!("o{i}"), |s| s.add(0, u64::from(i % 2 == 0)));
        }
        l.with_new("o1", |s| s.tracker().state = State::Soft);
        assert_eq!(l.len(), 100);
        l.prune(0);
        assert_eq!(l.len(), 51);
        assert!(l.with("o1", |_| ()).is_some());
        assert!(l.with("o3", |_| ()).is_none());
        let mut seen = 0;
        l.for_each(|_, _| seen += 1);
        assert_eq!(seen, 51);
    }
}
