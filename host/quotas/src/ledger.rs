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

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use foldhash::fast::RandomState;

use crate::state::{State, Thresholds, Tracker};
use crate::window::{AtomicRing, Held};

/// Shards per quota: enough that 2–16 cores rarely meet on one lock.
const SHARDS: usize = 16;

type Map = HashMap<Key, Slot, RandomState>;

/// Owner names up to this long are kept in the map entry itself.
const INLINE: usize = 22;

/// An owner's name as a map key: inline when short, so that a lookup reads
/// the entry's cache line and not a second one for the name (with 100,000
/// owners, each line read is a likely cache miss).
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Key {
    fn new(s: &str) -> Key {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Key::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(s.into())
        }
    }

    #[inline]
    fn as_str(&self) -> &str {
        match self {
            // SAFETY: the bytes were copied whole from a `&str` in `new`, so
            // they are valid UTF-8.
            Key::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            Key::Heap(s) => s,
        }
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Hashed and compared as the `str` it holds, as `Borrow` requires.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key {}

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

/// One owner's usage and state. What checks read sits in the map entry;
/// the rate ring and the tracker are boxed so that entries stay small.
pub(crate) struct Slot {
    pub(crate) level: AtomicU64,
    pub(crate) ceiling: AtomicU64,
    pub(crate) rate: Option<Box<AtomicRing>>,
    /// For a rate: a bound of what its ring holds. Kept here, beside
    /// `calm`, so that an evaluation can pass over a calm owner without
    /// following the pointer to the ring.
    pub(crate) held: Held,
    /// True if and only if the state is `ok` with no burst time in the
    /// period: the ceiling is the first one, and an evaluation with usage
    /// under every limit has nothing to do.
    pub(crate) calm: AtomicBool,
    tracker: Mutex<Box<Tracker>>,
}

impl Slot {
    fn new(shape: Shape) -> Slot {
        Slot {
            level: AtomicU64::new(0),
            ceiling: AtomicU64::new(shape.ceiling),
            rate: (shape.rate_span > 0).then(|| Box::new(AtomicRing::new(shape.rate_span))),
            held: Held::default(),
            calm: AtomicBool::new(true),
            tracker: Mutex::new(Box::new(Tracker::new(shape.burst_span))),
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
            Some(r) => r.add(key, amount, &self.held),
            None => {
                self.level.fetch_add(amount, Ordering::Relaxed);
            }
        }
    }

    /// Returns a bound usage at bucket `key` never exceeds, read without
    /// following a pointer: the level, or a bound of a rate's ring of
    /// `span` cells.
    #[inline]
    pub(crate) fn bound(&self, key: i64, span: usize) -> u64 {
        match &self.rate {
            Some(_) => self.held.bound(key, span),
            None => self.level.load(Ordering::Relaxed),
        }
    }

    /// Empties a rate's ring.
    pub(crate) fn clear_rate(&self) {
        if let Some(r) = &self.rate {
            r.clear(&self.held);
        }
    }

    /// Sets a rate's ring to `cells` (from a snapshot).
    pub(crate) fn import_rate(&self, cells: &[(i64, u64)]) {
        if let Some(r) = &self.rate {
            r.import(cells, &self.held);
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

    pub(crate) fn tracker(&self) -> MutexGuard<'_, Box<Tracker>> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes what checks and evaluations read of tracker `t`.
    pub(crate) fn publish(&self, t: &Tracker, th: &Thresholds, key: i64) {
        self.ceiling.store(t.ceiling(th, key), Ordering::Relaxed);
        let calm = t.state == State::Ok && t.burst_used.sum(key) == 0;
        self.calm.store(calm, Ordering::Relaxed);
    }

    /// Returns true if and only if the slot holds nothing worth keeping.
    pub(crate) fn idle(&self, key: i64) -> bool {
        self.calm.load(Ordering::Relaxed)
            && self.level.load(Ordering::Relaxed) == 0
            && self.rate.as_ref().is_none_or(|r| r.sum(key) == 0)
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

    /// Returns the cells of each slot's rate ring (0 if not a rate).
    pub(crate) fn rate_span(&self) -> usize {
        self.shape.rate_span
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
            .entry(Key::new(owner))
            .or_insert_with(|| Slot::new(self.shape));
        f(slot)
    }

    /// Runs `f` on every slot, one shard at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &Slot)) {
        for shard in self.shards.iter() {
            for (owner, slot) in Self::read(shard).iter() {
                f(owner.as_str(), slot);
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
    fn long_and_short_owner_names_are_both_found() {
        let l = Ledger::new(shape(0));
        let long = "o".repeat(INLINE + 1);
        let edge = "p".repeat(INLINE);
        for name in [long.as_str(), edge.as_str(), "", "é"] {
            l.with_new(name, |s| s.add(0, 1));
        }
        for name in [long.as_str(), edge.as_str(), "", "é"] {
            assert_eq!(l.with(name, |s| s.usage(0)), Some(1), "{name}");
        }
        assert_eq!(l.with(&long[1..], |_| ()), None);
        let mut names = Vec::new();
        l.for_each(|o, _| names.push(o.to_owned()));
        names.sort();
        assert_eq!(
            names,
            vec!["".to_owned(), long.clone(), edge.clone(), "é".into()]
        );
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
        l.with_new("o1", |s| s.calm.store(false, Ordering::Relaxed));
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
