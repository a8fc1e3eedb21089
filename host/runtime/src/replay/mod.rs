//! `warden replay`: a policy file run over recorded series in simulated time,
//! printing every decision — how an operator tries a rule or a detector on
//! last week before deploying it, and how the detector benchmarks run.
//!
//! The series are loaded into a real series store ([`store`], [`load`]);
//! each policy is compiled as the daemon compiles it and bound to that store,
//! then evaluated at its interval (or cron schedule) from `from` to `to`,
//! with the simulated time as the plugin's `now` and as the end of every
//! window it queries. What follows an evaluation is the daemon's own code:
//! the alert state machine and the findings' lifecycle, with the policy's
//! `for`, `keep_firing_for`, `cooldown`, `min_severity`, `resolve_after` and
//! `max_findings`, and the notifications receivers would get. Nothing is
//! sent and nothing is saved.
//!
//! Alert and detector policies replay over series. Recovery policies replay
//! over recorded failures ([`failures`]): each report is handed, at its
//! time, to the daemon's recovery service (classification, policy choice,
//! breaker, retry budget, the plugin's `decide` with the simulated time as
//! its `now`), and each decision and each breaker change is printed.
//! Cleanup and quota policies act on the machine, not on recordings, and
//! are left out with a note.

pub mod decision;
pub mod failures;
pub mod load;
mod recovery;
mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_metrics::SeriesStore;
use warden_plugin_host::{DataSource, Evaluator};
use warden_policy::PluginCache;
use warden_policy::parse::{ParseContext, PolicyError};
use warden_policy::schema::{PolicyKind, Trigger};

pub use decision::Decision;
use step::Stepper;

/// Returns a store that keeps every sample loaded into it: no cap on samples
/// per series, and a retention of a century, so nothing recorded is dropped
/// before the replay reaches it.
pub fn store() -> Arc<SeriesStore> {
    Arc::new(SeriesStore::new(
        warden_metrics::StoreLimits {
            max_series: 10_000_000,
            max_samples: usize::MAX,
            retention: Duration::from_secs(100 * 365 * 24 * 3600),
        },
        warden_metrics::validate::PiiKeys::default(),
    ))
}

/// When a policy runs in simulated time.
#[derive(Debug, Clone)]
enum Schedule {
    Every(i64),
    Cron(String),
}

impl Schedule {
    /// The first run at or after `from`, then the one after each run.
    fn next(&self, after: i64, first: bool) -> Option<i64> {
        match self {
            Schedule::Every(_) if first => Some(after),
            Schedule::Every(ms) => after.checked_add(*ms),
            Schedule::Cron(expr) => {
                let t = chrono::DateTime::from_timestamp_millis(after - i64::from(first))?;
                warden_policy::parse::next_cron_fire_after(expr, t)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }
}

/// A policy of the file, ready to replay.
struct Replayed {
    name: String,
    evaluator: Evaluator,
    schedule: Schedule,
    stepper: Stepper,
    next_ms: Option<i64>,
}

/// A policy file ready to replay.
pub struct Replay {
    policies: Vec<Replayed>,
    /// The file's recovery policies, which replay over recorded failures.
    recovery: recovery::Failures,
    /// Policies left out, with why.
    pub skipped: Vec<(String, String)>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("policies", &self.policies.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Evaluations run.
    pub evaluations: u64,
    /// Evaluations that failed.
    pub failures: u64,
    /// Decisions printed.
    pub decisions: u64,
    /// Simulated time covered, ms.
    pub simulated_ms: i64,
    /// Wall time the evaluations took.
    pub elapsed: Duration,
}

impl Replay {
    /// Parses and compiles the policy file `path` (content `text`) and binds
    /// its policies to `data`. Errors are the file's, located, as `warden
    /// check` reports them.
    pub fn new(
        path: &Path,
        text: &str,
        cx: &ParseContext,
        plugins: &PluginCache,
        data: &Arc<dyn DataSource>,
    ) -> Result<Replay, Vec<PolicyError>> {
        let parsed = warden_policy::parse::parse(path, text, cx)?;
        let mut policies = Vec::new();
        let mut recovery = Vec::new();
        let mut skipped = Vec::new();
        let mut errors = Vec::new();
        let states: Arc<dyn warden_plugin_host::PluginStateStore> =
            Arc::new(warden_plugin_host::MemoryStates::default());
        for policy in parsed {
            let name = policy.name().to_owned();
            let why_not = match policy.kind() {
                PolicyKind::Alert | PolicyKind::Detector | PolicyKind::Recovery => None,
                kind => Some(format!(
                    "a {} policy acts on the machine, not on recorded series",
                    kind.name()
                )),
            };
            if let Some(why) = why_not {
                skipped.push((name, why));
                continue;
            }
            if policy.kind() == PolicyKind::Recovery {
                if !policy.spec.enabled {
                    skipped.push((name, "`enabled: false`".into()));
                    continue;
                }
                match recovery::bind(path, policy, plugins, data, &states) {
                    Ok(p) => recovery.push(p),
                    Err(mut e) => errors.append(&mut e),
                }
                continue;
            }
            let schedule = match &policy.trigger {
                Trigger::Interval(d) => {
                    Schedule::Every(i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX).max(1))
                }
                Trigger::Cron(expr) => Schedule::Cron(expr.clone()),
                other => {
                    let trigger = serde_json::to_string(other).unwrap_or_default();
                    skipped.push((
                        name,
                        format!("replay steps at a policy's interval or cron schedule; this one runs on {trigger}"),
                    ));
                    continue;
                }
            };
            if !policy.spec.enabled {
                skipped.push((name, "`enabled: false`".into()));
                continue;
            }
            let (Some(source), Some(kind)) = (&policy.plugin, policy.kind().plugin_kind()) else {
                continue;
            };
            let plugin = match plugins.resolve(source, kind, policy.spec.sha256.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(PolicyError::at_policy(
                        path,
                        &policy,
                        format!("plugin {}", e.kind_message()),
                    ));
                    continue;
                }
            };
            // As the daemon binds it: `init` run now (a bad config is an
            // error of the file, located, not of the first step), the
            // policy's isolation, and plugin state kept for this run only.
            let evaluator = match warden_policy::bind::bind(
                path,
                &policy,
                &plugin,
                Arc::clone(data),
                Arc::clone(&states),
            ) {
                Ok(e) => e,
                Err(mut e) => {
                    errors.append(&mut e);
                    continue;
                }
            };
            policies.push(Replayed {
                name,
                evaluator,
                schedule,
                stepper: Stepper::new(&policy.spec),
                next_ms: None,
            });
        }
        if errors.is_empty() {
            Ok(Replay {
                policies,
                recovery: recovery::Failures::new(path, recovery),
                skipped,
            })
        } else {
            Err(errors)
        }
    }

    /// Returns the names of the policies that replay: those over series,
    /// then the recovery policies.
    pub fn policies(&self) -> impl Iterator<Item = &str> {
        self.policies
            .iter()
            .map(|p| p.name.as_str())
            .chain(self.recovery.names())
    }

    /// Returns the names of the recovery policies, which replay only over
    /// recorded failures ([`Replay::failures`]).
    pub fn recovery_policies(&self) -> impl Iterator<Item = &str> {
        self.recovery.names()
    }

    /// Gives the recorded failures the recovery policies replay over, in
    /// time order ([`failures::load`]).
    pub fn failures(&mut self, records: Vec<failures::Record>) {
        self.recovery.records = records;
    }

    /// Runs every policy from `from_ms` to `to_ms` (both included), in
    /// simulated time order (the file's order at equal times), and hands
    /// each decision to `emit`.
    pub fn run(&mut self, from_ms: i64, to_ms: i64, mut emit: impl FnMut(&Decision)) -> Summary {
        let started = Instant::now();
        let mut summary = Summary {
            simulated_ms: to_ms.saturating_sub(from_ms),
            ..Summary::default()
        };
        for p in &mut self.policies {
            p.next_ms = p.schedule.next(from_ms, true);
        }
        let mut out = Vec::new();
        self.recovery.start(from_ms);
        loop {
            let next = self
                .policies
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.next_ms.map(|t| (i, t)))
                .min_by_key(|&(i, t)| (t, i));
            // A recorded failure at the time of an evaluation goes first: it
            // happened by then.
            if let Some(at) = self.recovery.next_at()
                && at <= to_ms
                && next.is_none_or(|(_, t)| at <= t)
            {
                let _span = tracing::info_span!("recovery", replay_at_ms = at).entered();
                summary.evaluations += 1;
                if !self.recovery.step(&mut out) {
                    summary.failures += 1;
                }
                for d in out.drain(..) {
                    summary.decisions += 1;
                    emit(&d);
                }
                continue;
            }
            let Some((i, at)) = next else { break };
            if at > to_ms {
                break;
            }
            let p = &mut self.policies[i];
            let _span =
                tracing::info_span!("policy", policy = %p.name, replay_at_ms = at).entered();
            summary.evaluations += 1;
            if !p.stepper.step(&p.evaluator, &p.name, at, &mut out) {
                summary.failures += 1;
            }
            for d in out.drain(..) {
                summary.decisions += 1;
                emit(&d);
            }
            p.next_ms = p.schedule.next(at, false);
        }
        summary.elapsed = started.elapsed();
        summary
    }
}

/// The times in milliseconds of the oldest and newest samples loaded.
pub type Extent = Option<(i64, i64)>;

/// Loads every source into a fresh replay store and returns it with the
/// times of its oldest and newest samples.
pub fn load_sources(sources: &[PathBuf]) -> Result<(Arc<SeriesStore>, Extent), String> {
    let store = store();
    for s in sources {
        load::load(s, &store)?;
    }
    let extent = store.extent();
    Ok((store, extent))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
