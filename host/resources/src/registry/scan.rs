//! Reports over the whole registry, read under its read lock: resources
//! past their TTL, orphans and dependency cycles ([`Registry::scan`]), and
//! the liveness sweep that finds orphans ([`Registry::sweep_orphans`]).

use super::*;

/// What [`Registry::scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Resources looked at.
    pub scanned: usize,
    /// Resources unused past their TTL.
    pub expired: usize,
    /// Resources whose owner process is gone.
    pub orphans: usize,
    /// The first [`ScanReport::FIRST`] expired, oldest first.
    pub first_expired: Vec<u64>,
    /// The first [`ScanReport::FIRST`] orphans, oldest first.
    pub first_orphans: Vec<u64>,
    /// Cycles among the resources' dependencies (see
    /// [`Registry::cycles`]): a finding, since a cycle cannot be released
    /// but as a whole.
    pub cycles: usize,
    /// The first [`ScanReport::FIRST`] cycles, each its members' handles.
    pub first_cycles: Vec<Vec<u64>>,
}

impl ScanReport {
    /// Handles listed of each.
    pub const FIRST: usize = 100;
}

/// What [`Registry::sweep_orphans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Resources with an owner process, checked.
    pub checked: usize,
    /// The ones found orphaned by this sweep.
    pub orphaned: Vec<u64>,
}

impl Registry {
    /// Finds the resources unused past their TTL at `now_ms` and the
    /// orphans (as the last [`Registry::sweep_orphans`] found them): counts,
    /// and the first [`ScanReport::FIRST`] handles of each. Reads memory
    /// only, under the read lock.
    pub fn scan(&self, now_ms: TimestampMs) -> ScanReport {
        let g = self.read();
        let mut r = ScanReport::default();
        for e in g.entries.iter() {
            r.scanned += 1;
            if e.ttl_ms != NO_TTL
                && now_ms.saturating_sub(e.accessed_ms)
                    > i64::try_from(e.ttl_ms).unwrap_or(i64::MAX)
            {
                r.expired += 1;
                if r.first_expired.len() < ScanReport::FIRST {
                    r.first_expired.push(e.seq);
                }
            }
            if e.orphan_since != NOT_ORPHAN {
                r.orphans += 1;
                if r.first_orphans.len() < ScanReport::FIRST {
                    r.first_orphans.push(e.seq);
                }
            }
        }
        let cycles = g.graph.cycles();
        drop(g);
        r.cycles = cycles.len();
        r.first_cycles = cycles.iter().take(ScanReport::FIRST).cloned().collect();
        // Encoding costs a few hashes: only for the handles shown.
        for s in r
            .first_expired
            .iter_mut()
            .chain(r.first_orphans.iter_mut())
            .chain(r.first_cycles.iter_mut().flatten())
        {
            *s = self.handles.encode(*s);
        }
        r
    }

    /// Marks as orphans (since `now_ms`) the resources whose owner process
    /// is gone or whose pid now belongs to another process. `/proc` is read
    /// once per distinct pid, outside the lock.
    pub fn sweep_orphans(&self, now_ms: TimestampMs) -> SweepReport {
        let owners: BTreeMap<u32, ()> = self
            .read()
            .entries
            .iter()
            .filter(|e| e.pid != 0 && e.orphan_since == NOT_ORPHAN)
            .map(|e| (e.pid, ()))
            .collect();
        let now_ticks: BTreeMap<u32, Option<u64>> = owners
            .into_keys()
            .map(|pid| (pid, liveness::start_ticks(pid)))
            .collect();
        let mut g = self.write();
        let mut report = SweepReport::default();
        let mut found = Vec::new();
        for e in g.entries.iter_mut() {
            if e.pid == 0 || e.orphan_since != NOT_ORPHAN {
                continue;
            }
            // A pid registered after the reads above is judged next time.
            let Some(now) = now_ticks.get(&e.pid) else {
                continue;
            };
            report.checked += 1;
            if liveness::judge(e.start_ticks, *now) == liveness::Owner::Gone {
                e.orphan_since = now_ms;
                found.push((e.seq, Box::<str>::from(e.text.name())));
            }
        }
        let warden: Arc<str> = Arc::from(Actor::Warden.to_string());
        for (seq, name) in found {
            g.trail.push(Event {
                at_ms: now_ms,
                seq,
                name,
                action: Action::Orphaned,
                actor: Arc::clone(&warden),
                other: 0,
            });
            g.log(Pending::Orphan { seq, at_ms: now_ms });
            report.orphaned.push(self.handles.encode(seq));
        }
        report
    }
}
