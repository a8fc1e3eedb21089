//! Resources applications register: a handle per object, with its kind, name,
//! owner, size, times and labels; released when the application says so.
//!
//! Handles are not guessable: the registry numbers resources in order
//! internally, and shows each number through a keyed permutation ([`Handles`])
//! of the 52-bit range (exact in JSON), keyed at random per process. A caller
//! cannot reach another owner's resource by counting.
//!
//! The registry is bounded ([`RegistryLimits`]): past `max_tracked`
//! resources, or `max_bytes` of their text, a registration is refused with
//! the reason ([`Full`]) instead of growing without end. Listing for a plugin
//! is bounded too: [`Registry::list_bounded`] stops copying at the byte
//! budget it is given.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::RwLock;

use warden_core::records::{NewResource, ResourceFilter, ResourceKind, ResourceSet, TimestampMs};

/// What an application says about a resource it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Its kind.
    pub kind: ResourceKind,
    /// Path or name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Owning process.
    pub pid: Option<u32>,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// How long it may go unused before cleanup policies may release it.
    pub ttl_ms: Option<u64>,
}

/// The label under which plugins see a resource's TTL, in ms: `warden.`
/// names are the host's, so an application's own labels cannot clash.
pub const TTL_LABEL: &str = "warden.ttl_ms";

#[derive(Debug, Clone)]
struct Entry {
    reg: Registration,
    created_ms: TimestampMs,
    accessed_ms: TimestampMs,
}

/// What one entry is counted as against `max_bytes`: its text, plus this.
const ENTRY_OVERHEAD: usize = 128;

impl Registration {
    /// The bytes it is counted as against [`RegistryLimits::max_bytes`].
    pub fn bytes(&self) -> usize {
        ENTRY_OVERHEAD
            + self.name.len()
            + self.owner.len()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
    }
}

/// How much the registry holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Resources tracked at once (`resources.max_tracked`).
    pub max_tracked: usize,
    /// Bytes of their names, owners and labels, with a fixed overhead per
    /// resource (`resources.max_bytes`).
    pub max_bytes: usize,
}

impl RegistryLimits {
    /// 100,000 resources: far more than one machine's applications hold
    /// open, far fewer than would strain the daemon.
    pub const DEFAULT_MAX_TRACKED: usize = 100_000;
    /// 256 MiB: 100,000 resources of 2.5 KiB of names and labels each.
    pub const DEFAULT_MAX_BYTES: usize = 256 << 20;
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            max_tracked: Self::DEFAULT_MAX_TRACKED,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// A registration refused because the registry is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// As many resources as `max_tracked` are registered.
    #[error(
        "the registry tracks {tracked} resources, its `resources.max_tracked`; release some (`DELETE /api/v1/resources/N`) or raise the limit"
    )]
    Count {
        /// How many are registered.
        tracked: usize,
    },
    /// Their text would pass `max_bytes`.
    #[error(
        "the registry holds {used} bytes of names and labels and this resource needs {needed} more, past its `resources.max_bytes` of {limit}; release some or raise the limit"
    )]
    Bytes {
        /// Bytes held.
        used: usize,
        /// Bytes this registration needs.
        needed: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a handle is no longer registered, kept for a while so that the
/// application is told more than "unknown".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Released {
    /// The cleanup policy that released it.
    pub by_policy: String,
    /// When, ms since the epoch.
    pub at_ms: TimestampMs,
}

/// How many released handles are remembered.
const TOMBSTONES: usize = 10_000;

/// A registered resource, as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct View {
    /// Its handle.
    pub handle: u64,
    /// Its kind.
    pub kind: &'static str,
    /// Path or name.
    pub name: String,
    /// Owner.
    pub owner: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Owning process.
    pub pid: Option<u32>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// TTL, ms.
    pub ttl_ms: Option<u64>,
    /// When registered, ms since the epoch.
    pub created_ms: TimestampMs,
    /// When last used.
    pub accessed_ms: TimestampMs,
    /// When its TTL runs out if unused.
    pub expires_ms: Option<TimestampMs>,
}

/// What became of a handle.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Registered.
    Live(View),
    /// Released by a cleanup policy.
    Released(Released),
    /// Never registered, released by its application, or forgotten.
    Unknown,
}

#[derive(Debug, Default)]
struct Inner {
    /// The last sequence number given out; entries are keyed by theirs.
    next: u64,
    entries: BTreeMap<u64, Entry>,
    released: BTreeMap<u64, Released>,
    /// What the entries count as against `max_bytes`.
    bytes: usize,
}

impl Inner {
    fn forget(&mut self, handle: u64) -> Option<Entry> {
        let e = self.entries.remove(&handle)?;
        self.bytes = self.bytes.saturating_sub(e.reg.bytes());
        Some(e)
    }
}

/// A keyed permutation of the numbers below 2^52 (a four-round Feistel
/// network over two 26-bit halves, SipHash as the round function): sequence
/// numbers in, handles out, and back. Distinct numbers give distinct
/// handles, so no handle is ever given twice, and without the key the next
/// handle cannot be told from the last.
pub struct Handles {
    hasher: std::hash::RandomState,
    key: [u8; 16],
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handles(..)")
    }
}

impl Default for Handles {
    fn default() -> Self {
        Handles {
            // Random keys per process; the kernel's bytes on top, in case
            // the standard library's ever come from a weaker source.
            hasher: std::hash::RandomState::new(),
            key: warden_core::fsx::random_bytes().unwrap_or_default(),
        }
    }
}

const HALF: u32 = 26;
const HALF_MASK: u64 = (1 << HALF) - 1;
const ROUNDS: u8 = 4;

impl Handles {
    fn round(&self, round: u8, half: u64) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(&self.key);
        h.write_u8(round);
        h.write_u64(half);
        h.finish() & HALF_MASK
    }

    /// The handle of sequence number `seq` (below 2^52).
    pub fn encode(&self, seq: u64) -> u64 {
        let (mut l, mut r) = ((seq >> HALF) & HALF_MASK, seq & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF) | r
    }

    /// The sequence number behind `handle`, if it can be one.
    pub fn decode(&self, handle: u64) -> Option<u64> {
        if handle >> (2 * HALF) != 0 {
            return None;
        }
        let (mut l, mut r) = ((handle >> HALF) & HALF_MASK, handle & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        Some((l << HALF) | r)
    }
}

/// The registry. Handles are never reused.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<Inner>,
    handles: Handles,
    limits: RegistryLimits,
}

impl Registry {
    /// An empty registry holding at most what `limits` allows.
    pub fn with_limits(limits: RegistryLimits) -> Self {
        Registry {
            inner: RwLock::default(),
            handles: Handles::default(),
            limits,
        }
    }

    /// Returns its limits.
    pub fn limits(&self) -> RegistryLimits {
        self.limits
    }

    /// Registers a resource at `now_ms` and returns its handle, or why the
    /// registry is too full to take it.
    pub fn register(&self, reg: Registration, now_ms: TimestampMs) -> Result<u64, Full> {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if g.entries.len() >= self.limits.max_tracked {
            return Err(Full::Count {
                tracked: g.entries.len(),
            });
        }
        let needed = reg.bytes();
        if g.bytes.saturating_add(needed) > self.limits.max_bytes {
            return Err(Full::Bytes {
                used: g.bytes,
                needed,
                limit: self.limits.max_bytes,
            });
        }
        g.bytes += needed;
        g.next += 1;
        let seq = g.next;
        g.entries.insert(
            seq,
            Entry {
                reg,
                created_ms: now_ms,
                accessed_ms: now_ms,
            },
        );
        Ok(self.handles.encode(seq))
    }

    /// Marks a resource as used at `now_ms`; returns false if the handle is unknown.
    pub fn touch(&self, handle: u64, now_ms: TimestampMs) -> bool {
        let Some(seq) = self.handles.decode(handle) else {
            return false;
        };
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        g.entries
            .get_mut(&seq)
            .map(|e| e.accessed_ms = now_ms)
            .is_some()
    }

    /// Forgets a resource; returns false if the handle is unknown.
    pub fn release(&self, handle: u64) -> bool {
        let Some(seq) = self.handles.decode(handle) else {
            return false;
        };
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .forget(seq)
            .is_some()
    }

    /// Releases a resource on a cleanup policy's decision, remembering who
    /// did it; returns its size, or `None` if it is no longer registered.
    pub fn release_by_policy(&self, handle: u64, policy: &str, now_ms: TimestampMs) -> Option<u64> {
        let seq = self.handles.decode(handle)?;
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let e = g.forget(seq)?;
        if g.released.len() >= TOMBSTONES {
            g.released.pop_first();
        }
        g.released.insert(
            seq,
            Released {
                by_policy: policy.to_owned(),
                at_ms: now_ms,
            },
        );
        Some(e.reg.size_bytes)
    }

    /// What became of `handle`.
    pub fn lookup(&self, handle: u64) -> Lookup {
        let Some(seq) = self.handles.decode(handle) else {
            return Lookup::Unknown;
        };
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = g.entries.get(&seq) {
            return Lookup::Live(view(handle, e));
        }
        g.released
            .get(&seq)
            .map_or(Lookup::Unknown, |r| Lookup::Released(r.clone()))
    }

    /// The registered resources matching `filter` and, if given, `owner`,
    /// oldest first.
    pub fn views(&self, filter: &ResourceFilter, owner: Option<&str>) -> Vec<View> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        g.entries
            .iter()
            .filter(|(_, e)| matches(filter, e) && owner.is_none_or(|o| e.reg.owner == o))
            .take(limit)
            .map(|(seq, e)| view(self.handles.encode(*seq), e))
            .collect()
    }

    /// How many resources are registered.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// True if none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the resources matching `filter`, oldest handle first. A
    /// resource with a TTL carries it as the label [`TTL_LABEL`]. Stops
    /// (with what it has) where a set's string table is full.
    pub fn list(&self, filter: &ResourceFilter) -> ResourceSet {
        match self.list_bounded(filter, usize::MAX) {
            Ok(set) => set,
            Err(partial) => partial.0,
        }
    }

    /// Like [`Registry::list`], copying at most `max_bytes` (as
    /// [`ResourceSet::bytes`] counts them): past it, returns what it had
    /// copied and at least the bytes the whole answer needs (boxed: a set is
    /// large to move through every `Result`).
    pub fn list_bounded(
        &self,
        filter: &ResourceFilter,
        max_bytes: usize,
    ) -> Result<ResourceSet, Box<(ResourceSet, usize)>> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        let mut set = ResourceSet::default();
        for (seq, e) in g.entries.iter() {
            if set.len() >= limit {
                break;
            }
            if !matches(filter, e) {
                continue;
            }
            let needed = set.bytes().saturating_add(e.reg.bytes());
            if needed > max_bytes {
                return Err(Box::new((set, needed)));
            }
            let ttl = e.reg.ttl_ms.map(|t| t.to_string());
            let labels: Vec<(&str, &str)> = e
                .reg
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(ttl.as_deref().map(|t| (TTL_LABEL, t)))
                .collect();
            let pushed = set.try_push(NewResource {
                handle: self.handles.encode(*seq),
                kind: Some(e.reg.kind),
                name: &e.reg.name,
                owner: &e.reg.owner,
                size_bytes: e.reg.size_bytes,
                created_ms: Some(e.created_ms),
                modified_ms: None,
                accessed_ms: Some(e.accessed_ms),
                pid: e.reg.pid,
                labels: &labels,
            });
            if pushed.is_none() {
                // The string table is full: what fits is the answer.
                let needed = set.bytes().saturating_add(e.reg.bytes());
                return Err(Box::new((set, needed)));
            }
        }
        Ok(set)
    }
}

fn matches(filter: &ResourceFilter, e: &Entry) -> bool {
    (filter.kinds.is_empty() || filter.kinds.contains(&e.reg.kind))
        && filter
            .name_prefix
            .as_deref()
            .is_none_or(|p| e.reg.name.starts_with(p))
}

fn view(handle: u64, e: &Entry) -> View {
    View {
        handle,
        kind: e.reg.kind.name(),
        name: e.reg.name.clone(),
        owner: e.reg.owner.clone(),
        size_bytes: e.reg.size_bytes,
        pid: e.reg.pid,
        labels: e.reg.labels.iter().cloned().collect(),
        ttl_ms: e.reg.ttl_ms,
        created_ms: e.created_ms,
        accessed_ms: e.accessed_ms,
        expires_ms: e.reg.ttl_ms.map(|t| {
            e.accessed_ms
                .saturating_add(i64::try_from(t).unwrap_or(i64::MAX))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(kind: ResourceKind, name: &str) -> Registration {
        Registration {
            kind,
            name: name.into(),
            owner: "svc".into(),
            size_bytes: 10,
            pid: None,
            labels: vec![("pool".into(), "a".into())],
            ttl_ms: None,
        }
    }

    #[test]
    fn register_filter_touch_release() {
        let r = Registry::default();
        let a = r
            .register(reg(ResourceKind::AppObject, "cache/a"), 100)
            .unwrap();
        let _b = r
            .register(reg(ResourceKind::Socket, "conn/1"), 100)
            .unwrap();
        let c = r
            .register(reg(ResourceKind::AppObject, "cache/c"), 100)
            .unwrap();
        let only_cache = r.list(&ResourceFilter {
            kinds: vec![ResourceKind::AppObject],
            name_prefix: Some("cache/".into()),
            limit: None,
        });
        assert_eq!(only_cache.len(), 2);
        assert_eq!(only_cache.name(1), Some("cache/c"));
        assert!(r.touch(a, 500));
        let all = r.list(&ResourceFilter::default());
        assert_eq!(all.accessed_ms(0), Some(500));
        assert!(r.release(c) && !r.release(c));
        assert_eq!(
            r.list(&ResourceFilter {
                limit: Some(1),
                ..Default::default()
            })
            .len(),
            1
        );
        assert_eq!(r.list(&ResourceFilter::default()).len(), 2);
    }

    #[test]
    fn handles_are_a_keyed_permutation_not_a_count() {
        let r = Registry::default();
        let handles: Vec<u64> = (0..1000)
            .map(|i| {
                r.register(reg(ResourceKind::AppObject, &format!("o/{i}")), 1)
                    .unwrap()
            })
            .collect();
        let distinct: std::collections::BTreeSet<_> = handles.iter().collect();
        assert_eq!(distinct.len(), handles.len());
        assert!(handles.iter().all(|h| *h < 1 << 52), "exact in JSON");
        // Not a count: consecutive registrations are not neighbours.
        let adjacent = handles
            .windows(2)
            .filter(|w| w[1].abs_diff(w[0]) < 1000)
            .count();
        assert!(
            adjacent < 5,
            "{adjacent} of 999 neighbours: {:?}",
            &handles[..8]
        );
        // Another registry (another daemon run) numbers differently.
        let other = Registry::default();
        assert_ne!(
            other
                .register(reg(ResourceKind::AppObject, "o/0"), 1)
                .unwrap(),
            handles[0]
        );
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(r.handles.decode(*h), Some(i as u64 + 1));
        }
        // A guessed neighbour is almost surely nobody.
        assert_eq!(r.lookup(handles[0] + 1), Lookup::Unknown);
        assert_eq!(r.lookup(u64::MAX), Lookup::Unknown);
    }

    #[test]
    fn ttl_is_shown_to_plugins_and_policy_releases_are_remembered() {
        let r = Registry::default();
        let h = r
            .register(
                Registration {
                    ttl_ms: Some(60_000),
                    ..reg(ResourceKind::AppObject, "lease/1")
                },
                1_000,
            )
            .unwrap();
        let set = r.list(&ResourceFilter::default());
        assert!(set.labels(0).any(|(k, v)| k == TTL_LABEL && v == "60000"));
        match r.lookup(h) {
            Lookup::Live(v) => assert_eq!(v.expires_ms, Some(61_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.release_by_policy(h, "leases", 70_000), Some(10));
        assert_eq!(r.release_by_policy(h, "leases", 70_000), None);
        assert_eq!(
            r.lookup(h),
            Lookup::Released(Released {
                by_policy: "leases".into(),
                at_ms: 70_000
            })
        );
        assert_eq!(r.lookup(999), Lookup::Unknown);
    }

    #[test]
    fn a_full_registry_refuses_with_the_reason_and_takes_more_once_released() {
        let r = Registry::with_limits(RegistryLimits {
            max_tracked: 3,
            max_bytes: 1 << 20,
        });
        let handles: Vec<u64> = (0..3)
            .map(|i| {
                r.register(reg(ResourceKind::AppObject, &format!("c/{i}")), 0)
                    .unwrap()
            })
            .collect();
        let full = r
            .register(reg(ResourceKind::AppObject, "c/3"), 0)
            .unwrap_err();
        assert_eq!(full, Full::Count { tracked: 3 });
        assert!(full.to_string().contains("resources.max_tracked"), "{full}");
        assert!(r.release(handles[0]));
        r.register(reg(ResourceKind::AppObject, "c/3"), 0).unwrap();

        // By bytes: one big registration fits, the next does not.
        let r = Registry::with_limits(RegistryLimits {
            max_tracked: 1000,
            max_bytes: 10_000,
        });
        let big = |n: &str| Registration {
            name: format!("{n}{}", "x".repeat(6000)),
            ..reg(ResourceKind::AppObject, "")
        };
        let h = r.register(big("a"), 0).unwrap();
        let full = r.register(big("b"), 0).unwrap_err();
        assert!(matches!(full, Full::Bytes { limit: 10_000, .. }), "{full}");
        assert!(r.release_by_policy(h, "p", 1).is_some());
        r.register(big("b"), 0).unwrap();
    }

    #[test]
    fn listing_for_a_plugin_stops_at_its_budget() {
        let r = Registry::default();
        for i in 0..1000 {
            r.register(reg(ResourceKind::AppObject, &format!("cache/{i}")), 0)
                .unwrap();
        }
        let all = r
            .list_bounded(&ResourceFilter::default(), usize::MAX)
            .unwrap();
        assert_eq!(all.len(), 1000);
        let (part, needed) = *r
            .list_bounded(&ResourceFilter::default(), all.bytes() / 2)
            .unwrap_err();
        assert!(part.len() < 1000 && part.bytes() <= all.bytes() / 2);
        assert!(needed > all.bytes() / 2);
    }
}
