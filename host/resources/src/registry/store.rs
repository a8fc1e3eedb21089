//! How registered resources are held in memory: compact entries in
//! sequence order, in fixed-size chunks.
//!
//! A million resources must fit in 200 bytes each (issue 16), so an entry
//! keeps its name and labels in one allocation ([`Text`]), shares its owner
//! with the other resources of that owner ([`Owners`]), and uses sentinels
//! rather than `Option`s. Chunks rather than one vector: a vector of a
//! million entries would copy 100 MB on the register path each time it
//! grows, and waste up to half its capacity; a tree map would spend more on
//! its nodes than the entries themselves.

use std::collections::HashSet;
use std::sync::Arc;

use warden_core::records::{ResourceKind, TimestampMs};

/// Entries per chunk: small enough that compacting one is quick, large
/// enough that the chunk list stays short (250 for a million).
const CHUNK: usize = 4096;

/// No TTL.
pub(super) const NO_TTL: u64 = u64::MAX;
/// Not an orphan.
pub(super) const NOT_ORPHAN: TimestampMs = TimestampMs::MIN;
/// No access recorded in the audit trail yet.
pub(super) const NEVER: TimestampMs = TimestampMs::MIN;

/// One registered resource.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) created_ms: TimestampMs,
    pub(super) accessed_ms: TimestampMs,
    /// When an access was last put in the audit trail.
    pub(super) audited_ms: TimestampMs,
    pub(super) size_bytes: u64,
    /// [`NO_TTL`] if none.
    pub(super) ttl_ms: u64,
    /// [`NOT_ORPHAN`] unless its owner process is gone.
    pub(super) orphan_since: TimestampMs,
    /// The owner process's start time (clock ticks since boot), 0 if it was
    /// already gone when the resource was registered or there is no pid.
    pub(super) start_ticks: u64,
    pub(super) owner: Arc<str>,
    pub(super) text: Text,
    /// 0 if none: pid 0 is never an application's.
    pub(super) pid: u32,
    pub(super) kind: ResourceKind,
    pub(super) flags: u8,
}

/// Released: kept in its chunk until the chunk is compacted.
pub(super) const DEAD: u8 = 1;
/// Touched since the last flush: its access time goes in the log then.
pub(super) const TOUCHED: u8 = 2;

impl Entry {
    /// A copy without its name and labels (which then costs no allocation).
    pub(super) fn without_text(&self) -> Entry {
        Entry {
            seq: self.seq,
            created_ms: self.created_ms,
            accessed_ms: self.accessed_ms,
            audited_ms: self.audited_ms,
            size_bytes: self.size_bytes,
            ttl_ms: self.ttl_ms,
            orphan_since: self.orphan_since,
            start_ticks: self.start_ticks,
            owner: Arc::clone(&self.owner),
            text: Text::default(),
            pid: self.pid,
            kind: self.kind,
            flags: self.flags,
        }
    }

    pub(super) fn live(&self) -> bool {
        self.flags & DEAD == 0
    }

    pub(super) fn ttl(&self) -> Option<u64> {
        (self.ttl_ms != NO_TTL).then_some(self.ttl_ms)
    }

    pub(super) fn pid(&self) -> Option<u32> {
        (self.pid != 0).then_some(self.pid)
    }

    pub(super) fn orphan(&self) -> Option<TimestampMs> {
        (self.orphan_since != NOT_ORPHAN).then_some(self.orphan_since)
    }

    /// When its TTL runs out if unused.
    pub(super) fn expires_ms(&self) -> Option<TimestampMs> {
        self.ttl().map(|t| {
            self.accessed_ms
                .saturating_add(i64::try_from(t).unwrap_or(i64::MAX))
        })
    }

    /// What it counts as against `max_bytes`, as
    /// [`super::Registration::bytes`] counted it.
    pub(super) fn bytes(&self) -> usize {
        super::ENTRY_OVERHEAD
            + self.text.name().len()
            + self.owner.len()
            + self
                .text
                .labels()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
    }
}

/// A name and labels in one allocation: each string preceded by its length
/// (LEB128), the name first, then key and value of each label.
#[derive(Debug, Clone, Default)]
pub(super) struct Text(Box<[u8]>);

impl Text {
    pub(super) fn new<'a>(
        name: &str,
        labels: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Text {
        // Exact, so that turning it into a box does not reallocate.
        let len = sized(name.len())
            + labels
                .clone()
                .map(|(k, v)| sized(k.len()) + sized(v.len()))
                .sum::<usize>();
        let mut b = Vec::with_capacity(len);
        put(&mut b, name);
        for (k, v) in labels {
            put(&mut b, k);
            put(&mut b, v);
        }
        debug_assert_eq!(b.len(), len);
        Text(b.into_boxed_slice())
    }

    pub(super) fn name(&self) -> &str {
        self.as_ref().name()
    }

    pub(super) fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.as_ref().labels()
    }

    pub(super) fn as_ref(&self) -> TextRef<'_> {
        TextRef(&self.0)
    }
}

/// The bytes of a [`Text`], wherever they are held (a copy of the registry
/// keeps all its entries' in one buffer).
#[derive(Debug, Clone, Copy)]
pub(super) struct TextRef<'a>(pub(super) &'a [u8]);

impl<'a> TextRef<'a> {
    pub(super) fn name(self) -> &'a str {
        let mut at = 0;
        take(self.0, &mut at)
    }

    pub(super) fn labels(self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut at = 0;
        take(self.0, &mut at);
        std::iter::from_fn(move || {
            (at < self.0.len()).then(|| {
                let k = take(self.0, &mut at);
                (k, take(self.0, &mut at))
            })
        })
    }
}

/// Bytes `put` writes for a string of `n` bytes.
fn sized(n: usize) -> usize {
    n + (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

fn put(b: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            b.push(byte);
            break;
        }
        b.push(byte | 0x80);
    }
    b.extend_from_slice(s.as_bytes());
}

fn take<'a>(b: &'a [u8], at: &mut usize) -> &'a str {
    let mut n = 0usize;
    let mut shift = 0;
    while let Some(&byte) = b.get(*at) {
        *at += 1;
        n |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = at.saturating_add(n).min(b.len());
    let s = b.get(*at..end).unwrap_or_default();
    *at = end;
    // Written from `&str`s by `put`, so always UTF-8; checked anyway (a
    // short string's check costs little next to copying it out).
    std::str::from_utf8(s).unwrap_or_default()
}

/// Owners, shared between the entries that name them, so that a million
/// resources of a few owners hold a few copies of their names. An owner no
/// entry names any more is dropped, so that callers cannot grow the set
/// without end.
#[derive(Debug, Default)]
pub(super) struct Owners(HashSet<Arc<str>>);

impl Owners {
    pub(super) fn get(&mut self, owner: &str) -> Arc<str> {
        if let Some(o) = self.0.get(owner) {
            return Arc::clone(o);
        }
        let o: Arc<str> = Arc::from(owner);
        self.0.insert(Arc::clone(&o));
        o
    }

    /// Lets go of `owner`, dropping it from the set if no entry names it.
    pub(super) fn put_back(&mut self, owner: Arc<str>) {
        // Two references left: this one and the set's.
        if Arc::strong_count(&owner) == 2 {
            self.0.remove(&*owner);
        }
        // Taken by value so that the caller's reference ends here.
        drop(owner);
    }
}

#[derive(Debug)]
struct Chunk {
    entries: Vec<Entry>,
    live: usize,
}

/// Entries in sequence order.
#[derive(Debug)]
pub(super) struct Entries {
    chunks: Vec<Chunk>,
    live: usize,
    /// The owner of dead slots: one shared empty name, so a release does
    /// not allocate.
    empty: Arc<str>,
}

impl Default for Entries {
    fn default() -> Self {
        Entries {
            chunks: Vec::new(),
            live: 0,
            empty: Arc::from(""),
        }
    }
}

impl Entries {
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Adds `e`, whose sequence number is above every one held.
    pub(super) fn push(&mut self, e: Entry) {
        debug_assert!(self.last_seq().is_none_or(|l| l < e.seq));
        match self.chunks.last_mut() {
            Some(c) if c.entries.len() < c.entries.capacity() => {
                c.entries.push(e);
                c.live += 1;
            }
            _ => {
                let mut entries = Vec::with_capacity(CHUNK);
                entries.push(e);
                self.chunks.push(Chunk { entries, live: 1 });
            }
        }
        self.live += 1;
    }

    pub(super) fn last_seq(&self) -> Option<u64> {
        self.chunks.last()?.entries.last().map(|e| e.seq)
    }

    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let c = self
            .chunks
            .partition_point(|c| c.entries.first().is_some_and(|e| e.seq <= seq))
            .checked_sub(1)?;
        let i = self.chunks[c]
            .entries
            .binary_search_by_key(&seq, |e| e.seq)
            .ok()?;
        self.chunks[c].entries[i].live().then_some((c, i))
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Entry> {
        let (c, i) = self.locate(seq)?;
        Some(&self.chunks[c].entries[i])
    }

    pub(super) fn get_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let (c, i) = self.locate(seq)?;
        Some(&mut self.chunks[c].entries[i])
    }

    /// Removes the entry `seq` and returns it.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Entry> {
        let (c, i) = self.locate(seq)?;
        let last = c + 1 == self.chunks.len();
        let chunk = &mut self.chunks[c];
        chunk.live -= 1;
        self.live -= 1;
        // The dead slot keeps its sequence number (for the binary search)
        // and gives up its text and owner now.
        let dead = Entry {
            seq,
            created_ms: 0,
            accessed_ms: 0,
            audited_ms: NEVER,
            size_bytes: 0,
            ttl_ms: NO_TTL,
            orphan_since: NOT_ORPHAN,
            start_ticks: 0,
            owner: Arc::clone(&self.empty),
            text: Text::default(),
            pid: 0,
            kind: ResourceKind::AppObject,
            flags: DEAD,
        };
        let out = std::mem::replace(&mut chunk.entries[i], dead);
        if chunk.live == 0 && !last {
            self.chunks.remove(c);
        } else if !last && chunk.live < chunk.entries.len() / 4 {
            // Sparse: a quarter live, so compacting costs little per release.
            chunk.entries.retain(Entry::live);
            chunk.entries.shrink_to_fit();
        }
        Some(out)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks
            .iter()
            .flat_map(|c| c.entries.iter())
            .filter(|e| e.live())
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.chunks
            .iter_mut()
            .flat_map(|c| c.entries.iter_mut())
            .filter(|e| e.live())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Entry {
        Entry {
            seq,
            created_ms: 0,
            accessed_ms: 0,
            audited_ms: NEVER,
            size_bytes: 0,
            ttl_ms: NO_TTL,
            orphan_since: NOT_ORPHAN,
            start_ticks: 0,
            owner: Arc::from("o"),
            text: Text::new("n", std::iter::empty()),
            pid: 0,
            kind: ResourceKind::AppObject,
            flags: 0,
        }
    }

    #[test]
    fn text_round_trips_names_and_labels() {
        let long = "é".repeat(200);
        let t = Text::new(&long, [("a", ""), ("k", "v")].into_iter());
        assert_eq!(t.name(), long);
        assert_eq!(t.labels().collect::<Vec<_>>(), [("a", ""), ("k", "v")]);
        assert_eq!(Text::default().name(), "");
        assert_eq!(Text::default().labels().count(), 0);
    }

    #[test]
    fn entries_find_and_release_across_chunks() {
        let mut es = Entries::default();
        for s in 1..=3 * CHUNK as u64 {
            es.push(entry(s * 2));
        }
        assert_eq!(es.get(2).unwrap().seq, 2);
        assert!(es.get(3).is_none());
        // Empty the first chunk, thin the second.
        for s in 1..=CHUNK as u64 {
            assert!(es.remove(s * 2).is_some());
        }
        for s in CHUNK as u64 + 1..=CHUNK as u64 * 2 - 10 {
            assert!(es.remove(s * 2).is_some());
        }
        assert!(es.remove(2).is_none());
        assert_eq!(es.len(), CHUNK + 10);
        assert_eq!(es.chunks.len(), 2);
        let last_of_second = CHUNK as u64 * 4;
        assert_eq!(es.get(last_of_second).unwrap().seq, last_of_second);
        assert_eq!(es.iter().count(), CHUNK + 10);
        let seqs: Vec<u64> = es.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn owners_are_shared_and_dropped_when_unused() {
        let mut o = Owners::default();
        let a = o.get("svc");
        let b = o.get("svc");
        assert!(Arc::ptr_eq(&a, &b));
        o.put_back(a);
        assert_eq!(o.0.len(), 1);
        o.put_back(b);
        assert!(o.0.is_empty());
    }
}
