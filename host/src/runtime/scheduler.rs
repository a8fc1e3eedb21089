//! Evaluating each live policy on its trigger. One task per enabled policy;
//! when the live set changes, only policies whose fingerprint changed are
//! restarted, so a reload of one file never disturbs the schedule of another.
//! Plugin calls run on the blocking pool, off the async workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::policy::live::{LivePolicy, LiveSet};
use crate::policy::parse::next_cron_fire;
use crate::policy::schema::{PolicyKind, Trigger};
use crate::runtime::state::{EvalRecord, StateKey, StateStore};
use crate::runtime::{candidates, cleanup};
use crate::telemetry::{FailureLabels, PolicyLabels, Telemetry};

struct Task {
    fingerprint: String,
    handle: tokio::task::JoinHandle<()>,
}

/// The scheduler.
pub struct Scheduler {
    state: Arc<StateStore>,
    telemetry: Arc<Telemetry>,
    tasks: Mutex<HashMap<(PathBuf, String), Task>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            t.handle.abort();
        }
    }
}

impl Scheduler {
    /// Returns a scheduler recording into `state`.
    pub fn new(state: Arc<StateStore>, telemetry: Arc<Telemetry>) -> Self {
        Scheduler {
            state,
            telemetry,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the running tasks match `set`. Must be called inside a tokio runtime.
    pub fn sync(&self, set: &LiveSet) {
        let wanted: HashMap<(PathBuf, String), &Arc<LivePolicy>> = set
            .policies()
            .filter(|p| p.policy.spec.enabled)
            .map(|p| ((p.file.clone(), p.name().to_owned()), p))
            .collect();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|key, task| match wanted.get(key) {
            Some(p) if p.fingerprint == task.fingerprint => true,
            _ => {
                task.handle.abort();
                false
            }
        });
        for (key, policy) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            self.state
                .restart_schedule(&StateKey::policy(&key.0, &key.1));
            if let Some(handle) = self.spawn(Arc::clone(policy)) {
                tasks.insert(
                    key,
                    Task {
                        fingerprint: policy.fingerprint.clone(),
                        handle,
                    },
                );
            }
        }
        self.state.retain(|file, name| {
            set.files
                .get(file)
                .is_some_and(|f| f.policies.iter().any(|p| p.name() == name))
        });
    }

    fn spawn(&self, policy: Arc<LivePolicy>) -> Option<tokio::task::JoinHandle<()>> {
        let state = Arc::clone(&self.state);
        let telemetry = Arc::clone(&self.telemetry);
        match policy.policy.trigger.clone() {
            Trigger::Interval(every) => Some(tokio::spawn(async move {
                let period = every.0;
                let mut interval = tokio::time::interval(period);
                // A late tick is skipped, not bunched up; `missed_ticks` counts it.
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let start = Instant::now();
                loop {
                    interval.tick().await;
                    let tick = ((start.elapsed() + period / 2).as_nanos()
                        / period.as_nanos().max(1)) as u64;
                    evaluate(&policy, &state, &telemetry, Some(tick)).await;
                }
            })),
            Trigger::Cron(expr) => Some(tokio::spawn(async move {
                loop {
                    let Ok(next) = next_cron_fire(&expr) else {
                        return;
                    };
                    let wait = (next - chrono::Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO);
                    tokio::time::sleep(wait).await;
                    evaluate(&policy, &state, &telemetry, None).await;
                }
            })),
            // Event, threshold and manual triggers run when something asks.
            _ => None,
        }
    }

    /// Evaluates `policy` now, as a manual trigger does.
    pub async fn run_now(&self, policy: &Arc<LivePolicy>) -> EvalRecord {
        evaluate(policy, &self.state, &self.telemetry, None).await
    }

    /// Returns the number of scheduled tasks.
    pub fn scheduled(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Evaluates a policy once on the blocking pool and records the outcome.
pub async fn evaluate(
    policy: &Arc<LivePolicy>,
    state: &StateStore,
    telemetry: &Telemetry,
    tick: Option<u64>,
) -> EvalRecord {
    let at_ms = crate::clock::now_ms();
    let started = Instant::now();
    let p = Arc::clone(policy);
    let outcome = match tokio::task::spawn_blocking(move || evaluate_blocking(&p)).await {
        Ok(Ok(Decided::Summary(s))) => Ok(s),
        Ok(Ok(Decided::Alerts(alerts))) => Ok(apply_alerts(policy, state, &alerts, at_ms)),
        Ok(Ok(Decided::Cleanup(run))) => {
            let summary = cleanup_summary(&run);
            state.record_cleanup(*run);
            Ok(summary)
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(("panic", format!("the evaluation task failed: {e}"))),
    };
    let kind = policy.policy.kind().name();
    let labels = PolicyLabels {
        policy: policy.name().to_owned(),
        kind,
    };
    telemetry.evaluations.get_or_create(&labels).inc();
    let (ok, detail) = match outcome {
        Ok(summary) => (true, summary),
        Err((cause, message)) => {
            telemetry
                .failures
                .get_or_create(&FailureLabels {
                    policy: labels.policy.clone(),
                    kind,
                    cause,
                })
                .inc();
            (false, message)
        }
    };
    let record = EvalRecord {
        at_ms,
        micros: started.elapsed().as_micros() as u64,
        ok,
        detail,
    };
    state.record(
        &StateKey::policy(&policy.file, policy.name()),
        tick,
        record.clone(),
    );
    record
}

/// What an evaluation produced.
enum Decided {
    /// A summary for the record.
    Summary(String),
    /// Alert conditions, for the state machine.
    Alerts(Vec<crate::plugin::records::Alert>),
    /// A cleanup run, for the history.
    Cleanup(Box<cleanup::Run>),
}

fn cleanup_summary(run: &cleanup::Run) -> String {
    if let Some(why) = &run.cap_exceeded {
        return why.clone();
    }
    let [deleted, would, refused, skipped, failed] = run.counts();
    if run.dry_run {
        format!(
            "dry run over {} candidates: would delete {would} ({} bytes); {refused} refused, {skipped} skipped",
            run.candidates, run.bytes_freed
        )
    } else {
        format!(
            "over {} candidates: deleted {deleted} ({} bytes freed); {refused} refused, {skipped} skipped, {failed} failed",
            run.candidates, run.bytes_freed
        )
    }
}

/// Moves the policy's alerts through their state machine and logs changes.
fn apply_alerts(
    policy: &LivePolicy,
    state: &StateStore,
    alerts: &[crate::plugin::records::Alert],
    now_ms: i64,
) -> String {
    let ms = |d: Option<crate::policy::values::HumanDuration>| {
        d.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
    };
    let spec = &policy.policy.spec;
    for change in state.apply_alerts(
        &policy.file,
        policy.name(),
        alerts,
        now_ms,
        ms(spec.hold_for),
        ms(spec.keep_firing_for),
    ) {
        tracing::warn!(policy = policy.name(), alert = %change.name, labels = ?change.labels, value = change.value, phase = ?change.phase, "alert changed phase");
    }
    let all = state.alerts(&policy.file, policy.name());
    let count = |p| all.iter().filter(|a| a.phase == p).count();
    use crate::runtime::alerts::Phase;
    format!(
        "{} alerts firing, {} pending",
        count(Phase::Firing),
        count(Phase::Pending)
    )
}

/// Runs one evaluation and summarizes what the plugin decided.
fn evaluate_blocking(p: &LivePolicy) -> Result<Decided, (&'static str, String)> {
    let fail = |e: crate::plugin::EvalError| (e.failure.label(), e.to_string());
    let Some(evaluator) = &p.evaluator else {
        return Ok(Decided::Summary(match p.policy.kind() {
            PolicyKind::Quota => "quota checked by the host".into(),
            _ => "no plugin".into(),
        }));
    };
    match p.policy.kind() {
        PolicyKind::Alert => Ok(Decided::Alerts(evaluator.evaluate_alerts().map_err(fail)?)),
        PolicyKind::Detector => {
            let found = evaluator.detect().map_err(fail)?;
            for f in &found {
                tracing::info!(policy = p.name(), pattern = %f.pattern, subject = %f.subject, exhaustion_in_ms = ?f.exhaustion_in_ms, "{}", f.recommendation);
            }
            Ok(Decided::Summary(format!("{} findings", found.len())))
        }
        PolicyKind::Cleanup => {
            let candidates = candidates::scan(&p.policy.scope_paths);
            let dry_run = p.policy.spec.dry_run;
            let plan = evaluator.plan(dry_run, candidates.clone()).map_err(fail)?;
            let rules = cleanup::Rules::new(
                p.policy.scope_paths.clone(),
                &p.policy.spec.scope.exclude,
                p.policy.max_actions,
                dry_run,
            )
            .map_err(|e| ("bad_scope", e))?;
            let run = cleanup::execute(p.name(), &rules, &candidates, &plan);
            Ok(Decided::Cleanup(Box::new(run)))
        }
        PolicyKind::Recovery => Ok(Decided::Summary(
            "recovery strategies decide when a failure is reported".into(),
        )),
        PolicyKind::Quota => Ok(Decided::Summary("quota checked by the host".into())),
    }
}
