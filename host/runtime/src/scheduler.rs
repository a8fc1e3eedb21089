//! Evaluating each live policy on its trigger. One task per enabled policy
//! (two for a cleanup policy that also runs on memory pressure); when the
//! live set changes, only policies whose fingerprint changed are restarted,
//! so a reload of one file never disturbs the schedule of another. Plugin
//! calls, and everything done with their decisions, run on the blocking pool,
//! off the async workers.
//!
//! Triggers:
//! - `interval` and `cron` run on their schedule;
//! - `threshold` runs when any series of the metric has met the condition
//!   for the trigger's `for`, once per crossing (it re-arms when the
//!   condition stops holding), and not again within the policy's `cooldown`;
//! - `event` runs when the event is published ([`Context::publish`]);
//! - `on_pressure` (cleanup) runs when memory pressure rises to the
//!   policy's level or above;
//! - `manual` runs only when asked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::alerts::{DEFAULT_REFRESH_MS, Phase, Timing};
use crate::cleanup::{self, walk};
use crate::crossing::Crossing;
use crate::dispatch::Dispatcher;
pub use crate::gate::{Busy, DEFAULT_MAX_EVALUATIONS, Gate, Pass};
use crate::state::{EvalRecord, StateKey, StateStore};
use warden_core::records::SeriesSelector;
use warden_core::telemetry::{FailureLabels, PolicyLabels, Telemetry};
use warden_metrics::SeriesStore;
use warden_metrics::aggregate::Aggregation;
use warden_metrics::store::Scope;
use warden_policy::live::{LivePolicy, LiveSet};
use warden_policy::parse::next_cron_fire;
use warden_policy::schema::{EventKind, PolicyKind, PressureLevel, ThresholdTrigger, Trigger};
use warden_resources::Registry;

/// How far back a threshold trigger looks for a series' newest sample.
const LOOKBACK: Duration = Duration::from_secs(5 * 60);

/// How often a threshold trigger looks at its metric.
pub const THRESHOLD_CHECK: Duration = Duration::from_secs(1);

/// Something that happened, for policies triggered by `event:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What kind of thing.
    pub kind: EventKind,
    /// The memory pressure level, for `pressure-changed` (`None`: below all).
    pub pressure: Option<PressureLevel>,
    /// The failure, for `failure-reported`.
    pub failure: Option<FailureEvent>,
}

/// A reported failure, as `failure-reported` carries it: policies triggered
/// by it run only for failures their `scope.operations`, `scope.labels` and
/// `scope.classes` match.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureEvent {
    /// The operation.
    pub operation: String,
    /// Its class.
    pub class: warden_core::records::ErrorClass,
    /// The report's labels (checked: no personal data).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What evaluations share: where state goes, who hears about alerts, what
/// triggers read.
#[derive(Debug, Clone)]
pub struct Context {
    /// Runtime state.
    pub state: Arc<StateStore>,
    /// Warden's own metrics.
    pub telemetry: Arc<Telemetry>,
    /// Alert receivers.
    pub dispatcher: Arc<Dispatcher>,
    /// The series store threshold triggers read.
    pub series: Arc<SeriesStore>,
    /// Resources applications registered.
    pub registry: Arc<Registry>,
    /// What watched processes hold, as discovery last read it.
    pub discovered: Arc<warden_resources::discover::Discovered>,
    /// Events, for `event:` triggers.
    pub events: tokio::sync::broadcast::Sender<Event>,
    /// The memory pressure level now, for `on_pressure`: a watch, not an
    /// event, so a policy loaded while pressure is already high runs at once.
    pub pressure: tokio::sync::watch::Sender<Option<PressureLevel>>,
    /// How often firing alerts are repeated to receivers that expire them.
    pub refresh_ms: u64,
    /// Recovery: circuits and decisions, for manual runs of recovery policies.
    pub recovery: Option<Arc<crate::recovery::Recovery>>,
    /// How many evaluations run at once.
    pub gate: Arc<Gate>,
    /// Quotas in force.
    pub quotas: Arc<crate::quotas::QuotaService>,
}

impl Context {
    /// A context with state in memory, alerts to the log, and empty stores.
    pub fn new(state: Arc<StateStore>, telemetry: Arc<Telemetry>) -> Self {
        Context {
            state,
            telemetry,
            dispatcher: Arc::new(Dispatcher::default()),
            series: Arc::default(),
            registry: Arc::default(),
            discovered: Arc::default(),
            events: tokio::sync::broadcast::channel(256).0,
            pressure: tokio::sync::watch::channel(None).0,
            refresh_ms: DEFAULT_REFRESH_MS,
            recovery: None,
            gate: Arc::new(Gate::default()),
            quotas: Arc::default(),
        }
    }

    /// Tells policies triggered by this event. Nobody listening is fine.
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

struct Task {
    fingerprint: String,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

/// The scheduler.
pub struct Scheduler {
    cx: Context,
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
            t.handles.iter().for_each(|h| h.abort());
        }
    }
}

impl Scheduler {
    /// Returns a scheduler recording into `state`, with alerts to the log.
    pub fn new(state: Arc<StateStore>, telemetry: Arc<Telemetry>) -> Self {
        Self::with_context(Context::new(state, telemetry))
    }

    /// Returns a scheduler sharing `cx`.
    pub fn with_context(cx: Context) -> Self {
        Scheduler {
            cx,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// What evaluations share.
    pub fn context(&self) -> &Context {
        &self.cx
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
                task.handles.iter().for_each(|h| h.abort());
                false
            }
        });
        for (key, policy) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            self.cx
                .state
                .restart_schedule(&StateKey::policy(&key.0, &key.1));
            let handles = self.spawn(policy);
            if !handles.is_empty() {
                tasks.insert(
                    key,
                    Task {
                        fingerprint: policy.fingerprint.clone(),
                        handles,
                    },
                );
            }
        }
        self.cx.state.retain(|file, name| {
            set.files
                .get(file)
                .is_some_and(|f| f.policies.iter().any(|p| p.name() == name))
        });
        // A plugin's state may be what it learned over weeks: a file that
        // fails to load (a typo at startup, with no last good version)
        // keeps the state of its policies until it loads again or goes.
        self.cx.state.retain_plugin_states(|file, name| {
            set.files
                .get(file)
                .is_some_and(|f| f.error.is_some() || f.policies.iter().any(|p| p.name() == name))
        });
        self.cx.gate.retain(|name| set.get(name).is_some());
        self.cx
            .quotas
            .sync(set, &self.cx.registry, warden_core::clock::now_ms());
        let in_use: Vec<_> = set
            .policies()
            .filter_map(|p| p.policy.spec.notify.as_ref())
            .flatten()
            .collect();
        self.cx.dispatcher.retain(&in_use);
    }

    fn spawn(&self, policy: &Arc<LivePolicy>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut handles = Vec::new();
        let cx = self.cx.clone();
        let p = Arc::clone(policy);
        match policy.policy.trigger.clone() {
            Trigger::Interval(every) => handles.push(tokio::spawn(async move {
                // A version that may not act yet starts its schedule once it
                // may (its runs before would be dry runs).
                settle(&p).await;
                let period = every.0;
                let mut interval = tokio::time::interval(period);
                // A late tick is skipped, not bunched up; `missed_ticks` counts it.
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let start = Instant::now();
                loop {
                    interval.tick().await;
                    let tick = ((start.elapsed() + period / 2).as_nanos()
                        / period.as_nanos().max(1)) as u64;
                    evaluate(&p, &cx, Some(tick)).await;
                }
            })),
            Trigger::Cron(expr) => handles.push(tokio::spawn(async move {
                loop {
                    let Ok(next) = next_cron_fire(&expr) else {
                        return;
                    };
                    let wait = (next - chrono::Utc::now())
                        .to_std()
                        .unwrap_or(Duration::ZERO);
                    tokio::time::sleep(wait).await;
                    evaluate(&p, &cx, None).await;
                }
            })),
            Trigger::Threshold(t) => {
                handles.push(tokio::spawn(async move {
                    settle(&p).await;
                    watch_threshold(&p, &cx, &t).await;
                }));
            }
            // A recovery policy is asked by the recovery service when a
            // failure it covers is reported, not by this event.
            Trigger::Event(_) if policy.policy.kind() == PolicyKind::Recovery => {}
            Trigger::Event(kind) => {
                let mut rx = cx.events.subscribe();
                let cooldown_ms = p.policy.spec.cooldown.map_or(0, |d| d.0.as_millis() as i64);
                handles.push(tokio::spawn(async move {
                    let mut last_run: Option<i64> = None;
                    loop {
                        match rx.recv().await {
                            Ok(e) if e.kind == kind => {
                                if let Some(f) = &e.failure
                                    && !crate::recovery::failure_matches(&p, f)
                                {
                                    continue;
                                }
                                // `cooldown`: a storm of events runs the policy once per period.
                                let now = warden_core::clock::now_ms();
                                if last_run.is_some_and(|l| now - l < cooldown_ms) {
                                    continue;
                                }
                                last_run = Some(now);
                                evaluate(&p, &cx, None).await;
                            }
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(policy = p.name(), missed = n, "events came faster than the policy ran; running once for all of them");
                                evaluate(&p, &cx, None).await;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }));
            }
            Trigger::Manual => {}
        }
        if let Some(level) = policy.policy.spec.on_pressure {
            let cx = self.cx.clone();
            let p = Arc::clone(policy);
            let mut rx = cx.pressure.subscribe();
            handles.push(tokio::spawn(async move {
                settle(&p).await;
                let mut above = false;
                loop {
                    let pressure = *rx.borrow_and_update();
                    let now_above = pressure.is_some_and(|l| l >= level);
                    if now_above && !above {
                        tracing::warn!(policy = p.name(), level = ?pressure, "memory pressure: running the cleanup policy");
                        evaluate(&p, &cx, None).await;
                    }
                    above = now_above;
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }));
        }
        handles
    }

    /// Evaluates `policy` now, as a manual trigger does, if the bounds on
    /// evaluations allow it now; otherwise says why not, without waiting.
    pub async fn run_now(&self, policy: &Arc<LivePolicy>) -> Result<EvalRecord, Busy> {
        let pass = self.cx.gate.try_enter(policy.name())?;
        Ok(evaluate_with(policy, &self.cx, None, pass).await)
    }

    /// Returns the number of scheduled policies.
    pub fn scheduled(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Waits until `p` may act (see [`LivePolicy::held`]).
async fn settle(p: &LivePolicy) {
    if let Some(until) = p.hold_until_ms {
        let left = until.saturating_sub(warden_core::clock::now_ms());
        if left > 0 {
            tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
        }
    }
}

/// Runs `p` each time a series of the trigger's metric has met its condition
/// for the trigger's `for`: once per crossing, at most once per cooldown.
async fn watch_threshold(p: &Arc<LivePolicy>, cx: &Context, t: &ThresholdTrigger) {
    let selector = SeriesSelector {
        metric: t.metric.clone(),
        matchers: t
            .matchers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let hold_ms = t.hold_for.map_or(0, |d| d.0.as_millis() as i64);
    let cooldown_ms = p.policy.spec.cooldown.map_or(0, |d| d.0.as_millis() as i64);
    let mut crossing = Crossing::new(hold_ms, cooldown_ms);
    let mut every = tokio::time::interval(THRESHOLD_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let now = warden_core::clock::now_ms();
        // The newest sample of each series within Prometheus' lookback of
        // 5 minutes: a series that stopped reporting stops counting. The
        // store's `last` aggregate reads it in place, without copying the
        // window's samples out every second.
        let holds = cx
            .series
            .aggregate_by(&selector, LOOKBACK, now, &[Aggregation::Last], Scope::Each)
            .series
            .iter()
            .filter_map(|s| s.values.first().copied().flatten())
            .any(|v| t.condition.holds(v, t.value));
        if !crossing.check(holds, now) {
            continue;
        }
        tracing::info!(policy = p.name(), metric = %t.metric, "threshold crossed: running the policy");
        evaluate(p, cx, None).await;
    }
}

/// Evaluates a policy once on the blocking pool when the gate lets it, acts
/// on what it decided and records the outcome.
pub async fn evaluate(policy: &Arc<LivePolicy>, cx: &Context, tick: Option<u64>) -> EvalRecord {
    let pass = cx.gate.enter(policy.name()).await;
    evaluate_with(policy, cx, tick, pass).await
}

/// Evaluates a policy once on the blocking pool under `pass`, which the
/// blocking task holds until it is done.
async fn evaluate_with(
    policy: &Arc<LivePolicy>,
    cx: &Context,
    tick: Option<u64>,
    pass: Pass,
) -> EvalRecord {
    let at_ms = warden_core::clock::now_ms();
    let started = Instant::now();
    let p = Arc::clone(policy);
    let c = cx.clone();
    let blocking = move || {
        let _pass = pass;
        decide_and_act(&p, &c, at_ms)
    };
    let outcome = match tokio::task::spawn_blocking(blocking).await {
        Ok(r) => r,
        Err(e) => Err(("panic", format!("the evaluation task failed: {e}"))),
    };
    let kind = policy.policy.kind().name();
    let labels = PolicyLabels {
        policy: policy.name().to_owned(),
        kind,
    };
    cx.telemetry.evaluations.get_or_create(&labels).inc();
    let (ok, detail) = match outcome {
        Ok(summary) => (true, summary),
        Err((cause, message)) => {
            cx.telemetry
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
    cx.state.record(
        &StateKey::policy(&policy.file, policy.name()),
        tick,
        record.clone(),
    );
    record
}

/// The blocking half of [`evaluate`]: the plugin call and what follows it.
fn decide_and_act(
    p: &LivePolicy,
    cx: &Context,
    at_ms: i64,
) -> Result<String, (&'static str, String)> {
    let _span =
        tracing::info_span!("policy", policy = p.name(), kind = p.policy.kind().name()).entered();
    Ok(match evaluate_blocking(p, cx)? {
        Decided::Summary(s) => s,
        Decided::Alerts(alerts) => apply_alerts(p, cx, &alerts, at_ms),
        Decided::Findings(found) => crate::findings::run::apply(p, cx, &found, at_ms),
        Decided::Cleanup(runs) => {
            let summary = runs
                .iter()
                .map(cleanup_summary)
                .collect::<Vec<_>>()
                .join("; registered resources: ");
            runs.into_iter().for_each(|r| cx.state.record_cleanup(r));
            summary
        }
    })
}

/// What an evaluation produced.
enum Decided {
    /// A summary for the record.
    Summary(String),
    /// Alert conditions, for the state machine.
    Alerts(Vec<warden_core::records::Alert>),
    /// What a detector found, for the findings store.
    Findings(Vec<warden_core::records::Finding>),
    /// Cleanup runs (files, then registered resources), for the history.
    Cleanup(Vec<cleanup::Run>),
}

fn cleanup_summary(run: &cleanup::Run) -> String {
    if let Some(why) = &run.cap_exceeded {
        return why.clone();
    }
    let [acted, would, refused, skipped, failed] = run.counts();
    let timed_out = if run.timed_out {
        "; the run timed out, the rest were not started"
    } else {
        ""
    };
    let (done, planned) = run.acts_on.verbs();
    // Signals free nothing by themselves; files and registered sizes do.
    let bytes = |what: &str| match run.acts_on {
        cleanup::ActsOn::Processes => String::new(),
        _ => format!(" ({} bytes{what})", run.bytes_freed),
    };
    if run.dry_run {
        format!(
            "dry run over {} candidates: {planned} {would}{}; {refused} refused, {skipped} skipped{timed_out}",
            run.candidates,
            bytes("")
        )
    } else {
        format!(
            "over {} candidates: {done} {acted}{}; {refused} refused, {skipped} skipped, {failed} failed{timed_out}",
            run.candidates,
            bytes(" freed")
        )
    }
}

/// Moves the policy's alerts through their state machine, logs the changes,
/// tells the receivers and publishes `alert-fired`.
fn apply_alerts(
    policy: &LivePolicy,
    cx: &Context,
    alerts: &[warden_core::records::Alert],
    now_ms: i64,
) -> String {
    let ms = |d: Option<warden_core::values::HumanDuration>| {
        d.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
    };
    let spec = &policy.policy.spec;
    let applied = cx.state.apply_alerts(
        &policy.file,
        policy.name(),
        alerts,
        now_ms,
        Timing {
            default_for_ms: ms(spec.hold_for),
            keep_firing_for_ms: ms(spec.keep_firing_for),
            cooldown_ms: ms(spec.cooldown),
            refresh_ms: cx.refresh_ms,
            min_severity: spec.min_severity,
        },
    );
    let mut fired = false;
    for change in &applied.changed {
        fired |= change.phase == Phase::Firing;
        tracing::warn!(policy = policy.name(), alert = %change.name, labels = ?change.labels, value = change.value, phase = ?change.phase, "alert changed phase");
    }
    cx.dispatcher.dispatch(
        policy.name(),
        &spec.labels,
        spec.notify.as_deref(),
        &applied.due,
        now_ms,
    );
    if fired {
        cx.publish(Event {
            kind: EventKind::AlertFired,
            pressure: None,
            failure: None,
        });
    }
    let refused = if applied.refused > 0 {
        format!(
            "; {} new alerts refused (a policy holds at most {})",
            applied.refused,
            crate::alerts::MAX_ALERTS_PER_POLICY
        )
    } else {
        String::new()
    };
    format!(
        "{} alerts firing, {} pending{refused}",
        applied.firing, applied.pending
    )
}

/// Runs cleanup policy `p` at once for a quota's `cleanup` action, on the
/// caller's (blocking) thread, if the bounds on evaluations allow it now:
/// records it as any run of the policy is, and returns its runs so the
/// quota can say what was reclaimed.
pub(crate) fn run_for_quota(
    p: &Arc<LivePolicy>,
    cx: &Context,
) -> Result<Vec<cleanup::Run>, String> {
    // Not waited for: the quota's own evaluation holds a pass, and waiting
    // for another while holding one could wait forever.
    let _pass = cx.gate.try_enter(p.name()).map_err(|b| b.to_string())?;
    let at_ms = warden_core::clock::now_ms();
    let started = Instant::now();
    let outcome = evaluate_blocking(p, cx);
    let (ok, detail, runs) = match outcome {
        Ok(Decided::Cleanup(runs)) => {
            let summary = runs
                .iter()
                .map(cleanup_summary)
                .collect::<Vec<_>>()
                .join("; registered resources: ");
            (true, format!("run by a quota: {summary}"), runs)
        }
        Ok(_) => (false, "not a cleanup policy".to_owned(), Vec::new()),
        Err((_, message)) => (false, message, Vec::new()),
    };
    cx.state.record(
        &StateKey::policy(&p.file, p.name()),
        None,
        EvalRecord {
            at_ms,
            micros: started.elapsed().as_micros() as u64,
            ok,
            detail: detail.clone(),
        },
    );
    runs.iter().for_each(|r| cx.state.record_cleanup(r.clone()));
    if ok { Ok(runs) } else { Err(detail) }
}

/// Runs one evaluation and summarizes what the plugin decided.
fn evaluate_blocking(p: &LivePolicy, cx: &Context) -> Result<Decided, (&'static str, String)> {
    let fail = |e: warden_plugin_host::EvalError| (e.failure.label(), e.to_string());
    let Some(evaluator) = &p.evaluator else {
        return match p.policy.kind() {
            PolicyKind::Quota => Ok(Decided::Summary(cx.quotas.cycle(
                p,
                cx,
                warden_core::clock::now_ms(),
            )?)),
            _ => Ok(Decided::Summary("no plugin".into())),
        };
    };
    match p.policy.kind() {
        PolicyKind::Alert => Ok(Decided::Alerts(evaluator.evaluate_alerts().map_err(fail)?)),
        PolicyKind::Detector => Ok(Decided::Findings(evaluator.detect().map_err(fail)?)),
        PolicyKind::Cleanup => {
            // A version made more dangerous acts only once its file settled.
            let held = p.held(warden_core::clock::now_ms());
            if held {
                tracing::warn!(
                    policy = p.name(),
                    "the policy changed to act or widen its scope less than the settle time ago; this run is a dry run"
                );
            }
            let dry_run = p.policy.spec.dry_run || held;
            let kinds = &p.policy.spec.scope.kinds;
            let mut runs = Vec::new();
            // A scope of only registered kinds has no files to look at.
            let processes = p.policy.spec.scope.processes.as_ref();
            if !p.policy.scope_paths.is_empty() || (kinds.is_empty() && processes.is_none()) {
                // Resolved and pinned once for the whole run: the scan and
                // every deletion start from these descriptors.
                let scope = cleanup::Scope::open(&p.policy.scope_paths, &p.policy.protected)
                    .map_err(|e| {
                        tracing::error!(policy = p.name(), "refused: {e}");
                        ("unsafe_scope", e.to_string())
                    })?;
                let mut candidates = walk::scan(&scope);
                let plan = evaluator
                    .plan_over(dry_run, &mut candidates.set)
                    .map_err(fail)?;
                let rules = cleanup::Rules::new(
                    &p.policy.spec.scope.exclude,
                    p.policy.max_actions,
                    dry_run,
                )
                .map_err(|e| ("bad_scope", e))?
                .with_concurrency(p.policy.max_concurrent)
                .with_run_timeout(p.policy.run_timeout)
                .with_retries(p.policy.spec.retries.clone());
                runs.push(cleanup::execute(
                    p.name(),
                    &rules,
                    &scope,
                    &candidates,
                    &plan,
                ));
            }
            // Registered resources get a plan of their own: their handles
            // are the registry's, not inodes, and they are released, not
            // deleted.
            if !kinds.is_empty() {
                let mut registered = crate::cleanup::registered::candidates(&cx.registry, kinds);
                let plan = evaluator
                    .plan_over(dry_run, &mut registered)
                    .map_err(fail)?;
                runs.push(crate::cleanup::registered::execute(
                    p.name(),
                    &cx.registry,
                    &registered,
                    &plan,
                    p.policy.max_actions,
                    dry_run,
                    match p.policy.spec.on_dependents {
                        Some(warden_policy::schema::OnDependents::Cascade) => {
                            warden_resources::registry::ReleaseMode::Cascade
                        }
                        _ => warden_resources::registry::ReleaseMode::Refuse,
                    },
                ));
            }
            // Processes get a plan of their own too: the live ones
            // `scope.processes` matches, signalled through pidfds.
            if let Some(scope) = processes {
                use crate::cleanup::processes;
                let allowed = processes::Allowed::of(scope, &p.policy.spec.scope.signals)
                    .map_err(|e| ("bad_scope", e))?;
                let mut found = processes::candidates(scope).map_err(|e| ("bad_scope", e))?;
                let plan = evaluator.plan_over(dry_run, &mut found.set).map_err(fail)?;
                runs.push(processes::execute(
                    p.name(),
                    &allowed,
                    &found,
                    &plan,
                    p.policy.max_actions,
                    dry_run,
                ));
            }
            Ok(Decided::Cleanup(runs))
        }
        PolicyKind::Recovery => match &cx.recovery {
            Some(r) => Ok(Decided::Summary(r.probe(p)?)),
            None => {
                // No recovery service (a scheduler built without one): ask
                // the plugin about a made-up failure all the same, so a
                // manual run always exercises the plugin.
                let service = crate::recovery::Recovery::new(Default::default());
                Ok(Decided::Summary(service.probe(p)?))
            }
        },
        // A quota has no plugin, so it was answered above.
        PolicyKind::Quota => Ok(Decided::Summary(cx.quotas.cycle(
            p,
            cx,
            warden_core::clock::now_ms(),
        )?)),
    }
}
