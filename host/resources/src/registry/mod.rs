//! Resources applications register: a handle per object, with its kind, name,
//! owner, size, times and labels; released when the application says so.
//!
//! Handles are not guessable: the registry numbers resources in order
//! internally, and shows each number through a keyed permutation ([`Handles`])
//! of the 52-bit range (exact in JSON). A caller cannot reach another
//! owner's resource by counting.
//!
//! In memory ([`Registry::with_limits`]) the key is random per process. A
//! durable registry ([`Registry::open`], see [`persist`]) keeps its key,
//! counter, resources, released handles and audit trail in a directory, so
//! resources survive a restart with their handles. What a crash can lose:
//! the changes since the last [`Registry::flush`] (the daemon flushes on an
//! interval and at shutdown, as it does its metrics batches); the caller's
//! path never waits for the disk.
//!
//! A resource registered with a pid records its owner process's start time;
//! [`Registry::sweep_orphans`] marks it an orphan once that process is gone
//! or its pid belongs to another process. Who registered, used and released
//! what is kept in a bounded audit trail ([`Registry::audit`]).
//!
//! A resource may depend on others ([`Registry::register_with_dependencies`],
//! [`Registry::add_dependency`]; see [`deps`]): a release of one that others
//! depend on is refused or cascades to them, dependents first
//! ([`Registry::release_with`]), and cycles are reported
//! ([`Registry::cycles`], [`ScanReport::cycles`]).
//!
//! A cleanup policy's release of a resource whose owner listens
//! ([`Registry::on_request`]) becomes a request to that owner, retried
//! until it answers ([`Registry::ack`]) or its attempts run out; see
//! [`requests`].
//!
//! The registry is bounded ([`RegistryLimits`]): past `max_tracked`
//! resources, or `max_bytes` of their text, a registration is refused with
//! the reason ([`Full`]) instead of growing without end. Listing for a plugin
//! is bounded too: [`Registry::list_bounded`] stops copying at the byte
//! budget it is given.

mod audit;
pub mod deps;
mod graph;
mod handles;
mod listing;
mod liveness;
pub mod persist;
pub mod requests;
mod scan;
mod store;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

pub use audit::{ACCESS_EVERY_MS, Action, Actor, AuditEvent, DEFAULT_AUDIT_EVENTS};
pub use deps::{
    DependencyError, RegisterError, ReleaseError, ReleaseMode, ReleaseOutcome, ReleasedResource,
};
pub use handles::Handles;
pub use persist::{FlushError, FlushReport, OpenError, OpenReport};
pub use requests::{
    AckError, AckOutcome, Acked, Asked, OwnerRequest, PolicyDecision, RequestCounts,
    RequestOptions, RequestType, RequestsReport, SubscribeError, Subscription,
};

use audit::{Event, Trail};
use graph::Graph;
use listing::{matches, view};
pub use scan::{ScanReport, SweepReport};
use store::{Entries, Entry, NEVER, NO_TTL, NOT_ORPHAN, Owners, Text};
pub use summary::{OthersTally, OwnerTally, Summary, Tally};

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

/// The label under which plugins see that a resource's owner process is
/// gone, with since when (ms since the epoch) as its value.
pub const ORPHAN_LABEL: &str = "warden.orphan";

/// The label under which plugins see that a resource is in a dependency
/// cycle, with the handle of the cycle's first member as its value, so the
/// members of one cycle share it.
pub const CYCLE_LABEL: &str = "warden.cycle";

/// A registration made ready outside the registry's lock: its text built
/// and its owner process's start time read.
struct Ready {
    reg: Registration,
    text: Text,
    start_ticks: u64,
    needed: usize,
}

impl Ready {
    fn new(mut reg: Registration) -> Ready {
        let start_ticks = reg.pid.and_then(liveness::start_ticks).unwrap_or(0);
        let needed = reg.bytes();
        let text = Text::new(
            &reg.name,
            reg.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        // Held in `text` now.
        reg.labels = Vec::new();
        Ready {
            reg,
            text,
            start_ticks,
            needed,
        }
    }
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
    /// A quota with a `deny` action would go over its limit.
    #[error("{0}")]
    Quota(warden_quotas::Denial),
}

/// What the registry tells quotas: every registration before it is
/// made (which may refuse it) and every release. The runtime's quota
/// service implements it; the registry calls it under its write lock, so
/// admissions are judged one at a time and usage never runs ahead of what
/// is registered.
pub trait QuotaHook: Send + Sync {
    /// Charges `amount` for `subject`, or says which quota refuses it.
    fn admit(
        &self,
        subject: &warden_quotas::Subject<'_>,
        amount: warden_quotas::Amount,
        now_ms: TimestampMs,
    ) -> Result<(), warden_quotas::Denial>;
    /// Gives back what a released resource was charged.
    fn release(&self, subject: &warden_quotas::Subject<'_>, amount: warden_quotas::Amount);
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
    /// True if its owner process is gone (or its pid is another process's).
    pub orphan: bool,
    /// Since when it is an orphan, as the sweep that found it saw it.
    pub orphan_since_ms: Option<TimestampMs>,
    /// The request waiting for its owner's answer, if a cleanup policy
    /// asked the owner to release it ([`Registry::on_request`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_requested: Option<u64>,
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

/// How the registry keeps its history: the audit trail's length, and when
/// a durable registry's log is folded into a new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Audit events kept (`resources.audit_events`, default
    /// [`DEFAULT_AUDIT_EVENTS`]); 0 keeps none.
    pub audit_events: usize,
    /// Records in the log past which a flush writes a snapshot and starts
    /// a new log (or past one per resource registered, if more).
    pub compact_records: u64,
    /// Bytes of log past which it does the same (or past the snapshot's
    /// size, if more).
    pub compact_bytes: u64,
    /// Records waiting for a flush past which a registration flushes
    /// itself: a bound on memory for when the daemon's flush is stuck.
    pub max_pending: usize,
    /// Resources one resource may depend on
    /// ([`RegistryOptions::DEFAULT_MAX_DEPENDENCIES`]).
    pub max_dependencies: usize,
    /// Dependencies between resources in all
    /// ([`RegistryOptions::DEFAULT_MAX_EDGES`]).
    pub max_edges: usize,
    /// How requests to owners are sent, retried and bounded.
    pub requests: RequestOptions,
}

impl RegistryOptions {
    /// 64: a resource built on more than a few dozen others is better
    /// described by a group resource they all depend on.
    pub const DEFAULT_MAX_DEPENDENCIES: usize = 64;
    /// 1,000,000: ten per resource of the default `max_tracked`, some
    /// 50 MB at most.
    pub const DEFAULT_MAX_EDGES: usize = 1_000_000;
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            audit_events: DEFAULT_AUDIT_EVENTS,
            // A snapshot of the default 100,000 resources is ~20 MB: a log
            // of as many records replays in about the time it loads.
            compact_records: 200_000,
            compact_bytes: 64 << 20,
            max_pending: 1 << 20,
            max_dependencies: Self::DEFAULT_MAX_DEPENDENCIES,
            max_edges: Self::DEFAULT_MAX_EDGES,
            requests: RequestOptions::default(),
        }
    }
}

/// A change waiting for the next flush, in the order it was made.
#[derive(Debug)]
enum Pending {
    /// Registered: written from the entry at flush time (if it is still
    /// registered then, else the release that follows says enough).
    Reg(u64),
    Rel {
        seq: u64,
        at_ms: TimestampMs,
        action: Action,
        actor: Arc<str>,
    },
    Orphan {
        seq: u64,
        at_ms: TimestampMs,
    },
    /// A dependency `seq` → `on` added (or removed).
    Dep {
        seq: u64,
        on: u64,
        added: bool,
    },
}

#[derive(Debug)]
struct Inner {
    /// The last sequence number given out; entries are keyed by theirs.
    next: u64,
    entries: Entries,
    /// Dependencies between entries.
    graph: Graph,
    owners: Owners,
    released: BTreeMap<u64, Released>,
    /// What the entries count as against `max_bytes`.
    bytes: usize,
    trail: Trail,
    /// Changes since the last flush; `None` in memory (nothing to flush).
    pending: Option<Vec<Pending>>,
    /// Entries touched since the last flush.
    touched: Vec<u64>,
    /// Quotas to tell about registrations and releases.
    quotas: Option<Arc<dyn QuotaHook>>,
    /// Requests to owners waiting for an answer.
    requests: requests::Requests,
}

impl std::fmt::Debug for dyn QuotaHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuotaHook")
    }
}

impl Inner {
    fn new(opts: &RegistryOptions) -> Self {
        Inner {
            next: 0,
            entries: Entries::default(),
            graph: Graph::default(),
            owners: Owners::default(),
            released: BTreeMap::new(),
            bytes: 0,
            trail: Trail::new(opts.audit_events),
            pending: None,
            touched: Vec::new(),
            quotas: None,
            requests: requests::Requests::default(),
        }
    }

    fn log(&mut self, p: Pending) {
        if let Some(pending) = &mut self.pending {
            pending.push(p);
        }
    }

    fn pending_len(&self) -> usize {
        self.pending.as_ref().map_or(0, Vec::len) + self.touched.len()
    }

    /// Adds an entry (registered now, or loaded).
    fn insert(&mut self, e: Entry) {
        self.next = self.next.max(e.seq);
        self.bytes += e.bytes();
        self.entries.push(e);
    }

    /// Removes entry `seq`, and its dependencies both ways.
    fn remove(&mut self, seq: u64) -> Option<Entry> {
        self.next = self.next.max(seq);
        let e = self.entries.remove(seq)?;
        self.graph.remove_node(seq);
        self.bytes = self.bytes.saturating_sub(e.bytes());
        Some(e)
    }

    /// Releases live entry `seq` as `action` by `who` (`policy` if a
    /// policy), in the audit trail with `other` as the resource it
    /// concerns; returns its size.
    fn release_one(
        &mut self,
        seq: u64,
        action: Action,
        who: &Arc<str>,
        policy: Option<&str>,
        other: u64,
        now_ms: TimestampMs,
    ) -> Option<u64> {
        let e = self.remove(seq)?;
        if let Some(q) = &self.quotas {
            let labels: Vec<(&str, &str)> = e.text.labels().collect();
            let subject = warden_quotas::Subject::new(&e.owner, e.kind.name()).with_labels(&labels);
            q.release(&subject, warden_quotas::Amount::one(e.size_bytes));
        }
        // Released another way: the owner's answer is no longer awaited.
        self.requests.resolve(seq);
        if let Some(p) = policy {
            self.remember(seq, p, now_ms);
        }
        self.trail.push(Event {
            at_ms: now_ms,
            seq,
            name: Box::from(e.text.name()),
            action,
            actor: Arc::clone(who),
            other,
        });
        self.log(Pending::Rel {
            seq,
            at_ms: now_ms,
            action,
            actor: Arc::clone(who),
        });
        self.owners.put_back(e.owner);
        Some(e.size_bytes)
    }

    /// Remembers that `policy` released `seq`, for [`Registry::lookup`].
    fn remember(&mut self, seq: u64, policy: &str, at_ms: TimestampMs) {
        if self.released.len() >= TOMBSTONES {
            self.released.pop_first();
        }
        self.released.insert(
            seq,
            Released {
                by_policy: policy.to_owned(),
                at_ms,
            },
        );
    }
}

/// The registry. Handles are never reused.
#[derive(Debug)]
pub struct Registry {
    inner: RwLock<Inner>,
    handles: Handles,
    limits: RegistryLimits,
    opts: RegistryOptions,
    /// The files of a durable registry.
    store: Option<Mutex<persist::Store>>,
    /// Who listens for requests to owners.
    listeners: requests::SharedListeners,
    counters: requests::Counters,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::with_limits(RegistryLimits::default())
    }
}

impl Registry {
    /// An empty registry in memory holding at most what `limits` allows.
    pub fn with_limits(limits: RegistryLimits) -> Self {
        Registry::with_options(limits, RegistryOptions::default())
    }

    /// [`Registry::with_limits`], with its audit trail's length from `opts`.
    pub fn with_options(limits: RegistryLimits, opts: RegistryOptions) -> Self {
        Registry {
            inner: RwLock::new(Inner::new(&opts)),
            handles: Handles::default(),
            limits,
            opts,
            store: None,
            listeners: Arc::default(),
            counters: requests::Counters::default(),
        }
    }

    /// Tells `quotas` about every registration (which it may refuse) and
    /// release from now on.
    pub fn set_quotas(&self, quotas: Arc<dyn QuotaHook>) {
        self.write().quotas = Some(quotas);
    }

    /// Calls `start`, then `f` with the subject and amount of every
    /// registered resource, all under the read lock: what quotas recount
    /// their levels from, with no registration charged in between.
    pub fn for_each_held(
        &self,
        start: impl FnOnce(),
        mut f: impl FnMut(&warden_quotas::Subject<'_>, warden_quotas::Amount),
    ) {
        let g = self.read();
        start();
        for e in g.entries.iter() {
            let labels: Vec<(&str, &str)> = e.text.labels().collect();
            let subject = warden_quotas::Subject::new(&e.owner, e.kind.name()).with_labels(&labels);
            f(&subject, warden_quotas::Amount::one(e.size_bytes));
        }
    }

    /// Returns its limits.
    pub fn limits(&self) -> RegistryLimits {
        self.limits
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Flushes from the caller's path when changes pile up past
    /// [`RegistryOptions::max_pending`] (the daemon's flush is stuck or
    /// missing); a failure stays pending for the next flush to report.
    fn flush_if_piled_up(&self, pending: usize) {
        if pending >= self.opts.max_pending && self.store.is_some() {
            let _ = self.flush();
        }
    }

    /// Registers a resource at `now_ms` and returns its handle, or why the
    /// registry is too full to take it. A resource with a pid records its
    /// owner process's start time (a read of `/proc`), so that
    /// [`Registry::sweep_orphans`] can tell when that process is gone.
    pub fn register(&self, reg: Registration, now_ms: TimestampMs) -> Result<u64, Full> {
        self.register_checked(reg, now_ms, |_| Ok(Vec::new()))
    }

    /// [`Registry::register`], once `check` (run under the write lock,
    /// before the limits) passes; the new resource then depends on the
    /// sequence numbers `check` returns.
    fn register_checked<E: From<Full>>(
        &self,
        reg: Registration,
        now_ms: TimestampMs,
        check: impl FnOnce(&Inner) -> Result<Vec<u64>, E>,
    ) -> Result<u64, E> {
        let ready = Ready::new(reg);
        let mut g = self.write();
        let seq = self.commit(&mut g, ready, now_ms, check)?;
        let pending = g.pending_len();
        drop(g);
        self.flush_if_piled_up(pending);
        Ok(self.handles.encode(seq))
    }

    /// Adds `ready` under the caller's lock once `check` and the limits
    /// pass; returns its sequence number.
    fn commit<E: From<Full>>(
        &self,
        g: &mut Inner,
        ready: Ready,
        now_ms: TimestampMs,
        check: impl FnOnce(&Inner) -> Result<Vec<u64>, E>,
    ) -> Result<u64, E> {
        let deps = check(g)?;
        if g.entries.len() >= self.limits.max_tracked {
            return Err(Full::Count {
                tracked: g.entries.len(),
            }
            .into());
        }
        if g.bytes.saturating_add(ready.needed) > self.limits.max_bytes {
            return Err(Full::Bytes {
                used: g.bytes,
                needed: ready.needed,
                limit: self.limits.max_bytes,
            }
            .into());
        }
        let Ready {
            reg,
            text,
            start_ticks,
            ..
        } = ready;
        // Last, so that a registration the registry refuses is not charged.
        if let Some(q) = &g.quotas {
            let labels: Vec<(&str, &str)> = text.labels().collect();
            let subject =
                warden_quotas::Subject::new(&reg.owner, reg.kind.name()).with_labels(&labels);
            if let Err(d) = q.admit(&subject, warden_quotas::Amount::one(reg.size_bytes), now_ms) {
                return Err(Full::Quota(d).into());
            }
        }
        let seq = g.next + 1;
        let owner = g.owners.get(&reg.owner);
        g.trail.push(Event {
            at_ms: now_ms,
            seq,
            name: reg.name.into_boxed_str(),
            action: Action::Register,
            actor: Arc::clone(&owner),
            other: 0,
        });
        g.insert(Entry {
            seq,
            created_ms: now_ms,
            accessed_ms: now_ms,
            audited_ms: NEVER,
            size_bytes: reg.size_bytes,
            ttl_ms: reg.ttl_ms.unwrap_or(NO_TTL).min(NO_TTL - 1),
            orphan_since: NOT_ORPHAN,
            start_ticks,
            owner,
            text,
            pid: reg.pid.unwrap_or(0),
            kind: reg.kind,
            flags: 0,
        });
        g.log(Pending::Reg(seq));
        for on in deps {
            g.graph.add(seq, on);
            g.log(Pending::Dep {
                seq,
                on,
                added: true,
            });
        }
        Ok(seq)
    }

    /// [`Registry::register_with_dependencies`] of each of `batch` (a
    /// registration and the handles it depends on), in order, under one
    /// lock: a resource of the batch may depend on one registered before
    /// it only through a later [`Registry::add_dependency`], since its
    /// handle is not known beforehand. Returns a result per item, in order.
    pub fn register_batch(
        &self,
        batch: Vec<(Registration, Vec<u64>)>,
        now_ms: TimestampMs,
    ) -> Vec<Result<u64, RegisterError>> {
        // `/proc` reads and text building outside the lock, as one
        // registration does.
        let ready: Vec<(Ready, Vec<u64>)> = batch
            .into_iter()
            .map(|(reg, deps)| (Ready::new(reg), deps))
            .collect();
        let mut g = self.write();
        let seqs: Vec<Result<u64, RegisterError>> = ready
            .into_iter()
            .map(|(r, deps)| self.commit(&mut g, r, now_ms, |g| self.check_dependencies(g, &deps)))
            .collect();
        let pending = g.pending_len();
        drop(g);
        self.flush_if_piled_up(pending);
        seqs.into_iter()
            .map(|r| r.map(|seq| self.handles.encode(seq)))
            .collect()
    }

    /// Marks a resource as used at `now_ms`; returns false if the handle is
    /// unknown. The audit trail names no caller: see [`Registry::touch_by`].
    pub fn touch(&self, handle: u64, now_ms: TimestampMs) -> bool {
        self.touch_by(handle, &Actor::Caller(String::new()), now_ms)
    }

    /// [`Registry::touch`] by `actor`. The access goes in the audit trail
    /// at most once per resource per [`ACCESS_EVERY_MS`].
    pub fn touch_by(&self, handle: u64, actor: &Actor, now_ms: TimestampMs) -> bool {
        let Some(seq) = self.handles.decode(handle) else {
            return false;
        };
        let mut g = self.write();
        let durable = g.pending.is_some();
        let Some(e) = g.entries.get_mut(seq) else {
            return false;
        };
        e.accessed_ms = now_ms;
        let newly_touched = durable && e.flags & store::TOUCHED == 0;
        e.flags |= store::TOUCHED;
        let audit = e.audited_ms == NEVER || now_ms.saturating_sub(e.audited_ms) >= ACCESS_EVERY_MS;
        let name = audit.then(|| Box::from(e.text.name()));
        if audit {
            e.audited_ms = now_ms;
        }
        if newly_touched {
            g.touched.push(seq);
        }
        if let Some(name) = name {
            g.trail.push(Event {
                at_ms: now_ms,
                seq,
                name,
                action: Action::Access,
                actor: Arc::from(actor.to_string()),
                other: 0,
            });
        }
        let pending = g.pending_len();
        drop(g);
        self.flush_if_piled_up(pending);
        true
    }

    /// Forgets a resource; returns false if the handle is unknown or other
    /// resources depend on it (see [`Registry::release_by`]). The
    /// audit trail names no caller: the API, which knows it, calls
    /// [`Registry::release_by`].
    pub fn release(&self, handle: u64) -> bool {
        self.release_by(
            handle,
            &Actor::Caller(String::new()),
            warden_core::clock::now_ms(),
        )
        .is_some()
    }

    /// Releases a resource on `actor`'s word at `now_ms`; returns its
    /// size, or `None` if it is not registered or other resources depend
    /// on it ([`ReleaseMode::Refuse`]: [`Registry::release_with`] says
    /// which). The audit trail calls it a forced release when the caller
    /// named is not the resource's owner, and remembers a policy's release
    /// for [`Registry::lookup`].
    pub fn release_by(&self, handle: u64, actor: &Actor, now_ms: TimestampMs) -> Option<u64> {
        self.release_with(handle, actor, ReleaseMode::Refuse, now_ms)
            .ok()
            .map(|o| o.size_bytes)
    }

    /// Releases a resource on a cleanup policy's decision, remembering who
    /// did it; returns its size, or `None` if it is no longer registered
    /// or other resources depend on it (see [`Registry::release_by`]).
    pub fn release_by_policy(&self, handle: u64, policy: &str, now_ms: TimestampMs) -> Option<u64> {
        self.release_by(handle, &Actor::Policy(policy.to_owned()), now_ms)
    }

    /// What became of `handle`.
    pub fn lookup(&self, handle: u64) -> Lookup {
        let Some(seq) = self.handles.decode(handle) else {
            return Lookup::Unknown;
        };
        let g = self.read();
        if let Some(e) = g.entries.get(seq) {
            return Lookup::Live(view(handle, e, g.requests.about(seq)));
        }
        g.released
            .get(&seq)
            .map_or(Lookup::Unknown, |r| Lookup::Released(r.clone()))
    }

    /// The registered resources matching `filter` and, if given, `owner`,
    /// oldest first.
    pub fn views(&self, filter: &ResourceFilter, owner: Option<&str>) -> Vec<View> {
        let g = self.read();
        let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
        g.entries
            .iter()
            .filter(|e| matches(filter, e) && owner.is_none_or(|o| *e.owner == *o))
            .take(limit)
            .map(|e| view(self.handles.encode(e.seq), e, g.requests.about(e.seq)))
            .collect()
    }

    /// How many resources are registered.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// True if none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The audit trail, newest first: at most `limit` events, of `handle`
    /// only if given.
    pub fn audit(&self, handle: Option<u64>, limit: usize) -> Vec<AuditEvent> {
        let seq = match handle {
            Some(h) => match self.handles.decode(h) {
                Some(s) => Some(s),
                None => return Vec::new(),
            },
            None => None,
        };
        let g = self.read();
        g.trail
            .iter()
            .rev()
            .filter(|e| seq.is_none_or(|s| e.seq == s))
            .take(limit)
            .map(|e| AuditEvent {
                at_ms: e.at_ms,
                handle: self.handles.encode(e.seq),
                name: e.name.to_string(),
                action: e.action,
                actor: e.actor.to_string(),
                on: (e.other != 0).then(|| self.handles.encode(e.other)),
            })
            .collect()
    }
}
