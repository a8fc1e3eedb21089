//! Recovery policies replayed over recorded failures: the daemon's recovery
//! service, on a clock the replay moves, with its state in memory only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use super::decision::Decision;
use super::failures::{Record, Sent};
use crate::recovery::{self, BreakerChange, Recovery, TestClock};
use warden_plugin_host::{DataSource, PluginStateStore};
use warden_policy::PluginCache;
use warden_policy::Policy;
use warden_policy::live::{FileState, LivePolicy, LiveSet};
use warden_policy::parse::PolicyError;

/// The jitter seed of a replay: fixed, so two replays of one recording
/// print the same decisions.
const SEED: u64 = 0x5745_5244_454e;

/// Binds a recovery policy as the daemon does (its plugin's `init` run now,
/// so a config the plugin refuses is an error of the file).
pub(super) fn bind(
    path: &Path,
    policy: Policy,
    plugins: &PluginCache,
    data: &Arc<dyn DataSource>,
    states: &Arc<dyn PluginStateStore>,
) -> Result<LivePolicy, Vec<PolicyError>> {
    let (plugin, evaluator) = match (&policy.plugin, policy.kind().plugin_kind()) {
        (Some(source), Some(kind)) => {
            let plugin = plugins
                .resolve(source, kind, policy.spec.sha256.as_deref())
                .map_err(|e| {
                    vec![PolicyError::at_policy(
                        path,
                        &policy,
                        format!("plugin {}", e.kind_message()),
                    )]
                })?;
            let evaluator = warden_policy::bind::bind(
                path,
                &policy,
                &plugin,
                Arc::clone(data),
                Arc::clone(states),
            )?;
            (Some(plugin), Some(evaluator))
        }
        _ => (None, None),
    };
    Ok(LivePolicy {
        file: path.to_path_buf(),
        policy,
        plugin,
        evaluator,
        fingerprint: String::new(),
        loaded_at_ms: 0,
        hold_until_ms: None,
    })
}

/// The recovery side of a replay.
pub(super) struct Failures {
    file: PathBuf,
    policies: Vec<Arc<LivePolicy>>,
    /// The recorded reports, in time order.
    pub(super) records: Vec<Record>,
    next: usize,
    /// Made fresh by each run, so a second run starts from closed breakers.
    service: Option<Service>,
}

/// A run's recovery service, its clock, and its breakers' changes.
struct Service {
    recovery: Recovery,
    clock: TestClock,
    changes: Receiver<BreakerChange>,
}

impl Failures {
    pub(super) fn new(file: &Path, policies: Vec<LivePolicy>) -> Failures {
        Failures {
            file: file.to_path_buf(),
            policies: policies.into_iter().map(Arc::new).collect(),
            records: Vec::new(),
            next: 0,
            service: None,
        }
    }

    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name())
    }

    /// Starts a run at `from_ms`: records before it are not replayed.
    pub(super) fn start(&mut self, from_ms: i64) {
        self.next = self.records.partition_point(|r| r.at_ms < from_ms);
        self.service = None;
        if self.policies.is_empty() {
            return;
        }
        let clock = TestClock::at(from_ms);
        let (tx, changes) = std::sync::mpsc::channel();
        let recovery = Recovery::new(recovery::Options {
            clock: Some(Arc::new(clock.clone())),
            seed: Some(SEED),
            transitions: Some(tx),
            ..recovery::Options::default()
        });
        let mut set = LiveSet::default();
        set.files.insert(
            self.file.clone(),
            FileState {
                path: self.file.clone(),
                hash: None,
                loaded_at_ms: None,
                policies: self.policies.clone(),
                error: None,
            },
        );
        recovery.sync(&set);
        self.service = Some(Service {
            recovery,
            clock,
            changes,
        });
    }

    /// The time of the next record to replay, if any.
    pub(super) fn next_at(&self) -> Option<i64> {
        self.service.as_ref()?;
        self.records.get(self.next).map(|r| r.at_ms)
    }

    /// Replays the next record and appends its decisions to `out`: the
    /// breaker changes it caused, in order, then the decision it got.
    /// Returns false if the service refused it (the refusal is a decision
    /// too).
    pub(super) fn step(&mut self, out: &mut Vec<Decision>) -> bool {
        let (Some(s), Some(r)) = (&self.service, self.records.get(self.next)) else {
            return true;
        };
        self.next += 1;
        s.clock.set(r.at_ms);
        let (decided, ok) = match &r.what {
            Sent::Failure(f) => match s.recovery.report_failure(f.clone()) {
                Ok(a) => (Some(Decision::recovery(r.at_ms, &a.record)), true),
                Err(e) => (Some(refused(r, &e)), false),
            },
            Sent::Outcomes(batch) => match s.recovery.report_outcomes(batch) {
                Ok(_) => (None, true),
                Err(e) => (Some(refused(r, &e)), false),
            },
        };
        out.extend(s.changes.try_iter().map(|c| Decision::breaker(&c)));
        out.extend(decided);
        ok
    }
}

/// The decision for a report the service refused, naming where it was read.
fn refused(r: &Record, e: &recovery::ReportError) -> Decision {
    Decision::error(r.at_ms, "", format!("{}: {e}", r.from))
}
