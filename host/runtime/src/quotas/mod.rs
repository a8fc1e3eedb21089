//! Quotas in force: the engine (`warden-quotas`) the live quota policies
//! define, swapped on reload with the state of every quota whose identity
//! is kept, fed by the registry (a charge on each registration, which it
//! may refuse, a release on each release), evaluated by each quota policy
//! on its trigger, with the events routed: warnings to the alert
//! receivers, cleanups to the named cleanup policies (reporting what they
//! reclaimed against the minimum asked), denials to the log.
//!
//! Quotas over series read their usage from the store at each evaluation;
//! disk quotas walk their paths ([`disk`]).
//!
//! State is saved as a snapshot in the data directory (atomically) on an
//! interval and at shutdown; on start it is restored, then the levels of
//! registered resources are recounted from the registry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use warden_core::records::SeriesSelector;
use warden_core::records::TimestampMs;
use warden_metrics::SeriesStore;
use warden_notify::{AlertStatus, Notification};
use warden_policy::live::{LivePolicy, LiveSet};
use warden_policy::parse::{DiskSource, QuotaSource, SeriesSource};
use warden_policy::schema::PolicyKind;
use warden_quotas::{
    Amount, Denial, EventKind, QuotaDef, QuotaEvent, QuotaSummary, Quotas, Snapshot, Subject, Unit,
};
use warden_resources::Registry;

use crate::scheduler::Context;

pub mod disk;

use disk::DiskUsage;

/// The snapshot's file in the data directory.
pub const SNAPSHOT_FILE: &str = "quotas.json";

/// Cleanup outcomes kept for the API: enough to see the last few hundred
/// quota crossings, a few hundred bytes each.
const KEPT_CLEANUPS: usize = 256;

/// Owners named per quota in gauges and reports: the largest ones. A
/// quota with 100,000 owners would otherwise make 100,000 series.
pub const TOP_OWNERS: usize = 10;

/// Open violations re-sent to receivers that expire alerts (Alertmanager)
/// per quota per cycle; beyond it the oldest stay as they were told.
const REFRESHED: usize = 100;

/// What a `cleanup` action brought about.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupOutcome {
    /// The quota.
    pub quota: String,
    /// The owner whose crossing asked for it (empty for a shared quota).
    pub owner: String,
    /// The cleanup policy run.
    pub policy: String,
    /// When.
    pub at_ms: TimestampMs,
    /// The least asked for, in the quota's unit.
    pub min_reclaim: u64,
    /// What the run reclaimed, in the quota's unit (0 for a dry run or a
    /// run that did not happen).
    pub reclaimed: u64,
    /// True if and only if `reclaimed` reached `min_reclaim`.
    pub met: bool,
    /// What happened, for people.
    pub detail: String,
}

/// One disk quota's walk, locked by its evaluation for as long as it walks.
type SharedDisk = Arc<Mutex<DiskUsage>>;

/// The quota service the daemon, the API and the scheduler share.
pub struct QuotaService {
    engine: ArcSwap<Quotas>,
    /// The cleanup policies by name, for `cleanup` actions.
    cleanups: Mutex<HashMap<String, Arc<LivePolicy>>>,
    /// The quota policies by name, for their receivers on a reset.
    policies: Mutex<HashMap<String, Arc<LivePolicy>>>,
    /// Each quota's aggregates at its last evaluation.
    last: Mutex<BTreeMap<String, QuotaSummary>>,
    outcomes: Mutex<VecDeque<CleanupOutcome>>,
    /// Each disk quota's walk, by policy name, beside what it measures (so
    /// that finding it never waits on a walk in progress).
    disks: Mutex<HashMap<String, (DiskSource, SharedDisk)>>,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for QuotaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaService")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Default for QuotaService {
    /// No quotas, nothing saved.
    fn default() -> Self {
        QuotaService::new(None)
    }
}

impl warden_resources::registry::QuotaHook for QuotaService {
    fn admit(
        &self,
        subject: &Subject<'_>,
        amount: Amount,
        now_ms: TimestampMs,
    ) -> Result<(), Denial> {
        match self.engine.load().admit(subject, amount, now_ms).denial() {
            None => Ok(()),
            Some(d) => Err(d),
        }
    }

    fn release(&self, subject: &Subject<'_>, amount: Amount) {
        self.engine.load().release(subject, amount);
    }
}

impl QuotaService {
    /// A service with no quotas, saving its snapshot in `dir` if given.
    pub fn new(dir: Option<PathBuf>) -> Self {
        QuotaService {
            engine: ArcSwap::from_pointee(Quotas::new(Vec::new()).expect("no quotas are valid")),
            cleanups: Mutex::default(),
            policies: Mutex::default(),
            last: Mutex::default(),
            outcomes: Mutex::default(),
            disks: Mutex::default(),
            dir,
        }
    }

    /// The engine in force now.
    pub fn engine(&self) -> Arc<Quotas> {
        self.engine.load_full()
    }

    /// The engine in force now, for a short use on the hot path: no shared
    /// reference count is touched, so checks on many threads do not contend.
    pub fn current(&self) -> impl std::ops::Deref<Target = Arc<Quotas>> {
        self.engine.load()
    }

    /// Makes the engine enforce the quota policies of `set`: unchanged
    /// definitions keep the engine as it is; otherwise a new one takes the
    /// state of every quota whose identity is kept (see
    /// `warden_quotas::persist`), and levels are recounted from `registry`.
    /// A registration between the state's copy and the swap is counted by
    /// the recount; a rate charged in that instant is lost.
    pub fn sync(&self, set: &LiveSet, registry: &Registry, now: TimestampMs) {
        let defs: Vec<QuotaDef> = set
            .policies()
            .filter(|p| p.policy.spec.enabled)
            .filter_map(|p| p.policy.quota.clone())
            .collect();
        *self.cleanups.lock().unwrap_or_else(|p| p.into_inner()) = set
            .policies()
            .filter(|p| p.policy.kind() == PolicyKind::Cleanup)
            .map(|p| (p.name().to_owned(), Arc::clone(p)))
            .collect();
        *self.policies.lock().unwrap_or_else(|p| p.into_inner()) = set
            .policies()
            .filter(|p| p.policy.quota.is_some())
            .map(|p| (p.name().to_owned(), Arc::clone(p)))
            .collect();
        self.disks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| defs.iter().any(|d| &d.name == name));
        let old = self.engine.load_full();
        if old.defs().eq(defs.iter()) {
            return;
        }
        let new = match Quotas::new(defs) {
            Ok(q) => q,
            Err(e) => {
                // Parsing validated each; only a clash across files is left.
                tracing::error!(error = %e, "the quota policies cannot be enforced together; the previous set stays in force");
                return;
            }
        };
        new.restore(&old.snapshot(now), now);
        self.engine.store(Arc::new(new));
        self.recount(registry, now);
        let names: std::collections::HashSet<String> =
            self.engine.load().defs().map(|d| d.name.clone()).collect();
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| names.contains(k));
    }

    /// Sets every level quota's usage to what `registry` holds, under the
    /// registry's lock so that no registration is counted twice or missed.
    pub fn recount(&self, registry: &Registry, now: TimestampMs) {
        let engine = self.engine.load_full();
        registry.for_each_held(|| engine.zero_levels(), |s, a| engine.add_level(s, a, now));
    }

    /// Restores the snapshot saved in the data directory, if any; returns
    /// what it says about it. Call after the first [`QuotaService::sync`],
    /// then [`QuotaService::recount`].
    pub fn load(&self, now: TimestampMs) -> Result<String, String> {
        let Some(path) = self.path() else {
            return Ok("no data directory".into());
        };
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok("no saved quota state".into());
            }
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        };
        let snap = Snapshot::from_json(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))?;
        let restored = self.engine.load().restore(&snap, now);
        Ok(format!(
            "restored {} quotas from `{}`",
            restored.len(),
            path.display()
        ))
    }

    /// Saves the state in the data directory, atomically.
    pub fn save(&self, now: TimestampMs) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let snap = self.engine.load().snapshot(now);
        warden_core::fsx::write_atomic(dir, SNAPSHOT_FILE, &snap.to_json())
    }

    fn path(&self) -> Option<PathBuf> {
        self.dir
            .as_deref()
            .map(|d| Path::new(d).join(SNAPSHOT_FILE))
    }

    /// The last evaluation's aggregates of each quota, by name.
    pub fn summaries(&self) -> BTreeMap<String, QuotaSummary> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Recent cleanup outcomes, oldest first.
    pub fn cleanups(&self) -> Vec<CleanupOutcome> {
        let o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        o.iter().cloned().collect()
    }

    /// One quota policy's evaluation: measures its quota, runs it through
    /// the state machine and acts on the events. Returns what it measured
    /// and did, for the policy's record.
    pub(crate) fn cycle(
        &self,
        p: &LivePolicy,
        cx: &Context,
        now: TimestampMs,
    ) -> Result<String, (&'static str, String)> {
        let engine = self.engine.load_full();
        let Some(id) = engine.id(p.name()) else {
            return Err((
                "not_loaded",
                format!(
                    "quota `{}` is not in force (its policy is disabled or failed to load)",
                    p.name()
                ),
            ));
        };
        let def = engine.defs().find(|d| d.name == p.name()).cloned();
        let mut disk = None;
        let read = match &p.policy.quota_source {
            None => None,
            Some(QuotaSource::Series(source)) => {
                let n = measure_series(&engine, id, source, &cx.series, now);
                Some(format!(
                    "read {n} series `{}` reported within {} s",
                    source.metric,
                    source.max_age_ms / 1000
                ))
            }
            Some(QuotaSource::Disk(source)) => {
                let usage = self.disk(p.name(), source);
                let mut d = usage.lock().unwrap_or_else(|p| p.into_inner());
                let finished = d.step(now).map_err(|e| ("unreadable", e.to_string()))?;
                let per_owner = def.as_ref().is_some_and(|d| d.scope.per_owner);
                match d.usage(per_owner) {
                    // Nothing measured yet, so nothing to hold to a limit;
                    // the record says how far the first walk got.
                    None => {
                        return Ok(format!(
                            "{}; nothing is enforced until the first walk finishes",
                            d.describe()
                        ));
                    }
                    Some(values) if finished => engine.observe(id, &values),
                    Some(_) => {}
                }
                let line = d.describe();
                drop(d);
                disk = Some(usage);
                Some(line)
            }
        };
        let events = engine.evaluate_quota(id, now);
        let summary = engine.summary(id, now, TOP_OWNERS);
        let unit = def.as_ref().map_or(Unit::Count, |d| d.measure.unit());
        let mut did = Vec::new();
        let mut alerts = Vec::new();
        for e in &events {
            match &e.kind {
                EventKind::Warn { limit } => {
                    tracing::warn!(quota = %e.quota, owner = %e.owner, usage = e.usage, limit, "quota over its limit");
                    alerts.push(notification(p, e, *limit, false));
                }
                EventKind::Resolved => {
                    tracing::info!(quota = %e.quota, owner = %e.owner, usage = e.usage, "quota back within limits");
                    alerts.push(notification(p, e, 0, true));
                }
                EventKind::DenyOn { limit } => {
                    tracing::warn!(quota = %e.quota, owner = %e.owner, usage = e.usage, limit, "quota full: registrations over it are refused");
                    did.push(format!("denying `{}` at {limit}", owner_name(&e.owner)));
                }
                EventKind::DenyOff => {
                    tracing::info!(quota = %e.quota, owner = %e.owner, "quota no longer denies");
                    did.push(format!("no longer denying `{}`", owner_name(&e.owner)));
                }
                EventKind::CleanupRequested {
                    policies,
                    min_reclaim,
                } => {
                    // What a walk in progress counted may be deleted now.
                    if let Some(d) = &disk {
                        d.lock().unwrap_or_else(|p| p.into_inner()).restart();
                    }
                    for name in policies {
                        let o = self.run_cleanup(cx, e, name, *min_reclaim, unit);
                        did.push(format!("cleanup `{}`: {}", o.policy, o.detail));
                        let mut kept = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
                        if kept.len() >= KEPT_CLEANUPS {
                            kept.pop_front();
                        }
                        kept.push_back(o);
                    }
                }
            }
        }
        // Receivers that expire alerts by themselves hear the open
        // violations again each cycle, as firing alerts are refreshed.
        let refresh: Vec<(Notification, bool)> = engine
            .violations()
            .into_iter()
            .filter(|v| v.quota == p.name() && v.ended_ms.is_none())
            .filter(|v| !events.iter().any(|e| e.owner == v.owner))
            .take(REFRESHED)
            .map(|v| {
                let e = QuotaEvent {
                    quota: v.quota.clone(),
                    owner: v.owner.clone(),
                    at_ms: v.started_ms,
                    from: warden_quotas::State::Ok,
                    to: v.worst,
                    usage: v.peak,
                    kind: EventKind::Warn { limit: v.limit },
                };
                (notification(p, &e, v.limit, false), true)
            })
            .collect();
        let mut all: Vec<(Notification, bool)> = alerts.into_iter().map(|n| (n, false)).collect();
        let warned = all.len();
        all.extend(refresh);
        if !all.is_empty() {
            cx.dispatcher.dispatch_notifications(
                p.name(),
                p.policy.spec.notify.as_deref(),
                &all,
                now,
            );
        }
        let mut line = describe(&summary, def.as_ref());
        if let Some(read) = read {
            line = format!("{read}; {line}");
        }
        if warned > 0 {
            line.push_str(&format!("; {warned} warnings sent"));
        }
        if !did.is_empty() {
            line.push_str("; ");
            line.push_str(&did.join("; "));
        }
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(summary.quota.clone(), summary);
        Ok(line)
    }

    /// Returns the disk usage of quota policy `name`, made anew if it
    /// measured other paths before.
    fn disk(&self, name: &str, source: &DiskSource) -> SharedDisk {
        let mut all = self.disks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, d)) = all.get(name)
            && s == source
        {
            return Arc::clone(d);
        }
        let d = Arc::new(Mutex::new(DiskUsage::new(source.clone())));
        all.insert(name.to_owned(), (source.clone(), Arc::clone(&d)));
        d
    }

    /// Starts quota `name` afresh (see `Quotas::reset`), telling its
    /// receivers that what it warned about is resolved.
    pub fn reset(
        &self,
        name: &str,
        cx: &Context,
        now: TimestampMs,
    ) -> Result<Vec<QuotaEvent>, warden_quotas::Error> {
        let events = self.engine.load().reset(name, now)?;
        let policy = self
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        if let Some(p) = policy {
            let all: Vec<(Notification, bool)> = events
                .iter()
                .filter(|e| e.kind == EventKind::Resolved)
                .map(|e| (notification(&p, e, 0, true), false))
                .collect();
            if !all.is_empty() {
                cx.dispatcher.dispatch_notifications(
                    name,
                    p.policy.spec.notify.as_deref(),
                    &all,
                    now,
                );
            }
        }
        tracing::info!(quota = name, events = events.len(), "quota reset");
        Ok(events)
    }

    /// Appends the quota gauges to a scrape in Prometheus' text format:
    /// per quota aggregates, and its [`TOP_OWNERS`] largest owners.
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        use std::fmt::Write;
        let engine = self.engine.load_full();
        let now = warden_core::clock::now_ms();
        let all: Vec<(QuotaDef, QuotaSummary)> = engine
            .defs()
            .filter_map(|d| {
                let id = engine.id(&d.name)?;
                Some((d.clone(), engine.summary(id, now, TOP_OWNERS)))
            })
            .collect();
        let family = |out: &mut String, name: &str, help: &str| {
            writeln!(out, "# HELP {name} {help}")?;
            writeln!(out, "# TYPE {name} gauge")
        };
        family(
            out,
            "warden_quota_usage",
            "Usage summed over a quota's owners, in its unit.",
        )?;
        for (d, s) in &all {
            writeln!(
                out,
                "warden_quota_usage{{quota=\"{}\",unit=\"{}\"}} {}",
                esc(&d.name),
                unit_name(d.measure.unit()),
                s.total
            )?;
        }
        family(
            out,
            "warden_quota_limit",
            "A quota's limits, per owner when it is per owner.",
        )?;
        for (d, _) in &all {
            let l = &d.limits;
            for (which, v) in [("soft", l.soft), ("hard", l.hard), ("burst", l.burst)] {
                if let Some(v) = v {
                    writeln!(
                        out,
                        "warden_quota_limit{{quota=\"{}\",limit=\"{which}\"}} {v}",
                        esc(&d.name)
                    )?;
                }
            }
        }
        family(
            out,
            "warden_quota_owners",
            "A quota's owners in each state.",
        )?;
        for (d, s) in &all {
            for (i, state) in ["ok", "soft-pending", "soft", "burst", "hard"]
                .iter()
                .enumerate()
            {
                writeln!(
                    out,
                    "warden_quota_owners{{quota=\"{}\",state=\"{state}\"}} {}",
                    esc(&d.name),
                    s.by_state[i]
                )?;
            }
        }
        family(
            out,
            "warden_quota_max_owner_usage",
            "The largest usage of one owner of a quota.",
        )?;
        for (d, s) in &all {
            writeln!(
                out,
                "warden_quota_max_owner_usage{{quota=\"{}\"}} {}",
                esc(&d.name),
                s.max
            )?;
        }
        family(
            out,
            "warden_quota_top_owner_usage",
            "Usage of a quota's largest owners (at most 10 per quota).",
        )?;
        for (d, s) in &all {
            for (owner, u) in &s.top {
                writeln!(
                    out,
                    "warden_quota_top_owner_usage{{quota=\"{}\",owner=\"{}\"}} {u}",
                    esc(&d.name),
                    esc(owner_name(owner))
                )?;
            }
        }
        family(
            out,
            "warden_quota_violations_open",
            "Violations of a quota not yet over.",
        )?;
        for (d, s) in &all {
            let n: u64 = s.by_state[2..].iter().sum();
            writeln!(
                out,
                "warden_quota_violations_open{{quota=\"{}\"}} {n}",
                esc(&d.name)
            )?;
        }
        Ok(())
    }

    fn run_cleanup(
        &self,
        cx: &Context,
        e: &QuotaEvent,
        name: &str,
        min_reclaim: u64,
        unit: Unit,
    ) -> CleanupOutcome {
        let mut o = CleanupOutcome {
            quota: e.quota.clone(),
            owner: e.owner.clone(),
            policy: name.to_owned(),
            at_ms: e.at_ms,
            min_reclaim,
            reclaimed: 0,
            met: false,
            detail: String::new(),
        };
        let policy = self
            .cleanups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        let Some(policy) = policy else {
            o.detail = format!("no cleanup policy `{name}` is loaded; nothing was reclaimed");
            tracing::error!(quota = %e.quota, policy = name, "{}", o.detail);
            return o;
        };
        match crate::scheduler::run_for_quota(&policy, cx) {
            Err(why) => o.detail = format!("did not run: {why}; nothing was reclaimed"),
            Ok(runs) => {
                let dry = runs.iter().any(|r| r.dry_run);
                o.reclaimed = runs
                    .iter()
                    .filter(|r| !r.dry_run)
                    .map(|r| match unit {
                        Unit::Count => r.counts()[0] as u64,
                        Unit::Bytes => r.bytes_freed,
                    })
                    .sum();
                o.met = o.reclaimed >= min_reclaim;
                o.detail = format!(
                    "reclaimed {} of at least {min_reclaim} {}{}{}",
                    o.reclaimed,
                    unit_name(unit),
                    if o.met { "" } else { " (short of the minimum)" },
                    if dry {
                        " (a dry run reclaims nothing)"
                    } else {
                        ""
                    },
                );
            }
        }
        if o.met {
            tracing::info!(quota = %e.quota, policy = name, reclaimed = o.reclaimed, min_reclaim, "quota cleanup done");
        } else {
            tracing::warn!(quota = %e.quota, policy = name, reclaimed = o.reclaimed, min_reclaim, "quota cleanup reclaimed less than asked: {}", o.detail);
        }
        o
    }
}

/// Escapes a label value for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn owner_name(owner: &str) -> &str {
    if owner.is_empty() { "everyone" } else { owner }
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Count => "items",
        Unit::Bytes => "bytes",
    }
}

/// Says what an evaluation measured.
/// Reads what a quota over series measures at `now`: the latest sample
/// of each series the source selects, within its `max_age`, summed per
/// owner (the owner label's value; a series without that label is no
/// one's) or over all; sets it as the quota's usage. Returns how many
/// series were read.
fn measure_series(
    engine: &Quotas,
    id: warden_quotas::QuotaId,
    source: &SeriesSource,
    store: &SeriesStore,
    now: TimestampMs,
) -> usize {
    let selector = SeriesSelector {
        metric: source.metric.clone(),
        matchers: source.labels.clone(),
    };
    let mut usage: HashMap<String, u64> = HashMap::new();
    let mut read = 0;
    store.for_each_latest(&selector, source.max_age_ms, now, |key, last| {
        let owner = match &source.owner_label {
            None => "",
            Some(label) => match key.labels.iter().find(|(k, _)| **k == **label) {
                Some((_, v)) => v,
                None => return,
            },
        };
        // A gauge can go negative or be NaN; neither is usage.
        let value = if last.value.is_finite() && last.value > 0.0 {
            last.value.round().min(u64::MAX as f64) as u64
        } else {
            0
        };
        match usage.get_mut(owner) {
            Some(total) => *total = total.saturating_add(value),
            None => {
                usage.insert(owner.to_owned(), value);
            }
        }
        read += 1;
    });
    engine.observe(id, &usage);
    read
}

fn describe(s: &QuotaSummary, def: Option<&QuotaDef>) -> String {
    let unit = def.map_or("", |d| unit_name(d.measure.unit()));
    let limits = def.map_or(String::new(), |d| {
        let l = &d.limits;
        [("soft", l.soft), ("hard", l.hard), ("burst", l.burst)]
            .iter()
            .filter_map(|(n, v)| v.map(|v| format!("{n} {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let [ok, pending, soft, burst, hard] = s.by_state;
    let mut line = format!(
        "measured {} owners holding {} {unit} in all (largest {}; limits {limits}): {ok} ok, {pending} soft-pending, {soft} soft, {burst} burst, {hard} hard",
        s.owners, s.total, s.max
    );
    if let Some((o, u)) = s.top.first()
        && (soft + burst + hard) > 0
    {
        line.push_str(&format!("; most: `{}` at {u}", owner_name(o)));
    }
    line
}

/// The alert a quota warning (or its resolution) is sent as: named
/// `QuotaExceeded`, with the quota, owner and state as labels, so that
/// Alertmanager groups them by quota and tells owners apart.
fn notification(p: &LivePolicy, e: &QuotaEvent, limit: u64, resolved: bool) -> Notification {
    let spec = &p.policy.spec;
    let mut labels = spec.labels.clone();
    labels.insert("alertname".into(), "QuotaExceeded".into());
    labels.insert("quota".into(), e.quota.clone());
    labels.insert("owner".into(), owner_name(&e.owner).to_owned());
    labels.insert(
        "severity".into(),
        spec.severity
            .map_or("warning", crate::findings::notify::severity_name)
            .into(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".into(),
        if resolved {
            format!(
                "quota `{}` of `{}` is back within limits",
                e.quota,
                owner_name(&e.owner)
            )
        } else {
            format!(
                "quota `{}` of `{}`: usage {} over its limit of {limit} ({:?})",
                e.quota,
                owner_name(&e.owner),
                e.usage,
                e.to
            )
        },
    );
    annotations.insert("usage".into(), e.usage.to_string());
    if !resolved {
        annotations.insert("limit".into(), limit.to_string());
    }
    Notification {
        status: if resolved {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        labels,
        annotations,
        starts_at_ms: e.at_ms,
        ends_at_ms: resolved.then_some(e.at_ms),
        policy: p.name().to_owned(),
    }
}
